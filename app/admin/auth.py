"""Admin passwords (argon2id) and the admin session.

Passwords are hashed with argon2-cffi's ``PasswordHasher``; its parameters come
from ``ADMIN_ARGON2_*`` config keys (argon2-cffi's defaults otherwise) and a hash
made with older parameters is replaced on the next successful login.

The session lives in the database (``admin_sessions``); Flask's signed cookie only
names it. Logging in clears the cookie and stores a fresh random token (no
fixation; the table keeps its SHA-256), the admin's id and a fingerprint of the
password hash (changing the password ends every older session). A session ends at
logout, after ``ADMIN_IDLE_TIMEOUT`` seconds without use, and ``ADMIN_SESSION_LIFETIME``
seconds after the login however much it is used; each request checks the row, so a
cookie copied before logout opens nothing afterwards.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from flask import current_app, g, redirect, request, session, url_for
from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from app import clock
from app.admin.models import Admin, AdminSession
from app.db import get_session, utcnow

MIN_PASSWORD_LENGTH = 12
SESSION_KEYS = ("admin_id", "admin_version", "admin_sid")
# A session's last use is written at most this often (idle timeouts are that precise).
TOUCH_EVERY = dt.timedelta(seconds=30)


class PasswordTooShort(ValueError):
    pass


def hasher(app=None) -> PasswordHasher:
    """The app's password hasher; ``ADMIN_ARGON2_*`` config keys tune it."""
    app = app or current_app
    found = app.extensions.get("prefcenter.admin.hasher")
    if found is None:
        defaults = PasswordHasher()
        found = PasswordHasher(
            time_cost=app.config.get("ADMIN_ARGON2_TIME_COST", defaults.time_cost),
            memory_cost=app.config.get("ADMIN_ARGON2_MEMORY_COST", defaults.memory_cost),
            parallelism=app.config.get("ADMIN_ARGON2_PARALLELISM", defaults.parallelism),
        )
        app.extensions["prefcenter.admin.hasher"] = found
        # Verified against when the email is unknown, so both answers take as long.
        app.extensions["prefcenter.admin.dummy_hash"] = found.hash(secrets.token_urlsafe(16))
    return found


def check_password_rules(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordTooShort(f"passwords need at least {MIN_PASSWORD_LENGTH} characters")


def hash_password(password: str, app=None) -> str:
    check_password_rules(password)
    return hasher(app).hash(password)


def normalise_admin_email(raw: str) -> str:
    return (raw or "").strip().lower()


def authenticate(session: Session, email: str, password: str, app=None) -> Admin | None:
    """The active admin with these credentials, else None, in about the same time."""
    app = app or current_app
    ph = hasher(app)
    admin = session.scalars(
        select(Admin).where(Admin.email == normalise_admin_email(email))
    ).one_or_none()
    if admin is None or not admin.is_active:
        with contextlib.suppress(VerificationError):
            ph.verify(app.extensions["prefcenter.admin.dummy_hash"], password)
        return None
    try:
        ph.verify(admin.password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if ph.check_needs_rehash(admin.password_hash):
        admin.password_hash = ph.hash(password)
    admin.last_login_at = utcnow()
    return admin


def session_version(admin: Admin) -> str:
    """Changes whenever the password hash does (a rehash included)."""
    return hashlib.sha256(admin.password_hash.encode("utf-8")).hexdigest()[:24]


def _session_id(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def start_session(session: Session, admin: Admin, *, now: dt.datetime,
                  lifetime: float) -> str:
    """A new server-side session for ``admin``; returns the token the cookie carries.
    Also forgets the admin's sessions that are over (the caller commits)."""
    session.execute(delete(AdminSession).where(
        AdminSession.admin_id == admin.id,
        or_(AdminSession.ended_at.is_not(None), AdminSession.expires_at <= now)))
    token = secrets.token_urlsafe(32)
    session.add(AdminSession(id=_session_id(token), admin_id=admin.id, created_at=now,
                             last_seen_at=now,
                             expires_at=now + dt.timedelta(seconds=lifetime)))
    session.flush()
    return token


def end_session(session: Session, token: str, *, now: dt.datetime) -> None:
    """End the session ``token`` names (the caller commits)."""
    session.execute(update(AdminSession)
                    .where(AdminSession.id == _session_id(token),
                           AdminSession.ended_at.is_(None))
                    .values(ended_at=now))


def end_all_sessions(session: Session, admin: Admin, *, now: dt.datetime) -> None:
    """End every session of ``admin`` (a password change; the caller commits)."""
    session.execute(update(AdminSession)
                    .where(AdminSession.admin_id == admin.id, AdminSession.ended_at.is_(None))
                    .values(ended_at=now))


def log_in(db_session: Session, admin: Admin) -> None:
    """A brand-new session for ``admin``: nothing from before the login survives.
    The caller commits ``db_session``."""
    token = start_session(db_session, admin, now=clock.now(),
                          lifetime=current_app.config["ADMIN_SESSION_LIFETIME"])
    session.clear()
    session["admin_id"] = admin.id
    session["admin_version"] = session_version(admin)
    session["admin_sid"] = token


def log_out(db_session: Session) -> None:
    """End this session in the database and clear the cookie (the caller commits)."""
    token = session.get("admin_sid")
    if isinstance(token, str):
        end_session(db_session, token, now=clock.now())
    session.clear()


def current_admin() -> Admin | None:
    """The logged-in admin, or None (no session, ended, idle too long, past its
    lifetime, password changed, admin deactivated)."""
    if "admin" in g:
        return g.admin
    g.admin = None
    admin_id, token = session.get("admin_id"), session.get("admin_sid")
    if admin_id is None:
        return None
    if not isinstance(token, str):
        session.clear()
        return None
    now = clock.now()
    # A write request takes SQLite's write lock now, before its first read.
    db_session = get_session(write=request.method not in ("GET", "HEAD"))
    row = db_session.get(AdminSession, _session_id(token))
    idle = dt.timedelta(seconds=current_app.config["ADMIN_IDLE_TIMEOUT"])
    if row is None or row.ended_at is not None or row.admin_id != admin_id \
            or row.expires_at <= now:
        session.clear()
        return None
    if now - row.last_seen_at > idle:
        session.clear()
        g.idle_expired = True
        return None
    admin = db_session.get(Admin, admin_id)
    if admin is None or not admin.is_active or \
            session.get("admin_version") != session_version(admin):
        session.clear()
        return None
    if now - row.last_seen_at >= TOUCH_EVERY:
        db_session.rollback()  # end the read: the write below starts with the write lock
        db_session = get_session(write=True)
        db_session.execute(update(AdminSession).where(AdminSession.id == row.id)
                           .values(last_seen_at=now))
        db_session.commit()
        admin = db_session.get(Admin, admin_id)
    g.admin = admin
    return admin


def login_redirect():
    """None when an admin is logged in, else the redirect to the login page (coming back to
    this page after it, for a GET). The admin blueprint asks this before every request but
    the login page's (:func:`app.admin.views.guard`)."""
    if current_admin() is not None:
        return None
    target = request.full_path if request.method == "GET" else None
    return redirect(url_for("admin.login", next=target,
                            expired="1" if g.get("idle_expired") else None))


def safe_next(target: str | None) -> str:
    """Only a path inside the admin; anything else goes to the dashboard."""
    if target and target.startswith("/admin/") and not target.startswith("//") \
            and "\\" not in target and target.isprintable() and " " not in target:
        return target.rstrip("?")
    return url_for("admin.dashboard")
