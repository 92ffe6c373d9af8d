"""``GET /api/v1/events``: the change feed, in commit order, for reconciliation."""

from __future__ import annotations

from flask import jsonify

from app.api.schema import Response, operation
from app.api.schemas import EventPage, EventsQuery
from app.api.services import events_page, parse_cursor
from app.api.views import bp
from app.db import get_session


@operation(bp, "/events", "GET", operation_id="listEvents", tags=["events"],
           summary="The change feed, in commit order", query=EventsQuery,
           description="Pass each answer's `next_cursor` as `after` to read on: a reader "
                       "that pages this way never misses an event, whatever order "
                       "transactions commit in.",
           responses={200: Response("A page of events", EventPage)})
def get_events(query: EventsQuery):
    return jsonify(events_page(get_session(), parse_cursor(query.after), query.limit))
