"""Rate limits (Flask-Limiter): configurable, answering 429 with Retry-After."""

from __future__ import annotations

from flask import Flask
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

limiter = Limiter(key_func=get_remote_address, headers_enabled=True)


def init_app(app: Flask) -> None:
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    limiter.init_app(app)


def public_limit():
    from flask import current_app

    return current_app.config["RATELIMIT_PUBLIC"]


def api_limit():
    from flask import current_app

    return current_app.config["RATELIMIT_API"]


def login_limit():
    from flask import current_app

    return current_app.config["RATELIMIT_LOGIN"]
