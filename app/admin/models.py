"""Administrators of the preference center."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, intpk, timestamp


class Admin(Base):
    __tablename__ = "admins"

    id: Mapped[intpk]
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[timestamp]
    last_login_at: Mapped[dt.datetime | None]


class AdminSession(Base):
    """One login: the cookie carries a random token, this row its SHA-256. Ended at
    logout (``ended_at``), after ``ADMIN_IDLE_TIMEOUT`` without use, and at
    ``expires_at`` whatever the use (``ADMIN_SESSION_LIFETIME``)."""

    __tablename__ = "admin_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    admin_id: Mapped[int] = mapped_column(ForeignKey("admins.id", ondelete="CASCADE"),
                                          index=True)
    created_at: Mapped[timestamp]
    last_seen_at: Mapped[timestamp]
    expires_at: Mapped[timestamp]
    ended_at: Mapped[dt.datetime | None]


class AuditEntry(Base):
    """One admin write to the catalogue or endpoints (subscriber changes are events)."""

    __tablename__ = "admin_audit"

    id: Mapped[intpk]
    admin_email: Mapped[str] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(String(64))
    entity: Mapped[str] = mapped_column(String(64))
    entity_id: Mapped[str] = mapped_column(String(64))
    details: Mapped[dict] = mapped_column(default=dict)
    created_at: Mapped[timestamp]
