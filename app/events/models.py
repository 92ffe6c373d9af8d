"""The append-only event log: the consent trail and the source of webhooks."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, FetchedValue, ForeignKey, Identity, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, str16, str64, timestamp

EVENT_TYPES = (
    "subscriber.created",
    "subscriber.updated",
    "subscriber.unsubscribed",
    "subscriber.resubscribed",
    "subscriber.erased",
)
SOURCES = ("preference_page", "unsubscribe_page", "one_click", "api", "admin", "import", "esp",
           "system")


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (Index("ix_events_subscriber_id_id", "subscriber_id", "id"),
                      Index("ix_events_txid_id", "txid", "id"))

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True
    )
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="SET NULL")
    )
    type: Mapped[str64]
    action: Mapped[str64]
    topic: Mapped[str | None] = mapped_column(String(64))
    before: Mapped[dict | None]
    after: Mapped[dict | None]
    source: Mapped[str16]
    actor: Mapped[str | None] = mapped_column(String(255))
    token_id: Mapped[str | None] = mapped_column(String(32))
    campaign: Mapped[str | None] = mapped_column(String(255))
    # Why, when the source says (an ESP's "complaint", "hard_bounce"); in the webhook's change.
    reason: Mapped[str | None] = mapped_column(String(32))
    # The privacy notice in force when the event was recorded (PREFCENTER_PRIVACY_POLICY_VERSION).
    policy_version: Mapped[str | None] = mapped_column(String(64))
    version: Mapped[int]
    payload: Mapped[dict]
    created_at: Mapped[timestamp]
    # PostgreSQL: the writing transaction (a server default), whose commit position
    # EventCommit holds; unused on SQLite, where ids follow commits.
    txid: Mapped[int | None] = mapped_column(BigInteger, server_default=FetchedValue())

    @property
    def when(self) -> dt.datetime:
        return self.created_at


class EventCommit(Base):
    """PostgreSQL: the commit order of event-writing transactions (filled by a deferred
    trigger under an advisory lock, migration 20261202_1300); the feed reads by
    ``(position, id)``."""

    __tablename__ = "event_commits"

    position: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    txid: Mapped[int] = mapped_column(BigInteger, unique=True)


# The kinds of change the insights count, by event action (the rollup's ``kind``).
COUNTED_ACTIONS = {
    "topic.unsubscribed": "unsubscribe",
    "unsubscribed_all": "unsubscribe",
    "topic.subscribed": "resubscribe",
    "resubscribed_all": "resubscribe",
    "unsubscribe.reason": "reason",
    "topic.frequency": "frequency",
    "paused": "pause",
}


class EventCount(Base):
    """Events counted per UTC day and what the insights group by: kept by a database
    trigger on ``events`` as each row is inserted, whoever inserts it (migration
    20261202_18_insights). Absent dimensions are '' (not NULL) so the key is unique.
    ``value`` is the chosen frequency (``frequency``) or the pause's length
    (``pause``: 2w, 1m, 3m, longer)."""

    __tablename__ = "event_counts"

    day: Mapped[dt.date] = mapped_column(primary_key=True)
    kind: Mapped[str16] = mapped_column(primary_key=True)
    topic: Mapped[str64] = mapped_column(primary_key=True)
    campaign: Mapped[str] = mapped_column(String(255), primary_key=True)
    source: Mapped[str16] = mapped_column(primary_key=True)
    reason: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[str16] = mapped_column(primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)
