"""Appending events. The only writer of the events table and of the outbox."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from app.db import utcnow
from app.events.models import Event
from app.webhooks.models import WebhookDelivery, WebhookEndpoint


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
    version: int = 0
    payload: dict | None = None
    created_at: object = None


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
        version=subscriber.version, created_at=utcnow(),
    )


def change_of(event: Event) -> dict:
    change = {
        "action": event.action,
        "topic": event.topic,
        "before": (event.before or {}).get("value"),
        "after": (event.after or {}).get("value"),
    }
    if event.reason:  # only where the source gave one (an ESP's "complaint")
        change["reason"] = event.reason
    return change


def payload_of(snapshot: dict, change: dict, source: str) -> dict:
    """An event's webhook payload: the subscriber as it now is, and the one change."""
    return {"subscriber": snapshot, "changes": [change], "source": source}


def seal_pending(events: list[PendingEvent], snapshot: dict) -> None:
    """:func:`seal` for pending events: their payloads; the outbox rows come with
    :func:`write_events`."""
    for event in events:
        event.version = snapshot.get("version", event.version)
        event.payload = payload_of(snapshot, change_of(event), event.source)


def write_events(session: Session, events: list[PendingEvent]) -> None:
    """Insert sealed pending events (their subscribers written, with ids) and their outbox
    rows: one ``executemany`` each, in the caller's transaction."""
    if not events:
        return
    endpoints = session.scalars(
        select(WebhookEndpoint).where(WebhookEndpoint.enabled.is_(True))
    ).all()
    rows = [{"subscriber_id": e.subscriber.id, "type": e.type, "action": e.action,
             "topic": e.topic, "before": e.before, "after": e.after, "source": e.source,
             "actor": e.actor, "token_id": e.token_id, "campaign": e.campaign,
             "reason": e.reason, "version": e.version, "payload": e.payload,
             "created_at": e.created_at} for e in events]
    connection = session.connection()
    wanted = [[endpoint.id for endpoint in endpoints if endpoint.wants(e.type, e.source)]
              for e in events]
    if not any(wanted):
        connection.execute(insert(Event.__table__), rows)
        return
    ids = connection.execute(
        insert(Event.__table__).returning(Event.__table__.c.id, sort_by_parameter_order=True),
        rows).scalars().all()
    connection.execute(insert(WebhookDelivery.__table__), [
        {"endpoint_id": endpoint_id, "event_id": event_id, "subscriber_id": e.subscriber.id,
         "next_attempt_at": e.created_at, "status": "pending", "attempts": 0}
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
