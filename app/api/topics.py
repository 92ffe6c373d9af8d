"""``/api/v1/topics``, ``/api/v1/roles`` and the recipient export of a topic."""

from __future__ import annotations

from flask import Response, jsonify, request, stream_with_context

from app.api.auth import require_api_key
from app.api.services import list_roles, list_topics, recipient_lines, recipients_topic
from app.api.views import bp
from app.db import get_session


@bp.get("/topics")
@require_api_key
def get_topics():
    return jsonify(topics=list_topics(get_session()))


@bp.get("/roles")
@require_api_key
def get_roles():
    return jsonify(roles=list_roles(get_session()))


@bp.get("/topics/<slug>/recipients")
@require_api_key
def get_recipients(slug: str):
    session = get_session()
    frequency = request.args.get("frequency") or None
    topic = recipients_topic(session, slug, frequency)
    lines = recipient_lines(session, topic.id, frequency)
    response = Response(stream_with_context(lines), mimetype="application/x-ndjson")
    response.headers["Cache-Control"] = "no-store"
    return response
