"""Rate limits (Flask-Limiter): configurable, answering 429 with Retry-After."""

from __future__ import annotations

import math
import time
from functools import lru_cache

from flask import Flask, current_app
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from limits import RateLimitItem, parse_many

limiter = Limiter(key_func=get_remote_address, headers_enabled=True)


def init_app(app: Flask) -> None:
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
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


def mail_limit():
    """Requests that send mail (a fresh link, a change of address), per client address."""
    return current_app.config["RATELIMIT_MAIL"]
