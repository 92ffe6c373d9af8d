"""Rate limits (Flask-Limiter): configurable, answering 429 with Retry-After."""

from __future__ import annotations

import math
import time
from functools import lru_cache

from flask import Flask, current_app, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from limits import RateLimitItem, parse_many
from werkzeug.exceptions import TooManyRequests

limiter = Limiter(key_func=get_remote_address, headers_enabled=True)

# Endpoints that count their one limit themselves with check_limit(): RFC 8058 one-click
# (POST /u/<token>), the hot path mailbox providers hit in bursts.
SELF_LIMITED = frozenset({"unsubscribe.confirm"})


def init_app(app: Flask) -> None:
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    limiter.init_app(app)
    _skip_self_limited(app)


def _skip_self_limited(app: Flask) -> None:
    """Flask-Limiter's before-request hook resolves every default and decorated limit of
    every request (about 50 us); the SELF_LIMITED endpoints skip it and check their own.
    Its after-request hook only adds the headers of limits the first one met: skipped too.
    (A limiter disabled by configuration registers neither.)"""
    check, inject_headers = limiter._check_request_limit, Limiter._Limiter__inject_headers
    for hooks in (app.before_request_funcs[None], app.after_request_funcs[None]):
        for index, hook in enumerate(hooks):
            if hook == check or getattr(hook, "func", None) is inject_headers:
                hooks[index] = _unless_self_limited(hook)


def _unless_self_limited(hook):
    def skip_self_limited(*response):
        if request.endpoint in SELF_LIMITED:
            return response[0] if response else None
        return hook(*response)

    return skip_self_limited


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
    if not current_app.config.get("RATELIMIT_ENABLED", True):
        return
    strategy = limiter.limiter
    key = get_remote_address()
    for item in _items(limit):
        if not strategy.hit(item, key, scope):
            reset = strategy.get_window_stats(item, key, scope).reset_time
            raise TooManyRequests(retry_after=max(1, math.ceil(reset - time.time())))
