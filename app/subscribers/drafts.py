"""Subscribers as plain objects, read and written a chunk at a time.

A :class:`Draft` has the attributes of an ORM :class:`Subscriber` that the rules read and
change (:func:`app.subscribers.services.change`, :func:`~app.subscribers.services.snapshot`),
so one rule applies to both; what differs is how they reach the database. ORM subscribers
flush one at a time; drafts are read with one statement per chunk (:func:`load`) and
written with one ``INSERT … RETURNING`` of the new ones and one ``executemany`` each for
the rest (:func:`write`), their events by :func:`app.events.services.write_events`.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import insert_rows, one_of, update_rows
from app.events.services import write_events
from app.subscribers.models import (
    Subscriber,
    Subscription,
    address_key,
    channels_of,
    new_public_id,
)
from app.topics.models import Role, Topic

SUBSCRIBERS = Subscriber.__table__
SUBSCRIPTIONS = Subscription.__table__
# The columns a draft holds (and writes back when it changed).
FIELDS = ("external_id", "email", "email_key", "locale", "role_id", "unsubscribed_all",
          "phone", "paused_until", "undeliverable_at", "soft_bounces", "version", "updated_at")
# channels_of for each (by_email, by_sms).
CHANNEL_LISTS = {(e, s): tuple(channels_of(by_email=e, by_sms=s))
                 for e in (False, True) for s in (False, True)}
SUBSCRIPTION_FIELDS = ("subscribed", "frequency", "by_email", "by_sms", "updated_at")


class DraftSubscription:
    """A subscription of a draft (the attributes of :class:`Subscription` the rules use)."""

    __slots__ = (
        "by_email",
        "by_sms",
        "frequency",
        "stored",
        "subscribed",
        "topic",
        "topic_id",
        "updated_at",
    )

    def __init__(self, *, topic: Topic, subscribed: bool, frequency: str, updated_at,
                 by_email: bool = False, by_sms: bool = False, stored: tuple | None = None):
        self.topic = topic
        self.topic_id = topic.id
        self.subscribed = subscribed
        self.frequency = frequency
        self.by_email = by_email
        self.by_sms = by_sms
        self.updated_at = updated_at
        self.stored = stored  # the row as read, None if not written yet

    @property
    def channels(self) -> list[str]:
        return list(CHANNEL_LISTS[self.by_email, self.by_sms])

    @channels.setter
    def channels(self, chosen) -> None:
        self.by_email = "email" in chosen
        self.by_sms = "sms" in chosen

    def row(self) -> tuple:
        return tuple(getattr(self, f) for f in SUBSCRIPTION_FIELDS)


class Draft:
    """A subscriber as plain values: new (``id`` None until written) or read by :func:`load`."""

    __slots__ = ("id", "public_id", "role", "subscriptions", "events", "created_at",
                 "stored", "_email",
                 *(f for f in FIELDS if f not in ("email", "role_id")))

    def __init__(self, *, email, external_id, locale, role: Role | None, unsubscribed_all,
                 now, id=None, public_id=None, phone=None, paused_until=None,
                 undeliverable_at=None, soft_bounces=0, version=1, updated_at=None,
                 stored=None, email_key=None):
        self.id = id
        self.public_id = public_id or new_public_id()
        self.external_id = external_id
        self.email = email  # and email_key, as the ORM subscriber's setter keeps it
        self.locale = locale
        self.role = role
        self.unsubscribed_all = unsubscribed_all
        self.phone = phone
        self.paused_until = paused_until
        self.undeliverable_at = undeliverable_at
        self.soft_bounces = soft_bounces
        self.version = version
        self.created_at = now
        self.updated_at = updated_at or now
        self.subscriptions: list[DraftSubscription] = []
        self.events: list = []  # pending events, written with the draft
        self.stored = stored  # the row as read, None if new

    @property
    def email(self) -> str | None:
        return self._email

    @email.setter
    def email(self, email: str | None) -> None:
        self._email = email
        self.email_key = address_key(email) if email is not None else None

    @property
    def role_id(self) -> int | None:
        return self.role.id if self.role is not None else None

    def subscription(self, topic_id: int) -> DraftSubscription | None:
        return next((s for s in self.subscriptions if s.topic_id == topic_id), None)

    def row(self) -> tuple:
        return tuple(getattr(self, f) for f in FIELDS)


def load(session: Session, *, external_ids: Iterable[str] = (), emails: Iterable[str] = (),
         topics: dict[int, Topic], roles: dict[int, Role], for_update: bool = False,
         ) -> list[Draft]:
    """The live subscribers with these external ids or these addresses (in any letter
    case: by ``email_key``), with their subscriptions: two statements (``FOR UPDATE`` of
    the subscribers if asked)."""
    external_ids, keys = list(set(external_ids)), list({address_key(e) for e in emails})
    if not external_ids and not keys:
        return []
    columns = [SUBSCRIBERS.c.id, SUBSCRIBERS.c.public_id, *(SUBSCRIBERS.c[f] for f in FIELDS)]
    dialect = session.get_bind().dialect.name
    query = select(*columns).where(SUBSCRIBERS.c.erased_at.is_(None)).where(
        one_of(dialect, SUBSCRIBERS.c.external_id, external_ids)
        | one_of(dialect, SUBSCRIBERS.c.email_key, keys))
    if for_update:
        query = query.with_for_update()
    drafts = {}
    for row in session.execute(query):
        values = row._asdict()
        role_id = values.pop("role_id")
        drafts[row.id] = Draft(**values, role=roles.get(role_id), now=None,
                               stored=tuple(row[2:]))
    if drafts:
        found = session.execute(
            select(SUBSCRIPTIONS.c.subscriber_id, SUBSCRIPTIONS.c.topic_id,
                   *(SUBSCRIPTIONS.c[f] for f in SUBSCRIPTION_FIELDS))
            .where(one_of(dialect, SUBSCRIPTIONS.c.subscriber_id, list(drafts)))
            .order_by(SUBSCRIPTIONS.c.subscriber_id, SUBSCRIPTIONS.c.topic_id))
        for row in found:
            sub = DraftSubscription(topic=topics[row.topic_id], subscribed=row.subscribed,
                                    frequency=row.frequency, by_email=row.by_email,
                                    by_sms=row.by_sms, updated_at=row.updated_at,
                                    stored=tuple(row[2:]))
            drafts[row.subscriber_id].subscriptions.append(sub)
    return list(drafts.values())


def write(session: Session, drafts: list[Draft]) -> None:
    """Write the drafts that are new or changed, then their pending events.

    New subscribers: one ``INSERT … RETURNING id``; changed ones: one ``executemany``
    ``UPDATE``; subscriptions: one ``executemany`` each of inserts and updates.
    """
    connection = session.connection()
    dialect = connection.dialect.name
    new = [d for d in drafts if d.id is None]
    insert_rows(connection, SUBSCRIBERS, ["public_id", "created_at", "link_epoch", *FIELDS],
                [(d.public_id, d.created_at, 0, *d.row()) for d in new])
    if new:  # their ids, by the public ids they were given
        ids = dict(session.execute(select(SUBSCRIBERS.c.public_id, SUBSCRIBERS.c.id).where(
            one_of(dialect, SUBSCRIBERS.c.public_id, [d.public_id for d in new]))).all())
        for draft in new:
            draft.id = ids[draft.public_id]
    update_rows(connection, SUBSCRIBERS, ["id"], list(FIELDS),
                [(*row, d.id) for d in drafts if d.stored is not None
                 and (row := d.row()) != d.stored])
    inserts, updates = [], []
    for draft in drafts:
        for sub in draft.subscriptions:
            values = sub.row()
            if sub.stored is None:
                inserts.append((draft.id, sub.topic_id, *values))
            elif values != sub.stored:
                updates.append((*values, draft.id, sub.topic_id))
            sub.stored = values
    insert_rows(connection, SUBSCRIPTIONS, ["subscriber_id", "topic_id", *SUBSCRIPTION_FIELDS],
                inserts)
    update_rows(connection, SUBSCRIPTIONS, ["subscriber_id", "topic_id"],
                list(SUBSCRIPTION_FIELDS), updates)
    write_events(session, [e for d in drafts for e in d.events])
    for draft in drafts:
        draft.stored = draft.row()
        draft.events = []
