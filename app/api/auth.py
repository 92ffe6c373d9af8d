"""Bearer API keys: ``pc_<prefix>_<secret>``, shown once, stored as SHA-256.

Keys carry 256 bits of randomness, so a fast hash is enough (a slow password
hash would cost every API call dearly and add nothing); the lookup goes by the
non-secret prefix and the hash is compared in constant time.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import secrets

from flask import g, request
from sqlalchemy import or_, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from app.api.models import ApiKey
from app.db import get_session, utcnow
from app.errors import problem


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_api_key(session: Session, name: str) -> tuple[ApiKey, str]:
    """A new key; the plain key is returned once and never stored."""
    prefix = secrets.token_hex(4)
    plain = f"pc_{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey(name=name, prefix=prefix, key_hash=_hash(plain), created_at=utcnow())
    session.add(key)
    session.flush()
    return key, plain


# A key's last use is written at most this often (one small write per key and minute).
LAST_USED_EVERY = dt.timedelta(seconds=60)


class UnknownApiKey(LookupError):
    pass


def list_api_keys(session: Session) -> list[ApiKey]:
    """Every key, oldest first (hashes only: the keys themselves were never stored)."""
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)))


def revoke_api_keys(session: Session, name_or_prefix: str, *,
                    now: dt.datetime | None = None) -> list[ApiKey]:
    """Revoke the key with this prefix, or every key with this name; returns those that
    were live. The next request with a revoked key is refused, on every server, since each
    request reads the key from the database. :class:`UnknownApiKey` if none matches."""
    now = now or utcnow()
    found = list(session.scalars(select(ApiKey).where(
        or_(ApiKey.prefix == name_or_prefix, ApiKey.name == name_or_prefix))
        .order_by(ApiKey.id)))
    by_prefix = [k for k in found if k.prefix == name_or_prefix]
    found = by_prefix or found
    if not found:
        raise UnknownApiKey(f"no API key named or prefixed {name_or_prefix!r}")
    live = [k for k in found if k.revoked_at is None]
    for key in live:
        key.revoked_at = now
    session.flush()
    return live


def _note_use(session: Session, key: ApiKey) -> None:
    """Record when a key was last used (at most once a minute; never fails the request)."""
    now = utcnow()
    if key.last_used_at is not None and now - key.last_used_at < LAST_USED_EVERY:
        return
    session.rollback()
    try:
        get_session(write=True).execute(
            update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=now))
        session.commit()
    except OperationalError:  # the database is busy: the next request notes it
        session.rollback()


def verify_api_key(session: Session, presented: str) -> ApiKey | None:
    parts = presented.split("_", 2)
    if len(parts) != 3 or parts[0] != "pc" or len(presented) > 200:
        return None
    digest = _hash(presented)
    candidates = session.scalars(
        select(ApiKey).where(ApiKey.prefix == parts[1], ApiKey.revoked_at.is_(None))
    ).all()
    found = None
    for candidate in candidates:
        if hmac.compare_digest(candidate.key_hash, digest):
            found = candidate
    return found


def require_api_key(view):
    """401 problem unless the request carries a valid ``Authorization: Bearer`` key."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        key = None
        session = get_session()
        if scheme.lower() == "bearer" and presented.strip():
            key = verify_api_key(session, presented.strip())
        if key is not None:
            # End the read: a view that writes then starts its own transaction
            # (BEGIN IMMEDIATE on SQLite; a read upgraded to a write fails when
            # another writer went first). The key keeps its loaded values.
            session.expunge(key)
            _note_use(session, key)
            session.rollback()
        if key is None:
            response = problem(401, "Unauthorized",
                               "A valid API key is required: Authorization: Bearer <key>.")
            response.headers["WWW-Authenticate"] = 'Bearer realm="prefcenter"'
            return response
        g.api_key = key
        return view(*args, **kwargs)

    return wrapper
