"""POST /api/v1/topics/<slug>/sends: due recipients, recorded as sent, idempotent per campaign."""

from __future__ import annotations

import datetime as dt
import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import func, select

from app.api.auth import create_api_key
from app.clock import get_clock
from app.sends.models import LastSend
from app.sends.services import due_send_lines
from app.subscribers.services import Context, TopicChoice, change
from app.topics.models import Topic
from tests.conftest import serve


@pytest.fixture
def headers(session):
    _key, plain = create_api_key(session, "esp")
    session.commit()
    return {"Authorization": f"Bearer {plain}"}


def subscribe(session, catalogue, external_id, frequency, *, topic="alerts", **extra):
    subscriber = catalogue.subscriber(external_id=external_id)
    change(session, subscriber, context=Context(source="system"), **extra,
           topics={topic: TopicChoice(subscribed=True, frequency=frequency)})
    session.commit()
    return subscriber


def send(client, headers, campaign, *, topic="alerts", channel=None) -> list[str]:
    body = {"campaign": campaign} if channel is None else {"campaign": campaign,
                                                           "channel": channel}
    response = client.post(f"/api/v1/topics/{topic}/sends", json=body, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "application/x-ndjson"
    assert response.headers["Cache-Control"] == "no-store"
    return [json.loads(line)["external_id"]
            for line in response.get_data(as_text=True).splitlines()]


def test_cadence_is_honoured_and_retries_return_the_same_recipients(
        client, app, session, catalogue, headers):
    subscribe(session, catalogue, "daily", "daily")
    subscribe(session, catalogue, "weekly", "weekly")
    catalogue.subscriber(external_id="not-subscribed")  # shopper: alerts off by default
    clock = get_clock(app)

    assert send(client, headers, "monday") == ["daily", "weekly"]
    # The same campaign again (a retry): the same recipients, recorded once.
    assert send(client, headers, "monday") == ["daily", "weekly"]
    assert session.scalar(select(func.count()).select_from(LastSend)) == 2
    # Another campaign the same day: nobody is due.
    assert send(client, headers, "monday-evening") == []

    clock.advance(dt.timedelta(days=1))
    assert send(client, headers, "tuesday") == ["daily"]
    # The retry of Monday's campaign still returns Monday's weekly recipient, who was not
    # sent anything since; the daily one was sent Tuesday's campaign since.
    assert send(client, headers, "monday") == ["weekly"]

    clock.advance(dt.timedelta(days=6))
    assert send(client, headers, "next-monday") == ["daily", "weekly"]


def test_a_send_a_little_early_in_the_hour_still_finds_last_weeks_recipients(
        client, app, session, catalogue, headers):
    subscribe(session, catalogue, "weekly", "weekly")
    clock = get_clock(app)
    assert send(client, headers, "w1") == ["weekly"]
    clock.advance(dt.timedelta(days=7) - dt.timedelta(minutes=5))
    assert send(client, headers, "w2") == ["weekly"]  # within the grace
    clock.advance(dt.timedelta(days=7) - dt.timedelta(hours=2))
    assert send(client, headers, "w3") == []  # two hours early is too early


def test_monthly_is_a_calendar_month(client, app, session, catalogue, headers):
    subscribe(session, catalogue, "monthly", "monthly", topic="events")
    clock = get_clock(app)
    assert send(client, headers, "m1", topic="events") == ["monthly"]
    clock.advance(dt.timedelta(days=20))
    assert send(client, headers, "m2", topic="events") == []
    clock.advance(dt.timedelta(days=11))
    assert send(client, headers, "m3", topic="events") == ["monthly"]


def test_channels_have_their_own_cadence(client, app, session, catalogue, headers):
    subscriber = subscribe(session, catalogue, "both", "daily", phone="+60123456789")
    change(session, subscriber, context=Context(source="system"),
           topics={"alerts": TopicChoice(channels=("email", "sms"))})
    session.commit()
    assert send(client, headers, "a", channel="email") == ["both"]
    response = client.post("/api/v1/topics/alerts/sends",
                           json={"campaign": "a", "channel": "sms"}, headers=headers)
    assert [json.loads(line) for line in response.get_data(as_text=True).splitlines()] == [
        {"external_id": "both", "phone": "+60123456789", "locale": "en",
         "frequency": "daily"}]
    assert send(client, headers, "b", channel="sms") == []


def test_unsubscribed_suppressed_and_paused_are_never_due(client, app, session, catalogue,
                                                          headers):
    subscribe(session, catalogue, "on", "daily")
    off = subscribe(session, catalogue, "off", "daily")
    change(session, off, context=Context(source="system"), unsubscribed_all=True)
    subscribe(session, catalogue, "paused", "daily",
              paused_until=get_clock(app).now() + dt.timedelta(days=1))
    assert send(client, headers, "x") == ["on"]
    get_clock(app).advance(dt.timedelta(days=1, hours=1))
    assert send(client, headers, "y") == ["on", "paused"]


def test_batches_stream_and_each_is_recorded(app, session, catalogue):
    for i in range(7):
        subscribe(session, catalogue, f"b{i}", "daily")
    topic = session.scalar(select(Topic).where(Topic.slug == "alerts"))
    now = get_clock(app).now()
    with app.app_context():
        chunks = due_send_lines(session, topic.id, "email", "batched", now=now, batch=3)
        first = next(chunks)
        # The first batch is recorded (committed) before it is handed out.
        assert len(first.splitlines()) == 3
        assert session.scalar(select(func.count()).select_from(LastSend)) == 3
        rest = list(chunks)
    assert [len(c.splitlines()) for c in rest] == [3, 1]
    assert session.scalar(select(func.count()).select_from(LastSend)) == 7


@pytest.mark.parametrize(("body", "status", "pointer"), [
    ({}, 422, "/campaign"),
    ({"campaign": ""}, 422, "/campaign"),
    ({"campaign": 5}, 422, "/campaign"),
    ({"campaign": "x" * 256}, 422, "/campaign"),
    ({"campaign": "c", "channel": "fax"}, 422, "/channel"),
    ({"campaign": "c", "extra": 1}, 422, "/extra"),
])
def test_bad_send_requests_are_problems(client, session, catalogue, headers, body, status,
                                        pointer):
    subscribe(session, catalogue, "on", "daily")
    response = client.post("/api/v1/topics/alerts/sends", json=body, headers=headers)
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["errors"][0]["pointer"] == pointer
    assert session.scalar(select(func.count()).select_from(LastSend)) == 0


@pytest.mark.parametrize(("path", "body", "status"), [
    ("/api/v1/topics/nope/sends", {"campaign": "c"}, 404),
    ("/api/v1/topics/receipts/sends", {"campaign": "c"}, 404),
    ("/api/v1/topics/offers/sends", {"campaign": "c", "channel": "sms"}, 404),
])
def test_sends_to_unknown_transactional_or_unoffered_topics_are_refused(
        client, catalogue, headers, path, body, status):
    response = client.post(path, json=body, headers=headers)
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"


def test_sends_need_a_key_and_json(client, catalogue, headers):
    assert client.post("/api/v1/topics/alerts/sends", json={"campaign": "c"}).status_code == 401
    response = client.post("/api/v1/topics/alerts/sends", data="campaign=c", headers=headers)
    assert response.status_code == 415


def test_concurrent_campaigns_never_share_a_recipient(live_app, live_session, live_catalogue):
    for i in range(40):
        subscribe(live_session, live_catalogue, f"r{i:02d}", "daily")
    _key, plain = create_api_key(live_session, "esp")
    live_session.commit()
    headers = {"Authorization": f"Bearer {plain}"}
    with serve(live_app) as base:
        def run(campaign):
            with httpx.Client(base_url=base, timeout=30) as http:
                response = http.post("/api/v1/topics/alerts/sends", headers=headers,
                                     json={"campaign": campaign})
                assert response.status_code == 200, response.text
                return [json.loads(line)["external_id"] for line in response.text.splitlines()]

        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(run, ["one", "two", "one", "two"]))
    one, two = set(results[0]), set(results[1])
    assert set(results[2]) == one and set(results[3]) == two  # retries: the same
    assert one.isdisjoint(two)
    assert one | two == {f"r{i:02d}" for i in range(40)}
