"""The rules of webhook endpoints and deliveries, shared by the CLI, the API and the admin.

Plain functions taking the session first; they never commit (the caller does)
and never read the request. The worker that actually delivers lives in
:mod:`app.webhooks.worker`; signing and posting in :mod:`app.webhooks.transport`.

Delivery statuses: ``pending`` (due, or waiting for its next retry; a pending
delivery with ``attempts > 0`` is *failing*), ``delivered`` (a 2xx was received)
and ``dead`` (every retry of the schedule failed; replay it to try again).
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets as secrets_module
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from flask import current_app, has_app_context
from sqlalchemy import case, exists, func, insert, select, update
from sqlalchemy.orm import Session

from app.db import utcnow
from app.events.models import EVENT_TYPES, SOURCES, Event
from app.retry import parse_schedule
from app.webhooks import destinations, transport
from app.webhooks.models import WebhookDelivery, WebhookEndpoint

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"
FAILING = "failing"  # a filter only: pending with at least one failed attempt
DELIVERY_FILTERS = (PENDING, FAILING, DELIVERED, DEAD)
TEST_EVENT_TYPE = "webhook.test"


class WebhookError(ValueError):
    """A request the webhook rules refuse; nothing was changed."""


class InvalidUrl(WebhookError):
    pass


class UnknownEventType(WebhookError):
    pass


class UnknownSource(WebhookError):
    pass


class NotReplayable(WebhookError):
    pass


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    """The webhook part of the configuration (see README, ``PREFCENTER_WEBHOOK_*``)."""

    retry_schedule: tuple[float, ...]
    timeout: float = 10.0
    disable_after: float = 5 * 86400
    secret_overlap: float = 86400
    lease: float = 300
    concurrency: int = 16
    poll_interval: float = 1.0
    allow_private: bool = False
    test_timeout: float = 3.0

    @classmethod
    def from_config(cls, config: Mapping) -> WebhookSettings:
        return cls(
            retry_schedule=parse_schedule(config.get("WEBHOOK_RETRY_SCHEDULE", [])),
            timeout=float(config.get("WEBHOOK_TIMEOUT", 10)),
            disable_after=float(config.get("WEBHOOK_DISABLE_AFTER", 5 * 86400)),
            secret_overlap=float(config.get("WEBHOOK_SECRET_OVERLAP", 86400)),
            lease=float(config.get("WEBHOOK_LEASE", 300)),
            concurrency=int(config.get("WEBHOOK_CONCURRENCY", 16)),
            poll_interval=float(config.get("WEBHOOK_POLL_INTERVAL", 1)),
            allow_private=bool(config.get("WEBHOOK_ALLOW_PRIVATE", False)),
            test_timeout=float(config.get("WEBHOOK_TEST_TIMEOUT", 3)),
        )


def current_settings() -> WebhookSettings:

    return WebhookSettings.from_config(current_app.config)


# Endpoints ---------------------------------------------------------------------------------


def generate_secret() -> str:
    """A new signing secret: ``whsec_`` + base64 of 32 random bytes."""
    return transport.SECRET_PREFIX + base64.b64encode(secrets_module.token_bytes(32)).decode()


def validate_url(url, *, allow_private: bool | None = None) -> str:
    """An absolute http(s) URL with a host, no credentials, and (unless ``allow_private``,
    by default ``PREFCENTER_WEBHOOK_ALLOW_PRIVATE``) no loopback, private or otherwise
    non-public address (:mod:`app.webhooks.destinations`), or :class:`InvalidUrl`."""
    if not isinstance(url, str) or not url.strip():
        raise InvalidUrl("url is required")
    url = url.strip()
    if len(url) > 2000:
        raise InvalidUrl("url is longer than 2000 characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a malformed port)
    except ValueError as exc:
        raise InvalidUrl(f"url is malformed: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise InvalidUrl("url must start with http:// or https://")
    if not parts.hostname:
        raise InvalidUrl("url has no host")
    if "@" in parts.netloc:
        raise InvalidUrl("url must not hold credentials (user:password@); the signature "
                         "authenticates each webhook")
    if parts.fragment:
        raise InvalidUrl("url must not have a #fragment")
    if allow_private is None:
        allow_private = has_app_context() and current_settings().allow_private
    if not allow_private:
        reason = destinations.host_refusal(parts.hostname)
        if reason is not None:
            raise InvalidUrl(f"url must point at a public address: {reason} (set "
                             "PREFCENTER_WEBHOOK_ALLOW_PRIVATE=1 to allow it in development)")
    return url


def validate_event_types(types) -> list[str]:
    """Known event types in canonical order; empty (or None) means every type."""
    if types is None:
        return []
    if not isinstance(types, list | tuple) or not all(isinstance(t, str) for t in types):
        raise UnknownEventType("events must be a list of event types")
    unknown = sorted(set(types) - set(EVENT_TYPES))
    if unknown:
        raise UnknownEventType(
            f"unknown event type(s) {', '.join(unknown)}; known: {', '.join(EVENT_TYPES)}"
        )
    return [t for t in EVENT_TYPES if t in types]


def validate_sources(sources) -> list[str]:
    """Known event sources in canonical order; empty (or None) means every source."""
    if sources is None:
        return []
    if not isinstance(sources, list | tuple) or not all(isinstance(s, str) for s in sources):
        raise UnknownSource("sources must be a list of event sources")
    unknown = sorted(set(sources) - set(SOURCES))
    if unknown:
        raise UnknownSource(
            f"unknown source(s) {', '.join(unknown)}; known: {', '.join(SOURCES)}")
    return [s for s in SOURCES if s in sources]


def create_endpoint(session: Session, url: str, *, events=None, sources=None,
                    description: str = "") -> tuple[WebhookEndpoint, str]:
    """Register an endpoint for ``events`` (all types if empty); returns it and its secret.

    Only events recorded after this point are queued for it (use
    :func:`replay_range` to send earlier ones).
    """
    secret = generate_secret()
    now = utcnow()
    endpoint = WebhookEndpoint(
        url=validate_url(url), event_types=validate_event_types(events),
        sources=validate_sources(sources), description=(description or "")[:255],
        secret=secret, enabled=True,
        created_at=now, updated_at=now,
    )
    session.add(endpoint)
    session.flush()
    return endpoint, secret


def get_endpoint(session: Session, endpoint_id: str) -> WebhookEndpoint | None:
    return session.get(WebhookEndpoint, endpoint_id)


def list_endpoints(session: Session) -> list[WebhookEndpoint]:
    """Every endpoint, oldest first."""
    return list(session.scalars(
        select(WebhookEndpoint).order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
    ))


def update_endpoint(session: Session, endpoint: WebhookEndpoint, *, url: str | None = None,
                    events=None, sources=None,
                    description: str | None = None) -> WebhookEndpoint:
    """Change an endpoint's URL, event or source filter, or description (validated first)."""
    new_url = validate_url(url) if url is not None else None
    new_events = validate_event_types(events) if events is not None else None
    new_sources = validate_sources(sources) if sources is not None else None
    if new_url is not None:
        endpoint.url = new_url
    if new_events is not None:
        endpoint.event_types = new_events
    if new_sources is not None:
        endpoint.sources = new_sources
    if description is not None:
        endpoint.description = description[:255]
    endpoint.updated_at = utcnow()
    session.flush()
    return endpoint


