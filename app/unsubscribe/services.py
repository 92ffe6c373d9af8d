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
from contextlib import contextmanager, nullcontext
from typing import NamedTuple

from sqlalchemy import Integer, String, and_, bindparam, func, insert, select, update
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.orm import Session, joinedload, lazyload, selectinload

from app.db import Database, UTCDateTime, iso_z, utcnow
from app.events.models import Event
from app.events.services import payload_of, policy_version
from app.links.services import (
    UNSUBSCRIBE,
    ExpiredLink,
    InvalidLink,
    LinkClaims,
    LinkSigner,
    RevokedLink,
    UnknownSubscriber,
)
from app.subscribers.models import Subscriber, Subscription, channels_of
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


def link_context(source: str, claims: LinkClaims) -> Context:
    """What an event records of the link that made the change: its token id and campaign."""
    return Context(source=source, token_id=claims.token_id, campaign=claims.campaign)


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


# --- RFC 8058 one-click, on a bare DBAPI connection ----------------------------------------------
#
# The same rule as :func:`app.subscribers.services.unsubscribe` (tests/test_unsubscribe_fast.py
# runs both on identical subscribers and compares every event and outbox row): a token's topic
# that is marketing unsubscribes that topic; one that is unknown or not marketing, or no topic,
# unsubscribes from all marketing. A repeat changes nothing and is answered from one read.
#
# One-clicks arrive in bursts (a send's worth of mailbox providers), so this path skips the ORM
# and SQLAlchemy's per-execution work. On PostgreSQL it is one call of the server-side function
# prefcenter_one_click() (migration 0002): one statement, its own transaction, committed when it
# returns. On SQLite, the statements below: SQLAlchemy Core, compiled once, bound with their
# columns' own bind processors and run on a DBAPI cursor, in process.

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
_TOPIC_KIND = select(_topics.c.kind).where(_topics.c.slug == bindparam("slug"))
# Under the write lock: the subscriber (SQLite's BEGIN IMMEDIATE holds the database), with the
# kind of the token's topic (None if there is no such topic).
_LOCKED = (
    select(_subscribers.c.id, _subscribers.c.external_id, _subscribers.c.email,
           _subscribers.c.locale, _subscribers.c.unsubscribed_all, _subscribers.c.link_epoch,
           _subscribers.c.version, _roles.c.slug.label("role"),
           _TOPIC_KIND.scalar_subquery().label("topic_kind"), _subscribers.c.phone,
           _subscribers.c.paused_until)
    .select_from(_subscribers.outerjoin(_roles, _roles.c.id == _subscribers.c.role_id))
    .where(_subscribers.c.public_id == bindparam("public_id"),
           _subscribers.c.erased_at.is_(None))
    .with_for_update(of=_subscribers)
)
_SUBSCRIPTIONS = (
    select(_topics.c.id, _topics.c.slug, _topics.c.kind, _subscriptions.c.subscribed,
           _subscriptions.c.frequency, _subscriptions.c.by_email, _subscriptions.c.by_sms)
    .join_from(_subscriptions, _topics, _topics.c.id == _subscriptions.c.topic_id)
    .where(_subscriptions.c.subscriber_id == bindparam("subscriber_id"))
)
_ENABLED_ENDPOINTS = (
    select(_endpoints.c.id, _endpoints.c.event_types, _endpoints.c.sources)
    .where(_endpoints.c.enabled.is_(True))
)
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
_EVENT_COLUMNS = ("subscriber_id", "type", "action", "topic", "before", "after", "source",
                  "actor", "token_id", "campaign", "policy_version", "version", "payload",
                  "created_at")
_DELIVERY_COLUMNS = ("endpoint_id", "event_id", "subscriber_id", "status", "attempts",
                     "next_attempt_at", "created_at")
# PostgreSQL: the whole of it, server-side (migration 0002). Returns one of _CALL_ANSWERS.
# The policy version reaches the function's event insert as a setting local to the call's
# transaction, set in the FROM clause, so before the function runs (migration 20261202_18).
_POLICY = select(func.set_config("prefcenter.policy_version",
                                 bindparam("policy_version", type_=String), True)
                 .label("policy")).subquery()
_CALL = select(func.prefcenter_one_click(
    bindparam("public_id", type_=String), bindparam("epoch", type_=Integer),
    bindparam("topic", type_=String), bindparam("source", type_=String),
    bindparam("actor", type_=String), bindparam("token_id", type_=String),
    bindparam("campaign", type_=String), bindparam("now", type_=UTCDateTime()),
    bindparam("now_text", type_=String), bindparam("created_at", type_=UTCDateTime()),
)).select_from(_POLICY)
_WRITTEN, _IN_FORCE, _UNKNOWN, _REVOKED = range(4)


def _insert(table, names):
    """An INSERT of exactly ``names`` (no hidden Python-side defaults on a bare cursor)."""
    return insert(table).values({name: bindparam(name) for name in names})


