"""What the preference page shows and how a submitted page becomes changes."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.subscribers.models import Subscriber
from app.subscribers.reading import PageSubscriber
from app.subscribers.services import (
    KEEP,
    PAUSES,
    PreferenceError,
    TopicChoice,
    UnknownTopic,
    normalise_phone,
    pause_end,
    role_topics,
)
from app.topics.catalogue import Catalogue, get_catalogue
from app.topics.models import Topic


@dataclass(frozen=True, slots=True)
class TopicRow:
    slug: str
    name: str
    description: str
    benefit: str
    subscribed: bool
    frequency: str
    frequencies: list[str]
    channels: list[str] = field(default_factory=list)  # chosen
    offered: list[str] = field(default_factory=list)  # the topic's channels


def page_rows(catalogue: Catalogue, subscriber: PageSubscriber, locale: str,
              default_locale: str) -> list[TopicRow]:
    """The topics ``subscriber``'s role shows, with their choices, in ``locale``."""
    rows = []
    for shown in catalogue.page_topics(subscriber.role_id, locale, default_locale):
        topic = shown.entry.topic
        sub = subscriber.subscription(topic.id)
        frequency = sub.frequency if sub else topic.default_frequency
        if frequency not in topic.frequencies:
            frequency = topic.default_frequency
        rows.append(TopicRow(
            slug=topic.slug,
            name=shown.name,
            description=shown.description,
            benefit=shown.benefit,
            subscribed=bool(sub and sub.subscribed),
            frequency=frequency,
            frequencies=list(topic.frequencies),
            channels=list(sub.channels) if sub else ["email"],
            offered=list(topic.channels),
        ))
    return rows


@dataclass(frozen=True, slots=True)
class FreshLinkTarget:
    id: int
    public_id: str
    link_epoch: int
    email: str
    locale: str | None


def fresh_link_target(session: Session, public_id: str) -> FreshLinkTarget | None:
    """What a fresh link by email needs of a live subscriber with an address, in one
    query whose cost does not depend on the answer (no relationships loaded)."""
    s = Subscriber
    row = session.execute(
        select(s.id, s.public_id, s.link_epoch, s.email, s.locale)
        .where(s.public_id == public_id, s.erased_at.is_(None), s.email.is_not(None))
    ).one_or_none()
    return FreshLinkTarget(*row) if row is not None else None


def transactional_names(session: Session, locale: str, default_locale: str) -> list[str]:
    return list(get_catalogue(session).transactional_names(locale, default_locale))


def allowed_topics(subscriber: Subscriber) -> dict[str, Topic]:
    return {rt.topic.slug: rt.topic for rt in role_topics(subscriber.role)}


def offers_sms(rows: list[TopicRow]) -> bool:
    return any("sms" in row.offered for row in rows)


@dataclass(frozen=True, slots=True)
class Submission:
    topics: dict[str, TopicChoice]
    unsubscribed_all: bool | None
    phone: object = KEEP
    paused_until: object = KEEP


def parse_form(form, allowed: dict[str, Topic], *, now: dt.datetime) -> Submission:
    """Read the page's fields; any field about a topic the page did not show is an error.

    ``shown`` lists the topics the page displayed: only those change, so an
    unchecked (absent) toggle means "off" for a shown topic and nothing for
    any other. ``channelled`` lists the shown topics whose channel boxes were
    shown (topics offering more than one channel); ``phone`` is present when
    the phone field was shown, and empty removes the number. The ``pause``
    and ``resume`` actions save the page and pause or resume too. Raises
    :class:`InvalidPhone` for a number that is not one.
    """
    shown = form.getlist("shown")
    for slug in shown:
        if slug not in allowed:
            raise UnknownTopic(slug)
    channelled = form.getlist("channelled")
    for key in form:
        prefix, _, slug = key.partition("-")
        if prefix in ("topic", "frequency", "channel") and slug not in shown:
            raise UnknownTopic(slug)
        if prefix == "channel" and slug not in channelled:
            raise UnknownTopic(slug)
    for slug in channelled:
        if slug not in shown:
            raise UnknownTopic(slug)
    choices = {}
    for slug in dict.fromkeys(shown):
        frequency = form.get(f"frequency-{slug}") or None
        subscribed = form.get(f"topic-{slug}") == "on"
        channels = tuple(form.getlist(f"channel-{slug}")) if slug in channelled else None
        if not subscribed and not channels:
            channels = None  # a topic switched off keeps its channels for next time
        choices[slug] = TopicChoice(subscribed=subscribed, frequency=frequency,
                                    channels=channels)
    phone = KEEP
    if "phone" in form:
        raw = form.get("phone", "").strip()
        phone = normalise_phone(raw) if raw else None
    action = form.get("action", "save")
    paused_until = KEEP
    unsubscribed_all = form.get("unsubscribe_all") == "on"
    if action == "unsubscribe_all":
        unsubscribed_all = True
    elif action == "pause":
        choice = form.get("pause", "")
        if choice not in PAUSES:
            raise PreferenceError(f"unknown pause {choice!r}")
        paused_until = pause_end(now, choice)
    elif action == "resume":
        paused_until = None
    elif action != "save":
        raise PreferenceError(f"unknown action {action!r}")
    return Submission(choices, unsubscribed_all, phone, paused_until)


def mask_email(email: str | None) -> str:
    """``jane.doe@example.com`` -> ``j*******@e******.com``."""
    if not email or "@" not in email:
        return ""
    local, _, domain = email.rpartition("@")
    host, dot, tld = domain.rpartition(".")
    if not dot:
        host, tld = domain, ""

    def hide(part: str) -> str:
        return part[:1] + "*" * max(len(part) - 1, 1)

    return f"{hide(local)}@{hide(host)}{dot}{tld}"
