"""API keys: shown once, stored as a SHA-256 hash of a high-entropy secret."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, intpk, timestamp


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[intpk]
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[timestamp]
    last_used_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]
