"""The rules of what a subscriber receives. Plain functions over a session."""

from __future__ import annotations

import calendar
import datetime as dt
import functools
import hashlib
import re
from dataclasses import dataclass

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from app.db import iso_z, utcnow
from app.events.models import Event
from app.events.services import pending_event, record_event, seal, seal_pending
from app.subscribers.drafts import Draft, DraftSubscription
from app.subscribers.models import EspEvent, Subscriber, Subscription, Suppression
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
    return hashlib.sha256(email.strip().lower().encode("utf-8")).hexdigest()


def is_suppressed(session: Session, email: str) -> bool:
    return session.scalar(
        select(Suppression.id).where(Suppression.email_hash == email_hash(email))
    ) is not None


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
                      locale: str = "en", role: Role | None = None,
                      context: Context) -> tuple[Subscriber, list[Event]]:
    """A new subscriber with the role's defaults; suppressed addresses start unsubscribed."""
    now = utcnow()
    subscriber = Subscriber(email=email, external_id=external_id, locale=locale, role=role,
                            unsubscribed_all=is_suppressed(session, email),
                            created_at=now, updated_at=now, version=1)
    session.add(subscriber)
    for rt in role_topics(role):
        add_subscription(subscriber, rt.topic, rt.default_subscribed, now)
    session.flush()
    event = record_event(session, subscriber, **_created(email, context))
    seal(session, subscriber, [event], snapshot(subscriber))
    return subscriber, [event]


def new_draft(*, email: str, external_id: str | None, locale: str, role: Role | None,
              suppressed: bool, context: Context) -> Draft:
    """:func:`create_subscriber` as a :class:`Draft`, written later with others by
    :func:`app.subscribers.drafts.write` (``suppressed``: whether :func:`is_suppressed`)."""
    now = utcnow()
    draft = Draft(email=email, external_id=external_id, locale=locale, role=role,
                  unsubscribed_all=suppressed, now=now)
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
           undeliverable: bool | None = None, phone=KEEP, paused_until=KEEP) -> list[Event]:
    """Apply what differs, one event per actual change; bump the version once.

    ``allowed`` maps the slugs this caller may touch to their topics; any
    other slug, or a frequency or channel the topic does not offer, or SMS
    without a phone, raises before anything is changed. ``phone`` (E.164,
    see :func:`normalise_phone`) and ``paused_until`` are left alone when
    :data:`KEEP`, removed when None. Removing the phone stops SMS for every
    topic at once (one ``topic.channels`` event per topic it stops).

    ``subscriber`` may be a :class:`Draft`: the same rule, its events kept on the draft
    (sealed) for :func:`app.subscribers.drafts.write` instead of flushed.
    """
    topics = topics or {}
    allowed = marketing_topics(session) if allowed is None else allowed
    new_phone = subscriber.phone if phone is KEEP else phone
    if new_phone is None and subscriber.phone is not None:
        # Removing the number wins over SMS ticked in the same change (a form sends both).
        topics = {slug: _without_sms(choice) for slug, choice in topics.items()}
    validate_choices(topics, allowed, has_phone=new_phone is not None)
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


def unsubscribe(session: Session, subscriber: Subscriber, topic: str | None, *,
                context: Context) -> list[Event]:
    """Stop a topic (or, without one, all marketing). Repeats change nothing."""
    if topic is not None:
        # The subscriber's subscriptions are loaded already: no query for a known topic.
        found = next((s.topic for s in subscriber.subscriptions if s.topic.slug == topic),
                     None) or session.scalar(select(Topic).where(Topic.slug == topic))
        if found is not None and found.kind == "marketing":
            return change(session, subscriber, context=context,
                          topics={topic: TopicChoice(subscribed=False)},
                          allowed={topic: found})
        # A topic since deleted or made transactional: honour the intent fully.
    return change(session, subscriber, context=context, unsubscribed_all=True, allowed={})


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
    seal(session, subscriber, [event], final)
    for past in history:
        if past is event:
            continue
        past.before = _scrubbed(past.before, emails)
        past.after = _scrubbed(past.after, emails)
        past.payload = _scrubbed(past.payload, emails)
    session.flush()
    return event


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