def disable_endpoint(session: Session, endpoint: WebhookEndpoint,
                     reason: str = "Disabled by an operator.") -> WebhookEndpoint:
    """Stop delivering to an endpoint; its pending deliveries wait, new events skip it."""
    endpoint.enabled = False
    endpoint.disabled_reason = reason
    endpoint.updated_at = utcnow()
    session.flush()
    return endpoint


def enable_endpoint(session: Session, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    """Resume delivering; clears the reason and the failure streak, and makes the
    deliveries that waited due now (see :func:`retry_now`)."""
    endpoint.enabled = True
    endpoint.disabled_reason = None
    endpoint.failing_since = None
    endpoint.updated_at = utcnow()
    session.flush()
    retry_now(session, endpoint)
    return endpoint


def retry_now(session: Session, endpoint: WebhookEndpoint, *,
              now: dt.datetime | None = None) -> int:
    """Make every pending delivery of the endpoint due now (the CRM is back: no need
    to wait for the next retry). Attempt counts are kept. Returns how many."""
    now = now or utcnow()
    result = session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.endpoint_id == endpoint.id, WebhookDelivery.status == PENDING,
               WebhookDelivery.next_attempt_at > now)
        .values(next_attempt_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount


def delete_endpoint(session: Session, endpoint: WebhookEndpoint) -> None:
    """Remove an endpoint and every delivery owed to it."""
    session.query(WebhookDelivery).filter_by(endpoint_id=endpoint.id).delete(
        synchronize_session=False)
    session.delete(endpoint)
    session.flush()


def rotate_secret(session: Session, endpoint: WebhookEndpoint, *,
                  overlap: float | None = None, now: dt.datetime | None = None) -> str:
    """A new secret; the old one keeps signing too for ``overlap`` seconds.

    During the overlap every message carries two signatures, so the receiver can
    switch secrets whenever it likes. ``overlap`` defaults to
    ``PREFCENTER_WEBHOOK_SECRET_OVERLAP`` (24 hours); 0 drops the old secret now.
    """
    now = now or utcnow()
    if overlap is None:
        overlap = current_settings().secret_overlap
    if overlap > 0:
        endpoint.previous_secret = endpoint.secret
        endpoint.previous_secret_expires_at = now + dt.timedelta(seconds=overlap)
    else:
        endpoint.previous_secret = None
        endpoint.previous_secret_expires_at = None
    secret = generate_secret()
    endpoint.secret = secret
    endpoint.updated_at = now
    session.flush()
    return secret


def signing_secrets(secret: str, previous: str | None, previous_expires_at: dt.datetime | None,
                    now: dt.datetime | None = None) -> list[str]:
    """The secrets that sign a message sent ``now``: the current one, plus the
    previous one while its overlap lasts."""
    now = now or utcnow()
    found = [secret]
    if previous and previous_expires_at is not None and previous_expires_at > now:
        found.append(previous)
    return found


def endpoint_secrets(endpoint: WebhookEndpoint, now: dt.datetime | None = None) -> list[str]:
    return signing_secrets(endpoint.secret, endpoint.previous_secret,
                           endpoint.previous_secret_expires_at, now)


def describe_endpoint(endpoint: WebhookEndpoint) -> dict:
    """An endpoint as the API shows it (never its secrets)."""
    return {
        "id": endpoint.id,
        "url": endpoint.url,
        "description": endpoint.description,
        "events": list(endpoint.event_types or []),
        "sources": list(endpoint.sources or []),
        "enabled": endpoint.enabled,
        "disabled_reason": endpoint.disabled_reason,
        "failing_since": _iso(endpoint.failing_since),
        "previous_secret_expires_at": _iso(endpoint.previous_secret_expires_at)
        if endpoint.previous_secret else None,
        "created_at": _iso(endpoint.created_at),
    }


def _iso(moment: dt.datetime | None) -> str | None:
    return transport.iso_z(moment) if moment is not None else None


# Deliveries --------------------------------------------------------------------------------


def list_deliveries(session: Session, *, endpoint_id: str | None = None,
                    status: str | None = None, since: dt.datetime | None = None,
                    until: dt.datetime | None = None, event_type: str | None = None,
                    subscriber_id: int | None = None, before_id: int | None = None,
                    limit: int = 100) -> list[WebhookDelivery]:
    """Deliveries, newest first, filtered.

    ``status`` is one of :data:`DELIVERY_FILTERS` (``failing`` = pending after a
    failed attempt); ``since``/``until`` bound the event's time (``until``
    excluded); ``before_id`` pages backwards (pass the last id seen).
    """
    if status is not None and status not in DELIVERY_FILTERS:
        raise WebhookError(f"status must be one of {', '.join(DELIVERY_FILTERS)}")
    d = WebhookDelivery
    query = select(d).join(Event, Event.id == d.event_id)
    if endpoint_id is not None:
        query = query.where(d.endpoint_id == endpoint_id)
    if status == FAILING:
        query = query.where(d.status == PENDING, d.attempts > 0)
    elif status is not None:
        query = query.where(d.status == status)
    if since is not None:
        query = query.where(Event.created_at >= since)
    if until is not None:
        query = query.where(Event.created_at < until)
    if event_type is not None:
        query = query.where(Event.type == event_type)
    if subscriber_id is not None:
        query = query.where(d.subscriber_id == subscriber_id)
    if before_id is not None:
        query = query.where(d.id < before_id)
    query = query.order_by(d.id.desc()).limit(max(1, min(limit, 1000)))
    return list(session.scalars(query).unique())


def count_deliveries(session: Session, endpoint_id: str | None = None) -> dict[str, int]:
    """How many deliveries are in each state: ``pending`` (of which ``failing``),
    ``delivered``, ``dead``; for one endpoint or all."""
    d = WebhookDelivery
    query = select(d.status, func.count(), func.sum(case((d.attempts > 0, 1), else_=0)))
    if endpoint_id is not None:
        query = query.where(d.endpoint_id == endpoint_id)
    counts = dict.fromkeys(DELIVERY_FILTERS, 0)
    for status, n, attempted in session.execute(query.group_by(d.status)):
        counts[status] = n
        if status == PENDING:
            counts[FAILING] = int(attempted or 0)
    return counts


def get_delivery(session: Session, delivery_id: int,
                 endpoint_id: str | None = None) -> WebhookDelivery | None:
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None or (endpoint_id is not None and delivery.endpoint_id != endpoint_id):
        return None
    return delivery


def describe_delivery(session: Session, delivery: WebhookDelivery) -> dict:
    """A delivery as the API shows it."""
    event = session.get(Event, delivery.event_id)
    return {
        "id": delivery.id,
        "endpoint_id": delivery.endpoint_id,
        "event_id": delivery.event_id,
        "webhook_id": transport.message_id(delivery.event_id),
        "event_type": event.type if event is not None else None,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "next_attempt_at": _iso(delivery.next_attempt_at) if delivery.status == PENDING
        else None,
        "last_attempt_at": _iso(delivery.last_attempt_at),
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error,
        "delivered_at": _iso(delivery.delivered_at),
        "created_at": _iso(delivery.created_at),
    }


def _pending_for_event(endpoint_id: str, event_id):
    return exists().where(WebhookDelivery.endpoint_id == endpoint_id,
                          WebhookDelivery.event_id == event_id,
                          WebhookDelivery.status == PENDING)


def replay_delivery(session: Session, delivery: WebhookDelivery, *,
                    now: dt.datetime | None = None) -> WebhookDelivery:
    """Queue a finished (dead or delivered) delivery again, with a fresh retry schedule.

    The event keeps its ``webhook-id``; the old row stays as history.
    """
    now = now or utcnow()
    if delivery.status == PENDING:
        raise NotReplayable(f"delivery {delivery.id} is still pending")
    if session.scalar(select(_pending_for_event(delivery.endpoint_id, delivery.event_id))):
        raise NotReplayable(f"event {delivery.event_id} is already queued for this endpoint")
    replay = WebhookDelivery(endpoint_id=delivery.endpoint_id, event_id=delivery.event_id,
                             subscriber_id=delivery.subscriber_id, status=PENDING,
                             next_attempt_at=now, created_at=now)
    session.add(replay)
    session.flush()
    return replay


def replay_range(session: Session, endpoint: WebhookEndpoint, since: dt.datetime,
                 until: dt.datetime, *, now: dt.datetime | None = None) -> int:
    """Queue again every event of ``[since, until)`` the endpoint subscribes to.

    Covers events that were delivered, dead, or never queued (the endpoint was
    disabled or not yet registered); skips those already pending. Returns how
    many deliveries were queued.
    """
    now = now or utcnow()
    if until <= since:
        raise WebhookError("until must be after since")
    query = select(Event.id, Event.subscriber_id).where(
        Event.created_at >= since, Event.created_at < until,
        ~_pending_for_event(endpoint.id, Event.id),
    ).order_by(Event.id)
    if endpoint.event_types:
        query = query.where(Event.type.in_(endpoint.event_types))
    if endpoint.sources:
        query = query.where(Event.source.in_(endpoint.sources))
    rows = [
        {"endpoint_id": endpoint.id, "event_id": event_id, "subscriber_id": subscriber_id,
         "status": PENDING, "attempts": 0, "next_attempt_at": now, "created_at": now}
        for event_id, subscriber_id in session.execute(query)
    ]
    if rows:
        session.execute(insert(WebhookDelivery), rows)
    return len(rows)


def send_test_event(session: Session, endpoint: WebhookEndpoint, *,
                    settings: WebhookSettings | None = None,
                    client: httpx.Client | None = None) -> transport.AttemptResult:
    """POST a signed ``webhook.test`` message now and report how it went.

    Nothing is queued or retried; the body is
    ``{"type": "webhook.test", "timestamp": ..., "data": {"endpoint_id": ...}}``.
    """
    settings = settings or current_settings()
    now = utcnow()
    body = transport.render_body(TEST_EVENT_TYPE, now, {"endpoint_id": endpoint.id})
    msg_id = "msg_test_" + secrets_module.token_hex(8)
    own = client is None
    # A short timeout: this runs on a web worker, which must not wait the worker's full one.
    client = client or transport.make_client(min(settings.timeout, settings.test_timeout), 1,
                                             allow_private=settings.allow_private)
    try:
        return transport.post(client, endpoint.url, endpoint_secrets(endpoint, now), msg_id,
                              body)
    finally:
        if own:
            client.close()
