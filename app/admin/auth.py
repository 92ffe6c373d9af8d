"""Admin passwords (argon2id) and the admin session.

Passwords are hashed with argon2-cffi's ``PasswordHasher``; its parameters come
from ``ADMIN_ARGON2_*`` config keys (argon2-cffi's defaults otherwise) and a hash
made with older parameters is replaced on the next successful login.

The session is Flask's signed cookie. Logging in clears it and stores a fresh
random nonce (no fixation), the admin's id, a fingerprint of the password hash
(changing the password ends every older session) and a last-seen time (idle
timeout, ``ADMIN_IDLE_TIMEOUT`` seconds).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import secrets
import time

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from flask import current_app, g, redirect, request, session, url_for
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.admin.models import Admin
from app.db import get_session, utcnow

MIN_PASSWORD_LENGTH = 12
SESSION_KEYS = ("admin_id", "admin_version", "admin_nonce", "admin_seen")


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


def log_in(admin: Admin) -> None:
    """A brand-new session for ``admin``: nothing from before the login survives."""
    session.clear()
    session["admin_id"] = admin.id
    session["admin_version"] = session_version(admin)
    session["admin_nonce"] = secrets.token_urlsafe(16)
    session["admin_seen"] = int(time.time())


def log_out() -> None:
    session.clear()


def current_admin() -> Admin | None:
    """The logged-in admin, or None (no session, idle too long, password changed)."""
    if "admin" in g:
        return g.admin
    g.admin = None
    admin_id = session.get("admin_id")
    if admin_id is None:
        return None
    now = int(time.time())
    seen = session.get("admin_seen", 0)
    if not isinstance(seen, int) or now - seen > current_app.config["ADMIN_IDLE_TIMEOUT"]:
        session.clear()
        g.idle_expired = True
        return None
    # A write request takes SQLite's write lock now, before its first read.
    admin = get_session(write=request.method not in ("GET", "HEAD")).get(Admin, admin_id)
    if admin is None or not admin.is_active or \
            session.get("admin_version") != session_version(admin):
        session.clear()
        return None
    session["admin_seen"] = now
    g.admin = admin
    return admin


def require_admin(view):
    """Redirect to the login page unless an admin is logged in."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        if current_admin() is None:
            target = request.full_path if request.method == "GET" else None
            return redirect(url_for("admin.login", next=target,
                                    expired="1" if g.get("idle_expired") else None))
        return view(*args, **kwargs)

    return wrapper


def safe_next(target: str | None) -> str:
    """Only a path inside the admin; anything else goes to the dashboard."""
    if target and target.startswith("/admin/") and not target.startswith("//") \
            and "\\" not in target:
        return target.rstrip("?")
    return url_for("admin.dashboard")
