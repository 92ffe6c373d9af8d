"""Everything Prefcenter holds about one subscriber, as one JSON document (GDPR Art. 15):
identity, locale, role, every subscription with channels and frequency, pause, and the full
consent history, each change with its signed consent receipt. Labels are in the locale in
force when it is built (the caller pins the subscriber's)."""

from __future__ import annotations

import datetime as dt

from flask_babel import force_locale
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import iso_z
from app.events.models import Event
from app.events.receipts import Controller, signed_receipt
from app.subscribers.labels import (
    ACTION_LABELS,
    CHANNEL_LABELS,
    FREQUENCY_LABELS,
    REASON_LABELS,
    SOURCE_LABELS,
    label,
)
from app.subscribers.models import Subscriber

FORMAT = "prefcenter.subscriber-export/1"


def _iso(moment: dt.datetime | None) -> str | None:
    return iso_z(moment) if moment is not None else None


def _value(box: dict | None):
    return (box or {}).get("value")


def export_document(session: Session, subscriber: Subscriber, *, locale: str,
                    default_locale: str, controller: Controller, base_url: str,
                    secrets: list[str], now: dt.datetime) -> dict:
    """The export of ``subscriber``; labels in ``locale`` (the caller's Babel locale)."""
    names: dict[str, str] = {}
    subscriptions = []
    for sub in sorted(subscriber.subscriptions, key=lambda s: (s.topic.position, s.topic.slug)):
        topic = sub.topic
        names[topic.slug] = topic.text(locale, default_locale)
        subscriptions.append({
            "topic": topic.slug,
            "topic_name": names[topic.slug],
            "kind": topic.kind,
            "subscribed": sub.subscribed,
            "frequency": sub.frequency,
            "frequency_label": label(FREQUENCY_LABELS, sub.frequency),
            "channels": [{"channel": c, "label": label(CHANNEL_LABELS, c)}
                         for c in sub.channels],
            "updated_at": _iso(sub.updated_at),
        })
    paused = subscriber.paused_until is not None and subscriber.paused_until > now
    events = session.scalars(
        select(Event).where(Event.subscriber_id == subscriber.id).order_by(Event.id)
    ).all()
    history = []
    for event in events:
        receipt = signed_receipt(event, external_id=subscriber.external_id,
                                 controller=controller, base_url=base_url, secrets=secrets)
        history.append({
            "id": event.id,
            "when": _iso(event.created_at),
            "type": event.type,
            "action": event.action,
            "action_label": label(ACTION_LABELS, event.action),
            "topic": event.topic,
            "topic_name": names.get(event.topic, event.topic),
            "before": _value(event.before),
            "after": _value(event.after),
            "source": event.source,
            "source_label": label(SOURCE_LABELS, event.source),
            "campaign": event.campaign,
            "link_id": event.token_id,
            "reason": event.reason,
            "reason_label": label(REASON_LABELS, event.reason),
            "policy_version": event.policy_version,
            "receipt_id": receipt["receipt"]["consentReceiptID"],
            "receipt": receipt,
        })
    role = subscriber.role
    return {
        "format": FORMAT,
        "generated_at": iso_z(now),
        "language": locale,
        "controller": {"name": controller.name, "url": controller.url,
                       "privacy_policy": controller.policy_url},
        "subscriber": {
            "external_id": subscriber.external_id,
            "email": subscriber.email,
            "phone": subscriber.phone,
            "locale": subscriber.locale,
            "role": role.slug if role is not None else None,
            "role_name": role.text(locale, default_locale) if role is not None else None,
            "created_at": _iso(subscriber.created_at),
            "updated_at": _iso(subscriber.updated_at),
            "version": subscriber.version,
            "undeliverable_since": _iso(subscriber.undeliverable_at),
        },
        "unsubscribed_all": subscriber.unsubscribed_all,
        "paused_until": _iso(subscriber.paused_until) if paused else None,
        "subscriptions": subscriptions,
        "consent_history": history,
    }


def controller_of(config) -> Controller:
    """The controller a receipt names, from the app's configuration."""
    return Controller(name=config["BRAND_NAME"], url=config["BASE_URL"],
                      policy_url=config["PRIVACY_URL"])


def export_in(config, session: Session, subscriber: Subscriber, *, locale: str,
              now: dt.datetime) -> dict:
    """:func:`export_document` with the app's settings, its labels in ``locale``."""
    with force_locale(locale):
        return export_document(session, subscriber, locale=locale,
                               default_locale=config["DEFAULT_LOCALE"],
                               controller=controller_of(config), base_url=config["BASE_URL"],
                               secrets=config["SECRET_KEYS"], now=now)


def export_locale(config, subscriber: Subscriber) -> str:
    """The subscriber's language if supported, else the default."""
    if subscriber.locale in config["SUPPORTED_LOCALES"]:
        return subscriber.locale
    return config["DEFAULT_LOCALE"]
