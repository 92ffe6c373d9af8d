"""Unsubscribe links: open them (expired-but-authentic ones too), and the undo.

An unsubscribe token is honoured after its max age: the signature proves it is
ours and the intent ("stop mailing me") is unambiguous and a legal duty. A
revoked (older epoch) token, a tampered one or one naming an erased
subscriber is still refused.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

from sqlalchemy import and_, bindparam, insert, select, update
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.orm import Session, joinedload, lazyload, selectinload

from app.db import Database, utcnow
from app.events.models import Event
from app.events.services import payload_of
from app.links.services import (
    UNSUBSCRIBE,
    ExpiredLink,
    InvalidLink,
    LinkClaims,
    LinkSigner,
    RevokedLink,
    UnknownSubscriber,
)
from app.subscribers.models import Subscriber, Subscription
from app.subscribers.services import Context, TopicChoice, change, snapshot_of
from app.topics.models import Role, Topic
from app.webhooks.models import WebhookDelivery, WebhookEndpoint

MAX_TOKEN_LENGTH = 512


class WritersQueueTimeout(TimeoutError):
    """Waited too long for the other writers: answer "try again later"."""


_threads_queue = threading.Lock()


@contextmanager
def writers_queue(db: Database, timeout: float = 5.0) -> Iterator[None]:
    """On SQLite, make writers queue on locks instead of SQLite's busy handler.

    SQLite retries a locked database after sleeping 1, 2, 5, 10... 100 ms, so
    under a burst of one-clicks a writer can sleep long after the lock is free
    (a p99 of a second with 8 concurrent writers). Here the threads of a
    process queue on a lock (giving up after ``timeout`` seconds: the view
    answers 503), and the one thread per process that holds it queues on an
    ``flock`` of a file next to the database, which wakes it as soon as the
    other process's writer is done. Other databases lock rows instead.
    """
    path = db.engine.url.database if db.is_sqlite else None
    if not path or path == ":memory:":
        yield
        return
    if not _threads_queue.acquire(timeout=timeout):
        raise WritersQueueTimeout("other writers hold the database")
    try:
        try:
            fd = os.open(f"{path}-writers", os.O_CREAT | os.O_RDWR, 0o600)
        except OSError:
            fd = None  # a read-only directory: SQLite's own locking decides
        if fd is None:
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
    finally:
        _threads_queue.release()


def load_subscriber(session: Session, public_id: str, *, for_update: bool = False):
    """The subscriber (and role) in one query, then its subscriptions in a second.

    The subscriptions are read after the row lock is held, so a one-click
    racing another one sees the other's committed change (PostgreSQL's READ
    COMMITTED takes a fresh snapshot per statement). Texts and the role's
    topic list are not needed to unsubscribe and load only if asked for.
    """
    query = (
        select(Subscriber)
        .where(Subscriber.public_id == public_id, Subscriber.erased_at.is_(None))
        .options(
            joinedload(Subscriber.role).options(
                lazyload(Role.translations), lazyload(Role.role_topics)),
            selectinload(Subscriber.subscriptions)
            .joinedload(Subscription.topic).lazyload(Topic.translations),
        )
    )
    if for_update:
        query = query.with_for_update(of=Subscriber)
    return session.scalars(query).unique().one_or_none()


def verify_unsubscribe(signer: LinkSigner, token: str) -> tuple[LinkClaims, bool]:
    """``(claims, expired)`` of an authentic unsubscribe token, else a LinkError."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise InvalidLink("link is too long")
    try:
        return signer.loads(UNSUBSCRIBE, token), False
    except ExpiredLink as exc:
        if exc.claims is None:
            raise
        return exc.claims, True


def open_unsubscribe(session: Session, signer: LinkSigner, token: str, *,
                     for_update: bool = False) -> tuple[LinkClaims, Subscriber, bool]:
    """Verify an unsubscribe token: ``(claims, subscriber, expired)`` or a LinkError."""
    claims, expired = verify_unsubscribe(signer, token)
    subscriber = load_subscriber(session, claims.public_id, for_update=for_update)
    if subscriber is None:
        raise UnknownSubscriber("no such subscriber")
    if claims.epoch < subscriber.link_epoch:
        raise RevokedLink("link revoked")
    return claims, subscriber, expired


def target_topic(subscriber: Subscriber, session: Session, slug: str | None) -> Topic | None:
    """The marketing topic a token unsubscribes from, or None for all marketing.

    Mirrors :func:`app.subscribers.services.unsubscribe`: a topic that is
    unknown or not marketing means everything.
    """
    if slug is None:
        return None
    for sub in subscriber.subscriptions:
        if sub.topic.slug == slug:
            return sub.topic if sub.topic.kind == "marketing" else None
    topic = session.scalar(select(Topic).where(Topic.slug == slug))
    return topic if topic is not None and topic.kind == "marketing" else None


