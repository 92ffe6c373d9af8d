"""Webhook rules without HTTP: signing, backoff, the outbox guarantee, filters, replay."""

from __future__ import annotations

import base64
import datetime as dt
import json
import random
import time

import pytest
from sqlalchemy import func, select, update
from standardwebhooks import Webhook, WebhookVerificationError

from app.config import DEFAULT_RETRY_SCHEDULE
from app.events.models import Event
from app.retry import retry_delay
from app.subscribers.services import Context, change, create_subscriber, unsubscribe
from app.webhooks import transport
from app.webhooks.models import WebhookDelivery
from app.webhooks.services import (
    InvalidUrl,
    NotReplayable,
    UnknownEventType,
    count_deliveries,
    create_endpoint,
    disable_endpoint,
    generate_secret,
    list_deliveries,
    replay_delivery,
    replay_range,
    signing_secrets,
    validate_event_types,
    validate_url,
)

API = Context(source="api")


def count(session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


def test_signature_verifies_with_the_standard_library():
    one, two = generate_secret(), generate_secret()
    body = json.dumps({"type": "subscriber.updated", "data": {"name": "Zoë"}},
                      ensure_ascii=False).encode()
    now = int(time.time())
    headers = {"webhook-id": "msg_7", "webhook-timestamp": str(now),
               "webhook-signature": transport.sign([one, two], "msg_7", now, body)}
    assert Webhook(one).verify(body, headers)["data"]["name"] == "Zoë"
    assert Webhook(two).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):  # one changed byte
        Webhook(one).verify(body.replace(b"Zo", b"Jo"), headers)


def test_secrets_are_32_random_bytes():
    secrets = {generate_secret() for _ in range(50)}
    assert len(secrets) == 50
    assert all(len(base64.b64decode(s.removeprefix("whsec_"))) == 32 for s in secrets)


def test_previous_secret_signs_only_during_its_overlap():
    now = dt.datetime.now(dt.UTC)
    later = now + dt.timedelta(hours=1)
    assert signing_secrets("new", "old", later, now) == ["new", "old"]
    assert signing_secrets("new", "old", now - dt.timedelta(seconds=1), now) == ["new"]
    assert signing_secrets("new", None, None, now) == ["new"]


def test_backoff_jitter_and_the_end_of_the_schedule():
    schedule = tuple(float(s) for s in DEFAULT_RETRY_SCHEDULE.split(","))
    assert 2.5 * 86400 < sum(schedule) < 3.5 * 86400  # about three days
    rng = random.Random(1)
    delays = [retry_delay(schedule, 3, rng) for _ in range(500)]
    assert min(delays) >= 0.8 * 1800 and max(delays) <= 1.2 * 1800
    assert max(delays) - min(delays) > 0.3 * 1800  # really jittered
    assert retry_delay(schedule, len(schedule), rng) is not None
    assert retry_delay(schedule, len(schedule) + 1, rng) is None
    assert retry_delay((0.0, 0.0), 1) == 0.0


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/h", "https://crm.example/a?b=c"])
def test_urls_accepted(url):
    assert validate_url(f"  {url} ", allow_private=True) == url


def test_private_urls_refused_unless_allowed():
    with pytest.raises(InvalidUrl, match="public address"):
        validate_url("http://127.0.0.1:8080/h")
    assert validate_url("https://crm.example/a") == "https://crm.example/a"


@pytest.mark.parametrize("url", ["ftp://x/y", "crm.example/h", "https://", "https://x/#f",
                                 "http://x:notaport/", "", None, "https://x/" + "a" * 2000])
def test_urls_refused(url):
    with pytest.raises(InvalidUrl):
        validate_url(url)


def test_event_types_canonical_and_checked():
    assert validate_event_types(None) == []
    assert validate_event_types(["subscriber.erased", "subscriber.created"]) == [
        "subscriber.created", "subscriber.erased"]
    with pytest.raises(UnknownEventType):
        validate_event_types(["subscriber.created", "subscriber.deleted"])
    with pytest.raises(UnknownEventType):
        validate_event_types("subscriber.created")


