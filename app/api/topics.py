"""``/api/v1/topics``, ``/api/v1/roles`` and the recipient export of a topic."""

from __future__ import annotations

import datetime as dt

from flask import Response, current_app, jsonify, request, stream_with_context

from app import clock
from app.api.auth import require_api_key
from app.api.services import (
    ApiProblem,
    list_roles,
    list_topics,
    parse_send,
    recipient_lines,
    recipients_topic,
)
from app.api.views import bp, json_body
from app.db import get_session
from app.sends.services import due_send_lines
from app.topics.models import CHANNELS


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
    channel = request.args.get("channel") or "email"
    if channel not in CHANNELS:
        raise ApiProblem(400, "Bad Request",
                         f"Unknown channel {channel!r}; one of: {', '.join(CHANNELS)}.")
    topic = recipients_topic(session, slug, frequency, channel)
    lines = recipient_lines(session, topic.id, frequency, channel=channel, now=clock.now())
    return _ndjson(lines)


@bp.post("/topics/<slug>/sends")
@require_api_key
def post_send(slug: str):
    """Stream who is due the topic on the channel now, recording each batch as sent."""
    campaign, channel = parse_send(json_body())
    session = get_session()
    topic = recipients_topic(session, slug, None, channel)
    lines = due_send_lines(session, topic.id, channel, campaign, now=clock.now(),
                           grace=dt.timedelta(seconds=current_app.config["SEND_GRACE"]))
    return _ndjson(lines)


def _ndjson(lines):
    response = Response(stream_with_context(lines), mimetype="application/x-ndjson")
    response.headers["Cache-Control"] = "no-store"
    return response
