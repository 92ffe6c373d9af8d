"""The integrator API blueprint, ``/api/v1``: bearer keys, JSON, RFC 9457 problems.

Routes live by resource in ``subscribers``, ``links``, ``topics``, ``events``
and ``openapi``; this module holds the blueprint and what they share.
"""

from __future__ import annotations

import hashlib

from flask import Blueprint, g, request
from flask_limiter.util import get_remote_address
from werkzeug.routing import PathConverter

from app import csrf
from app.api.auth import verify_api_key
from app.api.errors import ApiProblem
from app.db import get_session
from app.errors import problem
from app.limits import api_limit, limiter

bp = Blueprint("api", __name__)


class ExternalIdConverter(PathConverter):
    """A CRM id in a path (it may hold ``/``), except ``batch``: ``/subscribers/batch`` is
    the batch endpoint for every method, as OpenAPI matches a fixed path first. Likewise
    ``/subscribers/<id>/export`` is the export for every method (an id cannot end in
    ``/export``)."""

    regex = r"(?!batch$)(?!.*/export$)[^/].*?"


class ExportedIdConverter(ExternalIdConverter):
    """The CRM id in ``/subscribers/<id>/export`` (followed by ``/export`` in the rule)."""

    regex = r"(?!batch$)[^/].*?"


bp.record_once(lambda state: state.app.url_map.converters.setdefault(
    "external_id", ExternalIdConverter))
bp.record_once(lambda state: state.app.url_map.converters.setdefault(
    "exported_id", ExportedIdConverter))
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


def actor() -> str:
    """The API key's name, for the event log."""
    return g.api_key.name


from app.api import esp, events, links, openapi, subscribers, topics  # noqa: E402, F401  (routes)
