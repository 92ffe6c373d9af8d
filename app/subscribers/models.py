"""Subscribers, their per-topic subscriptions, and suppressions of erased addresses."""

from __future__ import annotations

import datetime as dt
import secrets

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base, intpk, str16, timestamp, utcnow
from app.topics.models import Role, Topic


def new_public_id() -> str:
    """16 random bytes, URL-safe: the only name a link ever carries."""
    return secrets.token_urlsafe(16)


class Subscriber(Base):
    __tablename__ = "subscribers"

    id: Mapped[intpk]
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=new_public_id)
    external_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    email: Mapped[str | None] = mapped_column(String(320), unique=True)
    locale: Mapped[str16] = mapped_column(default="en")
    role_id: Mapped[int | None] = mapped_column(ForeignKey("roles.id", ondelete="SET NULL"))
    unsubscribed_all: Mapped[bool] = mapped_column(default=False)
    link_epoch: Mapped[int] = mapped_column(default=0)
    version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[timestamp]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    erased_at: Mapped[dt.datetime | None]

    role: Mapped[Role | None] = relationship(lazy="joined")
    subscriptions: Mapped[list[Subscription]] = relationship(
        back_populates="subscriber", cascade="all, delete-orphan", lazy="selectin"
    )

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
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    subscriber: Mapped[Subscriber] = relationship(back_populates="subscriptions")
    topic: Mapped[Topic] = relationship(lazy="joined")


class Suppression(Base):
    """An erased address, kept only as a hash, so it stays unsubscribed."""

    __tablename__ = "suppressions"

    id: Mapped[intpk]
    email_hash: Mapped[str] = mapped_column(String(64), unique=True)
    reason: Mapped[str16] = mapped_column(default="erased")
    created_at: Mapped[timestamp]
