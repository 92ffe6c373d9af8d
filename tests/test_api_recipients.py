"""GET /api/v1/topics/<slug>/recipients: who may be mailed now, streamed as NDJSON."""

from __future__ import annotations

import json

import httpx
import pytest

from app.api import services
from app.api.auth import create_api_key
from app.db import utcnow
from app.subscribers.services import Context, TopicChoice, change, erase, marketing_topics
from tests.conftest import serve


@pytest.fixture
def headers(session):
    _key, plain = create_api_key(session, "exporter")
    session.commit()
    return {"Authorization": f"Bearer {plain}"}


def subscribe(session, subscriber, **choices):
    change(session, subscriber, context=Context(source="system"), topics={
        slug: TopicChoice(subscribed=on, frequency=freq) for slug, (on, freq) in choices.items()
    })
    session.commit()


def lines(response) -> list[dict]:
    text = response.get_data(as_text=True)
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_recipients_filter_who_may_be_mailed(client, session, catalogue, headers):
    weekly = catalogue.subscriber(external_id="r-weekly", locale="ar")
    subscribe(session, weekly, alerts=(True, "weekly"))
    daily = catalogue.subscriber(external_id="r-daily")
    subscribe(session, daily, alerts=(True, "daily"))
    stopped = catalogue.subscriber(external_id="r-stopped")
    subscribe(session, stopped, alerts=(False, None))
    everything_off = catalogue.subscriber(external_id="r-all-off")
    subscribe(session, everything_off, alerts=(True, "daily"))
    change(session, everything_off, context=Context(source="system"), unsubscribed_all=True)
    session.commit()
    gone = catalogue.subscriber(external_id="r-erased")
    subscribe(session, gone, alerts=(True, "daily"))
    erase(session, gone, context=Context(source="system"))
    session.commit()
    catalogue.subscriber(external_id="r-never")  # shopper default: alerts off

    response = client.get("/api/v1/topics/alerts/recipients", headers=headers)
    assert response.status_code == 200
    assert response.mimetype == "application/x-ndjson"
    rows = lines(response)
    assert [r["external_id"] for r in rows] == ["r-weekly", "r-daily"]
    assert rows[0] == {"external_id": "r-weekly", "email": weekly.email, "locale": "ar",
                       "frequency": "weekly"}

    weekly_only = lines(client.get("/api/v1/topics/alerts/recipients?frequency=weekly",
                                   headers=headers))
    assert [r["external_id"] for r in weekly_only] == ["r-weekly"]
    assert lines(client.get("/api/v1/topics/alerts/recipients?frequency=monthly",
                            headers=headers)) == []


def test_recipients_skip_suppressed_addresses(client, session, catalogue, headers):
    from app.subscribers.models import Suppression
    from app.subscribers.services import email_hash

    person = catalogue.subscriber(external_id="r-suppressed")
    subscribe(session, person, offers=(True, "weekly"))
    keep = catalogue.subscriber(external_id="r-keep")
    session.add(Suppression(email_hash=email_hash(person.email), reason="erased"))
    session.commit()
    rows = lines(client.get("/api/v1/topics/offers/recipients", headers=headers))
    assert [r["external_id"] for r in rows] == [keep.external_id]


def test_recipients_problems(client, catalogue, headers):
    response = client.get("/api/v1/topics/gossip/recipients", headers=headers)
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    bad = client.get("/api/v1/topics/offers/recipients?frequency=hourly", headers=headers)
    assert bad.status_code == 400 and "hourly" in bad.get_json()["detail"]
    transactional = client.get("/api/v1/topics/receipts/recipients", headers=headers)
    assert transactional.status_code == 404
    assert "transactional" in transactional.get_json()["detail"]
    assert client.get("/api/v1/topics/offers/recipients").status_code == 401


def test_recipients_page_through_batches(session, catalogue):
    """Keyset batches: every row once, in id order, whatever the batch size."""
    people = [catalogue.subscriber(external_id=f"batch-{n:02d}") for n in range(7)]
    topic = marketing_topics(session)["offers"]
    chunks = list(services.recipient_lines(session, topic.id, None, now=utcnow(), batch=3))
    assert len(chunks) == 3
    rows = [json.loads(line) for chunk in chunks for line in chunk.splitlines()]
    assert [r["external_id"] for r in rows] == [p.external_id for p in people]


def test_recipients_stream_over_real_http(live_app, live_session, live_catalogue):
    _key, plain = create_api_key(live_session, "live")
    live_session.commit()
    for n in range(12):
        live_catalogue.subscriber(external_id=f"live-{n:02d}")
    with serve(live_app) as base, httpx.Client(base_url=base) as http, http.stream(
        "GET", "/api/v1/topics/offers/recipients",
        headers={"Authorization": f"Bearer {plain}"},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/x-ndjson")
        assert "content-length" not in response.headers
        received = [json.loads(line) for line in response.iter_lines() if line]
    assert [r["external_id"] for r in received] == [f"live-{n:02d}" for n in range(12)]
