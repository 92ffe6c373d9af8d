"""Security headers on every response, and the cookie policy."""

from __future__ import annotations

from flask import Flask

CSP = "; ".join([
    "default-src 'none'",
    "style-src 'self'",
    "img-src 'self' data:",
    "font-src 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
    "base-uri 'none'",
])


def init_app(app: Flask) -> None:
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=app.config["BASE_URL"].startswith("https://"),
        SESSION_COOKIE_NAME="prefcenter_session",
    )

    @app.after_request
    def _headers(response):
        headers = response.headers
        if response.status_code not in (429, 503):
            # Flask-Limiter sends Retry-After on every response; it means "wait" only here.
            headers.pop("Retry-After", None)
        headers.setdefault("Referrer-Policy", "no-referrer")
        headers.setdefault("Content-Security-Policy", CSP)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        if app.config["BASE_URL"].startswith("https://"):
            headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        if response.mimetype == "text/html":
            # Pages carry personal data and tokens: never cache them.
            headers.setdefault("Cache-Control", "no-store")
        return response
