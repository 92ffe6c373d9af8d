"""Appending events. The only writer of the events table and of the outbox."""

from __future__ import annotations

import json
from dataclasses import dataclass

from flask import Flask, current_app, has_app_context
from sqlalchemy import insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from app.db import JsonText, insert_rows, utcnow
from app.events.models import Event
from app.webhooks.models import WebhookDelivery, WebhookEndpoint


def policy_version(app: Flask | None = None) -> str | None:
    """The privacy-policy version in force (``PREFCENTER_PRIVACY_POLICY_VERSION``), recorded
    on every event: of ``app``, else of the current app (None outside one)."""
    if app is None:
        if not has_app_context():
            return None
        app = current_app
    return app.config.get("PRIVACY_POLICY_VERSION")


def record_event(session: Session, subscriber, *, type: str, action: str, source: str,
                 topic: str | None = None, before=None, after=None, actor: str | None = None,
                 token_id: str | None = None, campaign: str | None = None,
                 reason: str | None = None) -> Event:
    """Add one event (payload filled by :func:`seal`) to the session's transaction."""
    event = Event(
        subscriber_id=subscriber.id if subscriber is not None else None,
        type=type, action=action, topic=topic,
        before=None if before is None else {"value": before},
        after=None if after is None else {"value": after},
        source=source, actor=actor, token_id=token_id, campaign=campaign, reason=reason,
        policy_version=policy_version(),
        version=subscriber.version if subscriber is not None else 0,
        payload={}, created_at=utcnow(),
    )
    session.add(event)
    return event


@dataclass(slots=True)
class PendingEvent:
    """An event of a subscriber not yet written (see :mod:`app.subscribers.drafts`): the
    same fields as :class:`Event`, written in bulk by :func:`write_events` once the
    subscriber has its id. ``subscriber`` is the draft it is about."""

    subscriber: object
    type: str
    action: str
    source: str
    topic: str | None = None
    before: dict | None = None
    after: dict | None = None
    actor: str | None = None
    token_id: str | None = None
    campaign: str | None = None
    reason: str | None = None
    policy_version: str | None = None
    version: int = 0
    payload: JsonText | None = None
    created_at: object = None


EVENT_COLUMNS = ["subscriber_id", "type", "action", "topic", "before", "after", "source",
                 "actor", "token_id", "campaign", "reason", "policy_version", "version",
                 "payload", "created_at"]
DELIVERY_COLUMNS = ["endpoint_id", "event_id", "subscriber_id", "next_attempt_at", "status",
                    "attempts", "created_at"]


NULL = JsonText("null")  # what the ORM writes for an event's missing before or after


def pending_event(subscriber, *, type: str, action: str, source: str, topic: str | None = None,
                  before=None, after=None, actor: str | None = None,
                  token_id: str | None = None, campaign: str | None = None,
                  reason: str | None = None) -> PendingEvent:
    """:func:`record_event` for a draft: kept in memory until :func:`write_events`."""
    return PendingEvent(
        subscriber=subscriber, type=type, action=action, topic=topic,
        before=None if before is None else {"value": before},
        after=None if after is None else {"value": after},
        source=source, actor=actor, token_id=token_id, campaign=campaign, reason=reason,
        policy_version=policy_version(), version=subscriber.version, created_at=utcnow(),
    )


def change_of(event: Event) -> dict:
    return change_dict(event.action, event.topic, (event.before or {}).get("value"),
                       (event.after or {}).get("value"), event.reason)


def change_dict(action: str, topic: str | None, before, after, reason: str | None) -> dict:
    """One change as an event's webhook payload shows it."""
    change = {"action": action, "topic": topic, "before": before, "after": after}
    if reason:  # only where the source gave one (an ESP's "complaint")
        change["reason"] = reason
    return change


def payload_of(snapshot: dict, change: dict, source: str) -> dict:
    """An event's webhook payload: the subscriber as it now is, and the one change."""
    return {"subscriber": snapshot, "changes": [change], "source": source}


def payload_text(snapshot_text: str, change: dict, source: str) -> JsonText:
    """:func:`payload_of` as JSON text, around the snapshot serialised once for every
    change it carries (the same text ``json.dumps(payload_of(...))`` gives)."""
    return JsonText(f'{{"subscriber": {snapshot_text}, "changes": [{json.dumps(change)}], '
                    f'"source": {json.dumps(source)}}}')


