"""Two nodes: two gunicorn servers (two workers each) on one database and one Redis, and two
``prefcenter webhooks work`` processes, all real processes.

- rate limits are shared: the login limit counts attempts on both nodes as one;
- concurrent RFC 8058 one-clicks and preference-page saves for one subscriber, spread over
  both nodes, record exactly one event per change;
- the two webhook workers, running together while those events arrive, deliver every outbox
  row exactly once between them.

It runs on SQLite too (two servers on one host sharing the file: the same locking rules);
a real second machine needs PostgreSQL (docs/deploying.md).
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections import Counter

import httpx
import pytest
from sqlalchemy import func, select

from app.api.auth import create_api_key
from app.events.models import Event
from app.subscribers.models import Subscriber
from app.webhooks.models import WebhookDelivery
from tests.conftest import TEST_SECRET, csrf_from
from tests.servers import PREFCENTER, ROOT, Gunicorn, redis_server, server_env, stop
from tests.test_webhooks_cli import add
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.slow

ONE_CLICK = {"content": b"List-Unsubscribe=One-Click",
             "headers": {"Content-Type": "application/x-www-form-urlencoded"}}


@pytest.fixture
def app_config():
    return {"WEBHOOK_ALLOW_PRIVATE": True}


def together(calls) -> list:
    """Run every call on its own thread, released at the same moment; their results."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(index, call):
        barrier.wait()
        results[index] = call()

    threads = [threading.Thread(target=run, args=pair) for pair in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def events_of(session, subscriber_id: int) -> list[Event]:
    session.rollback()
    return list(session.scalars(
        select(Event).where(Event.subscriber_id == subscriber_id).order_by(Event.id)))


def worker(env: dict, log) -> subprocess.Popen:
    return subprocess.Popen([str(PREFCENTER), "webhooks", "work"], env=env, cwd=ROOT,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)


def test_two_nodes_share_limits_record_each_change_once_and_deliver_once(
        live_app, live_session, live_catalogue, live_links, database_url, tmp_path):
    subscriber = live_catalogue.subscriber(role="shopper")
    _key, api_key = create_api_key(live_session, "two-nodes")
    live_session.commit()

    with Receiver() as receiver, redis_server(tmp_path) as redis_url:
        receiver.secrets = [add(live_app, receiver.url)[1]]
        receiver.mode, receiver.delay = "slow", 0.02  # both workers get a share
        env = server_env(database_url, PREFCENTER_SECRET_KEY=TEST_SECRET,
                         PREFCENTER_RATELIMIT_STORAGE_URI=redis_url,
                         PREFCENTER_RATELIMIT_LOGIN="5 per minute",
                         PREFCENTER_RATELIMIT_PUBLIC="1000 per minute",
                         PREFCENTER_RATELIMIT_ONE_CLICK="1000 per minute",
                         PREFCENTER_WEBHOOK_ALLOW_PRIVATE="1",
                         PREFCENTER_WEBHOOK_POLL_INTERVAL="0.05",
                         PREFCENTER_WEBHOOK_CONCURRENCY="2")
        workers = [worker(env, tmp_path / f"worker-{n}.log") for n in (1, 2)]
        nodes = [Gunicorn(env, tmp_path / f"node-{n}.log", workers=2) for n in (1, 2)]
        try:
            urls = [node.url for node in nodes]

            # 1. One login limit across both nodes: 5 attempts answered, the rest 429.
            attempts = []
            for n in range(10):
                with httpx.Client(base_url=urls[n % 2], timeout=10) as client:
                    token = csrf_from(client.get("/admin/login").text)
                    attempts.append(client.post("/admin/login", data={
                        "csrf_token": token, "email": "nobody@example.com",
                        "password": "wrong password"}).status_code)
            assert attempts == [401] * 5 + [429] * 5, attempts

            # 2. Twelve one-clicks on one link, six through each node, at once: one event.
            before = len(events_of(live_session, subscriber.id))
            path = live_links.unsubscribe(subscriber, topic="offers", campaign="two-nodes")

            def click(url):
                return lambda: httpx.post(url + path, timeout=30, **ONE_CLICK).status_code

            assert together([click(urls[n % 2]) for n in range(12)]) == [200] * 12
            new = events_of(live_session, subscriber.id)[before:]
            assert [(e.action, e.topic, e.source) for e in new] == [
                ("topic.unsubscribed", "offers", "one_click")], new

            # 3. Eight browsers (four per node) save the same change at once: one event.
            page_path = live_links.preferences(subscriber)
            browsers = [httpx.Client(base_url=urls[n % 2], timeout=30) for n in range(8)]
            forms = []
            for browser in browsers:
                html = browser.get(page_path).text
                frequency = re.search(
                    r'name="frequency-news">.*?<option value="([^"]+)" selected', html, re.S)
                forms.append({"csrf_token": csrf_from(html), "shown": ["news"],
                              "topic-news": "on", "frequency-news": frequency.group(1)})
            before = len(events_of(live_session, subscriber.id))
            saves = together([
                (lambda b=b, f=f: b.post(page_path, data=f).status_code)
                for b, f in zip(browsers, forms, strict=True)])
            for browser in browsers:
                browser.close()
            assert saves == [200] * 8
            new = events_of(live_session, subscriber.id)[before:]
            assert [(e.action, e.topic, e.source) for e in new] == [
                ("topic.subscribed", "news", "preference_page")], new
            live_session.expire_all()
            assert live_session.get(Subscriber, subscriber.id).version == 3

            # More events for the workers, through both nodes' API at once.
            def put(url, n):
                return lambda: httpx.put(
                    f"{url}/api/v1/subscribers/node-{n}", timeout=30,
                    headers={"Authorization": f"Bearer {api_key}"},
                    json={"email": f"node-{n}@example.com"}).status_code

            assert together([put(urls[n % 2], n) for n in range(30)]) == [201] * 30

            # 4. Both workers deliver every outbox row, each exactly once.
            deadline = time.monotonic() + 120
            while True:
                live_session.rollback()
                pending = live_session.scalar(select(func.count(WebhookDelivery.id)).where(
                    WebhookDelivery.status != "delivered"))
                if not pending:
                    break
                assert time.monotonic() < deadline, f"{pending} deliveries still pending"
                time.sleep(0.2)
            rows = list(live_session.scalars(select(WebhookDelivery)))
        finally:
            for node in nodes:
                node.stop()
            codes = [stop(w) for w in workers]
        assert codes == [0, 0]  # SIGTERM: each finished what it had and exited cleanly

        assert len(rows) == 1 + 1 + 30  # the one-click, the save, 30 API creations
        received = [r for r in receiver.snapshot() if r.accepted]
        ids = Counter(r.webhook_id for r in received)
        assert len(ids) == len(rows)
        assert max(ids.values()) == 1, [i for i, n in ids.items() if n > 1]
        assert all(all(v is True for v in r.verified.values()) for r in received)
        # Each worker logs each delivery it made: together, every row once. (Which worker
        # takes how many is the scheduler's choice: one may claim them all, as seen on a
        # loaded machine; exactly once between them is the promise.)
        logged = [re.findall(r"webhook delivery (\d+) \(event \d+\) to \S+: 200",
                             (tmp_path / f"worker-{n}.log").read_text()) for n in (1, 2)]
        assert sorted(int(i) for i in logged[0] + logged[1]) == sorted(r.id for r in rows)
