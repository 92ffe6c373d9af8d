"""Subscribers, their per-topic subscriptions, suppressions of erased addresses, and what
the ESPs reported about addresses."""

from __future__ import annotations

import datetime as dt
import secrets

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from app.db import Base, intpk, str16, str64, timestamp, utcnow
from app.topics.models import CHANNELS, Role, Topic


def new_public_id() -> str:
    """16 random bytes, URL-safe: the only name a link ever carries."""
    return secrets.token_urlsafe(16)


def address_key(email: str) -> str:
    """The form under which two addresses are the same address: ``Jane@X.com``,
    ``jane@x.com`` and ``JANE@X.COM`` are one subscriber (and one suppression)."""
    return email.strip().lower()


class Subscriber(Base):
    __tablename__ = "subscribers"

    id: Mapped[intpk]
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=new_public_id)
    external_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    email: Mapped[str | None] = mapped_column(String(320), unique=True)  # as given, for display
    # address_key(email), kept by the ``email`` setter: at most one subscriber per address.
    email_key: Mapped[str | None] = mapped_column(String(320), unique=True)
    # None: nobody told us; the pages follow the browser's language (app.i18n).
    locale: Mapped[str | None] = mapped_column(String(16))
    role_id: Mapped[int | None] = mapped_column(ForeignKey("roles.id", ondelete="SET NULL"))
    unsubscribed_all: Mapped[bool] = mapped_column(default=False)
    phone: Mapped[str | None] = mapped_column(String(20))  # E.164
    paused_until: Mapped[dt.datetime | None]
    link_epoch: Mapped[int] = mapped_column(default=0)
    # The ESP reported the address dead (hard bounce, or a run of soft ones): no email goes
    # to it until the address changes. Soft bounces since the last delivery count the run.
    undeliverable_at: Mapped[dt.datetime | None]
    soft_bounces: Mapped[int] = mapped_column(default=0)
    version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[timestamp]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    erased_at: Mapped[dt.datetime | None]

    role: Mapped[Role | None] = relationship(lazy="joined")
    subscriptions: Mapped[list[Subscription]] = relationship(
        back_populates="subscriber", cascade="all, delete-orphan", lazy="selectin"
    )

    @validates("email")
    def _keep_email_key(self, _key, email: str | None) -> str | None:
        self.email_key = address_key(email) if email is not None else None
        return email

    def subscription(self, topic_id: int) -> Subscription | None:
        return next((s for s in self.subscriptions if s.topic_id == topic_id), None)


class Subscription(Base):
    __tablename__ = "subscriptions"

    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True
    )
    topic_id: Mapped[int] = mapped_column(
        ForeignKey("topics.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    subscribed: Mapped[bool] = mapped_column(default=False)
    frequency: Mapped[str16] = mapped_column(default="weekly")
    by_email: Mapped[bool] = mapped_column(default=True)
    by_sms: Mapped[bool] = mapped_column(default=False)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    subscriber: Mapped[Subscriber] = relationship(back_populates="subscriptions")
    topic: Mapped[Topic] = relationship(lazy="joined")

    @property
    def channels(self) -> list[str]:
        """The channels chosen for this topic, in :data:`CHANNELS` order."""
        return channels_of(by_email=self.by_email, by_sms=self.by_sms)

    @channels.setter
    def channels(self, chosen) -> None:
        self.by_email = "email" in chosen
        self.by_sms = "sms" in chosen


def channel_flag(channel: str) -> str:
    """The subscription column holding ``channel``'s flag."""
    if channel not in CHANNELS:
        raise ValueError(channel)
    return f"by_{channel}"


def channels_of(**flags) -> list[str]:
    """``by_email=True, by_sms=False`` (or 0/1) -> ``["email"]``."""
    return [c for c in CHANNELS if flags.get(f"by_{c}")]


class Suppression(Base):
    """An erased address, kept only as a hash, so it stays unsubscribed."""

    __tablename__ = "suppressions"

    id: Mapped[intpk]
    email_hash: Mapped[str] = mapped_column(String(64), unique=True)
    reason: Mapped[str16] = mapped_column(default="erased")
    created_at: Mapped[timestamp]


REPORT_KINDS = ("complaint", "hard_bounce", "soft_bounce", "unsubscribe", "other")
REPORT_OUTCOMES = ("applied", "unchanged", "unknown")


class EspEvent(Base):
    """One provider event about one address, as received (``raw``) and what it did."""

    __tablename__ = "esp_events"
    __table_args__ = (
        UniqueConstraint("provider", "provider_event_id"),
        Index("ix_esp_events_kind_id", "kind", "id"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True
    )
    provider: Mapped[str16]
    # The provider's own id of the event: the same event arriving twice is stored once.
    provider_event_id: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str16]
    email: Mapped[str | None] = mapped_column(String(320))
    email_hash: Mapped[str64] = mapped_column(index=True)
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="SET NULL"), index=True
    )
    outcome: Mapped[str16]
    detail: Mapped[str] = mapped_column(String(255), default="")
    raw: Mapped[dict]
    occurred_at: Mapped[dt.datetime | None]
    created_at: Mapped[timestamp]


class AddressChange(Base):
    """A change of address the subscriber asked for, waiting for the new address to confirm.

    The confirmation link carries a random code; only its sha256 is stored. A code works
    once (``confirmed_at``) and until ``expires_at``; a newer request replaces older ones.
    """

    __tablename__ = "address_changes"

    id: Mapped[intpk]
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    new_email: Mapped[str] = mapped_column(String(320))
    code_hash: Mapped[str64] = mapped_column(unique=True)
    created_at: Mapped[timestamp]
    expires_at: Mapped[dt.datetime]
    confirmed_at: Mapped[dt.datetime | None]
