"""Rate limits (Flask-Limiter): configurable, answering 429 with Retry-After."""

from __future__ import annotations

import math
import time
from functools import lru_cache

from flask import Flask, current_app
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from limits import RateLimitItem, parse_many

# A rate-limit storage that fails (Redis down) lets requests through, logged: an unsubscribe
# must not fail because the counter of unsubscribes cannot be reached.
limiter = Limiter(key_func=get_remote_address, headers_enabled=True, swallow_errors=True)


def init_app(app: Flask) -> None:
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    limiter.init_app(app)


def storage_problem(uri: str) -> str | None:
    """Why the rate-limit storage at ``uri`` cannot be reached now (one line), or None."""
    from limits.storage import storage_from_string

    try:
        if storage_from_string(uri).check():
            return None
        reason = "no answer"
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"{_without_password(uri)}: {reason}"


def _without_password(uri: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    if parts.password:
        return uri.replace(f":{parts.password}@", ":***@", 1)
    return uri


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
    try:
        for item in _items(limit):
            if not strategy.hit(item, key, scope):
                reset = strategy.get_window_stats(item, key, scope).reset_time
                return max(1, math.ceil(reset - time.time()))
    except Exception:  # the storage's own client errors: let it through, as Flask-Limiter does
        app.logger.exception("rate limit storage failed; request let through")
    return None


def mail_limit():
    """Requests that send mail (a fresh link, a change of address), per client address."""
    return current_app.config["RATELIMIT_MAIL"]
