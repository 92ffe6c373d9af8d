"""Security headers on every response, and the cookie policy."""

from __future__ import annotations

from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from werkzeug.routing import IntegerConverter

# The largest id the databases hold (BIGINT).
MAX_INT = 2**63 - 1


class BoundedInt(IntegerConverter):
    """``<int:…>`` in every route: an id above BIGINT matches nothing (a 404), instead of
    overflowing in the database driver (a 500)."""

    def __init__(self, map, *args, **kwargs):
        kwargs.setdefault("max", MAX_INT)
        super().__init__(map, *args, **kwargs)

CSP = "; ".join([
    "default-src 'none'",
    "style-src 'self'",
    "img-src 'self' data:",
    "font-src 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
    "base-uri 'none'",
])


# Sent on every response unless the view set its own.
HEADERS = (
    ("Referrer-Policy", "no-referrer"),
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Permissions-Policy", "camera=(), microphone=(), geolocation=()"),
)


class CookieSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, but a request without the cookie (a link from an
    email, a one-click, an API call: most requests) gets its empty session without first
    building a signing serializer, and the serializer is built once."""

    def open_session(self, app, request):
        if app.secret_key and not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()
        return super().open_session(app, request)

    def get_signing_serializer(self, app):
        """Flask's serializer, built once per app and keys (Flask builds it for every
        request that reads or writes the cookie: every page view, for its CSRF token)."""
        keys = (app.secret_key, tuple(app.config.get("SECRET_KEY_FALLBACKS") or ()))
        found = app.extensions.get("prefcenter.session_serializer")
        if found is None or found[0] != keys:
            found = (keys, super().get_signing_serializer(app))
            app.extensions["prefcenter.session_serializer"] = found
        return found[1]


def default_headers(app: Flask) -> tuple[tuple[str, str], ...]:
    """The headers every answer of ``app`` carries unless it set its own."""
    return app.extensions["prefcenter.security_headers"]


def init_app(app: Flask) -> None:
    app.url_map.converters["int"] = BoundedInt
    app.session_interface = CookieSessions()
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=app.config["BASE_URL"].startswith("https://"),
        SESSION_COOKIE_NAME="prefcenter_session",
    )

    defaults = HEADERS
    if app.config["BASE_URL"].startswith("https://"):
        defaults += (("Strict-Transport-Security", "max-age=31536000"),)
    app.extensions["prefcenter.security_headers"] = defaults
    # (lower-case name, name, value): each response is scanned once, not once per header.
    defaults = [(name.lower(), name, value) for name, value in defaults]

    @app.after_request
    def _headers(response):
        headers = response.headers
        present = {name.lower() for name, _value in headers.items()}
        if "retry-after" in present and response.status_code not in (429, 503):
            # Flask-Limiter sends Retry-After on every response; it means "wait" only here.
            del headers["Retry-After"]
        missing = [(name, value) for lower, name, value in defaults if lower not in present]
        if response.mimetype == "text/html" and "cache-control" not in present:
            # Pages carry personal data and tokens: never cache them.
            missing.append(("Cache-Control", "no-store"))
        headers.extend(missing)
        return response
