"""``/api/v1/topics``, ``/api/v1/roles`` and the recipient export of a topic."""

from __future__ import annotations

import datetime as dt

from flask import Response as FlaskResponse
from flask import current_app, jsonify, stream_with_context

from app import clock
from app.api.schema import Response, operation
from app.api.schemas import (
    Recipient,
    RecipientsPath,
    RecipientsQuery,
    RoleList,
    SendRequest,
    TopicList,
)
from app.api.services import (
    invalid,
    list_roles,
    list_topics,
    recipient_lines,
    recipients_topic,
)
from app.api.views import bp
from app.db import get_session
from app.sends.services import due_send_lines

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
    topic = recipients_topic(session, path.slug, query.frequency, query.channel)
    return _ndjson(recipient_lines(session, topic.id, query.frequency, channel=query.channel,
                                   now=clock.now()))


@operation(bp, "/topics/<slug>/sends", "POST", operation_id="sendToDueRecipients",
           summary="Who is due this topic on this channel now, recorded as sent", tags=TAGS,
           description="The recipients of the export whose last send of the topic on the "
                       "channel is at least their frequency ago (daily 1 day, weekly 7, "
                       "biweekly 14, monthly 1 calendar month, quarterly 3; less "
                       "PREFCENTER_SEND_GRACE), streamed as NDJSON. Each batch is "
                       "recorded as sent by this campaign in the transaction that reads "
                       "it, and committed before it is streamed. A retry of the same "
                       "campaign returns the same recipients (those whose last send is "
                       "this campaign) plus any now due; sends of one topic and channel "
                       "take turns, so two campaigns never share a recipient. See "
                       "docs/sends.md.",
           path=RecipientsPath, body=SendRequest, problems=(404,),
           responses={200: Response("One Recipient per line", Recipient,
                                    media_type="application/x-ndjson")})
def post_send(path: RecipientsPath, body: SendRequest):
    """Stream who is due the topic on the channel now, recording each batch as sent."""
    if not body.campaign.strip():
        raise invalid("/campaign", "campaign must not be empty.")
    session = get_session()
    topic = recipients_topic(session, path.slug, None, body.channel)
    return _ndjson(due_send_lines(
        session, topic.id, body.channel, body.campaign, now=clock.now(),
        grace=dt.timedelta(seconds=current_app.config["SEND_GRACE"])))


def _ndjson(lines):
    response = FlaskResponse(stream_with_context(lines), mimetype="application/x-ndjson")
    response.headers["Cache-Control"] = "no-store"
    return response