class _Statement:
    """One statement compiled for one dialect, bound like SQLAlchemy would bind it."""

    def __init__(self, statement, dialect: Dialect):
        compiled = statement.compile(dialect=dialect)
        self.sql = compiled.string
        self._positions = compiled.positiontup
        self._processors = {}
        # Literal values in the statement (``subscribed=False``); the others are required.
        self._defaults = {}
        for bind, name in compiled.bind_names.items():
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                self._processors[name] = processor
            if not bind.required:
                self._defaults[name] = bind.effective_value

    def params(self, values: dict):
        params = {**self._defaults, **values}
        for name, processor in self._processors.items():
            params[name] = processor(params[name])
        if self._positions is not None:
            return tuple(params[name] for name in self._positions)
        return params

    def execute(self, cursor, values: dict | None = None):
        cursor.execute(self.sql, self.params(values or {}))
        return cursor


# Rows as the cursor returns them (SQLite's booleans are 0 and 1).
class _State(NamedTuple):
    link_epoch: int
    unsubscribed_all: bool | int
    topic_kind: str | None
    subscribed: bool | int | None


class _Locked(NamedTuple):
    id: int
    external_id: str
    email: str
    locale: str
    unsubscribed_all: bool | int
    link_epoch: int
    version: int
    role: str | None
    topic_kind: str | None
    phone: str | None
    paused_until: object  # as the driver returns it: see OneClick._paused_until


class _Subscription(NamedTuple):
    id: int
    slug: str
    kind: str
    subscribed: bool | int
    frequency: str | None
    by_email: bool | int
    by_sms: bool | int


class _Endpoint(NamedTuple):
    id: str
    event_types: list
    sources: list | None


