"""``POST /api/v1/esp/<provider>``: bounces, complaints and unsubscribes from ESPs.

No API key: each provider proves itself its own way (app/esp/providers.py, docs/esp.md).
Bodies are the providers' own, read raw (SNS posts JSON as text/plain): the operation
documents them and the intake verifies and parses them.
"""

from __future__ import annotations

from flask import current_app, jsonify, request

from app.api.schema import Response, operation
from app.api.schemas import EspConfirmed, EspPath, EspTally
from app.api.views import bp
from app.db import get_session, utcnow
from app.errors import problem
from app.esp.providers import EspError, Forged
from app.esp.services import confirm_subscription, receive, verify


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


@operation(bp, "/esp/<provider>", "POST", operation_id="receiveEspEvents", tags=["esp"],
           summary="Bounces, complaints and unsubscribes in the provider's own format",
           description="No API key: Amazon SES posts through SNS (message signature), "
                       "SendGrid signs with ECDSA, Postmark sends basic auth, Mailgun "
                       "signs with HMAC. See docs/esp.md for each provider's setup and "
                       "what each event does. A repeated event changes nothing.",
           public=True, path=EspPath, problems=(400, 401, 404, 406, 413),
           raw_body={"required": True, "content": {
               "application/json": {"schema": {"type": ["object", "array"]}},
               "text/plain": {"schema": {"type": "string",
                                         "description": "an SNS message (JSON)"}}}},
           responses={200: Response("Received (or an SNS subscription confirmed)",
                                    schema={"oneOf": [_ref("EspTally"),
                                                      _ref("EspConfirmed")]},
                                    models=(EspTally, EspConfirmed))})
def esp_intake(path: EspPath):
    provider = path.provider
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
