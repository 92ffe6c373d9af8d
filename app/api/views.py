"""The integrator API blueprint, ``/api/v1``: bearer keys, JSON, RFC 9457 problems.

Routes live by resource in ``subscribers``, ``links``, ``topics``, ``events``
and ``openapi``; this module holds the blueprint and what they share.
"""

from __future__ import annotations

import hashlib
import json

from flask import Blueprint, g, request
from flask_limiter.util import get_remote_address

from app import csrf
from app.api.auth import verify_api_key
from app.api.services import ApiProblem
from app.db import get_session
from app.errors import problem
from app.limits import api_limit, limiter

bp = Blueprint("api", __name__)
# Bearer keys, never cookies: a forged cross-site request has nothing to ride on.
csrf.exempt(bp)


def rate_limit_key() -> str:
    """Limit per API key when a valid one is presented, else per client address."""
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() == "bearer" and presented.strip():
        digest = hashlib.sha256(presented.strip().encode("utf-8")).hexdigest()
        if g.get("rate_key_digest") != digest:
            key = verify_api_key(get_session(), presented.strip())
            g.rate_key_digest = digest
            g.rate_key_id = key.id if key is not None else None
        if g.get("rate_key_id") is not None:
            return f"api-key:{g.rate_key_id}"
    return f"ip:{get_remote_address()}"


limiter.limit(api_limit, key_func=rate_limit_key)(bp)


@bp.errorhandler(ApiProblem)
def _api_problem(exc: ApiProblem):
    return problem(exc.status, exc.title, exc.detail, **exc.extra)


def json_body() -> dict:
    """The request's JSON object, or a precise 415/400/422 problem (413 comes from Werkzeug)."""
    mimetype = request.mimetype
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        raise ApiProblem(415, "Unsupported Media Type",
                         "Send the body as JSON with Content-Type: application/json "
                         f"(got {mimetype or 'no Content-Type'}).")
    raw = request.get_data(cache=True)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiProblem(400, "Bad Request", f"The body is not UTF-8: {exc}.") from exc
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise ApiProblem(400, "Bad Request", f"The body is not valid JSON: {exc}.") from exc
    if not isinstance(body, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", int: "a number",
                float: "a number", type(None): "null"}.get(type(body), "a value")
        raise ApiProblem(422, "Unprocessable Content",
                         f"The body must be a JSON object, not {kind}.",
                         errors=[{"pointer": "", "detail": "must be an object"}])
    return body


def actor() -> str:
    """The API key's name, for the event log."""
    return g.api_key.name


from app.api import esp, events, links, openapi, subscribers, topics  # noqa: E402, F401  (routes)
