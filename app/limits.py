"""Rate limits (Flask-Limiter): configurable, answering 429 with Retry-After."""

from __future__ import annotations

import math
import os
import threading
import time
from functools import lru_cache

from flask import Flask, current_app
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage

limiter = Limiter(key_func=get_remote_address, headers_enabled=True)


class SweptMemoryStorage(MemoryStorage):
    """limits' in-process storage (``memory://``), its expired keys swept by one thread.

    limits starts a new timer thread 10 ms after a hit whenever the last one has run:
    under a burst of requests (link scanners) that is about a hundred thread starts a
    second in each process, and each start makes its request wait until the new thread
    runs, milliseconds on a busy machine. Counters expire when they are read anyway; the
    sweep only forgets keys no one asks about again, so one daemon thread per process
    does it every second.
    """

    STORAGE_SCHEME = ["prefcenter+memory"]
    SWEEP_SECONDS = 1.0

    def _MemoryStorage__schedule_expiry(self) -> None:  # replaces the per-hit timer
        sweeper = getattr(self, "_sweeper", None)
        if sweeper is not None and sweeper[0] == os.getpid():
            return
        thread = threading.Thread(target=self._sweep, name="ratelimit-sweep", daemon=True)
        self._sweeper = (os.getpid(), thread)
        thread.start()

    def _sweep(self) -> None:
        while True:
            time.sleep(self.SWEEP_SECONDS)
            self._MemoryStorage__expire_events()


def init_app(app: Flask) -> None:
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    if app.config.get("RATELIMIT_STORAGE_URI") == "memory://":
        app.config["RATELIMIT_STORAGE_URI"] = "prefcenter+memory://"
    limiter.init_app(app)


def public_limit():
    return current_app.config["RATELIMIT_PUBLIC"]


def api_limit():
    return current_app.config["RATELIMIT_API"]


def login_limit():
    return current_app.config["RATELIMIT_LOGIN"]


@lru_cache(maxsize=32)
def _items(limit: str) -> tuple[RateLimitItem, ...]:
    return tuple(parse_many(limit))


def retry_after(app: Flask, limit: str, scope: str, key: str) -> int | None:
    """Count one request of ``key`` against ``limit``: None if within it, else the seconds
    to wait. Flask-Limiter's storage and strategy, without a request context: for the
    one-click route below Flask (:mod:`app.unsubscribe.one_click`)."""
    if not app.config.get("RATELIMIT_ENABLED", True):
        return None
    strategy = limiter.limiter
    for item in _items(limit):
        if not strategy.hit(item, key, scope):
            reset = strategy.get_window_stats(item, key, scope).reset_time
            return max(1, math.ceil(reset - time.time()))
    return None