class OneClick:
    """The one-click rule's statements for one dialect; :meth:`for_dialect` keeps one each."""

    _built: dict[tuple, OneClick] = {}

    @classmethod
    def for_dialect(cls, dialect: Dialect) -> OneClick:
        key = (dialect.name, dialect.driver, dialect.paramstyle)
        found = cls._built.get(key)
        return found if found is not None else cls._built.setdefault(key, cls(dialect))

    def __init__(self, dialect: Dialect):
        def compiled(statement):
            return _Statement(statement, dialect)

        self.server_side = dialect.name == "postgresql"
        self.call = compiled(_CALL) if self.server_side else None
        self.state = compiled(_STATE)
        self.locked = compiled(_LOCKED)
        self.subscriptions = compiled(_SUBSCRIPTIONS)
        self.endpoints = compiled(_ENABLED_ENDPOINTS)
        self.stop_topic = compiled(_STOP_TOPIC)
        self.bump = compiled(_BUMP)
        self.insert_event = compiled(_insert(_events, _EVENT_COLUMNS))
        self.insert_delivery = compiled(_insert(_deliveries, _DELIVERY_COLUMNS))
        # Both JSON columns share the one type (and so the one processor).
        self._json = (_endpoints.c.event_types.type.dialect_impl(dialect)
                      .result_processor(dialect, None))
        self._paused_until = (_subscribers.c.paused_until.type.dialect_impl(dialect)
                              .result_processor(dialect, None))

    def unsubscribe(self, connection, claims: LinkClaims, *, context: Context,
                    transaction: bool, queue=nullcontext, policy: str | None = None) -> int:
        """Apply the token's unsubscribe; the number of events written (0 for a repeat).

        With ``transaction``, in a transaction of its own on ``connection`` (in autocommit
        mode), which has committed before this returns; without, in the caller's, which the
        caller commits. ``queue()`` is entered before the write lock is asked for (SQLite's
        :func:`writers_queue`). ``policy`` is the event's privacy-policy version.
        Raises :class:`UnknownSubscriber` or :class:`RevokedLink`.
        """
        if self.server_side:
            return self._call(connection, claims, context, policy)
        if self.in_force(connection, claims):
            return 0
        with queue():
            return self.apply(connection, claims, context=context, transaction=transaction,
                              policy=policy)

    def _call(self, connection, claims: LinkClaims, context: Context, policy: str | None) -> int:
        now = utcnow()
        cursor = connection.cursor()
        try:
            answer = self.call.execute(cursor, {
                "public_id": claims.public_id, "epoch": claims.epoch, "topic": claims.topic,
                "source": context.source, "actor": context.actor, "token_id": context.token_id,
                "campaign": context.campaign, "now": now, "now_text": iso_z(now),
                "created_at": utcnow(), "policy_version": policy,
            }).fetchone()[0]
        finally:
            cursor.close()
        if answer == _UNKNOWN:
            raise UnknownSubscriber("no such subscriber")
        if answer == _REVOKED:
            raise RevokedLink("link revoked")
        return 1 if answer == _WRITTEN else 0

    def in_force(self, connection, claims: LinkClaims) -> bool:
        """Whether the token's unsubscribe is already in force (one read, no lock).

        Raises :class:`UnknownSubscriber` (unknown or erased) or :class:`RevokedLink`.
        """
        cursor = connection.cursor()
        try:
            row = self.state.execute(
                cursor, {"public_id": claims.public_id, "slug": claims.topic}).fetchone()
        finally:
            cursor.close()
        state = None if row is None else _State(*row)
        _check(state, claims)
        if state.topic_kind == "marketing":
            # No subscription to the topic is as unsubscribed as one switched off.
            return not state.subscribed
        return bool(state.unsubscribed_all)

    def apply(self, connection, claims: LinkClaims, *, context: Context,
              transaction: bool, policy: str | None = None) -> int:
        """The write, in process (SQLite): BEGIN IMMEDIATE (with ``transaction``), then the
        state read again under the lock, so of two racing clicks the second finds the first
        one's change and writes nothing. What is written is what
        :func:`app.subscribers.services.unsubscribe` writes: the flag or the subscription,
        version and updated_at, one event whose payload is the new snapshot, and one outbox
        row per enabled endpoint that wants the event.
        """
        cursor = connection.cursor()
        try:
            if transaction:
                cursor.execute("BEGIN IMMEDIATE")
            try:
                written = self._write(cursor, claims, context, policy)
            except BaseException:
                if transaction:
                    cursor.execute("ROLLBACK")
                raise
            if transaction:
                cursor.execute("COMMIT" if written else "ROLLBACK")
            return written
        finally:
            cursor.close()

    def _write(self, cursor, claims: LinkClaims, context: Context, policy: str | None) -> int:
        row = self.locked.execute(
            cursor, {"public_id": claims.public_id, "slug": claims.topic}).fetchone()
        row = None if row is None else _Locked(*row)
        _check(row, claims)
        subscriptions = [_Subscription(*s) for s in self.subscriptions.execute(
            cursor, {"subscriber_id": row.id}).fetchall()]
        subscription = None
        if row.topic_kind == "marketing":
            subscription = next((s for s in subscriptions if s.slug == claims.topic), None)
            due = subscription is not None and bool(subscription.subscribed)
            action, topic = "topic.unsubscribed", claims.topic
        else:
            due = not row.unsubscribed_all
            action, topic = "unsubscribed_all", None
        if not due:
            return 0
        type_ = "subscriber.unsubscribed"
        now = utcnow()
        version = row.version + 1
        all_off = topic is None or bool(row.unsubscribed_all)
        snapshot = snapshot_of(
            external_id=row.external_id, email=row.email, locale=row.locale, role=row.role,
            unsubscribed_all=all_off,
            topics=[(s.slug, False if s.slug == topic else bool(s.subscribed), s.frequency,
                     channels_of(by_email=s.by_email, by_sms=s.by_sms))
                    for s in subscriptions],
            phone=row.phone,
            paused_until=(self._paused_until(row.paused_until) if self._paused_until
                          else row.paused_until),
            version=version, updated_at=now,
        )
        # A topic goes from subscribed to not; the master switch from off to on.
        before, after = (True, False) if topic is not None else (False, True)
        change = {"action": action, "topic": topic, "before": before, "after": after}
        created_at = utcnow()
        if topic is not None:
            self.stop_topic.execute(cursor, {"b_subscriber_id": row.id,
                                             "b_topic_id": subscription.id, "now": now})
        self.bump.execute(cursor, {"subscriber_id": row.id, "new_version": version,
                                   "now": now, "all_off": all_off})
        event_id = self.insert_event.execute(cursor, {
            "subscriber_id": row.id, "type": type_, "action": action, "topic": topic,
            "before": {"value": before}, "after": {"value": after},
            "source": context.source, "actor": context.actor, "token_id": context.token_id,
            "campaign": context.campaign, "policy_version": policy, "version": version,
            "payload": payload_of(snapshot, change, context.source), "created_at": created_at,
        }).lastrowid
        endpoints = [_Endpoint(*e) for e in self.endpoints.execute(cursor).fetchall()]
        for endpoint in endpoints:
            if self._json is not None:
                endpoint = endpoint._replace(event_types=self._json(endpoint.event_types),
                                             sources=self._json(endpoint.sources))
            # The model's own rule for which events an endpoint receives.
            if WebhookEndpoint.wants(endpoint, type_, context.source):
                self.insert_delivery.execute(cursor, {
                    "endpoint_id": endpoint.id, "event_id": event_id, "subscriber_id": row.id,
                    "status": "pending", "attempts": 0, "next_attempt_at": created_at,
                    "created_at": created_at})
        return 1


def _check(row, claims: LinkClaims) -> None:
    if row is None:
        raise UnknownSubscriber("no such subscriber")
    if claims.epoch < row.link_epoch:
        raise RevokedLink("link revoked")


def _driver_connection(conn: Connection):
    return conn.connection.driver_connection


def one_click_in_force(conn: Connection, claims: LinkClaims) -> bool:
    """:meth:`OneClick.in_force` on a SQLAlchemy connection (inside its transaction)."""
    return OneClick.for_dialect(conn.dialect).in_force(_driver_connection(conn), claims)


def one_click_unsubscribe(conn: Connection, claims: LinkClaims, *, context: Context) -> int:
    """:meth:`OneClick.unsubscribe` in ``conn``'s transaction, which the caller commits."""
    return OneClick.for_dialect(conn.dialect).unsubscribe(
        _driver_connection(conn), claims, context=context, transaction=False,
        policy=policy_version())
