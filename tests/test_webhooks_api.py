"""``/api/v1/webhook-endpoints`` through HTTP: auth, validation, listing, enable/disable,
rotation, deliveries, replay, test event."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, update

from app.api.auth import create_api_key
from app.events.models import Event
from app.webhooks.models import WebhookDelivery, WebhookEndpoint
from tests.conftest import ApiClient
from tests.webhook_receiver import Receiver


@pytest.fixture
def api(client, session, catalogue):
    _key, plain = create_api_key(session, "crm")
    session.commit()
    return ApiClient(client, plain, "/webhook-endpoints")


def problem(response, status: int, part: str = "") -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == status and part in body["detail"], body
    return body


def test_requires_an_api_key(client):
    problem(client.post("/api/v1/webhook-endpoints", json={"url": "https://crm.example/h"}),
            401, "API key")
    problem(client.get("/api/v1/webhook-endpoints",
                       headers={"Authorization": "Bearer pc_nope_nope"}), 401)


def test_create_list_show(api, session):
    created = api.post("", json={"url": "https://crm.example/hooks",
                                 "events": ["subscriber.unsubscribed"]})
    assert created.status_code == 201
    body = created.get_json()
    assert body["id"].startswith("ep_") and body["secret"].startswith("whsec_")
    assert body["events"] == ["subscriber.unsubscribed"] and body["enabled"] is True
    assert session.get(WebhookEndpoint, body["id"]).secret == body["secret"]

    listed = api.get("").get_json()["endpoints"]
    assert [e["id"] for e in listed] == [body["id"]]
    assert "secret" not in listed[0]
    shown = api.get(f"/{body['id']}").get_json()
    assert shown["url"] == "https://crm.example/hooks" and "secret" not in shown
    problem(api.get("/ep_missing"), 404, "ep_missing")


@pytest.mark.parametrize(("payload", "status", "part"), [
    ({"url": "ftp://crm.example/hooks"}, 422, "http:// or https://"),
    ({"url": "javascript:alert(1)"}, 422, "http:// or https://"),
    ({}, 422, "url is required"),
    ({"url": "https://crm.example/h", "events": ["subscriber.nope"]}, 422, "subscriber.nope"),
    ({"url": "https://crm.example/h", "events": "subscriber.created"}, 422, ""),
    ({"url": "https://crm.example/h", "events": [1]}, 422, "subscriber.created"),
    ({"url": "https://crm.example/h", "description": "x" * 256}, 422, "255"),
])
def test_create_refuses_bad_input(api, session, payload, status, part):
    problem(api.post("", json=payload), status, part)
    assert session.scalars(select(WebhookEndpoint)).all() == []


def test_create_needs_a_json_object(api):
    problem(api.post("", data="url=https://x", content_type="application/x-www-form-urlencoded"),
            415, "application/json")
    problem(api.post("", data="{", content_type="application/json"), 400, "not valid JSON")
    body = problem(api.post("", json=["https://crm.example/h"]), 422, "an object")
    assert body["errors"] == [{"pointer": "", "detail": "body must be an object, not an array."}]


def test_disable_enable_and_update(api, session):
    endpoint_id = api.post("", json={"url": "https://crm.example/h"}).get_json()["id"]
    off = api.patch(f"/{endpoint_id}", json={"enabled": False})
    assert off.status_code == 200
    assert off.get_json()["enabled"] is False
    assert off.get_json()["disabled_reason"] == "Disabled through the API."
    session.execute(update(WebhookEndpoint).values(failing_since=dt.datetime.now(dt.UTC)))
    on = api.patch(f"/{endpoint_id}", json={"enabled": True}).get_json()
    assert on["enabled"] is True and on["disabled_reason"] is None
    assert on["failing_since"] is None
    changed = api.patch(f"/{endpoint_id}", json={"url": "https://crm.example/v2",
                                                 "events": ["subscriber.erased"]}).get_json()
    assert changed["url"] == "https://crm.example/v2"
    assert changed["events"] == ["subscriber.erased"]
    problem(api.patch(f"/{endpoint_id}", json={"enabled": "yes"}), 422, "true or false")
    problem(api.patch(f"/{endpoint_id}", json={"url": "gopher://x"}), 422, "http://")
    problem(api.patch("/ep_missing", json={"enabled": True}), 404)


def test_rotate_secret(api, session):
    created = api.post("", json={"url": "https://crm.example/h"}).get_json()
    rotated = api.post(f"/{created['id']}/rotate-secret")
    assert rotated.status_code == 200
    body = rotated.get_json()
    assert body["secret"].startswith("whsec_") and body["secret"] != created["secret"]
    expires = dt.datetime.fromisoformat(body["previous_secret_expires_at"])
    assert expires - dt.datetime.now(dt.UTC) == pytest.approx(dt.timedelta(hours=24),
                                                              abs=dt.timedelta(minutes=1))
    endpoint = session.get(WebhookEndpoint, created["id"])
    session.refresh(endpoint)
    assert endpoint.previous_secret == created["secret"]
    now_only = api.post(f"/{created['id']}/rotate-secret", json={"overlap_seconds": 0})
    assert now_only.get_json()["previous_secret_expires_at"] is None
    problem(api.post(f"/{created['id']}/rotate-secret", json={"overlap_seconds": -1}), 422)
    huge = problem(api.post(f"/{created['id']}/rotate-secret",
                            json={"overlap_seconds": 10**30}), 422)
    assert huge["errors"][0]["pointer"] == "/overlap_seconds"


def test_deliveries_and_replay(api, session, catalogue):
    endpoint_id = api.post("", json={"url": "https://crm.example/h"}).get_json()["id"]
    subscriber = catalogue.subscriber()
    listed = api.get(f"/{endpoint_id}/deliveries?status=pending").get_json()["deliveries"]
    assert len(listed) == 1
    (delivery,) = listed
    event = session.get(Event, delivery["event_id"])
    assert event.subscriber_id == subscriber.id
    assert delivery["webhook_id"] == f"msg_{event.id}"
    assert delivery["event_type"] == "subscriber.created"
    assert delivery["status"] == "pending" and delivery["attempts"] == 0
    assert api.get(f"/{endpoint_id}/deliveries?status=dead").get_json()["deliveries"] == []
    problem(api.get(f"/{endpoint_id}/deliveries?status=lost"), 400, "status must be")
    problem(api.get(f"/{endpoint_id}/deliveries?limit=0"), 400, "limit")
    problem(api.get(f"/{endpoint_id}/deliveries?before={2**63}"), 400, "before")

    # Pending: nothing to replay yet.
    problem(api.post(f"/{endpoint_id}/replay", json={"delivery_id": delivery["id"]}), 409,
            "still pending")
    session.execute(update(WebhookDelivery).values(status="dead", attempts=10,
                                                   last_error="HTTP 500"))
    session.commit()
    failing = api.get(f"/{endpoint_id}/deliveries?status=dead").get_json()["deliveries"]
    assert failing[0]["last_error"] == "HTTP 500"
    replayed = api.post(f"/{endpoint_id}/replay", json={"delivery_id": delivery["id"]})
    assert replayed.status_code == 202
    assert replayed.get_json()["replayed"] == 1
    new_id = replayed.get_json()["deliveries"][0]
    rows = api.get(f"/{endpoint_id}/deliveries").get_json()["deliveries"]
    assert [(r["id"], r["status"]) for r in rows] == [(new_id, "pending"),
                                                      (delivery["id"], "dead")]
    assert rows[0]["webhook_id"] == rows[1]["webhook_id"]
    problem(api.post(f"/{endpoint_id}/replay", json={"delivery_id": delivery["id"]}), 409,
            "already queued")
    problem(api.post(f"/{endpoint_id}/replay", json={"delivery_id": 999999}), 404)
    problem(api.post(f"/{endpoint_id}/replay", json={"delivery_id": "1"}), 422)
    problem(api.post(f"/{endpoint_id}/replay", json={"delivery_id": 2**70}), 422, "delivery_id")
    problem(api.post(f"/{endpoint_id}/replay", json={}), 422, "delivery_id")


def test_replay_a_time_range(api, session, catalogue):
    first = catalogue.subscriber()
    # Registered after the first subscriber: the range replay sends that event too.
    endpoint_id = api.post("", json={"url": "https://crm.example/h"}).get_json()["id"]
    catalogue.subscriber()
    session.execute(update(WebhookDelivery).values(status="delivered"))
    session.commit()
    since = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()
    until = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)).isoformat()
    answer = api.post(f"/{endpoint_id}/replay", json={"since": since, "until": until})
    assert answer.status_code == 202
    assert answer.get_json() == {"replayed": 2, "endpoint_enabled": True}
    pending = api.get(f"/{endpoint_id}/deliveries?status=pending").get_json()["deliveries"]
    first_event = session.scalar(select(Event.id).where(Event.subscriber_id == first.id))
    assert sorted(d["event_id"] for d in pending)[0] == first_event
    # Already pending: not queued twice.
    again = api.post(f"/{endpoint_id}/replay", json={"since": since, "until": until})
    assert again.get_json()["replayed"] == 0
    problem(api.post(f"/{endpoint_id}/replay", json={"since": until, "until": since}), 422,
            "until must be after since")
    problem(api.post(f"/{endpoint_id}/replay", json={"since": "yesterday", "until": until}),
            422, "ISO 8601")


def test_delete(api, session, catalogue):
    endpoint_id = api.post("", json={"url": "https://crm.example/h"}).get_json()["id"]
    catalogue.subscriber()
    assert api.delete(f"/{endpoint_id}").status_code == 204
    assert session.get(WebhookEndpoint, endpoint_id) is None
    assert session.scalars(select(WebhookDelivery)).all() == []
    problem(api.delete(f"/{endpoint_id}"), 404)


def test_send_test_event(api):
    with Receiver() as receiver:
        created = api.post("", json={"url": receiver.url}).get_json()
        receiver.secrets = [created["secret"]]
        answer = api.post(f"/{created['id']}/test")
        assert answer.get_json() == {"ok": True, "status_code": 200, "error": None}
        (got,) = receiver.snapshot()
        assert got.verified == {created["secret"]: True}
        assert got.data["type"] == "webhook.test"
        assert got.data["data"] == {"endpoint_id": created["id"]}
        assert got.webhook_id.startswith("msg_test_")
        receiver.mode = "error"
        failed = api.post(f"/{created['id']}/test").get_json()
        assert failed["ok"] is False and failed["status_code"] == 500
