"""Unsubscribe links: open them (expired-but-authentic ones too), and the undo.

An unsubscribe token is honoured after its max age: the signature proves it is
ours and the intent ("stop mailing me") is unambiguous and a legal duty. A
revoked (older epoch) token, a tampered one or one naming an erased
subscriber is still refused.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

from itsdangerous import BadData, URLSafeTimedSerializer
from sqlalchemy import and_, bindparam, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, joinedload, lazyload, selectinload

from app.db import Database
from app.events.models import Event
from app.links.services import (
    MAX_TOKEN_LENGTH,
    UNSUBSCRIBE,
    ExpiredLink,
    InvalidLink,
    LinkClaims,
    LinkSigner,
    RevokedLink,
    UnknownSubscriber,
)
from app.subscribers.models import Subscriber, Subscription
from app.subscribers.services import (
    Context,
    TopicChoice,
    change,
    stops_topic,
    unsubscribe_in_force,
    unsubscribe_rows,
)
from app.topics.models import Role, Topic


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

    As :func:`app.subscribers.services.unsubscribe` decides (:func:`stops_topic`): a
    topic that is unknown or not marketing means everything.
    """
    if slug is None:
        return None
    for sub in subscriber.subscriptions:
        if sub.topic.slug == slug:
            return sub.topic if stops_topic(sub.topic.kind) else None
    topic = session.scalar(select(Topic).where(Topic.slug == slug))
    return topic if topic is not None and stops_topic(topic.kind) else None


def is_unsubscribed(subscriber: Subscriber, topic: Topic | None) -> bool:
    """Whether the link's unsubscribe is already in force."""
    sub = subscriber.subscription(topic.id) if topic is not None else None
    return unsubscribe_in_force(unsubscribed_all=subscriber.unsubscribed_all,
                                topic_kind=topic.kind if topic is not None else None,
                                subscribed=sub.subscribed if sub is not None else None)


# --- Undo -----------------------------------------------------------------------------------
#
# The confirmation page's "Undo" reverses the change that unsubscribe made, and nothing else:
# its form carries a receipt signed for this purpose, naming the events written, the
# subscriber's version after them and this browser (its session's CSRF secret, hashed), good
# for UNDO_WINDOW seconds. A link alone, an old receipt, another browser's receipt, or a
# receipt after any later change of the subscriber is refused; a suppressed address stays
# unsubscribed (app.subscribers.services.suppression, through change()).

UNDO_SALT = "prefcenter.unsubscribe.undo"
UNDO_WINDOW = 15 * 60


class UndoRefused(Exception):
    """No undo: no receipt, a forged, expired or foreign one, or the subscriber changed since."""


def _undo_serializer(secret_keys: list[str]) -> URLSafeTimedSerializer:
    # itsdangerous signs with the last key and verifies with all: the first key signs.
    return URLSafeTimedSerializer(list(reversed(secret_keys)), salt=UNDO_SALT)


def browser_of(csrf_secret: str) -> str:
    """What a receipt holds of the browser: a hash of its session's CSRF secret."""
    return hashlib.sha256(f"{UNDO_SALT}:{csrf_secret}".encode()).hexdigest()[:32]


def undo_receipt(secret_keys: list[str], subscriber: Subscriber, events: list[Event], *,
                 browser: str) -> str:
    """The signed receipt of ``events``, just written for ``subscriber`` in ``browser``
    (the version is the events', not whatever a later change made it)."""
    return _undo_serializer(secret_keys).dumps(
        {"s": subscriber.public_id, "v": max(e.version for e in events),
         "e": [e.id for e in events], "b": browser})


def read_undo_receipt(secret_keys: list[str], receipt: str | None, *, browser: str,
                      max_age: int = UNDO_WINDOW) -> dict:
    """The receipt's content if it is ours, fresh and this browser's; else UndoRefused."""
    if not receipt or len(receipt) > MAX_TOKEN_LENGTH:
        raise UndoRefused("no receipt")
    try:
        data = _undo_serializer(secret_keys).loads(receipt, max_age=max_age)
    except BadData as exc:
        raise UndoRefused("receipt forged or expired") from exc
    if not isinstance(data, dict) or not hmac.compare_digest(str(data.get("b")), browser):
        raise UndoRefused("another browser's receipt")
    return data