def seal_pending(events: list[PendingEvent], snapshot: dict) -> None:
    """:func:`seal` for pending events: their payloads; the outbox rows come with
    :func:`write_events`."""
    if not events:
        return
    text = json.dumps(snapshot)
    for event in events:
        event.version = snapshot.get("version", event.version)
        event.payload = payload_text(text, change_of(event), event.source)


def write_events(session: Session, events: list[PendingEvent]) -> None:
    """Insert sealed pending events (their subscribers written, with ids) and their outbox
    rows: one ``executemany`` each, in the caller's transaction."""
    if not events:
        return
    endpoints = session.scalars(
        select(WebhookEndpoint).where(WebhookEndpoint.enabled.is_(True))
    ).all()
    rows = [(e.subscriber.id, e.type, e.action, e.topic, NULL if e.before is None else e.before,
             NULL if e.after is None else e.after, e.source, e.actor,
             e.token_id, e.campaign, e.reason, e.policy_version, e.version, e.payload,
             e.created_at)
            for e in events]
    connection = session.connection()
    wanted = [[endpoint.id for endpoint in endpoints if endpoint.wants(e.type, e.source)]
              for e in events] if endpoints else None
    if not wanted or not any(wanted):
        insert_rows(connection, Event.__table__, EVENT_COLUMNS, rows)
        return
    ids = insert_rows(connection, Event.__table__, EVENT_COLUMNS, rows, ids=True)
    insert_rows(connection, WebhookDelivery.__table__, DELIVERY_COLUMNS, [
        (endpoint_id, event_id, e.subscriber.id, e.created_at, "pending", 0, e.created_at)
        for e, event_id, targets in zip(events, ids, wanted, strict=True)
        for endpoint_id in targets])


def seal(session: Session, subscriber, events: list[Event], snapshot: dict) -> None:
    """Fill the webhook payload of a batch of events and queue their deliveries.

    Called once the change is applied, in the same transaction: each event's
    payload carries the subscriber as it now is, so the payload, the event and
    the change commit (or roll back) together.
    """
    if not events:
        return
    endpoints = session.scalars(
        select(WebhookEndpoint).where(WebhookEndpoint.enabled.is_(True))
    ).all()
    session.flush()
    for event in events:
        event.version = snapshot.get("version", event.version)
        event.payload = payload_of(snapshot, change_of(event), event.source)
        for endpoint in endpoints:
            if endpoint.wants(event.type, event.source):
                session.add(WebhookDelivery(
                    endpoint_id=endpoint.id, event_id=event.id,
                    subscriber_id=event.subscriber_id, next_attempt_at=event.created_at,
                ))


_events = Event.__table__
_endpoints = WebhookEndpoint.__table__
_deliveries = WebhookDelivery.__table__
_INSERT_EVENT = insert(_events)
_INSERT_DELIVERY = insert(_deliveries)
_ENABLED_ENDPOINTS = (select(_endpoints.c.id, _endpoints.c.event_types, _endpoints.c.sources)
                      .where(_endpoints.c.enabled.is_(True)))


def append_event(conn: Connection, *, subscriber_id: int, type: str, action: str,
                 topic: str | None, before, after, source: str, actor: str | None,
                 token_id: str | None, campaign: str | None, reason: str | None,
                 version: int, snapshot: dict, policy: str | None = None) -> int:
    """:func:`record_event` and :func:`seal` for one event, in Core statements on ``conn``
    (the caller's transaction): the event with its payload, and its outbox rows for the
    enabled endpoints that want it (:meth:`WebhookEndpoint.wants`). Its id. ``policy``:
    the privacy-policy version in force, when there is no app context to read it from."""
    created_at = utcnow()
    event_id = conn.execute(_INSERT_EVENT, {
        "subscriber_id": subscriber_id, "type": type, "action": action, "topic": topic,
        "before": None if before is None else {"value": before},
        "after": None if after is None else {"value": after},
        "source": source, "actor": actor, "token_id": token_id, "campaign": campaign,
        "reason": reason, "version": version, "created_at": created_at,
        "policy_version": policy if policy is not None else policy_version(),
        "payload": payload_of(snapshot, change_dict(action, topic, before, after, reason),
                              source),
    }).inserted_primary_key[0]
    deliveries = [
        {"endpoint_id": endpoint.id, "event_id": event_id, "subscriber_id": subscriber_id,
         "status": "pending", "attempts": 0, "next_attempt_at": created_at,
         "created_at": created_at}
        for endpoint in conn.execute(_ENABLED_ENDPOINTS)
        if WebhookEndpoint.wants(endpoint, type, source)
    ]
    if deliveries:
        conn.execute(_INSERT_DELIVERY, deliveries)
    return event_id
