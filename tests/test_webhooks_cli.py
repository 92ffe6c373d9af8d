"""``prefcenter webhooks``: add, list, work --once in process; ``work`` as a real
subprocess killed with SIGKILL mid-batch, and stopped with SIGTERM."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import os
import re
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import select

from app.config import ROOT
from app.db import get_db, utcnow
from app.webhooks.models import WebhookDelivery, WebhookEndpoint
from app.webhooks.services import WebhookSettings
from app.webhooks.worker import Worker
from tests.conftest import TEST_SECRET
from tests.webhook_receiver import Receiver

PREFCENTER = Path(sys.executable).with_name("prefcenter")


@pytest.fixture
def app_config():
    return {"WEBHOOK_RETRY_SCHEDULE": [0, 0], "WEBHOOK_TIMEOUT": 2,
            "WEBHOOK_POLL_INTERVAL": 0.05}


def add(live_app, *args) -> tuple[str, str]:
    result = live_app.test_cli_runner().invoke(args=["webhooks", "add", *args])
    assert result.exit_code == 0, result.output
    endpoint_id = re.search(r"^id: (ep_\S+)$", result.output, re.M).group(1)
    secret = re.search(r"^secret: (whsec_\S+)$", result.output, re.M).group(1)
    return endpoint_id, secret


def rows(session) -> list[WebhookDelivery]:
    session.rollback()
    session.expire_all()
    return list(session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


def test_add_and_list(live_app, live_session):
    endpoint_id, secret = add(live_app, "https://crm.example/hooks", "--events",
                              "subscriber.unsubscribed,subscriber.erased")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    endpoint = live_session.get(WebhookEndpoint, endpoint_id)
    assert endpoint.secret == secret
    assert endpoint.event_types == ["subscriber.unsubscribed", "subscriber.erased"]

    listed = live_app.test_cli_runner().invoke(args=["webhooks", "list"])
    assert listed.exit_code == 0
    assert endpoint_id in listed.output and "https://crm.example/hooks" in listed.output
    assert "enabled" in listed.output and "pending=0" in listed.output
    assert secret not in listed.output


@pytest.mark.parametrize(("args", "message"), [
    (["ftp://crm.example/hooks"], "http:// or https://"),
    (["https:///nohost"], "no host"),
    (["https://crm.example/hooks", "--events", "subscriber.bogus"], "subscriber.bogus"),
])
def test_add_refuses_bad_input(live_app, live_session, args, message):
    result = live_app.test_cli_runner().invoke(args=["webhooks", "add", *args])
    assert result.exit_code == 2
    assert message in result.output
    assert live_session.scalars(select(WebhookEndpoint)).all() == []


def test_work_once_in_process(live_app, live_catalogue):
    with Receiver() as receiver:
        receiver.secrets = [add(live_app, receiver.url)[1]]
        live_catalogue.subscriber()
        live_catalogue.subscriber()
        result = live_app.test_cli_runner().invoke(args=["webhooks", "work", "--once"])
        assert result.exit_code == 0, result.output
        assert "delivered=2 failed=0" in result.output
        assert len(receiver.accepted()) == 2
        assert all(r.verified and all(v is True for v in r.verified.values())
                   for r in receiver.snapshot())


def worker_process(database_url: str, log: Path, *args: str) -> subprocess.Popen:
    env = dict(os.environ)
    env.update({
        "PREFCENTER_ENV": "test",
        "PREFCENTER_SECRET_KEY": TEST_SECRET,
        "PREFCENTER_WEBHOOK_ALLOW_PRIVATE": "1",
        "PREFCENTER_DATABASE_URL": database_url,
        "PREFCENTER_WEBHOOK_LEASE": "2",
        "PREFCENTER_WEBHOOK_TIMEOUT": "5",
        "PREFCENTER_WEBHOOK_CONCURRENCY": "2",
        "PREFCENTER_WEBHOOK_POLL_INTERVAL": "0.05",
        "PREFCENTER_WEBHOOK_RETRY_SCHEDULE": "0,0",
    })
    command = [str(PREFCENTER)] if PREFCENTER.exists() else [sys.executable, "-m", "app.cli"]
    return subprocess.Popen([*command, "webhooks", "work", *args], cwd=ROOT, env=env,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)


def wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@contextmanager
def slow_receiver_with_backlog(live_app, live_catalogue, subscribers: int = 12):
    """A receiver answering after 0.4 s, subscribed to, and one event per new subscriber."""
    with Receiver() as receiver:
        receiver.secrets = [add(live_app, receiver.url)[1]]
        receiver.mode, receiver.delay = "slow", 0.4
        for _ in range(subscribers):
            live_catalogue.subscriber()
        yield receiver


@pytest.mark.slow
def test_worker_killed_mid_batch_loses_nothing(live_app, live_session, live_catalogue,
                                               database_url, tmp_path):
    with slow_receiver_with_backlog(live_app, live_catalogue) as receiver:
        total = len(rows(live_session))
        assert total == 12

        first = worker_process(database_url, tmp_path / "first.log")
        wait_for(lambda: len(receiver.snapshot()) >= 2)
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=10) == -signal.SIGKILL
        mid = rows(live_session)
        stranded = [d for d in mid if d.status == "pending" and d.claimed_by is not None]
        assert stranded, "the worker died holding claims"
        assert any(d.status == "pending" for d in mid)

        receiver.mode = "ok"
        lease_end = max(d.claimed_until for d in stranded)
        wait_for(lambda: utcnow() > lease_end, timeout=10)
        second = worker_process(database_url, tmp_path / "second.log", "--once")
        assert second.wait(timeout=30) == 0, (tmp_path / "second.log").read_text()

        after = rows(live_session)
        assert [d.status for d in after] == ["delivered"] * total
        assert all(d.claimed_by is None for d in after)
        accepted = {r.webhook_id for r in receiver.accepted()}
        assert accepted == {f"msg_{d.event_id}" for d in after}  # at least once, none lost
        assert all(r.verified and all(v is True for v in r.verified.values())
                   for r in receiver.snapshot())


@pytest.mark.slow
def test_sigterm_finishes_in_flight_and_exits_zero(live_app, live_session, live_catalogue,
                                                   database_url, tmp_path):
    with slow_receiver_with_backlog(live_app, live_catalogue) as receiver:
        log = tmp_path / "worker.log"
        worker = worker_process(database_url, log)
        wait_for(lambda: len(receiver.snapshot()) >= 1)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=20) == 0, log.read_text()
        output = log.read_text()
        assert "delivered=" in output
        after = rows(live_session)
        received = {r.webhook_id for r in receiver.snapshot()}
        assert 1 <= len(received) < len(after)
        # Every POST under way finished and was recorded; no claim is left behind.
        assert {f"msg_{d.event_id}" for d in after if d.status == "delivered"} == received
        assert all(d.claimed_by is None and d.claimed_until is None for d in after)



def test_retry_now_after_an_outage(live_app, live_session, live_catalogue):
    settings = dataclasses.replace(WebhookSettings.from_config(live_app.config),
                                   retry_schedule=(3600.0,))
    with Receiver() as receiver, Worker(get_db(live_app), settings) as worker:
        endpoint_id, secret = add(live_app, receiver.url)
        receiver.secrets = [secret]
        receiver.mode = "error"
        live_catalogue.subscriber()
        worker.run_once()
        (waiting,) = rows(live_session)
        assert waiting.next_attempt_at > utcnow() + dt.timedelta(minutes=45)  # 1 h +-20%

        receiver.mode = "ok"
        assert worker.run_once().attempted == 0  # not due for an hour
        result = live_app.test_cli_runner().invoke(args=["webhooks", "retry-now", endpoint_id])
        assert result.exit_code == 0, result.output
        assert "1 deliveries due now" in result.output
        assert worker.run_once().delivered == 1
        (done,) = rows(live_session)
        assert done.status == "delivered" and done.attempts == 2
        missing = live_app.test_cli_runner().invoke(args=["webhooks", "retry-now", "ep_nope"])
        assert missing.exit_code == 2 and "ep_nope" in missing.output
