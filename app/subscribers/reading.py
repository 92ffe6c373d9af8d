"""A subscriber as the public pages read it: one statement, no ORM, nothing changed.

Link scanners open every link of every message, so ``GET /u/<token>`` and ``GET
/p/<token>`` are read far more often than anything is written. One Core statement reads
the subscriber, its subscriptions (a LEFT JOIN: one row each, or one row without) and the
catalogue's version (:func:`app.topics.catalogue.version_column`), outside any
transaction (:meth:`app.db.Database.read`); the rows become a :class:`PageSubscriber`, a
plain value the templates read like the model.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import bindparam, select

from app.db import Database
from app.subscribers.models import Subscriber, Subscription, channels_of
from app.topics.catalogue import version_column


@dataclass(frozen=True, slots=True)
class Choice:
    """A subscription as a page shows it."""

    subscribed: bool
    frequency: str
    channels: tuple[str, ...]


@dataclass(frozen=True, slots=True, eq=False)
class PageSubscriber:
    id: int | None
    public_id: str
    link_epoch: int
    email: str | None
    locale: str | None
    role_id: int | None
    unsubscribed_all: bool
    phone: str | None
    paused_until: dt.datetime | None
    choices: dict[int, Choice]  # by topic id

    def subscription(self, topic_id: int) -> Choice | None:
        return self.choices.get(topic_id)

    @classmethod
    def of(cls, subscriber: Subscriber) -> PageSubscriber:
        """The same value from a loaded (or never saved) model."""
        role_id = subscriber.role.id if subscriber.role is not None else subscriber.role_id
        return cls(
            subscriber.id, subscriber.public_id, subscriber.link_epoch or 0, subscriber.email,
            subscriber.locale, role_id, bool(subscriber.unsubscribed_all), subscriber.phone,
            subscriber.paused_until,
            {s.topic_id: Choice(bool(s.subscribed), s.frequency, tuple(s.channels))
             for s in subscriber.subscriptions},
        )


@dataclass(frozen=True, slots=True)
class PageRead:
    subscriber: PageSubscriber
    catalogue_version: int | None


_subscribers = Subscriber.__table__
_subscriptions = Subscription.__table__

_READ = (
    select(_subscribers.c.id, _subscribers.c.link_epoch, _subscribers.c.email,
           _subscribers.c.locale, _subscribers.c.role_id, _subscribers.c.unsubscribed_all,
           _subscribers.c.phone, _subscribers.c.paused_until,
           _subscriptions.c.topic_id, _subscriptions.c.subscribed, _subscriptions.c.frequency,
           _subscriptions.c.by_email, _subscriptions.c.by_sms, version_column())
    .select_from(_subscribers.outerjoin(
        _subscriptions, _subscriptions.c.subscriber_id == _subscribers.c.id))
    .where(_subscribers.c.public_id == bindparam("public_id"),
           _subscribers.c.erased_at.is_(None))
)


def read_for_page(db: Database, public_id: str) -> PageRead | None:
    """The unerased subscriber ``public_id`` names and the catalogue version, or None."""
    rows = db.read(_READ, {"public_id": public_id})
    if not rows:
        return None
    first = rows[0]
    choices = {
        row.topic_id: Choice(bool(row.subscribed), row.frequency,
                             tuple(channels_of(by_email=row.by_email, by_sms=row.by_sms)))
        for row in rows if row.topic_id is not None
    }
    subscriber = PageSubscriber(
        first.id, public_id, first.link_epoch, first.email, first.locale, first.role_id,
        bool(first.unsubscribed_all), first.phone, first.paused_until, choices)
    return PageRead(subscriber, first.catalogue_version)