def test_body_is_the_event(session, catalogue):
    create_endpoint(session, "https://crm.example/h")
    subscriber = catalogue.subscriber()
    event = session.scalars(select(Event).where(Event.subscriber_id == subscriber.id)).one()
    body = json.loads(transport.render_body(event.type, event.created_at, event.payload))
    assert body == {"type": "subscriber.created",
                    "timestamp": event.created_at.isoformat().replace("+00:00", "Z"),
                    "data": event.payload}
    assert body["data"]["subscriber"]["external_id"] == subscriber.external_id
    assert body["data"]["source"] == "system"
    assert transport.message_id(event.id) == f"msg_{event.id}"


def test_outbox_rows_commit_and_roll_back_with_the_change(session, catalogue):
    create_endpoint(session, "https://crm.example/all")
    create_endpoint(session, "https://crm.example/unsub", events=["subscriber.unsubscribed"])
    off, _ = create_endpoint(session, "https://crm.example/off")
    disable_endpoint(session, off)
    session.commit()
    subscriber = catalogue.subscriber()
    events, deliveries = count(session, Event), count(session, WebhookDelivery)
    assert deliveries == 1  # created: the "all" endpoint only

    unsubscribe(session, subscriber, None, context=API)
    session.rollback()  # the change is abandoned: no event, no delivery
    assert (count(session, Event), count(session, WebhookDelivery)) == (events, deliveries)

    unsubscribe(session, subscriber, None, context=API)
    session.commit()
    assert count(session, Event) == events + 1
    rows = session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)).all()
    assert len(rows) == deliveries + 2
    assert {r.endpoint.url for r in rows[-2:]} == {"https://crm.example/all",
                                                    "https://crm.example/unsub"}
    assert all(r.subscriber_id == subscriber.id and r.status == "pending" for r in rows)


def test_list_deliveries_filters(session, catalogue):
    endpoint, _ = create_endpoint(session, "https://crm.example/h")
    subscriber = catalogue.subscriber()
    change(session, subscriber, context=API, locale="ru")
    session.commit()
    first, second = session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id))
    session.execute(update(WebhookDelivery).where(WebhookDelivery.id == first.id)
                    .values(attempts=2, last_error="HTTP 503"))
    session.commit()
    assert [d.id for d in list_deliveries(session, endpoint_id=endpoint.id)] == [
        second.id, first.id]
    assert [d.id for d in list_deliveries(session, status="failing")] == [first.id]
    assert [d.id for d in list_deliveries(session, event_type="subscriber.updated")] == [
        second.id]
    assert [d.id for d in list_deliveries(session, before_id=second.id)] == [first.id]
    assert list_deliveries(session, status="dead") == []
    assert count_deliveries(session, endpoint.id) == {
        "pending": 2, "failing": 1, "delivered": 0, "dead": 0}
    assert count_deliveries(session, "ep_other")["pending"] == 0
    future = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    assert list_deliveries(session, since=future) == []
    assert len(list_deliveries(session, until=future, subscriber_id=subscriber.id)) == 2


def test_replay_rules(session, catalogue):
    endpoint, _ = create_endpoint(session, "https://crm.example/h",
                                  events=["subscriber.created"])
    subscriber = catalogue.subscriber()
    unsubscribe(session, subscriber, None, context=API)  # filtered out for this endpoint
    session.commit()
    (delivery,) = session.scalars(select(WebhookDelivery))
    with pytest.raises(NotReplayable):
        replay_delivery(session, delivery)
    delivery.status = "delivered"
    session.commit()
    again = replay_delivery(session, delivery)
    assert (again.event_id, again.status, again.attempts) == (delivery.event_id, "pending", 0)
    since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    until = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    assert replay_range(session, endpoint, since, until) == 0  # already pending
    again.status = "dead"
    session.flush()
    assert replay_range(session, endpoint, since, until) == 1  # the filter still applies
    other = create_subscriber(session, email="late@example.com", external_id="late",
                              role=catalogue.role("shopper"), context=API)[0]
    session.commit()
    assert other.id  # queued normally, so the range replay skips it
    assert replay_range(session, endpoint, since, until) == 0
