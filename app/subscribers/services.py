"""The rules of what a subscriber receives. Plain functions over a session."""

from __future__ import annotations

import calendar
import datetime as dt
import functools
import hashlib
import re
from collections.abc import Collection
from dataclasses import dataclass

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import bindparam, delete, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from app.db import iso_z, utcnow
from app.events.models import Event
from app.events.services import append_event, pending_event, record_event, seal, seal_pending
from app.mail.services import forget as forget_mail
from app.subscribers.drafts import Draft, DraftSubscription
from app.subscribers.models import (
    AddressChange,
    EspEvent,
    Subscriber,
    Subscription,
    Suppression,
    address_key,
    channels_of,
)
from app.topics.models import CHANNELS, FREQUENCIES, Role, Topic

# "Leave it as it is", where None means "remove" (the phone, the pause).
KEEP = type("Keep", (), {"__repr__": lambda self: "KEEP", "__bool__": lambda self: False})()

# The pauses the page offers: (months, days) from now.
PAUSES = {"2w": (0, 14), "1m": (1, 0), "3m": (3, 0)}


class PreferenceError(ValueError):
    """A requested change that the rules do not allow; nothing is changed."""


class UnknownTopic(PreferenceError):
    pass


class UnknownFrequency(PreferenceError):
    pass


class InvalidEmail(PreferenceError):
    pass


class UnknownChannel(PreferenceError):
    pass


class InvalidPhone(PreferenceError):
    pass


class PhoneRequired(PreferenceError):
    """SMS was chosen for a topic but the subscriber has no phone number."""


class NoChannel(PreferenceError):
    """A topic switched on with none of its channels chosen."""


class AddressTaken(PreferenceError):
    """Another subscriber has this address (compared case-insensitively)."""


class Suppressed(PreferenceError):
    """The address is suppressed (its subscriber was erased): it stays unsubscribed from
    all marketing, whoever asks."""


@dataclass(frozen=True, slots=True)
class TopicChoice:
    subscribed: bool | None = None
    frequency: str | None = None
    channels: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Context:
    """Who or what is making a change, for the event log."""

    source: str
    actor: str | None = None
    token_id: str | None = None
    campaign: str | None = None
    reason: str | None = None
    # The privacy-policy version in force, for a change made outside an app context (the
    # one-click answered below Flask); None: the current app's (events.policy_version).
    policy: str | None = None


# RFC 5322's dot-atom: a local part email_validator accepts and leaves as it is.
DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")


def normalise_email(raw: str) -> str:
    """The address as stored: validated by email_validator, its domain lower-cased.

    An ASCII address whose local part is a plain dot-atom (nearly all of them) has only its
    domain validated, once per domain (a million imported addresses share few domains);
    any other address is validated whole.
    """
    local, at, domain = raw.rpartition("@")
    if at and raw.isascii() and len(local) <= 64 and len(raw) <= 254 \
            and DOT_ATOM.fullmatch(local):
        return f"{local}@{_domain(domain)}"
    return _validated(raw)


