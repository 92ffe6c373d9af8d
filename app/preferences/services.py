"""What the preference page shows and how a submitted page becomes changes."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.subscribers.models import Subscriber
from app.subscribers.services import PreferenceError, TopicChoice, UnknownTopic, role_topics
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


def page_rows(subscriber: Subscriber, locale: str, default_locale: str) -> list[TopicRow]:
    rows = []
    for rt in role_topics(subscriber.role):
        topic = rt.topic
        sub = subscriber.subscription(topic.id)
        frequency = sub.frequency if sub else topic.default_frequency
        if frequency not in topic.frequencies:
            frequency = topic.default_frequency
        rows.append(TopicRow(
            slug=topic.slug,
            name=topic.text(locale, default_locale),
            description=topic.text(locale, default_locale, "description"),
            benefit=rt.benefit(locale, default_locale),
            subscribed=bool(sub and sub.subscribed),
            frequency=frequency,
            frequencies=list(topic.frequencies),
        ))
    return rows


def transactional_names(session: Session, locale: str, default_locale: str) -> list[str]:
    topics = session.scalars(
        select(Topic).where(Topic.kind == "transactional", Topic.archived.is_(False))
        .order_by(Topic.position, Topic.slug)
    ).all()
    return [t.text(locale, default_locale) for t in topics]


def allowed_topics(subscriber: Subscriber) -> dict[str, Topic]:
    return {rt.topic.slug: rt.topic for rt in role_topics(subscriber.role)}


@dataclass(frozen=True, slots=True)
class Submission:
    topics: dict[str, TopicChoice]
    unsubscribed_all: bool | None


def parse_form(form, allowed: dict[str, Topic]) -> Submission:
    """Read the page's fields; any field about a topic the page did not show is an error.

    ``shown`` lists the topics the page displayed: only those change, so an
    unchecked (absent) toggle means "off" for a shown topic and nothing for
    any other.
    """
    shown = form.getlist("shown")
    for slug in shown:
        if slug not in allowed:
            raise UnknownTopic(slug)
    for key in form:
        prefix, _, slug = key.partition("-")
        if prefix in ("topic", "frequency") and slug not in shown:
            raise UnknownTopic(slug)
    choices = {}
    for slug in dict.fromkeys(shown):
        frequency = form.get(f"frequency-{slug}") or None
        choices[slug] = TopicChoice(subscribed=form.get(f"topic-{slug}") == "on",
                                    frequency=frequency)
    action = form.get("action", "save")
    if action == "unsubscribe_all":
        unsubscribed_all = True
    elif action == "save":
        unsubscribed_all = form.get("unsubscribe_all") == "on"
    else:
        raise PreferenceError(f"unknown action {action!r}")
    return Submission(choices, unsubscribed_all)


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
