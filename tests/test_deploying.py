"""More than one process: rate limits shared through a real Redis by every gunicorn worker, the
start-up warning when they are not, and client addresses behind trusted reverse proxies."""

from __future__ import annotations

import httpx
import pytest
from flask import request

from app import create_app
from tests.conftest import make_config
from tests.servers import Gunicorn, redis_server, server_env

ONE_CLICK = {"content": b"List-Unsubscribe=One-Click",
             "headers": {"Content-Type": "application/x-www-form-urlencoded"}}
WARNING = "PREFCENTER_RATELIMIT_STORAGE_URI is memory:// with 3 workers"


def statuses(url: str, method: str, path: str, count: int, **kwargs) -> list[int]:
    """``count`` requests, each on a new connection (so gunicorn spreads them over workers)."""
    answers = []
    for _ in range(count):
        with httpx.Client(base_url=url, timeout=10) as client:
            answers.append(client.request(method, path, **kwargs).status_code)
    return answers


@pytest.mark.slow
def test_every_worker_counts_against_one_limit_in_redis(database_url, tmp_path):
    with redis_server(tmp_path) as redis_url:
        env = server_env(database_url, PREFCENTER_RATELIMIT_STORAGE_URI=redis_url,
                         PREFCENTER_RATELIMIT_PUBLIC="6 per minute",
                         PREFCENTER_RATELIMIT_ONE_CLICK="4 per minute")
        with Gunicorn(env, tmp_path / "gunicorn.log", workers=3) as server:
            pages = statuses(server.url, "GET", "/p/not-a-token", 15)
            assert pages.count(400) == 6, pages  # answered (a bad link), all the rest limited
            assert pages[6:] == [429] * 9
            # RFC 8058 one-clicks are counted below Flask, in the same storage.
            clicks = statuses(server.url, "POST", "/u/not-a-token", 10, **ONE_CLICK)
            assert clicks == [400] * 4 + [429] * 6, clicks
        assert WARNING not in (tmp_path / "gunicorn.log").read_text()


@pytest.mark.slow
def test_a_redis_outage_lets_requests_through_and_is_logged(database_url, tmp_path):
    """An unsubscribe must not fail because the counter of requests cannot be reached."""
    log = tmp_path / "gunicorn.log"
    with redis_server(tmp_path) as redis_url:
        env = server_env(database_url, PREFCENTER_RATELIMIT_STORAGE_URI=redis_url,
                         PREFCENTER_RATELIMIT_PUBLIC="100 per minute")
        server = Gunicorn(env, log, workers=1)
    try:  # Redis is stopped now
        assert statuses(server.url, "GET", "/p/not-a-token", 2) == [400, 400]
        assert statuses(server.url, "POST", "/u/not-a-token", 2, **ONE_CLICK) == [400, 400]
    finally:
        server.stop()
    assert "Traceback" in log.read_text()  # each failure logged whole, for the operator


@pytest.mark.slow
def test_several_workers_on_memory_storage_warn_at_start(database_url, tmp_path):
    env = server_env(database_url)  # memory:// by default
    with Gunicorn(env, tmp_path / "three.log", workers=3):
        pass
    three = (tmp_path / "three.log").read_text()
    assert WARNING in three
    assert "redis://" in three and "docs/deploying.md" in three
    with Gunicorn(env, tmp_path / "one.log", workers=1):
        pass
    assert "memory://" not in (tmp_path / "one.log").read_text()


@pytest.mark.parametrize(("hops", "separate"), [(0, False), (1, True), (2, True)])
def test_trusted_proxies_give_the_client_address(database_url, hops, separate):
    """Each client behind the proxy has its own limit only when the proxy is trusted; an
    address a client wrote itself into X-Forwarded-For is never believed."""
    app = create_app(make_config(database_url, RATELIMIT_ENABLED=True, TRUSTED_PROXIES=hops,
                                 RATELIMIT_PUBLIC="2 per minute",
                                 RATELIMIT_ONE_CLICK="2 per minute"))
    seen = {}

    @app.get("/_whoami")
    def whoami():
        seen.update(addr=request.remote_addr, scheme=request.scheme)
        return ""

    client = app.test_client()
    proxy = {"REMOTE_ADDR": f"10.9.{hops}.1"}
    net = f"198.51.{100 + hops}"
    hop_chain = {1: "", 2: ", 10.9.9.9"}.get(hops, "")

    def forwarded(client_address: str, forged: str = "") -> dict:
        return {"X-Forwarded-For": f"{forged}{client_address}{hop_chain}",
                "X-Forwarded-Proto": ", ".join(["https"] * max(hops, 1))}

    def page(headers):
        return client.get("/p/not-a-token", headers=headers, environ_base=proxy).status_code

    def click(headers):
        return client.post("/u/not-a-token", headers=headers, environ_base=proxy,
                           data=ONE_CLICK["content"],
                           content_type="application/x-www-form-urlencoded").status_code

    for check in (page, click):
        first = [check(forwarded(f"{net}.7")) for _ in range(3)]
        assert first == [400, 400, 429]
        other = check(forwarded(f"{net}.8"))
        assert other == (400 if separate else 429)
        # A forged first entry changes nothing: only the proxy's own entries are read.
        forged = check(forwarded(f"{net}.7", forged="192.0.2.55, "))
        assert forged == 429

    client.get("/_whoami", headers=forwarded(f"{net}.9"), environ_base=proxy)
    if hops:
        assert seen == {"addr": f"{net}.9", "scheme": "https"}
    else:
        assert seen == {"addr": proxy["REMOTE_ADDR"], "scheme": "http"}
