"""Administrators of the preference center."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import String
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