def is_unsubscribed(subscriber: Subscriber, topic: Topic | None) -> bool:
    """Whether the link's unsubscribe is already in force."""
    if topic is None:
        return subscriber.unsubscribed_all
    sub = subscriber.subscription(topic.id)
    return sub is None or not sub.subscribed


def undo(session: Session, subscriber: Subscriber, topic: Topic | None, *,
         context: Context) -> list[Event]:
    """Take back what the link unsubscribed: the topic, or the master unsubscribe."""
    if topic is None:
        return change(session, subscriber, context=context, unsubscribed_all=False, allowed={})
    return change(session, subscriber, context=context,
                  topics={topic.slug: TopicChoice(subscribed=True)},
                  allowed={topic.slug: topic})


# --- RFC 8058 one-click: Core statements, built once (SQLAlchemy caches their compilation) ---
#
# The same rule as :func:`app.subscribers.services.unsubscribe` (tests/test_unsubscribe_fast.py
# runs both on identical subscribers and compares every event and outbox row): a token's topic
# that is marketing unsubscribes that topic; one that is unknown or not marketing, or no topic,
# unsubscribes from all marketing. A repeat changes nothing and is answered from one read.

_subscribers = Subscriber.__table__
_subscriptions = Subscription.__table__
_topics = Topic.__table__
_roles = Role.__table__
_events = Event.__table__
_endpoints = WebhookEndpoint.__table__
_deliveries = WebhookDelivery.__table__

# Whether the unsubscribe is in force, without a lock: the subscriber, the token's topic (if
# it names one that exists) and the subscriber's subscription to it, in one statement.
_STATE = (
    select(_subscribers.c.link_epoch, _subscribers.c.unsubscribed_all,
           _topics.c.kind.label("topic_kind"), _subscriptions.c.subscribed)
    .select_from(
        _subscribers
        .outerjoin(_topics, _topics.c.slug == bindparam("slug"))
        .outerjoin(_subscriptions, and_(_subscriptions.c.subscriber_id == _subscribers.c.id,
                                        _subscriptions.c.topic_id == _topics.c.id)))
    .where(_subscribers.c.public_id == bindparam("public_id"),
           _subscribers.c.erased_at.is_(None))
)
# Under the write lock: the subscriber row locked (PostgreSQL; SQLite holds the database).
_LOCKED = (
    select(_subscribers.c.id, _subscribers.c.external_id, _subscribers.c.email,
           _subscribers.c.locale, _subscribers.c.unsubscribed_all, _subscribers.c.link_epoch,
           _subscribers.c.version, _roles.c.slug.label("role"))
    .select_from(_subscribers.outerjoin(_roles, _roles.c.id == _subscribers.c.role_id))
    .where(_subscribers.c.public_id == bindparam("public_id"),
           _subscribers.c.erased_at.is_(None))
    .with_for_update(of=_subscribers)
)
_SUBSCRIPTIONS = (
    select(_topics.c.id, _topics.c.slug, _topics.c.kind, _subscriptions.c.subscribed,
           _subscriptions.c.frequency)
    .join_from(_subscriptions, _topics, _topics.c.id == _subscriptions.c.topic_id)
    .where(_subscriptions.c.subscriber_id == bindparam("subscriber_id"))
)
_TOPIC_KIND = select(_topics.c.kind).where(_topics.c.slug == bindparam("slug"))
_STOP_TOPIC = (
    update(_subscriptions)
    .where(_subscriptions.c.subscriber_id == bindparam("b_subscriber_id"),
           _subscriptions.c.topic_id == bindparam("b_topic_id"))
    .values(subscribed=False, updated_at=bindparam("now"))
)
_BUMP = (
    update(_subscribers)
    .where(_subscribers.c.id == bindparam("subscriber_id"))
    .values(version=bindparam("new_version"), updated_at=bindparam("now"),
            unsubscribed_all=bindparam("all_off"))
)
_INSERT_EVENT = insert(_events)
_ENABLED_ENDPOINTS = (
    select(_endpoints.c.id, _endpoints.c.event_types).where(_endpoints.c.enabled.is_(True))
)
_INSERT_DELIVERY = insert(_deliveries)


def _in_force(state) -> bool:
    if state.topic_kind == "marketing":
        # No subscription to the topic is as unsubscribed as one switched off.
        return not state.subscribed
    return state.unsubscribed_all


def one_click_in_force(conn: Connection, claims: LinkClaims) -> bool:
    """Whether the token's unsubscribe is already in force (one read, no lock).

    Raises :class:`UnknownSubscriber` (unknown or erased) or :class:`RevokedLink`.
    """
    state = conn.execute(_STATE, {"public_id": claims.public_id, "slug": claims.topic}).first()
    _check(state, claims)
    return _in_force(state)


