"""The one-time request tokens already seen (what the ESPs reported is in app/subscribers)."""

from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, str16, timestamp

PROVIDERS = ("ses", "sendgrid", "postmark", "mailgun")


class EspNonce(Base):
    """A provider's one-time request token (Mailgun's ``token``), refused if seen again."""

    __tablename__ = "esp_nonces"

    provider: Mapped[str16] = mapped_column(primary_key=True)
    nonce: Mapped[str] = mapped_column(String(128), primary_key=True)
    seen_at: Mapped[timestamp] = mapped_column(index=True)
