"""``POST /api/v1/esp/<provider>``: bounces, complaints and unsubscribes from ESPs.

No API key: each provider proves itself its own way (app/esp/providers.py, docs/esp.md).
Bodies are the providers' own, read raw (SNS posts JSON as text/plain).
"""

from __future__ import annotations

from flask import current_app, jsonify, request

from app.api.views import bp
from app.db import get_session, utcnow
from app.errors import problem
from app.esp.providers import EspError, Forged
from app.esp.services import confirm_subscription, receive, verify


@bp.post("/esp/<provider>")
def esp_intake(provider: str):
    now = utcnow()
    body = request.get_data(cache=False)
    try:
        intake = verify(current_app, provider, request.headers, body, now)
        if intake.confirm_url is not None:
            confirm_subscription(current_app, intake.confirm_url)
            return jsonify(confirmed=True)
        session = get_session(write=True)
        try:
            tally = receive(session, current_app, intake, provider, now)
        except Exception:
            session.rollback()
            raise
        session.commit()
    except EspError as exc:
        response = problem(exc.status, exc.title, str(exc))
        if isinstance(exc, Forged) and provider == "postmark":
            response.headers["WWW-Authenticate"] = 'Basic realm="prefcenter"'
        return response
    return jsonify(tally.as_dict())
