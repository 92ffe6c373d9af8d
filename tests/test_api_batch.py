"""POST /api/v1/subscribers/batch and the unchanged PUT: the PUT's rules, per item, fast."""

from __future__ import annotations

import pytest
from sqlalchemy import event, func, select

from app.api.auth import create_api_key
from app.db import utcnow
from app.events.models import Event
from app.subscribers.models import Subscriber, Suppression
from app.subscribers.services import email_hash
from app.webhooks.models import WebhookDelivery
from app.webhooks.services import create_endpoint


@pytest.fixture
def headers(session, catalogue):
    _key, plain = create_api_key(session, "crm")
    session.commit()
    return {"Authorization": f"Bearer {plain}"}


def batch(client, headers, items):
    return client.post("/api/v1/subscribers/batch", headers=headers, json={"items": items})


def events_of(session, external_id: str) -> list[Event]:
    return list(session.scalars(
        select(Event).join(Subscriber, Subscriber.id == Event.subscriber_id)
        .where(Subscriber.external_id == external_id).order_by(Event.id)))


def test_items_answer_in_order_with_the_put_rules(client, session, catalogue, headers):
    catalogue.subscriber(external_id="taken", email="taken@example.com")
    session.add(Suppression(email_hash=email_hash("gone@example.com"), reason="erased",
                            created_at=utcnow()))
    session.commit()
    answer = batch(client, headers, [
        {"external_id": "b-1", "email": "b1@example.com", "topics": {"offers": {
            "subscribed": True, "frequency": "monthly"}}},
        {"external_id": "b-2", "email": "taken@example.com"},
        {"external_id": "b-3", "email": "not-an-address"},
        {"external_id": "b-4", "email": "b4@example.com", "topics": {"gossip": {
            "subscribed": True}}},
        {"external_id": "b-1", "email": "b1@example.com", "locale": "ru"},
        {"external_id": "b-5", "email": "gone@example.com", "unsubscribed_all": False},
        {"external_id": "b-1", "email": "b1@example.com", "locale": "ru"},
        {"external_id": "b-6"},
    ])
    assert answer.status_code == 200, answer.get_json()
    items = answer.get_json()["items"]
    assert [(i["external_id"], i["status"]) for i in items] == [
        ("b-1", 201), ("b-2", 409), ("b-3", 422), ("b-4", 422), ("b-1", 200), ("b-5", 409),
        ("b-1", 200), ("b-6", 422)]
    assert "taken" in items[1]["detail"]
    assert items[2]["errors"][0]["pointer"] == "/email"
    assert items[3]["errors"][0]["pointer"] == "/topics/gossip"
    assert items[7]["errors"][0]["pointer"] == "/email"
    # Refused items changed nothing; accepted ones are as a PUT would leave them.
    assert session.scalar(select(Subscriber).where(Subscriber.external_id == "b-2")) is None
    assert session.scalar(select(Subscriber).where(Subscriber.external_id == "b-4")) is None
    got = client.get("/api/v1/subscribers/b-1", headers=headers).get_json()
    assert got["locale"] == "ru"
    assert got["topics"]["offers"]["subscribed"] is True
    assert got["topics"]["offers"]["frequency"] == "monthly"
    # One event per actual change, all from the import: created, topic, frequency, locale.
    actions = [(e.action, e.source) for e in events_of(session, "b-1")]
    assert [a for a, _ in actions].count("locale") == 1
    assert {source for _, source in actions} == {"import"}


def test_an_unchanged_batch_writes_nothing(client, session, catalogue, headers):
    items = [{"external_id": f"u-{n}", "email": f"u{n}@example.com",
              "topics": {"offers": {"subscribed": True}}} for n in range(30)]
    assert {i["status"] for i in batch(client, headers, items).get_json()["items"]} == {201}
    before = session.scalar(select(func.count(Event.id)))
    again = batch(client, headers, items).get_json()["items"]
    assert {i["status"] for i in again} == {200}
    assert session.scalar(select(func.count(Event.id))) == before