def _validated(raw: str) -> str:
    try:
        result = validate_email(raw, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidEmail(str(exc)) from exc
    local, _, domain = result.normalized.rpartition("@")
    return f"{local}@{domain.lower()}"


@functools.lru_cache(maxsize=4096)
def _domain(domain: str) -> str:
    """A domain as :func:`_validated` leaves it (or :class:`InvalidEmail`, not cached)."""
    return _validated(f"a@{domain}").rpartition("@")[2]


def normalise_phone(raw: str, region: str | None = None) -> str:
    """A phone number in E.164 (``+60123456789``), by the ``phonenumbers`` library.

    Without a ``region`` the number must be international (start with ``+``).
    """
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhone(str(exc)) from exc
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone(f"{raw!r} is not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def add_months(moment: dt.datetime, months: int) -> dt.datetime:
    """The same day ``months`` later (the month's last day when it has fewer days)."""
    month0 = moment.month - 1 + months
    year, month = moment.year + month0 // 12, month0 % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def pause_end(now: dt.datetime, choice: str) -> dt.datetime:
    """When a pause of ``choice`` (a key of :data:`PAUSES`) taken at ``now`` ends."""
    months, days = PAUSES[choice]
    return add_months(now, months).replace(microsecond=0) + dt.timedelta(days=days)


def is_paused(subscriber: Subscriber, now: dt.datetime) -> bool:
    """Paused until a date still to come; a pause whose date has passed is over."""
    return subscriber.paused_until is not None and subscriber.paused_until > now


def default_channels(topic: Topic) -> list[str]:
    """A new subscription's channels: email if the topic offers it. SMS is never assumed."""
    return ["email"] if "email" in topic.channels else []


def email_hash(email: str) -> str:
    return hashlib.sha256(address_key(email).encode("utf-8")).hexdigest()


def by_address(session: Session, email: str, *, for_update: bool = False):
    """The subscriber holding ``email`` in any letter case, or None."""
    query = select(Subscriber).where(Subscriber.email_key == address_key(email))
    if for_update:
        query = query.with_for_update(of=Subscriber)
    return session.scalars(query).unique().one_or_none()


def is_suppressed(session: Session, email: str) -> bool:
    return session.scalar(
        select(Suppression.id).where(Suppression.email_hash == email_hash(email))
    ) is not None


def suppression(session: Session, address: str | None, *, unsubscribed_all: bool | None,
                arriving: bool, suppressed: Collection[str] | None = None) -> bool | None:
    """The one suppression rule: the master switch a change may set for ``address``.

    A suppressed address (see :func:`erase`) stays unsubscribed from all marketing on every
    path (page, undo, admin, API, batch, import, ESP): asking for ``unsubscribed_all=False``
    raises :class:`Suppressed`, and an address ``arriving`` (a new subscriber, a change of
    address) is unsubscribed from all. Otherwise the request stands as given.

    ``suppressed``: the hashes (:func:`email_hash`) of the suppressed addresses among those
    the caller already read (a chunk's, :func:`app.api.services.upsert_chunk`), looked up
    there instead of in the database.
    """
    if unsubscribed_all is not False and not arriving:
        return unsubscribed_all
    if not address or not (email_hash(address) in suppressed if suppressed is not None
                           else is_suppressed(session, address)):
        return unsubscribed_all
    if unsubscribed_all is False:
        raise Suppressed("This address was erased and is suppressed: it stays unsubscribed "
                         "from all marketing and cannot be resubscribed.")
    return True


def by_public_id(session: Session, public_id: str, *, for_update: bool = False):
    query = select(Subscriber).where(Subscriber.public_id == public_id,
                                     Subscriber.erased_at.is_(None))
    if for_update:
        query = query.with_for_update(of=Subscriber)
    return session.scalars(query).unique().one_or_none()


def by_external_id(session: Session, external_id: str, *, for_update: bool = False):
    query = select(Subscriber).where(Subscriber.external_id == external_id)
    if for_update:
        query = query.with_for_update(of=Subscriber)
    return session.scalars(query).unique().one_or_none()


def snapshot(subscriber: Subscriber) -> dict:
    """The subscriber as the API and webhooks show it."""
    return snapshot_of(
        external_id=subscriber.external_id, email=subscriber.email, locale=subscriber.locale,
        role=subscriber.role.slug if subscriber.role else None,
        unsubscribed_all=subscriber.unsubscribed_all,
        topics=[(s.topic.slug, s.subscribed, s.frequency, s.channels)
                for s in subscriber.subscriptions],
        phone=subscriber.phone, paused_until=subscriber.paused_until,
        version=subscriber.version, updated_at=subscriber.updated_at,
    )


def snapshot_of(*, external_id, email, locale, role, unsubscribed_all, topics, phone,
                paused_until, version, updated_at) -> dict:
    """The snapshot's shape from plain values; ``topics`` is
    ``(slug, subscribed, frequency, channels)``."""
    return {
        "external_id": external_id,
        "email": email,
        "locale": locale,
        "role": role,
        "unsubscribed_all": unsubscribed_all,
        "topics": {
            slug: {"subscribed": subscribed, "frequency": frequency, "channels": list(channels)}
            for slug, subscribed, frequency, channels in sorted(topics, key=lambda t: t[0])
        },
        "phone": phone,
        "paused_until": iso_z(paused_until) if paused_until is not None else None,
        "version": version,
        "updated_at": iso_z(updated_at),
    }


def role_topics(role: Role | None, *, include_archived: bool = False) -> list:
    """The marketing topics a role shows, in the role's order."""
    if role is None:
        return []
    return [
        rt for rt in role.role_topics
        if rt.topic.kind == "marketing" and (include_archived or not rt.topic.archived)
    ]


def marketing_topics(session: Session) -> dict[str, Topic]:
    topics = session.scalars(
        select(Topic).where(Topic.kind == "marketing", Topic.archived.is_(False))
    ).all()
    return {t.slug: t for t in topics}


def create_subscriber(session: Session, *, email: str, external_id: str | None = None,
                      locale: str | None = None, role: Role | None = None,
                      context: Context) -> tuple[Subscriber, list[Event]]:
    """A new subscriber with the role's defaults; suppressed addresses start unsubscribed."""
    now = utcnow()
    subscriber = Subscriber(email=email, external_id=external_id, locale=locale, role=role,
                            unsubscribed_all=bool(suppression(
                                session, email, unsubscribed_all=None, arriving=True)),
                            created_at=now, updated_at=now, version=1)
    session.add(subscriber)
    for rt in role_topics(role):
        add_subscription(subscriber, rt.topic, rt.default_subscribed, now)
    session.flush()
    event = record_event(session, subscriber, **_created(email, context))
    seal(session, subscriber, [event], snapshot(subscriber))
    return subscriber, [event]


def new_draft(session: Session, *, email: str, external_id: str | None, locale: str | None,
              role: Role | None, context: Context,
              suppressed: Collection[str] | None = None) -> Draft:
    """:func:`create_subscriber` as a :class:`Draft`, written later with others by
    :func:`app.subscribers.drafts.write` (``suppressed``: as :func:`suppression` takes it)."""
    now = utcnow()
    draft = Draft(email=email, external_id=external_id, locale=locale, role=role,
                  unsubscribed_all=bool(suppression(session, email, unsubscribed_all=None,
                                                    arriving=True, suppressed=suppressed)),
                  now=now)
    for rt in role_topics(role):
        add_subscription(draft, rt.topic, rt.default_subscribed, now)
    event = pending_event(draft, **_created(email, context))
    seal_pending([event], snapshot(draft))
    draft.events.append(event)
    return draft


def _created(email: str, context: Context) -> dict:
    return {"type": "subscriber.created", "action": "created", "source": context.source,
            "actor": context.actor, "after": email, "token_id": context.token_id,
            "campaign": context.campaign}


def new_subscription(topic: Topic, subscribed: bool, now: dt.datetime) -> Subscription:
    sub = Subscription(topic=topic, subscribed=subscribed, frequency=topic.default_frequency,
                       updated_at=now)
    sub.channels = default_channels(topic)
    return sub


def add_subscription(subscriber, topic: Topic, subscribed: bool, now: dt.datetime):
    """Append a new subscription of ``topic`` (its defaults) to a subscriber or a draft."""
    if isinstance(subscriber, Draft):
        sub = DraftSubscription(topic=topic, subscribed=subscribed,
                                frequency=topic.default_frequency, updated_at=now)
        sub.channels = default_channels(topic)
    else:
        sub = new_subscription(topic, subscribed, now)
    subscriber.subscriptions.append(sub)
    return sub


def validate_choices(choices: dict[str, TopicChoice], allowed: dict[str, Topic], *,
                     has_phone: bool) -> None:
    """Every choice is one the topic offers; SMS needs a phone. Raises before any change."""
    for slug, choice in choices.items():
        topic = allowed.get(slug)
        if topic is None:
            raise UnknownTopic(slug)
        if choice.frequency is not None and (
            choice.frequency not in FREQUENCIES or choice.frequency not in topic.frequencies
        ):
            raise UnknownFrequency(f"{slug}: {choice.frequency}")
        if choice.channels is not None:
            for channel in choice.channels:
                if channel not in CHANNELS or channel not in topic.channels:
                    raise UnknownChannel(f"{slug}: {channel}")
            if not choice.channels and choice.subscribed:
                raise NoChannel(slug)
            if "sms" in choice.channels and not has_phone:
                raise PhoneRequired(slug)


def _without_sms(choice: TopicChoice) -> TopicChoice:
    if choice.channels is None or "sms" not in choice.channels:
        return choice
    rest = tuple(c for c in choice.channels if c != "sms")
    return TopicChoice(subscribed=choice.subscribed, frequency=choice.frequency,
                       channels=rest or None)


def change(session: Session, subscriber: Subscriber, *, context: Context,
           topics: dict[str, TopicChoice] | None = None, allowed: dict[str, Topic] | None = None,
           unsubscribed_all: bool | None = None, locale: str | None = None,
           role: Role | None = None, email: str | None = None,
           undeliverable: bool | None = None, phone=KEEP, paused_until=KEEP,
           suppressed: Collection[str] | None = None) -> list[Event]:
    """Apply what differs, one event per actual change; bump the version once.

    ``allowed`` maps the slugs this caller may touch to their topics; any
    other slug, or a frequency or channel the topic does not offer, or SMS
    without a phone, or resubscribing a suppressed address (:func:`suppression`),
    raises before anything is changed. ``phone`` (E.164,
    see :func:`normalise_phone`) and ``paused_until`` are left alone when
    :data:`KEEP`, removed when None. Removing the phone stops SMS for every
    topic at once (one ``topic.channels`` event per topic it stops).

    ``subscriber`` may be a :class:`Draft`: the same rule, its events kept on the draft
    (sealed) for :func:`app.subscribers.drafts.write` instead of flushed; ``suppressed``
    goes to :func:`suppression`.
    """
    topics = topics or {}
    allowed = marketing_topics(session) if allowed is None else allowed
    new_phone = subscriber.phone if phone is KEEP else phone
    if new_phone is None and subscriber.phone is not None:
        # Removing the number wins over SMS ticked in the same change (a form sends both).
        topics = {slug: _without_sms(choice) for slug, choice in topics.items()}
    validate_choices(topics, allowed, has_phone=new_phone is not None)
    arriving = email is not None and email != subscriber.email
    if arriving or (unsubscribed_all is False and subscriber.unsubscribed_all):
        unsubscribed_all = suppression(session, email or subscriber.email,
                                       unsubscribed_all=unsubscribed_all, arriving=arriving,
                                       suppressed=suppressed)
    events: list[Event] = []
    ctx = {"source": context.source, "actor": context.actor, "token_id": context.token_id,
           "campaign": context.campaign, "reason": context.reason}
    now = utcnow()

    draft = isinstance(subscriber, Draft)

    def log(type_, action, topic=None, before=None, after=None):
        values = {"type": type_, "action": action, "topic": topic, "before": before,
                  "after": after, **ctx}
        events.append(pending_event(subscriber, **values) if draft
                      else record_event(session, subscriber, **values))

    if email is not None and email != subscriber.email:
        log("subscriber.updated", "email.changed", before=subscriber.email, after=email)
        subscriber.email = email
        # What the ESP said was about the old address.
        subscriber.soft_bounces = 0
        if subscriber.undeliverable_at is not None:
            log("subscriber.updated", "email.undeliverable", before=True, after=False)
            subscriber.undeliverable_at = None
    if locale is not None and locale != subscriber.locale:
        log("subscriber.updated", "locale", before=subscriber.locale, after=locale)
        subscriber.locale = locale
    if role is not None and role.id != subscriber.role_id:
        log("subscriber.updated", "role",
            before=subscriber.role.slug if subscriber.role else None, after=role.slug)
        subscriber.role = role
        for rt in role_topics(role):
            if subscriber.subscription(rt.topic_id) is None:
                add_subscription(subscriber, rt.topic, rt.default_subscribed, now)
    if new_phone != subscriber.phone:
        log("subscriber.updated", "phone", before=subscriber.phone, after=new_phone)
        subscriber.phone = new_phone
    for slug, choice in topics.items():
        topic = allowed[slug]
        sub = subscriber.subscription(topic.id)
        if sub is None:
            sub = add_subscription(subscriber, topic, False, now)
        if choice.subscribed is not None and choice.subscribed != sub.subscribed:
            if choice.subscribed:
                log("subscriber.updated", "topic.subscribed", slug, False, True)
            else:
                log("subscriber.unsubscribed", "topic.unsubscribed", slug, True, False)
            sub.subscribed = choice.subscribed
            sub.updated_at = now
        if choice.frequency is not None and choice.frequency != sub.frequency:
            log("subscriber.updated", "topic.frequency", slug, sub.frequency, choice.frequency)
            sub.frequency = choice.frequency
            sub.updated_at = now
        if choice.channels is not None and list(choice.channels) != sub.channels:
            chosen = [c for c in CHANNELS if c in choice.channels]
            if chosen != sub.channels:
                log("subscriber.updated", "topic.channels", slug, sub.channels, chosen)
                sub.channels = chosen
                sub.updated_at = now
    if subscriber.phone is None:
        for sub in subscriber.subscriptions:
            if sub.by_sms:
                log("subscriber.updated", "topic.channels", sub.topic.slug, sub.channels,
                    [c for c in sub.channels if c != "sms"])
                sub.by_sms = False
                sub.updated_at = now
    if paused_until is not KEEP and paused_until != subscriber.paused_until:
        before = iso_z(subscriber.paused_until) if subscriber.paused_until else None
        if paused_until is None:
            log("subscriber.updated", "resumed", None, before, None)
        else:
            log("subscriber.updated", "paused", None, before, iso_z(paused_until))
        subscriber.paused_until = paused_until
    if unsubscribed_all is not None and unsubscribed_all != subscriber.unsubscribed_all:
        if unsubscribed_all:
            log("subscriber.unsubscribed", "unsubscribed_all", None, False, True)
        else:
            log("subscriber.resubscribed", "resubscribed_all", None, True, False)
        subscriber.unsubscribed_all = unsubscribed_all
    if undeliverable is not None and undeliverable != (subscriber.undeliverable_at is not None):
        log("subscriber.updated", "email.undeliverable", None, not undeliverable, undeliverable)
        subscriber.undeliverable_at = now if undeliverable else None
        if not undeliverable:
            subscriber.soft_bounces = 0
    if events:
        subscriber.version += 1
        subscriber.updated_at = now
        if draft:
            seal_pending(events, snapshot(subscriber))
            subscriber.events += events
        else:
            session.flush()
            seal(session, subscriber, events, snapshot(subscriber))
    return events


def stops_topic(kind: str | None) -> bool:
    """Whether unsubscribing by a topic (of this kind) stops that topic alone.

    Only a marketing topic does; a topic that is transactional or unknown (None), or no
    topic at all, means all marketing: the intent "stop mailing me" is honoured fully.
    """
    return kind == "marketing"


def unsubscribe_in_force(*, unsubscribed_all: bool, topic_kind: str | None,
                         subscribed: bool | None) -> bool:
    """Whether :func:`unsubscribe` by a topic of ``topic_kind`` would change nothing.

    ``subscribed`` is the subscriber's subscription to that topic (None: none at all,
    which is as unsubscribed as one switched off).
    """
    if stops_topic(topic_kind):
        return not subscribed
    return bool(unsubscribed_all)


# --- the unsubscribe rule, in Core statements ---------------------------------------------------
#
# Defined once, run through SQLAlchemy (compiled once, cached) on the caller's connection: the
# RFC 8058 one-click, the unsubscribe page and the ESP intake call it, the ORM callers through
# unsubscribe() below. It writes what change() writes for the same change: the subscription or
# the master switch, version and updated_at, one event whose payload is the new snapshot, and
# its outbox rows (app.events.services.append_event).

_subscribers = Subscriber.__table__
_subscriptions = Subscription.__table__
_topics = Topic.__table__
_roles = Role.__table__

_TOPIC_KIND = select(_topics.c.kind).where(_topics.c.slug == bindparam("slug"))
# The subscriber under its row lock (SQLite: the write lock its transaction already holds),
# with the kind of the topic named (None: no such topic).
_LOCKED = (
    select(_subscribers.c.id, _subscribers.c.external_id, _subscribers.c.email,
           _subscribers.c.locale, _subscribers.c.unsubscribed_all, _subscribers.c.link_epoch,
           _subscribers.c.version, _subscribers.c.phone, _subscribers.c.paused_until,
           _roles.c.slug.label("role"), _TOPIC_KIND.scalar_subquery().label("topic_kind"))
    .select_from(_subscribers.outerjoin(_roles, _roles.c.id == _subscribers.c.role_id))
    .where(_subscribers.c.public_id == bindparam("public_id"),
           _subscribers.c.erased_at.is_(None))
    .with_for_update(of=_subscribers)
)
_SUBSCRIPTIONS = (
    select(_topics.c.id, _topics.c.slug, _subscriptions.c.subscribed,
           _subscriptions.c.frequency, _subscriptions.c.by_email, _subscriptions.c.by_sms)
    .join_from(_subscriptions, _topics, _topics.c.id == _subscriptions.c.topic_id)
    .where(_subscriptions.c.subscriber_id == bindparam("subscriber_id"))
)
_STOP_TOPIC = (
    update(_subscriptions)
    .where(_subscriptions.c.subscriber_id == bindparam("b_subscriber_id"),
           _subscriptions.c.topic_id == bindparam("b_topic_id"))
    .values(subscribed=False, updated_at=bindparam("now"))
)
_BUMP = (
    update(_subscribers)
    .where(_subscribers.c.id == bindparam("b_id"))
    .values(version=bindparam("new_version"), updated_at=bindparam("now"),
            unsubscribed_all=bindparam("all_off"))
)


@dataclass(frozen=True, slots=True)
class Unsubscribed:
    """What :func:`unsubscribe_rows` found and did."""

    found: bool  # False: no such subscriber, or erased
    link_epoch: int = 0
    event_ids: tuple[int, ...] = ()


def unsubscribe_rows(conn: Connection, public_id: str, topic: str | None, *,
                     context: Context, epoch: int | None = None) -> Unsubscribed:
    """Stop ``topic`` (if it is marketing: :func:`stops_topic`) or all marketing, for the
    subscriber ``public_id``, in ``conn``'s transaction, which the caller commits.

    The state is read under the subscriber's row lock, so of two racing calls the second
    finds the first's change and writes nothing (a repeat writes nothing). With ``epoch``
    (a link's), nothing is written if the subscriber's link epoch is newer (revoked links).
    """
    row = conn.execute(_LOCKED, {"public_id": public_id, "slug": topic}).first()
    if row is None:
        return Unsubscribed(found=False)
    if epoch is not None and epoch < row.link_epoch:
        return Unsubscribed(found=True, link_epoch=row.link_epoch)
    # A second statement, after the lock: on PostgreSQL a locked row that a racing
    # transaction changed is read again, but rows joined to it would not be.
    subscriptions = conn.execute(_SUBSCRIPTIONS, {"subscriber_id": row.id}).all()
    stopped = None
    if stops_topic(row.topic_kind):
        stopped = next((s for s in subscriptions if s.slug == topic), None)
        due = stopped is not None and stopped.subscribed
        action, before, after = "topic.unsubscribed", True, False
    else:
        topic = None
        due = not row.unsubscribed_all
        action, before, after = "unsubscribed_all", False, True
    if not due:
        return Unsubscribed(found=True, link_epoch=row.link_epoch)
    now = utcnow()
    version = row.version + 1
    all_off = topic is None or row.unsubscribed_all
    if stopped is not None:
        conn.execute(_STOP_TOPIC, {"b_subscriber_id": row.id, "b_topic_id": stopped.id,
                                   "now": now})
    conn.execute(_BUMP, {"b_id": row.id, "new_version": version, "now": now,
                         "all_off": all_off})
    snapshot = snapshot_of(
        external_id=row.external_id, email=row.email, locale=row.locale, role=row.role,
        unsubscribed_all=all_off,
        topics=[(s.slug, False if s is stopped else s.subscribed, s.frequency,
                 channels_of(by_email=s.by_email, by_sms=s.by_sms)) for s in subscriptions],
        phone=row.phone, paused_until=row.paused_until, version=version, updated_at=now,
    )
    event_id = append_event(
        conn, subscriber_id=row.id, type="subscriber.unsubscribed", action=action,
        topic=topic, before=before, after=after, source=context.source, actor=context.actor,
        token_id=context.token_id, campaign=context.campaign, reason=context.reason,
        version=version, snapshot=snapshot, policy=context.policy)
    return Unsubscribed(found=True, link_epoch=row.link_epoch, event_ids=(event_id,))


def unsubscribe(session: Session, subscriber: Subscriber, topic: str | None, *,
                context: Context) -> list[Event]:
    """Stop a topic (or, without one, all marketing); the events written (none: a repeat).

    :func:`unsubscribe_rows` on the session's connection, the subscriber's pending changes
    flushed first and its loaded state expired after.
    """
    session.flush()
    done = unsubscribe_rows(session.connection(), subscriber.public_id, topic, context=context)
    if not done.event_ids:
        return []
    for sub in subscriber.__dict__.get("subscriptions", ()):
        session.expire(sub)
    session.expire(subscriber)
    return list(session.scalars(select(Event).where(Event.id.in_(done.event_ids))))


# The answers to "why are you leaving?" (labels: app.subscribers.labels.REASON_LABELS).
REASONS = ("too_many", "not_relevant", "never_signed_up", "other")
MAX_REASON_TEXT = 500


class UnknownReason(PreferenceError):
    pass


class NotUnsubscribed(PreferenceError):
    """A reason for leaving from someone who has not left (nothing to explain)."""


def has_left(subscriber: Subscriber, topic: str | None) -> bool:
    """Whether there is an unsubscribe to explain: from the marketing ``topic`` (switched
    off), or, without one, from all marketing or from some marketing topic."""
    marketing = [s for s in subscriber.subscriptions if s.topic.kind == "marketing"]
    if topic is None:
        return subscriber.unsubscribed_all or any(not s.subscribed for s in marketing)
    return any(s.topic.slug == topic and not s.subscribed for s in marketing)


def record_reason(session: Session, subscriber: Subscriber, *, reason: str | None,
                  text: str | None, topic: str | None, context: Context) -> Event | None:
    """Record why the subscriber unsubscribed (from ``topic``, or from all marketing).

    Optional by design: no reason and no text records nothing (None). Text alone counts
    as ``other``. The caller checks that the unsubscribe is in force. One event,
    action ``unsubscribe.reason`` (the code in ``reason``, the text in ``after``), with
    its webhook; the version is bumped like for any change.
    """
    text = (text or "").strip() or None
    if reason in (None, ""):
        if text is None:
            return None
        reason = "other"
    if reason not in REASONS:
        raise UnknownReason(reason)
    if text is not None and len(text) > MAX_REASON_TEXT:
        raise UnknownReason(f"the text is longer than {MAX_REASON_TEXT} characters")
    subscriber.version += 1
    subscriber.updated_at = utcnow()
    event = record_event(session, subscriber, type="subscriber.updated",
                         action="unsubscribe.reason", topic=topic, after=text,
                         source=context.source, actor=context.actor,
                         token_id=context.token_id, campaign=context.campaign, reason=reason)
    session.flush()
    seal(session, subscriber, [event], snapshot(subscriber))
    return event


def _scrubbed(value, emails: set[str]):
    """``value`` with every string equal to one of ``emails`` replaced by None."""
    if isinstance(value, str):
        return None if value.lower() in emails else value
    if isinstance(value, dict):
        return {k: _scrubbed(v, emails) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrubbed(v, emails) for v in value]
    return value


def erase(session: Session, subscriber: Subscriber, *, context: Context) -> Event:
    """Erase a subscriber's personal data; keep a hashed suppression of the address.

    The ``subscriber.erased`` event is recorded first (its webhook names the
    external id so the CRM can match it), then the email and external id are
    nulled, every link is revoked (epoch bump), subscriptions are deleted, and
    every address this subscriber ever had is scrubbed from its stored events.
    """
    now = utcnow()
    if subscriber.email and not is_suppressed(session, subscriber.email):
        session.add(Suppression(email_hash=email_hash(subscriber.email), reason="erased",
                                created_at=now))
    subscriber.version += 1
    subscriber.updated_at = now
    event = record_event(session, subscriber, type="subscriber.erased", action="erased",
                         source=context.source, actor=context.actor,
                         token_id=context.token_id, campaign=context.campaign)
    final = {**snapshot(subscriber), "email": None, "unsubscribed_all": True, "topics": {},
             "phone": None, "paused_until": None}
    # Every address and phone number this subscriber ever had, to scrub from its events.
    emails = {v.lower() for v in (subscriber.email, subscriber.phone) if v}
    history = session.scalars(
        select(Event).where(Event.subscriber_id == subscriber.id)
    ).all()
    for past in history:
        if past.action in ("created", "email", "email.changed", "phone"):
            for value in ((past.before or {}).get("value"), (past.after or {}).get("value")):
                if isinstance(value, str):
                    emails.add(value.lower())
    subscriber.email = None
    subscriber.phone = None
    subscriber.paused_until = None
    subscriber.external_id = None
    subscriber.erased_at = now
    subscriber.unsubscribed_all = True
    subscriber.link_epoch += 1
    subscriber.subscriptions.clear()
    session.flush()
    # What the ESPs reported about these addresses goes too; the kinds stay for the counts.
    reports = session.scalars(select(EspEvent).where(or_(
        EspEvent.subscriber_id == subscriber.id,
        EspEvent.email_hash.in_([email_hash(e) for e in emails]),
    ))).all()
    for report in reports:
        report.email = None
        report.raw = {"erased": True}
        report.detail = ""
    # Mail queued to or about it, and any change of address waiting for confirmation.
    forget_mail(session, subscriber.id)
    session.execute(delete(AddressChange).where(AddressChange.subscriber_id == subscriber.id)
                    .execution_options(synchronize_session=False))
    seal(session, subscriber, [event], final)
    for past in history:
        if past is event:
            continue
        past.before = _scrubbed(past.before, emails)
        past.after = _scrubbed(past.after, emails)
        past.payload = _scrubbed(past.payload, emails)
        if past.action == "unsubscribe.reason":  # free text may say anything: not kept
            past.after = None
            past.payload = {**past.payload, "changes": [
                {**change, "after": None} for change in past.payload.get("changes", [])]}
    session.flush()
    return event


def address_taken(session: Session, email: str, *, besides: Subscriber | None = None) -> bool:
    """Whether a subscriber other than ``besides`` has ``email``, whatever its case."""
    query = select(Subscriber.id).where(Subscriber.email_key == address_key(email))
    if besides is not None:
        query = query.where(Subscriber.id != besides.id)
    return session.scalar(query.limit(1)) is not None


def change_address(session: Session, subscriber: Subscriber, email: str, *,
                   context: Context) -> list[Event]:
    """Move ``subscriber`` to a new address: one ``email.changed`` event.

    Everything else is the subscriber's row and travels with it (subscriptions,
    frequencies, channels, pause, links). An address another subscriber has raises
    :class:`AddressTaken`; a suppressed (erased) address stays suppressed: the subscriber
    is unsubscribed from all marketing with it, and the change cannot lift that.
    """
    email = normalise_email(email)
    if address_taken(session, email, besides=subscriber):
        raise AddressTaken("the address belongs to another subscriber")
    return change(session, subscriber, context=context, email=email, allowed={},
                  unsubscribed_all=True if is_suppressed(session, email) else None)


def resume_due(session: Session, now: dt.datetime, *, limit: int = 1000) -> list[Event]:
    """End the pauses whose date has come: one ``resumed`` event each (source ``system``).

    Nothing waits for this to honour the date: every export compares
    ``paused_until`` with the time. This records the resumption, so the page,
    the API and the CRM (webhook) no longer show a date in the past.
    """
    due = session.scalars(
        select(Subscriber).where(Subscriber.paused_until.is_not(None),
                                 Subscriber.paused_until <= now,
                                 Subscriber.erased_at.is_(None))
        .order_by(Subscriber.id).limit(limit).with_for_update(of=Subscriber)
    ).unique().all()
    events: list[Event] = []
    for subscriber in due:
        events += change(session, subscriber, context=Context(source="system"), allowed={},
                         paused_until=None)
    return events
