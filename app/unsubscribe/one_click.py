"""RFC 8058 one-click unsubscribe, answered below Flask's request machinery.

Mailbox providers POST ``List-Unsubscribe=One-Click`` to ``/u/<token>`` in bursts, and
Flask's request machinery (request and app contexts, URL matching, the hooks, a Response
object) costs more than the answer's own work. :class:`OneClickRoute` wraps the app's
WSGI callable: a POST to the unsubscribe path whose body is exactly the one-click form as
providers send it (``application/x-www-form-urlencoded``, those 26 bytes) is answered
there. Everything else, a one-click sent as ``multipart/form-data`` included, goes on to
Flask, whose view (:func:`app.unsubscribe.views.confirm`) gives the same answer from the
same :class:`OneClickAnswer`.

Either way: the one-click rate limit, the token, the change made durable before the 200,
a short text/plain answer that is never a redirect, and the app's security headers.
"""

from __future__ import annotations

import io
from dataclasses import replace

from flask import Flask
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.http import HTTP_STATUS_CODES

from app import limits, security
from app.db import get_db, run_once_more_if_dropped
from app.events.services import policy_version
from app.links.services import LinkClaims, LinkError, get_signer
from app.unsubscribe.services import (
    WritersQueueTimeout,
    link_context,
    unsubscribe_by_link,
    verify_unsubscribe,
    writers_queue,
)

ONE_CLICK_FIELD = "List-Unsubscribe"
ONE_CLICK_VALUE = "One-Click"
URLENCODED = "application/x-www-form-urlencoded"
ONE_CLICK_BODY = f"{ONE_CLICK_FIELD}={ONE_CLICK_VALUE}".encode("ascii")
SCOPE = "one-click"
# The database could not take the change (down, restarting, locked): retry later.
UNAVAILABLE = (DBAPIError, PoolTimeout, WritersQueueTimeout)
RETRY_AFTER = "5"

# Answers to machines (mailbox providers), not to people: kept short and untranslated.
PLAIN = {
    200: "Unsubscribed.\n",
    400: "Bad request: the body must be List-Unsubscribe=One-Click.\n",
    413: "Request body too large.\n",
    415: "Unsupported content type: use application/x-www-form-urlencoded "
         "or multipart/form-data.\n",
    429: "Too many requests.\n",
    500: "Internal error; nothing may have been changed. Retry later.\n",
    503: "Temporarily unavailable; nothing was changed. Retry later.\n",
}
LINK_PLAIN = {
    "invalid": "This link is not valid.\n",
    "expired": "This link has expired.\n",
    "revoked": "This link is no longer valid.\n",
    "unknown": "No such subscriber.\n",
}


class OneClickAnswer:
    """The one-click of one app: ``(status, body, headers)`` for a token from a client."""

    def __init__(self, app: Flask):
        self.app = app
        self.db = get_db(app)

    def __call__(self, token: str, client: str) -> tuple[int, str, dict[str, str]]:
        retry_after = limits.retry_after(self.app, self.app.config["RATELIMIT_ONE_CLICK"],
                                         SCOPE, client)
        if retry_after is not None:
            return 429, PLAIN[429], {"Retry-After": str(retry_after)}
        try:
            claims, _expired = verify_unsubscribe(get_signer(self.app), token)
            self._unsubscribe(claims)
        except LinkError as exc:
            return exc.status, LINK_PLAIN.get(exc.reason, LINK_PLAIN["invalid"]), {}
        except UNAVAILABLE:
            return 503, PLAIN[503], {"Retry-After": RETRY_AFTER}
        return 200, PLAIN[200], {}

    def _unsubscribe(self, claims: LinkClaims) -> None:
        """The one rule (:func:`app.unsubscribe.services.unsubscribe_by_link`), committed
        before the answer; a connection found dead is replaced and the work done once more.

        On the engine, a pooled Connection of its own (a Session costs as much again as the
        statements); a sessionmaker bound to a connection (the test suite's rolled-back
        transaction) lends a Session on it.
        """
        context = replace(link_context("one_click", claims), policy=policy_version(self.app))
        db = self.db
        bound_to_engine = isinstance(db.sessionmaker.kw.get("bind"), Engine)
        run_once_more_if_dropped(
            db.engine.connect if bound_to_engine else db.sessionmaker,
            lambda unit: unsubscribe_by_link(unit, claims, context=context,
                                             queue=lambda: writers_queue(db)))


def rollback_quietly(session) -> None:
    try:
        session.rollback()
    except SQLAlchemyError:
        session.invalidate()


def get_answer(app: Flask) -> OneClickAnswer:
    return app.extensions["prefcenter.one_click"]


class OneClickRoute:
    """WSGI middleware: the one-click POSTs mailbox providers send, answered without Flask."""

    def __init__(self, app: Flask, wsgi_app):
        self.app = app
        self.wsgi_app = wsgi_app
        self.answer = get_answer(app)
        self.prefix = _unsubscribe_prefix(app)
        self.length = str(len(ONE_CLICK_BODY))

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if (environ.get("REQUEST_METHOD") == "POST"
                and environ.get("CONTENT_LENGTH") == self.length
                and path.startswith(self.prefix)
                and _mimetype(environ.get("CONTENT_TYPE", "")) == URLENCODED):
            # As the URL rule reads it: one segment, UTF-8 behind WSGI's latin-1.
            token = path[len(self.prefix):].encode("latin-1").decode("utf-8", "replace")
            if token and "/" not in token:
                body = environ["wsgi.input"].read(len(ONE_CLICK_BODY))
                if body == ONE_CLICK_BODY:
                    return self._respond(environ, start_response, token)
                environ["wsgi.input"] = io.BytesIO(body)  # read: Flask reads it again
        return self.wsgi_app(environ, start_response)

    def _respond(self, environ, start_response, token: str):
        try:
            status, body, headers = self.answer(token, environ.get("REMOTE_ADDR") or
                                                "127.0.0.1")
        except Exception:
            propagate = self.app.config["PROPAGATE_EXCEPTIONS"]
            if propagate or (propagate is None and (self.app.testing or self.app.debug)):
                raise
            self.app.logger.exception("one-click failed: %s", environ.get("PATH_INFO"))
            status, body, headers = 500, PLAIN[500], {}
        data = body.encode("utf-8")
        start_response(f"{status} {HTTP_STATUS_CODES[status].upper()}", [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(data))),
            ("Cache-Control", "no-store"),
            *headers.items(),
            *security.default_headers(self.app),
        ])
        return [data]


def _mimetype(content_type: str) -> str:
    """As :attr:`werkzeug.wrappers.Request.mimetype` reads ``Content-Type``."""
    return content_type.split(";", 1)[0].strip().lower()


def _unsubscribe_prefix(app: Flask) -> str:
    """``/u/``: the view's URL rule, where :func:`register_blueprints` put it."""
    [rule] = [r.rule for r in app.url_map.iter_rules() if r.endpoint == "unsubscribe.confirm"]
    prefix, _sep, variable = rule.partition("<")
    if variable != "token>" or not prefix.endswith("/"):
        raise RuntimeError(f"one-click route cannot serve the rule {rule!r}")
    return prefix


def init_app(app: Flask) -> None:
    """After :func:`app.register_blueprints`: wrap the app's WSGI callable."""
    app.extensions["prefcenter.one_click"] = OneClickAnswer(app)
    app.wsgi_app = OneClickRoute(app, app.wsgi_app)
