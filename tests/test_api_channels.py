"""Channels (email, sms), the phone number and the pause, through /api/v1 over HTTP."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import select

from app.api.auth import create_api_key
from app.clock import get_clock
from app.events.models import Event
from app.subscribers.services import resume_due
from app.webhooks.models import WebhookDelivery, WebhookEndpoint
from tests.conftest import ApiClient

PHONE = "+60123456789"


@pytest.fixture
def api(client, session, catalogue):
    _key, plain = create_api_key(session, "crm-sync")
    session.commit()
    return ApiClient(client, plain)


def problem(response, status: int, pointer: str | None = None) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    if pointer is not None:
        assert body["errors"][0]["pointer"] == pointer, body
    return body


def lines(response) -> list[dict]:
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "application/x-ndjson"
    return [json.loads(line) for line in response.get_data(as_text=True).splitlines()]


def actions(session, external_id_event_subscriber=None) -> list[tuple]:
    return [(e.action, e.topic, (e.before or {}).get("value"), (e.after or {}).get("value"))
            for e in session.scalars(select(Event).order_by(Event.id))
            if e.action not in ("created",)]


def test_topics_list_their_channels(api):
    topics = {t["slug"]: t for t in api.get("/topics").get_json()["topics"]}
    assert topics["alerts"]["channels"] == ["email", "sms"]
    assert topics["offers"]["channels"] == ["email"]


def test_phone_is_stored_in_e164_and_sms_chosen_per_topic(api, session):
    created = api.put("/subscribers/c-1", json={
        "email": "c1@example.com", "phone": "+60 12-345 6789",
        "topics": {"alerts": {"subscribed": True, "channels": ["sms", "email"]},
                   "offers": {"subscribed": True}}})
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert body["phone"] == PHONE
    assert body["paused_until"] is None
    assert body["topics"]["alerts"] == {"subscribed": True, "frequency": "daily",
                                        "channels": ["email", "sms"]}
    assert body["topics"]["offers"]["channels"] == ["email"]
    assert api.get("/subscribers/c-1").get_json() == body

    sms = lines(api.get("/topics/alerts/recipients?channel=sms"))
    assert sms == [{"external_id": "c-1", "phone": PHONE, "locale": None, "frequency": "daily"}]
    email = lines(api.get("/topics/alerts/recipients?channel=email"))
    assert [r["external_id"] for r in email] == ["c-1"]
    assert lines(api.get("/topics/alerts/recipients")) == email

    # Email off for alerts: still on SMS, no longer in the email export.
    api.put("/subscribers/c-1", json={"topics": {"alerts": {"subscribed": True,
                                                            "channels": ["sms"]}}})
    assert lines(api.get("/topics/alerts/recipients")) == []
    assert len(lines(api.get("/topics/alerts/recipients?channel=sms"))) == 1


def test_removing_the_phone_stops_sms_for_every_topic(api, session):
    api.put("/subscribers/c-2", json={
        "email": "c2@example.com", "phone": PHONE,
        "topics": {"alerts": {"subscribed": True, "channels": ["email", "sms"]},
                   "events": {"subscribed": True, "channels": ["sms"]}}})
    assert len(lines(api.get("/topics/events/recipients?channel=sms"))) == 1
    removed = api.put("/subscribers/c-2", json={"phone": None})
    assert removed.status_code == 200
    body = removed.get_json()
    assert body["phone"] is None
    assert body["topics"]["alerts"]["channels"] == ["email"]
    assert body["topics"]["events"]["channels"] == []
    assert lines(api.get("/topics/alerts/recipients?channel=sms")) == []
    assert lines(api.get("/topics/events/recipients?channel=sms")) == []
    # Email for alerts is untouched.
    assert len(lines(api.get("/topics/alerts/recipients"))) == 1
    changes = [(e.action, e.topic, (e.after or {}).get("value"))
               for e in session.scalars(select(Event).where(Event.version == body["version"]))]
    assert ("phone", None, None) in changes
    assert ("topic.channels", "alerts", ["email"]) in changes
    assert ("topic.channels", "events", []) in changes


def test_master_unsubscribe_stops_every_channel(api):
    api.put("/subscribers/c-3", json={
        "email": "c3@example.com", "phone": PHONE,
        "topics": {"alerts": {"subscribed": True, "channels": ["email", "sms"]}}})
    api.put("/subscribers/c-3", json={"unsubscribed_all": True})
    assert lines(api.get("/topics/alerts/recipients?channel=sms")) == []
    assert lines(api.get("/topics/alerts/recipients?channel=email")) == []


@pytest.mark.parametrize(("body", "pointer"), [
    ({"phone": "12345"}, "/phone"),
    ({"phone": "+1 555 0000 000000 99"}, "/phone"),
    ({"phone": 60123456789}, "/phone"),
    ({"paused_until": "next week"}, "/paused_until"),
    ({"paused_until": "2030-01-01T00:00:00"}, "/paused_until"),
    ({"paused_until": "2000-01-01T00:00:00Z"}, "/paused_until"),
    ({"paused_until": 12}, "/paused_until"),
    ({"topics": {"offers": {"subscribed": True, "channels": ["sms"]}}},
     "/topics/offers/channels"),
    ({"topics": {"alerts": {"subscribed": True, "channels": ["fax"]}}},
     "/topics/alerts/channels/0"),
    ({"topics": {"alerts": {"subscribed": True, "channels": "sms"}}},
     "/topics/alerts/channels"),
    ({"topics": {"alerts": {"subscribed": True, "channels": ["email", "email"]}}},
     "/topics/alerts/channels"),
    ({"topics": {"alerts": {"subscribed": True, "channels": []}}},
     "/topics/alerts/channels"),
    ({"topics": {"alerts": {"subscribed": True, "channels": ["sms"]}}},
     "/topics/alerts/channels"),
])
def test_bad_channels_phone_or_pause_are_422_and_change_nothing(api, session, body, pointer):
    api.put("/subscribers/c-4", json={"email": "c4@example.com"})
    before = api.get("/subscribers/c-4").get_json()
    count = len(session.scalars(select(Event.id)).all())
    problem(api.put("/subscribers/c-4", json=body), 422, pointer)
    assert api.get("/subscribers/c-4").get_json() == before
    assert len(session.scalars(select(Event.id)).all()) == count


@pytest.mark.parametrize("query", ["channel=fax", "channel=sms&frequency=hourly"])
def test_recipients_refuse_unknown_channels(api, query):
    problem(api.get(f"/topics/alerts/recipients?{query}"), 400)


def test_recipients_refuse_a_channel_the_topic_does_not_offer(api):
    body = problem(api.get("/topics/offers/recipients?channel=sms"), 404)
    assert "offers: email" in body["detail"]


def test_pause_exports_nothing_until_it_expires(api, app, session):
    until = (get_clock(app).now() + dt.timedelta(days=14)).replace(microsecond=0)
    api.put("/subscribers/p-1", json={
        "email": "p1@example.com", "phone": PHONE,
        "topics": {"alerts": {"subscribed": True, "channels": ["email", "sms"]}}})
    api.put("/subscribers/p-2", json={
        "email": "p2@example.com", "topics": {"alerts": {"subscribed": True}}})
    paused = api.put("/subscribers/p-1", json={"paused_until": until.isoformat()})
    assert paused.status_code == 200
    assert paused.get_json()["paused_until"] == until.isoformat().replace("+00:00", "Z")
    event = session.scalars(select(Event).where(Event.action == "paused")).one()
    assert event.type == "subscriber.updated"
    assert event.payload["changes"] == [{"action": "paused", "topic": None, "before": None,
                                         "after": paused.get_json()["paused_until"]}]

    assert [r["external_id"] for r in lines(api.get("/topics/alerts/recipients"))] == ["p-2"]
    assert lines(api.get("/topics/alerts/recipients?channel=sms")) == []
    sent = lines(api.post("/topics/alerts/sends", json={"campaign": "c1"}))
    assert [r["external_id"] for r in sent] == ["p-2"]

    # Unsubscribing while paused works.
    api.put("/subscribers/p-1", json={"topics": {"offers": {"subscribed": False}}})

    get_clock(app).advance(dt.timedelta(days=14, seconds=1))
    assert [r["external_id"] for r in lines(api.get("/topics/alerts/recipients"))] == [
        "p-1", "p-2"]
    assert len(lines(api.get("/topics/alerts/recipients?channel=sms"))) == 1
    # The resumption is recorded (source system) by the worker's sweep.
    events = resume_due(session, get_clock(app).now())
    session.commit()
    assert [(e.action, e.source) for e in events] == [("resumed", "system")]
    assert api.get("/subscribers/p-1").get_json()["paused_until"] is None
    assert resume_due(session, get_clock(app).now()) == []


def test_resume_now_through_the_api(api, app, session):
    until = get_clock(app).now() + dt.timedelta(days=30)
    api.put("/subscribers/p-3", json={"email": "p3@example.com",
                                      "topics": {"alerts": {"subscribed": True}},
                                      "paused_until": until.isoformat()})
    assert lines(api.get("/topics/alerts/recipients")) == []
    resumed = api.put("/subscribers/p-3", json={"paused_until": None})
    assert resumed.get_json()["paused_until"] is None
    assert [e.action for e in session.scalars(select(Event).order_by(Event.id))][-1] == "resumed"
    assert len(lines(api.get("/topics/alerts/recipients"))) == 1


def test_webhooks_carry_channels_phone_and_pause(api, app, session):
    session.add(WebhookEndpoint(id="ep-ch", url="http://127.0.0.1:9/hook", description="",
                                event_types=["subscriber.updated"], secret="whsec_x",
                                enabled=True))
    session.commit()
    until = get_clock(app).now() + dt.timedelta(days=90)
    api.put("/subscribers/w-1", json={"email": "w1@example.com"})
    api.put("/subscribers/w-1", json={
        "phone": PHONE, "paused_until": until.isoformat(),
        "topics": {"alerts": {"subscribed": True, "channels": ["sms"]}}})
    events = session.scalars(
        select(Event).join(WebhookDelivery, WebhookDelivery.event_id == Event.id)
        .where(WebhookDelivery.endpoint_id == "ep-ch").order_by(Event.id)).all()
    assert [e.action for e in events] == ["phone", "topic.subscribed", "topic.channels",
                                          "paused"]
    snapshot = events[-1].payload["subscriber"]
    assert snapshot["phone"] == PHONE
    assert snapshot["paused_until"].endswith("Z")
    assert snapshot["topics"]["alerts"]["channels"] == ["sms"]
    assert events[2].payload["changes"][0] == {"action": "topic.channels", "topic": "alerts",
                                               "before": ["email"], "after": ["sms"]}


def test_erasure_removes_the_phone_everywhere(api, session):
    api.put("/subscribers/e-1", json={"email": "e1@example.com", "phone": PHONE})
    assert api.delete("/subscribers/e-1").status_code == 204
    for event in session.scalars(select(Event)):
        assert PHONE not in json.dumps([event.before, event.after, event.payload])


def test_an_undeliverable_address_stops_email_but_not_sms(api, session):
    """The ESP's hard bounce is about the email address: SMS to the phone goes on."""
    from app.subscribers.models import Subscriber
    from app.subscribers.services import Context, change

    api.put("/subscribers/u-1", json={
        "email": "u1@example.com", "phone": PHONE,
        "topics": {"alerts": {"subscribed": True, "channels": ["email", "sms"]}}})
    subscriber = session.scalar(select(Subscriber).where(Subscriber.external_id == "u-1"))
    change(session, subscriber, context=Context(source="esp"), undeliverable=True)
    session.commit()
    assert lines(api.get("/topics/alerts/recipients?channel=email")) == []
    assert [r["phone"] for r in lines(api.get("/topics/alerts/recipients?channel=sms"))] == [
        PHONE]
    assert lines(api.post("/topics/alerts/sends", json={"campaign": "c"})) == []
    assert len(lines(api.post("/topics/alerts/sends",
                              json={"campaign": "c", "channel": "sms"}))) == 1
