"""Appending events. The only writer of the events table and of the outbox."""

from __future__ import annotations

from flask import Flask, current_app, has_app_context
from sqlalchemy import insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from app.db import utcnow
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
