"""Rate limits (Flask-Limiter): configurable, answering 429 with Retry-After."""

from __future__ import annotations

import functools
import math
import os
import threading
import time
from functools import lru_cache

from flask import Flask, after_this_request, current_app, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from werkzeug.exceptions import TooManyRequests

# A rate-limit storage that fails (Redis down) lets requests through, logged: an unsubscribe
# must not fail because the counter of unsubscribes cannot be reached.
limiter = Limiter(key_func=get_remote_address, headers_enabled=True, swallow_errors=True)


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


def page_limit(view):
    """The public limit (``RATELIMIT_PUBLIC``) on a page that link scanners load (GET and
    HEAD of ``/u/<token>`` and ``/p/<token>``), per client address and endpoint.

    Counted as Flask-Limiter's decorator counts it (its storage and strategy, the same
    ``X-RateLimit-*`` headers, 429 with ``Retry-After``), but without Flask-Limiter's work
    around the request (resolving the route's limits before and in the view, reading the
    window again for the headers): a quarter of a page's time in the profile. Flask-Limiter
    itself skips the view (a request filter), so it is counted once.
    """

    @functools.wraps(view)
    def limited(*args, **kwargs):
        app = current_app._get_current_object()
        if app.config.get("RATELIMIT_ENABLED", True):
            try:
                _count_page_view(app, request.endpoint, get_remote_address())
            except TooManyRequests:
                raise
            except Exception:  # the storage's own client errors: let it through, as above
                app.logger.exception("rate limit storage failed; request let through")
        return view(*args, **kwargs)

    _counted_here.add(limited)
    return limited


# The views page_limit counts: Flask-Limiter's own check skips them from the start.
_counted_here: set = set()


@limiter.request_filter
def _counted_by_page_limit() -> bool:
    return current_app.view_functions.get(request.endpoint) in _counted_here


def _count_page_view(app: Flask, scope: str, key: str) -> None:
    strategy = limiter.limiter
    shown = None  # (item, remaining, reset): the limit that ran out, else the nearest to
    exceeded = False
    for item in _items(app.config["RATELIMIT_PUBLIC"]):
        exceeded = not strategy.hit(item, key, scope)
        reset, remaining = strategy.get_window_stats(item, key, scope)
        if exceeded or shown is None or remaining < shown[1]:
            shown = (item, remaining, reset)
        if exceeded:
            break
    if shown is None:
        return
    item, remaining, reset = shown
    wait = max(1, math.ceil(reset - time.time()))
    if app.config.get("RATELIMIT_HEADERS_ENABLED", True):
        headers = (("X-RateLimit-Limit", str(item.amount)),
                   ("X-RateLimit-Remaining", str(remaining)),
                   ("X-RateLimit-Reset", str(int(reset))),
                   ("Retry-After", str(wait)))

        @after_this_request
        def _headers(response):
            for name, value in headers:
                response.headers[name] = value
            return response

    if exceeded:
        raise TooManyRequests(retry_after=wait)


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
