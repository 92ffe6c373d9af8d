"""Bearer API keys: ``pc_<prefix>_<secret>``, shown once, stored as SHA-256.

Keys carry 256 bits of randomness, so a fast hash is enough (a slow password
hash would cost every API call dearly and add nothing); the lookup goes by the
non-secret prefix and the hash is compared in constant time.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets

from flask import g, request
from sqlalchemy import select
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
            session.rollback()
        if key is None:
            response = problem(401, "Unauthorized",
                               "A valid API key is required: Authorization: Bearer <key>.")
            response.headers["WWW-Authenticate"] = 'Bearer realm="prefcenter"'
            return response
        g.api_key = key
        return view(*args, **kwargs)

    return wrapper
