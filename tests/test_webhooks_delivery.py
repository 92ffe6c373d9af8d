"""Webhook delivery end to end: real commits, a real receiver verifying every request
with the ``standardwebhooks`` package, the worker driven one pass at a time."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import threading
import time

import pytest
from sqlalchemy import select, update

from app.db import get_db, utcnow, write_session
from app.events.models import Event
from app.subscribers.services import Context, change, unsubscribe
from app.webhooks.models import WebhookDelivery, WebhookEndpoint
from app.webhooks.services import (
    WebhookSettings,
    create_endpoint,
    enable_endpoint,
    replay_delivery,
    rotate_secret,
)
from app.webhooks.worker import Worker
from tests.webhook_receiver import Receiver

API = Context(source="api")


@pytest.fixture
def app_config():
    return {
        "WEBHOOK_RETRY_SCHEDULE": [0, 0, 0, 0, 0, 0],
        "WEBHOOK_TIMEOUT": 0.4,
        "WEBHOOK_POLL_INTERVAL": 0.05,
        "WEBHOOK_LEASE": 30,
        "WEBHOOK_CONCURRENCY": 4,
    }


@pytest.fixture
def receiver():
    with Receiver() as r:
        r.hang_seconds = 1.5
        yield r


def settings_of(app, **changes) -> WebhookSettings:
    return dataclasses.replace(WebhookSettings.from_config(app.config), **changes)


def make_worker(app, **changes) -> Worker:
    return Worker(get_db(app), settings_of(app, **changes))


def add_endpoint(app, url: str, events=None) -> tuple[str, str]:
    session = write_session(get_db(app))
    try:
        with app.app_context():  # the app's settings allow the receiver on 127.0.0.1
            endpoint, secret = create_endpoint(session, url, events=events)
        session.commit()
        return endpoint.id, secret
    finally:
        session.close()


def fresh(session) -> None:
    """See what the worker committed: end the read transaction, forget loaded state."""
    session.rollback()
    session.expire_all()


def deliveries(session, endpoint_id: str) -> list[WebhookDelivery]:
    fresh(session)
    return list(session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
        .order_by(WebhookDelivery.id)))


def events_of(session, subscriber) -> list[int]:
    return list(session.scalars(
        select(Event.id).where(Event.subscriber_id == subscriber.id).order_by(Event.id)))


def test_outage_of_every_kind_then_recovery(live_app, live_session, live_catalogue, receiver):
    endpoint_id, secret = add_endpoint(live_app, receiver.url)
    receiver.secrets = [secret]
    subscribers = [live_catalogue.subscriber() for _ in range(3)]
    for subscriber in subscribers:
        for locale in ("ru", "ms"):
            change(live_session, subscriber, context=API, locale=locale)
            live_session.commit()
    expected = {s.id: events_of(live_session, s) for s in subscribers}
    assert all(len(ids) == 3 for ids in expected.values())
    firsts = {f"msg_{ids[0]}" for ids in expected.values()}
    worker = make_worker(live_app)

    def rows():
        return {d.event_id: d for d in deliveries(live_session, endpoint_id)}

    receiver.mode = "error"
    stats = worker.run_once()
    # Order per subscriber: only each subscriber's first event is even attempted.
    assert {r.webhook_id for r in receiver.snapshot()} == firsts
    assert stats.failed == 3 and stats.delivered == 0
    first_rows = [rows()[ids[0]] for ids in expected.values()]
    assert {(d.last_status_code, d.last_error) for d in first_rows} == {
        (500, "HTTP 500")}  # the status and a generic reason, never the receiver's body

    receiver.mode = "hang"
    started = time.monotonic()
    worker.run_once()
    assert time.monotonic() - started < 1.4  # gave up at the 0.4 s timeout, not the hang
    assert all("timeout" in rows()[ids[0]].last_error for ids in expected.values())

    receiver.stop()  # nothing listens: connections are refused
    worker.run_once()
    assert all(rows()[ids[0]].last_error.startswith("connection failed")
               for ids in expected.values())
    assert all(rows()[ids[0]].last_status_code is None for ids in expected.values())
    receiver.start()

    receiver.mode = "redirect"
    worker.run_once()
    assert all(rows()[ids[0]].last_status_code == 302 for ids in expected.values())
    assert all("not followed" in rows()[ids[0]].last_error for ids in expected.values())
    assert all(d.status == "pending" and d.attempts == 4
               for d in (rows()[ids[0]] for ids in expected.values()))
    before_recovery = len(receiver.snapshot())

    receiver.mode = "ok"
    stats = worker.run_once()
    assert stats.delivered == 9 and stats.failed == 0

    received = receiver.snapshot()
    assert all(all(v is True for v in r.verified.values()) and r.verified for r in received)
    accepted = receiver.accepted()
    all_ids = [f"msg_{i}" for ids in expected.values() for i in ids]
    # Every event arrived, and exactly once once acknowledged.
    assert sorted(r.webhook_id for r in accepted) == sorted(all_ids)
    # Per-subscriber order of the acknowledged deliveries.
    for ids in expected.values():
        seen = [r.webhook_id for r in accepted if r.webhook_id in {f"msg_{i}" for i in ids}]
        assert seen == [f"msg_{i}" for i in ids]
    # The same webhook-id and the same body on every retry of an event.
    for webhook_id in firsts:
        tries = [r for r in received if r.webhook_id == webhook_id]
        assert len(tries) == 4  # 500, hang, 302, 200 (the refused one never arrived)
        assert len({r.body for r in tries}) == 1
    assert before_recovery == 9  # 3 first events x 3 rounds that reached the receiver
    assert all(d.status == "delivered" and d.claimed_by is None for d in rows().values())
    assert {d.attempts for d in rows().values()} == {5, 1}

    # Nothing is sent again once acknowledged.
    assert worker.run_once().attempted == 0
    assert len(receiver.snapshot()) == len(received)
    worker.close()


def test_body_headers_and_payload(live_app, live_session, live_catalogue, receiver):
    _, secret = add_endpoint(live_app, receiver.url)
    receiver.secrets = [secret]
    subscriber = live_catalogue.subscriber(external_id="crm-42", email="ada@example.com")
    unsubscribe(live_session, subscriber, None, context=Context(source="one_click"))
    live_session.commit()
    with make_worker(live_app) as worker:
        worker.run_once()
    created, unsubscribed = receiver.accepted()
    assert created.headers["content-type"] == "application/json"
    assert created.headers["user-agent"].startswith("Prefcenter-Webhooks/")
    assert int(created.headers["webhook-timestamp"]) == pytest.approx(time.time(), abs=60)
    assert created.headers["webhook-signature"].startswith("v1,")
    body = unsubscribed.data
    assert body["type"] == "subscriber.unsubscribed"
    assert body["timestamp"].endswith("Z")
    assert body["data"]["source"] == "one_click"
    assert body["data"]["changes"] == [
        {"action": "unsubscribed_all", "topic": None, "before": False, "after": True}]
    snapshot = body["data"]["subscriber"]
    assert snapshot["external_id"] == "crm-42" and snapshot["unsubscribed_all"] is True
    assert snapshot["version"] == 2
    event = live_session.get(Event, int(unsubscribed.webhook_id.removeprefix("msg_")))
    assert body["data"] == event.payload


def test_dead_delivery_stops_blocking_and_replays(live_app, live_session, live_catalogue,
                                                  receiver):
    endpoint_id, secret = add_endpoint(live_app, receiver.url)
    receiver.secrets = [secret]
    subscriber = live_catalogue.subscriber()
    change(live_session, subscriber, context=API, locale="ru")
    live_session.commit()
    first, second = events_of(live_session, subscriber)
    worker = make_worker(live_app, retry_schedule=(0,))

    receiver.mode = "error"
    worker.run_once()
    assert [r.webhook_id for r in receiver.snapshot()] == [f"msg_{first}"]
    stats = worker.run_once()  # second and last attempt: dead; the next event goes at once
    assert stats.dead == 1
    assert [r.webhook_id for r in receiver.snapshot()] == [f"msg_{first}"] * 2 + [
        f"msg_{second}"]
    dead = deliveries(live_session, endpoint_id)[0]
    assert dead.status == "dead" and dead.attempts == 2 and dead.event_id == first

    receiver.mode = "ok"
    worker.run_once()
    assert [r.webhook_id for r in receiver.accepted()] == [f"msg_{second}"]

    live_session.rollback()  # SQLite: a write may not start from a stale read snapshot
    replay_delivery(live_session, dead)
    live_session.commit()
    worker.run_once()
    assert [r.webhook_id for r in receiver.accepted()] == [f"msg_{second}", f"msg_{first}"]
    rows = deliveries(live_session, endpoint_id)
    assert [(d.event_id, d.status) for d in rows] == [
        (first, "dead"), (second, "delivered"), (first, "delivered")]
    assert len({r.body for r in receiver.snapshot() if r.webhook_id == f"msg_{first}"}) == 1
    worker.close()


def test_secret_rotation_overlap(live_app, live_session, live_catalogue, receiver):
    endpoint_id, old = add_endpoint(live_app, receiver.url)
    endpoint = live_session.get(WebhookEndpoint, endpoint_id)
    with live_app.app_context():  # the overlap comes from the app's configuration
        new = rotate_secret(live_session, endpoint)
    live_session.commit()
    assert new != old
    assert endpoint.previous_secret_expires_at - utcnow() == pytest.approx(
        dt.timedelta(hours=24), abs=dt.timedelta(minutes=1))
    receiver.secrets = [old, new]
    worker = make_worker(live_app)
    live_catalogue.subscriber()
    worker.run_once()
    (during,) = receiver.snapshot()
    assert during.verified == {old: True, new: True}
    assert len(during.headers["webhook-signature"].split(" ")) == 2

    # The overlap ends: only the new secret signs.
    live_session.rollback()
    live_session.execute(update(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id)
                         .values(previous_secret_expires_at=utcnow() - dt.timedelta(seconds=1)))
    live_session.commit()
    live_catalogue.subscriber()
    worker.run_once()
    after = receiver.snapshot()[1]
    assert after.verified[new] is True
    assert after.verified[old] == "No matching signature found"
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    worker.close()


def test_endpoint_event_filter(live_app, live_session, live_catalogue):
    with Receiver() as only_unsub, Receiver() as everything:
        _, secret_a = add_endpoint(live_app, only_unsub.url, events=["subscriber.unsubscribed"])
        _, secret_b = add_endpoint(live_app, everything.url)
        only_unsub.secrets, everything.secrets = [secret_a], [secret_b]
        subscriber = live_catalogue.subscriber()
        change(live_session, subscriber, context=API, locale="ru")
        live_session.commit()
        unsubscribe(live_session, subscriber, None, context=API)
        live_session.commit()
        with make_worker(live_app) as worker:
            worker.run_once()
        assert [r.data["type"] for r in only_unsub.accepted()] == ["subscriber.unsubscribed"]
        assert [r.data["type"] for r in everything.accepted()] == [
            "subscriber.created", "subscriber.updated", "subscriber.unsubscribed"]
        assert all(all(v is True for v in r.verified.values())
                   for r in only_unsub.snapshot() + everything.snapshot())


def test_disabled_after_failing_too_long_and_reenabled(live_app, live_session, live_catalogue,
                                                       receiver):
    endpoint_id, secret = add_endpoint(live_app, receiver.url)
    receiver.secrets = [secret]
    receiver.mode = "error"
    subscriber = live_catalogue.subscriber()
    worker = make_worker(live_app)
    worker.run_once()
    endpoint = live_session.get(WebhookEndpoint, endpoint_id)
    fresh(live_session)
    assert endpoint.enabled and endpoint.failing_since is not None

    # Five days of failures later (the default PREFCENTER_WEBHOOK_DISABLE_AFTER)...
    live_session.rollback()
    live_session.execute(update(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id)
                         .values(failing_since=utcnow() - dt.timedelta(days=5, minutes=1)))
    live_session.commit()
    stats = worker.run_once()
    assert stats.disabled == {endpoint_id}
    fresh(live_session)
    assert not endpoint.enabled
    assert "Disabled automatically" in endpoint.disabled_reason
    assert "HTTP 500" in endpoint.disabled_reason

    # Disabled: nothing is claimed, and new events do not queue for it.
    attempts = len(receiver.snapshot())
    assert worker.run_once().attempted == 0
    live_session.rollback()
    change(live_session, subscriber, context=API, locale="ru")
    live_session.commit()
    assert len(deliveries(live_session, endpoint_id)) == 1
    assert len(receiver.snapshot()) == attempts

    live_session.rollback()
    enable_endpoint(live_session, endpoint)
    live_session.commit()
    assert endpoint.failing_since is None and endpoint.disabled_reason is None
    receiver.mode = "ok"
    worker.run_once()
    assert [d.status for d in deliveries(live_session, endpoint_id)] == ["delivered"]
    assert len(receiver.accepted()) == 1
    worker.close()


def test_success_resets_the_failure_streak(live_app, live_session, live_catalogue, receiver):
    endpoint_id, secret = add_endpoint(live_app, receiver.url)
    receiver.secrets = [secret]
    receiver.mode = "error"
    live_catalogue.subscriber()
    with make_worker(live_app) as worker:
        worker.run_once()
        endpoint = live_session.get(WebhookEndpoint, endpoint_id)
        assert endpoint.failing_since is not None
        receiver.mode = "ok"
        worker.run_once()
    fresh(live_session)
    assert endpoint.failing_since is None and endpoint.enabled


def test_two_workers_never_claim_the_same_delivery(live_app, live_session, live_catalogue,
                                                   receiver):
    endpoint_id, secret = add_endpoint(live_app, receiver.url)
    receiver.secrets = [secret]
    receiver.mode = "slow"
    receiver.delay = 0.002
    subscribers = [live_catalogue.subscriber() for _ in range(40)]
    for subscriber in subscribers[:20]:
        change(live_session, subscriber, context=API, locale="ru")
        live_session.commit()
    total = len(deliveries(live_session, endpoint_id))
    assert total == 60
    # timeout 5 s under a 30 s lease: each claims at most 15 at a time, so both get work
    workers = [make_worker(live_app, concurrency=3, timeout=5) for _ in range(2)]
    workers[0].worker_id, workers[1].worker_id = "worker-a", "worker-b"
    barrier = threading.Barrier(2)
    stats = [None, None]

    def run(index):
        barrier.wait()
        stats[index] = workers[index].run_once()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    ids = [r.webhook_id for r in receiver.snapshot()]
    assert len(ids) == total
    assert len(set(ids)) == total  # no delivery claimed (and sent) twice
    assert stats[0].delivered + stats[1].delivered == total
    assert stats[0].delivered > 0 and stats[1].delivered > 0
    assert all(d.status == "delivered" for d in deliveries(live_session, endpoint_id))
    for worker in workers:
        worker.close()


def test_expired_lease_is_claimed_again(live_app, live_session, live_catalogue, receiver):
    endpoint_id, secret = add_endpoint(live_app, receiver.url)
    receiver.secrets = [secret]
    live_catalogue.subscriber()
    crashed = make_worker(live_app, lease=30)
    crashed.worker_id = "crashed"
    (job,) = crashed.claim(10)  # ... and never sends nor records: it "died"
    other = make_worker(live_app)
    assert other.run_once().attempted == 0  # the lease still holds
    (held,) = deliveries(live_session, endpoint_id)
    assert held.claimed_by == "crashed" and held.status == "pending"
    # Thirty seconds later (the clock is moved, not waited for; the CLI test waits).
    live_session.execute(update(WebhookDelivery).values(
        claimed_until=held.claimed_until - dt.timedelta(seconds=30)))
    live_session.commit()
    assert other.run_once().delivered == 1
    assert [r.webhook_id for r in receiver.accepted()] == [f"msg_{job.event_id}"]
    (row,) = deliveries(live_session, endpoint_id)
    assert row.status == "delivered" and row.claimed_by is None
    crashed.close()
    other.close()


def test_stop_finishes_in_flight_and_releases_claims(live_app, live_session, live_catalogue,
                                                     receiver):
    endpoint_id, secret = add_endpoint(live_app, receiver.url)
    receiver.secrets = [secret]
    receiver.mode = "slow"
    receiver.delay = 0.3
    for _ in range(12):
        live_catalogue.subscriber()
    worker = make_worker(live_app, concurrency=2, timeout=5)
    stop = threading.Event()
    thread = threading.Thread(target=lambda: worker.run(stop))
    thread.start()
    deadline = time.monotonic() + 10
    while not receiver.snapshot() and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive()
    rows = deliveries(live_session, endpoint_id)
    sent = {r.webhook_id for r in receiver.snapshot()}
    assert 1 <= len(sent) < 12
    # What was under way finished and was recorded; the rest was handed back.
    assert {f"msg_{d.event_id}" for d in rows if d.status == "delivered"} == sent
    assert all(d.claimed_by is None and d.claimed_until is None for d in rows)
    assert all(d.attempts == 0 for d in rows if d.status == "pending")
    worker.close()


def test_secret_format(live_app, receiver):
    _, secret = add_endpoint(live_app, receiver.url)
    assert secret.startswith("whsec_")
    assert 24 <= len(base64.b64decode(secret.removeprefix("whsec_"))) <= 32


def test_the_worker_records_and_delivers_the_end_of_a_pause(live_app, live_session,
                                                            live_catalogue, receiver):
    """A pause whose date has passed ends by itself: the worker's sweep records a
    ``resumed`` event (source system) and delivers its webhook."""
    _endpoint_id, secret = add_endpoint(live_app, receiver.url)
    receiver.secrets = [secret]
    subscriber = live_catalogue.subscriber()
    change(live_session, subscriber, context=API,
           paused_until=utcnow().replace(microsecond=0) + dt.timedelta(seconds=1))
    live_session.commit()
    waiting = live_session.get(type(subscriber), subscriber.id)
    live_session.execute(update(type(subscriber)).where(type(subscriber).id == waiting.id)
                         .values(paused_until=utcnow() - dt.timedelta(seconds=1)))
    live_session.commit()
    with make_worker(live_app) as worker:
        worker.run_once()
    fresh(live_session)
    assert live_session.get(type(subscriber), subscriber.id).paused_until is None
    bodies = [r.data for r in receiver.snapshot()]
    changes = [b["data"]["changes"][0]["action"] for b in bodies]
    assert changes[-1] == "resumed"
    assert bodies[-1]["data"]["source"] == "system"
    assert bodies[-1]["data"]["subscriber"]["paused_until"] is None
    with make_worker(live_app) as worker:  # nothing more to end: no new event
        worker.run_once()
    assert len(receiver.snapshot()) == len(bodies)