class OneClickState(NamedTuple):
    link_epoch: int
    unsubscribed_all: bool
    topic_kind: str | None
    subscribed: bool | None


class StateReader:
    """:data:`_STATE` compiled once for a dialect, run on a bare DBAPI cursor.

    The repeat check is the hot path of one-click (mailbox providers retry, and every
    message of a send carries the same link): without SQLAlchemy's per-execution work
    (connection facade, transaction events, result processing) it costs a few
    microseconds on SQLite instead of about 60. Values need no result processing:
    integers, a string, and booleans (SQLite's 0/1 are as true or false as they read).
    """

    def __init__(self, dialect: Dialect):
        compiled = _STATE.compile(dialect=dialect)
        self.sql = compiled.string
        self._compiled = compiled
        self._positions = compiled.positiontup

    def params(self, claims: LinkClaims):
        values = self._compiled.construct_params(
            {"public_id": claims.public_id, "slug": claims.topic})
        if self._positions is not None:
            return tuple(values[name] for name in self._positions)
        return values

    def in_force(self, cursor, claims: LinkClaims) -> bool:
        """Like :func:`one_click_in_force`, on a DBAPI cursor."""
        cursor.execute(self.sql, self.params(claims))
        row = cursor.fetchone()
        state = None if row is None else OneClickState(*row)
        _check(state, claims)
        return _in_force(state)


def _check(row, claims: LinkClaims) -> None:
    if row is None:
        raise UnknownSubscriber("no such subscriber")
    if claims.epoch < row.link_epoch:
        raise RevokedLink("link revoked")


def one_click_unsubscribe(conn: Connection, claims: LinkClaims, *, context: Context) -> int:
    """Apply the token's unsubscribe in ``conn``'s write transaction; the number of events.

    The caller holds the write lock (SQLite: BEGIN IMMEDIATE; PostgreSQL: this locks the
    subscriber row) and commits. The state is read again under the lock, so of two racing
    clicks the second finds the first one's change and writes nothing. What is written is
    what :func:`app.subscribers.services.unsubscribe` writes: the flag or the subscription,
    version and updated_at, one event whose payload is the new snapshot, and one outbox row
    per enabled endpoint that wants the event.
    """
    row = conn.execute(_LOCKED, {"public_id": claims.public_id}).first()
    _check(row, claims)
    subscriptions = conn.execute(_SUBSCRIPTIONS, {"subscriber_id": row.id}).all()
    topic_kind = subscription = None
    if claims.topic is not None:
        subscription = next((s for s in subscriptions if s.slug == claims.topic), None)
        topic_kind = (subscription.kind if subscription is not None
                      else conn.execute(_TOPIC_KIND, {"slug": claims.topic}).scalar())
    if topic_kind == "marketing":
        if subscription is None or not subscription.subscribed:
            return 0
        type_, action, topic = "subscriber.unsubscribed", "topic.unsubscribed", claims.topic
    else:
        if row.unsubscribed_all:
            return 0
        type_, action, topic = "subscriber.unsubscribed", "unsubscribed_all", None
    now = utcnow()
    version = row.version + 1
    if topic is not None:
        conn.execute(_STOP_TOPIC, {"b_subscriber_id": row.id, "b_topic_id": subscription.id,
                                   "now": now})
    conn.execute(_BUMP, {"subscriber_id": row.id, "new_version": version, "now": now,
                         "all_off": topic is None or row.unsubscribed_all})
    snapshot = snapshot_of(
        external_id=row.external_id, email=row.email, locale=row.locale, role=row.role,
        unsubscribed_all=topic is None or row.unsubscribed_all,
        topics=[(s.slug, False if s.slug == topic else s.subscribed, s.frequency)
                for s in subscriptions],
        version=version, updated_at=now,
    )
    # A topic goes from subscribed to not; the master switch from off to on.
    before, after = (True, False) if topic is not None else (False, True)
    change = {"action": action, "topic": topic, "before": before, "after": after}
    created_at = utcnow()
    event_id = conn.execute(_INSERT_EVENT, {
        "subscriber_id": row.id, "type": type_, "action": action, "topic": topic,
        "before": {"value": before}, "after": {"value": after},
        "source": context.source, "actor": context.actor, "token_id": context.token_id,
        "campaign": context.campaign, "version": version,
        "payload": payload_of(snapshot, change, context.source), "created_at": created_at,
    }).inserted_primary_key[0]
    deliveries = [
        {"endpoint_id": endpoint.id, "event_id": event_id, "subscriber_id": row.id,
         "next_attempt_at": created_at}
        for endpoint in conn.execute(_ENABLED_ENDPOINTS)
        # The model's own rule for which events an endpoint receives.
        if WebhookEndpoint.wants(endpoint, type_)
    ]
    if deliveries:
        conn.execute(_INSERT_DELIVERY, deliveries)
    return 1
