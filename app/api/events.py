"""``GET /api/v1/events``: the change feed, oldest first, for reconciliation."""

from __future__ import annotations

from flask import jsonify, request

from app.api.auth import require_api_key
from app.api.services import events_page, parse_cursor, parse_limit
from app.api.views import bp
from app.db import get_session


@bp.get("/events")
@require_api_key
def get_events():
    after = parse_cursor(request.args.get("after"))
    limit = parse_limit(request.args.get("limit"))
    return jsonify(events_page(get_session(), after, limit))