def undo(session: Session, subscriber: Subscriber, receipt: dict, *, claims: LinkClaims,
         context: Context) -> list[Event]:
    """Reverse exactly the receipt's events (made by ``claims``' link on its page), if the
    subscriber's choices have not changed since (an answer to "why are you leaving?" is no
    change of choice); through :func:`change`, the one rule."""
    ids, version = receipt.get("e"), receipt.get("v")
    if (receipt.get("s") != subscriber.public_id or not isinstance(version, int)
            or not isinstance(ids, list) or not ids):
        raise UndoRefused("not this subscriber's receipt")
    if subscriber.version != version and session.scalar(
            select(Event.id).where(Event.subscriber_id == subscriber.id,
                                   Event.version > version,
                                   Event.action != "unsubscribe.reason").limit(1)) is not None:
        raise UndoRefused("the subscriber changed since")
    events = session.scalars(select(Event).where(
        Event.id.in_(ids), Event.subscriber_id == subscriber.id,
        Event.source == "unsubscribe_page", Event.token_id == claims.token_id)).all()
    if len(events) != len(ids):
        raise UndoRefused("not this link's events")
    topics: dict[str, TopicChoice] = {}
    unsubscribed_all = None
    for event in events:
        if event.action == "topic.unsubscribed":
            topics[event.topic] = TopicChoice(subscribed=True)
        elif event.action == "unsubscribed_all":
            unsubscribed_all = False
        else:
            raise UndoRefused(f"not an unsubscribe: {event.action}")
    allowed = {t.slug: t for t in session.scalars(select(Topic).where(Topic.slug.in_(topics)))}
    return change(session, subscriber, context=context, topics=topics, allowed=allowed,
                  unsubscribed_all=unsubscribed_all)


# --- RFC 8058 one-click ------------------------------------------------------------------------
#
# One-clicks arrive in bursts after a send, and most of a burst's clicks after the first are
# repeats (several mailbox providers, retries). A repeat is answered by one unlocked read;
# a change is made by the rule every other path uses, under the subscriber's row lock.

_subscribers = Subscriber.__table__
_subscriptions = Subscription.__table__
_topics = Topic.__table__

# The subscriber's link epoch and what the link's unsubscribe depends on, in one statement
# (SQLAlchemy compiles it once and caches it).
IN_FORCE = (
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


def _check(found, claims: LinkClaims) -> None:
    if found is None:
        raise UnknownSubscriber("no such subscriber")
    if claims.epoch < found.link_epoch:
        raise RevokedLink("link revoked")


def _connection(unit: Session | Connection, *, write: bool = False) -> Connection:
    """The connection of a unit of work: a Session's, or a Connection itself; ``write``
    starts its transaction as SQLite's writer (BEGIN IMMEDIATE)."""
    if isinstance(unit, Session):
        return unit.connection(execution_options={"sqlite_begin": "IMMEDIATE"}
                               if write else None)
    if write:
        unit.execution_options(sqlite_begin="IMMEDIATE")
    return unit


def in_force(unit: Session | Connection, claims: LinkClaims) -> bool:
    """Whether the link's unsubscribe is in force already (one read, no lock).

    Raises :class:`UnknownSubscriber` (unknown or erased) or :class:`RevokedLink`.
    """
    row = _connection(unit).execute(IN_FORCE, {"public_id": claims.public_id,
                                               "slug": claims.topic}).first()
    _check(row, claims)
    return unsubscribe_in_force(unsubscribed_all=row.unsubscribed_all,
                                topic_kind=row.topic_kind, subscribed=row.subscribed)


def unsubscribe_by_link(unit: Session | Connection, claims: LinkClaims, *, context: Context,
                        queue=nullcontext) -> list[int]:
    """The link's unsubscribe, committed before this returns; its event ids (none: a repeat).

    ``unit`` is a Session, or a Connection (the one-click's: no Session to build and end).
    A repeat costs one unlocked read (:func:`in_force`). Otherwise ``queue()`` (SQLite:
    :func:`writers_queue`) is entered and :func:`app.subscribers.services.unsubscribe_rows`,
    the one rule, reads the subscriber again under its row lock (SQLite: the write lock of
    BEGIN IMMEDIATE), so of two racing clicks the second finds the first's change and writes
    nothing. Raises :class:`UnknownSubscriber` or :class:`RevokedLink`.
    """
    sqlite = _connection(unit).dialect.name == "sqlite"
    try:
        done = in_force(unit, claims)
    except BaseException:
        unit.rollback()
        raise
    if done or sqlite:
        # SQLite: a reading transaction must not become the writer (SQLITE_BUSY); the
        # write starts afresh with the lock. PostgreSQL reads afresh under the row lock.
        unit.rollback()
    if done:
        return []
    with queue():
        try:
            done = unsubscribe_rows(_connection(unit, write=sqlite), claims.public_id,
                                    claims.topic, context=context, epoch=claims.epoch)
            _check(done if done.found else None, claims)
            unit.commit()
        except BaseException:
            unit.rollback()
            raise
    return list(done.event_ids)
