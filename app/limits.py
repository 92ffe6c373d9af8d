"""Rate limits (Flask-Limiter): configurable, answering 429 with Retry-After."""

from __future__ import annotations

import math
import time
from functools import lru_cache

from flask import Flask, current_app
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from limits import RateLimitItem, parse_many
from werkzeug.exceptions import TooManyRequests

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


def check_limit(limit: str, scope: str) -> None:
    """Count this request against ``limit`` (per client address); 429 with Retry-After if over.

    For a hot route exempted from Flask-Limiter's per-request machinery (resolving every
    decorated and default limit twice per request): the same storage and strategy, one hit.
    """
    wait = retry_after(current_app, limit, scope, get_remote_address())
    if wait is not None:
        raise TooManyRequests(retry_after=wait)


def retry_after(app: Flask, limit: str, scope: str, key: str) -> int | None:
    """Count one request of ``key`` against ``limit``: None if within it, else the seconds
    to wait. Needs no request context (the one-click route below Flask)."""
    if not app.config.get("RATELIMIT_ENABLED", True):
        return None
    strategy = limiter.limiter
    for item in _items(limit):
        if not strategy.hit(item, key, scope):
            reset = strategy.get_window_stats(item, key, scope).reset_time
            return max(1, math.ceil(reset - time.time()))
    return None
