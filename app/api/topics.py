"""``/api/v1/topics``, ``/api/v1/roles`` and the recipient export of a topic."""

from __future__ import annotations

from flask import Response as FlaskResponse
from flask import jsonify, stream_with_context

from app.api.schema import Response, operation
from app.api.schemas import (
    Recipient,
    RecipientsPath,
    RecipientsQuery,
    RoleList,
    TopicList,
)
from app.api.services import list_roles, list_topics, recipient_lines, recipients_topic
from app.api.views import bp
from app.db import get_session

TAGS = ["catalogue"]


@operation(bp, "/topics", "GET", operation_id="listTopics", summary="Every topic", tags=TAGS,
           responses={200: Response("Topics", TopicList)})
def get_topics():
    return jsonify(topics=list_topics(get_session()))


@operation(bp, "/roles", "GET", operation_id="listRoles", summary="Every role and its topics",
           tags=TAGS, responses={200: Response("Roles", RoleList)})
def get_roles():
    return jsonify(roles=list_roles(get_session()))


@operation(bp, "/topics/<slug>/recipients", "GET", operation_id="exportRecipients",
           summary="Who may be mailed this topic now, streamed as NDJSON", tags=TAGS,
           path=RecipientsPath, query=RecipientsQuery, problems=(404,),
           responses={200: Response("One Recipient per line", Recipient,
                                    media_type="application/x-ndjson")})
def get_recipients(path: RecipientsPath, query: RecipientsQuery):
    session = get_session()
    topic = recipients_topic(session, path.slug, query.frequency)
    lines = recipient_lines(session, topic.id, query.frequency)
    response = FlaskResponse(stream_with_context(lines), mimetype="application/x-ndjson")
    response.headers["Cache-Control"] = "no-store"
    return response
