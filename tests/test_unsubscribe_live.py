"""One-click against a real HTTP server: concurrency, and a database that is really down."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy import event, select
from sqlalchemy.engine import make_url

from app.events.models import Event
from app.subscribers.models import Subscriber
from tests.conftest import csrf_from

ONE_CLICK = {"List-Unsubscribe": "One-Click"}


def changes_of(session, subscriber) -> list[Event]:
    session.commit()  # end the read transaction: see what the server committed since
    session.expire_all()
    return session.scalars(
        select(Event).where(Event.subscriber_id == subscriber.id,
                            Event.type != "subscriber.created").order_by(Event.id)
    ).all()


def one_click(base_url: str, path: str, *, multipart: bool = False) -> httpx.Response:
    if multipart:
        return httpx.post(base_url + path, files={"List-Unsubscribe": (None, "One-Click")},
                          timeout=30)
    return httpx.post(base_url + path, data=ONE_CLICK, timeout=30)


@pytest.mark.parametrize("topic", ["offers", None])
def test_concurrent_one_clicks_on_one_token_record_exactly_one_event(
        live_server, live_catalogue, live_links, live_session, topic):
    subscriber = live_catalogue.subscriber()
    path = live_links.unsubscribe(subscriber, topic=topic, campaign="race")
    version = subscriber.version
    threads_count = 8
    barrier = threading.Barrier(threads_count)
    responses: list[httpx.Response] = []
    lock = threading.Lock()

    def click(index: int) -> None:
        barrier.wait(timeout=10)
        response = one_click(live_server, path, multipart=bool(index % 2))
        with lock:
            responses.append(response)

    threads = [threading.Thread(target=click, args=(i,)) for i in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [r.status_code for r in responses] == [200] * threads_count
    assert all("location" not in r.headers and "set-cookie" not in r.headers
               for r in responses)
    [only] = changes_of(live_session, subscriber)
    assert (only.source, only.campaign, only.topic) == ("one_click", "race", topic)
    assert live_session.get(Subscriber, subscriber.id).version == version + 1


def test_get_and_head_over_http_change_nothing(live_server, live_catalogue, live_links,
                                               live_session):
    subscriber = live_catalogue.subscriber()
    path = live_links.unsubscribe(subscriber, topic="offers")
    with httpx.Client(base_url=live_server, follow_redirects=False) as client:
        assert client.get(path).status_code == 200
        assert client.head(path).status_code == 200
    assert changes_of(live_session, subscriber) == []
    assert live_session.get(Subscriber, subscriber.id).version == subscriber.version


# --- the database is unavailable: nothing may be acknowledged --------------------------------

@pytest.fixture
def sqlite_path(database_url) -> Path:
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite only")
    return Path(make_url(database_url).database)


def test_one_click_while_sqlite_is_locked_is_503_then_200(live_app, live_server, live_catalogue,
                                                          live_links, live_session,
                                                          sqlite_path):
    subscriber = live_catalogue.subscriber()
    path = live_links.unsubscribe(subscriber, topic="offers")
    engine = live_app.extensions["prefcenter.db"].engine

    @event.listens_for(engine, "connect")
    def _short_busy_timeout(dbapi_connection, _record):
        dbapi_connection.execute("PRAGMA busy_timeout=150")

    engine.dispose()
    browser = httpx.Client(base_url=live_server)
    page = browser.get(path)
    holder = sqlite3.connect(sqlite_path, isolation_level=None, timeout=5)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        for multipart in (False, True):
            response = one_click(live_server, path, multipart=multipart)
            assert response.status_code == 503
            assert response.headers["content-type"].startswith("text/plain")
            assert int(response.headers["Retry-After"]) > 0
        assert browser.get(path).status_code == 200  # reading still works meanwhile
        # The page's own form is told the same, in a page.
        form = browser.post(path, data={"confirm": "1", "csrf_token": csrf_from(page.text)})
        assert form.status_code == 503
        assert form.headers["content-type"].startswith("text/html")
        assert int(form.headers["Retry-After"]) > 0
    finally:
        browser.close()
        holder.execute("ROLLBACK")
        holder.close()
    assert changes_of(live_session, subscriber) == []
    response = one_click(live_server, path)
    assert response.status_code == 200
    [recorded] = changes_of(live_session, subscriber)
    assert (recorded.source, recorded.topic) == ("one_click", "offers")


def _pg_cluster() -> tuple[str, str] | None:
    if shutil.which("pg_ctlcluster") is None or os.geteuid() != 0:
        return None
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    return (versions[-1], "main") if versions else None


def _pg_ctl(action: str, cluster: tuple[str, str]) -> None:
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", *cluster, action],
                   check=True, timeout=60, capture_output=True)


def _wait_until_ready(conninfo: str, deadline: float = 60) -> None:
    until = time.monotonic() + deadline
    while True:
        try:
            with psycopg.connect(conninfo, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.OperationalError:
            if time.monotonic() > until:
                raise
            time.sleep(0.2)


@pytest.mark.slow
def test_one_click_while_postgresql_is_stopped_is_503_then_200(
        database_url, live_server, live_catalogue, live_links, live_session):
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        pytest.skip("PostgreSQL only")
    if url.host not in ("127.0.0.1", "localhost", None):
        pytest.skip("the PostgreSQL server is not on this machine")
    if not (os.environ.get("CI") or os.environ.get("PREFCENTER_TEST_STOP_POSTGRES") == "1"):
        # Stopping the server breaks every other suite using it at that moment.
        pytest.skip("stops PostgreSQL: runs in CI, or with PREFCENTER_TEST_STOP_POSTGRES=1")
    cluster = _pg_cluster()
    if cluster is None:
        pytest.skip("needs root and pg_ctlcluster to stop the server")
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    subscriber = live_catalogue.subscriber()
    path = live_links.unsubscribe(subscriber, topic="offers", campaign="outage")
    master = live_links.unsubscribe(subscriber)

    _pg_ctl("stop", cluster)
    try:
        down = [one_click(live_server, path), one_click(live_server, master, multipart=True)]
    finally:
        _pg_ctl("start", cluster)
        _wait_until_ready(conninfo)
    for response in down:
        assert response.status_code == 503, response.text
        assert int(response.headers["Retry-After"]) > 0
        assert response.text != "Unsubscribed.\n"
    assert changes_of(live_session, subscriber) == []

    assert one_click(live_server, path).status_code == 200
    assert one_click(live_server, master, multipart=True).status_code == 200
    recorded = changes_of(live_session, subscriber)
    assert [(e.action, e.source) for e in recorded] == [
        ("topic.unsubscribed", "one_click"), ("unsubscribed_all", "one_click")]
    assert recorded[0].campaign == "outage"