def test_import_events_skip_endpoints_that_refuse_imports(client, session, catalogue, headers):
    crm, _ = create_endpoint(session, "https://crm.example/h",
                             sources=["preference_page", "unsubscribe_page", "one_click"])
    audit, _ = create_endpoint(session, "https://audit.example/h")
    session.commit()
    batch(client, headers, [{"external_id": "e-1", "email": "e1@example.com"}])
    [created] = events_of(session, "e-1")
    assert created.source == "import"
    targets = set(session.scalars(select(WebhookDelivery.endpoint_id)
                                  .where(WebhookDelivery.event_id == created.id)))
    assert targets == {audit.id}
    assert crm.id not in targets


@pytest.mark.parametrize(("body", "pointer"), [
    ({"items": []}, "/items"),
    ({"items": [{"email": "x@example.com"}]}, "/items/0/external_id"),
    ({"items": [{"external_id": "x", "email": 5}]}, "/items/0/email"),
    ({"items": [{"external_id": "x", "nickname": "x"}]}, "/items/0/nickname"),
    ({"items": [{"external_id": "x", "locale": "xx"}]}, "/items/0/locale"),
    ({"items": [{"external_id": "x"}] * 10_001}, "/items"),
    ({"item": []}, "/item"),
])
def test_a_body_that_breaks_the_schema_is_refused_whole(client, session, headers, body,
                                                        pointer):
    answer = client.post("/api/v1/subscribers/batch", headers=headers, json=body)
    assert answer.status_code == 422, answer.get_json()
    assert answer.mimetype == "application/problem+json"
    assert pointer in [e["pointer"] for e in answer.get_json()["errors"]]
    assert session.scalar(select(func.count(Subscriber.id))) == 0


def test_a_full_batch_of_ten_thousand_is_accepted(client, session, catalogue, headers):
    catalogue.subscriber(external_id="full", email="full@example.com")
    answer = batch(client, headers, [{"external_id": "full"}] * 10_000)
    assert answer.status_code == 200
    assert len(answer.get_json()["items"]) == 10_000


def test_batch_needs_a_key_and_json(client, headers):
    assert batch(client, {}, [{"external_id": "x"}]).status_code == 401
    answer = client.post("/api/v1/subscribers/batch", headers=headers, data="items=1",
                         content_type="application/x-www-form-urlencoded")
    assert answer.status_code == 415


def test_the_batch_path_is_not_a_subscriber(client, headers):
    """OpenAPI matches the fixed path first: no PUT, GET or DELETE of a subscriber 'batch'."""
    for method in ("put", "get", "delete"):
        answer = getattr(client, method)("/api/v1/subscribers/batch", headers=headers,
                                         json={"email": "b@example.com"})
        assert answer.status_code == 405
        assert set(answer.headers["Allow"].split(", ")) == {"OPTIONS", "POST"}
    assert client.get("/api/v1/subscribers/batch/1", headers=headers).status_code == 404


def test_an_unchanged_put_is_one_read(app, client, session, catalogue, headers):
    body = {"email": "same@example.com", "locale": "ru", "role": "shopper",
            "unsubscribed_all": False,
            "topics": {"offers": {"subscribed": True, "frequency": "monthly"}}}
    assert client.put("/api/v1/subscribers/same", headers=headers, json=body
                      ).status_code == 201
    statements = []
    engine = app.extensions["prefcenter.db"].engine

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        again = client.put("/api/v1/subscribers/same", headers=headers, json=body)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert again.status_code == 200
    assert again.get_json()["topics"]["offers"]["frequency"] == "monthly"
    reads = [s for s in statements if "subscribers" in s]
    writes = [s for s in statements if s.lstrip().upper().startswith(("INSERT", "UPDATE",
                                                                      "DELETE"))]
    assert len(reads) == 1, statements
    assert writes == [], writes
    changed = client.put("/api/v1/subscribers/same", headers=headers,
                         json={**body, "locale": "ar"})
    assert changed.status_code == 200 and changed.get_json()["locale"] == "ar"
