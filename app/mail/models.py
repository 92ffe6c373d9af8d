"""The mail outbox: messages queued in the request's transaction, sent by the worker."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, str16, timestamp, utcnow

PENDING, SENT, DEAD, DROPPED = "pending", "sent", "dead", "dropped"
STATUSES = (PENDING, SENT, DEAD, DROPPED)


class MailMessage(Base):
    """One message owed to one address (``pending``), or what became of it.

    ``sent`` and ``dead`` (every retry failed) end a message; ``dropped`` rows were never
    meant to go: a request for an address we do not know, or past the recipient's limit.
    Every request that may send mail writes exactly one row, so the answer costs the same
    whether or not anything is sent. ``context`` holds what the template needs (links
    included); it is emptied once the message is sent.
    """

    __tablename__ = "mail_messages"
    __table_args__ = (
        Index("ix_mail_messages_due", "status", "next_attempt_at"),
        Index("ix_mail_messages_recipient", "recipient_key", "created_at"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(32))
    recipient: Mapped[str | None] = mapped_column(String(320))
    # sha256 of the lower-cased address: the per-recipient limit counts by it.
    recipient_key: Mapped[str | None] = mapped_column(String(64))
    subscriber_id: Mapped[int | None] = mapped_column(index=True)
    locale: Mapped[str16]
    context: Mapped[dict] = mapped_column(default=dict)
    status: Mapped[str16] = mapped_column(default=PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_until: Mapped[dt.datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[dt.datetime | None]
    created_at: Mapped[timestamp]
