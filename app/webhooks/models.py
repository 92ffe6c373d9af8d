"""Webhook endpoints and the outbox of deliveries written with each event."""

from __future__ import annotations

import datetime as dt
import secrets

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base, str16, timestamp, utcnow


def new_endpoint_id() -> str:
    return "ep_" + secrets.token_urlsafe(12)


class WebhookEndpoint(Base):
    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_endpoint_id)
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str] = mapped_column(String(255), default="")
    event_types: Mapped[list] = mapped_column(default=list)
    # The event sources it receives; None or empty: every source.
    sources: Mapped[list | None]
    enabled: Mapped[bool] = mapped_column(default=True)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(String(100))
    previous_secret: Mapped[str | None] = mapped_column(String(100))
    previous_secret_expires_at: Mapped[dt.datetime | None]
    failing_since: Mapped[dt.datetime | None]
    created_at: Mapped[timestamp]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    def wants(self, event_type: str, source: str) -> bool:
        """Whether an event of this type from this source is queued for the endpoint."""
        return ((not self.event_types or event_type in self.event_types)
                and (not self.sources or source in self.sources))


class WebhookDelivery(Base):
    """One event owed to one endpoint; a row of the transactional outbox."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_order", "endpoint_id", "subscriber_id", "event_id"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True
    )
    endpoint_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE")
    )
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"),
                                          index=True)
    subscriber_id: Mapped[int | None]
    status: Mapped[str16] = mapped_column(default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    claimed_until: Mapped[dt.datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    last_attempt_at: Mapped[dt.datetime | None]
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[dt.datetime | None]
    created_at: Mapped[timestamp]

    endpoint: Mapped[WebhookEndpoint] = relationship(lazy="joined")
