"""``/api/v1/webhook-endpoints``: manage CRM endpoints over the API (thin views).

Each route is declared once with :func:`app.api.schema.operation`: its models validate
the request and document it in openapi.json.
"""

from __future__ import annotations

import datetime as dt

from flask import Blueprint

from app import csrf
from app.api.errors import ApiProblem
from app.api.schema import Response, operation
from app.db import get_session
from app.errors import problem
from app.limits import api_limit, limiter
from app.webhooks.schemas import (
    DeliveriesQuery,
    EndpointPath,
    WebhookDeliveryList,
    WebhookEndpoint,
    WebhookEndpointCreated,
    WebhookEndpointInput,
    WebhookEndpointList,
    WebhookEndpointPatch,
    WebhookReplay,
    WebhookReplayed,
    WebhookRotate,
    WebhookTestResult,
)
from app.webhooks.services import (
    NotReplayable,
    UnknownEventType,
    UnknownSource,
    WebhookError,
    create_endpoint,
    delete_endpoint,
    describe_delivery,
    describe_endpoint,
    disable_endpoint,
    enable_endpoint,
    get_delivery,
    get_endpoint,
    list_deliveries,
    list_endpoints,
    replay_delivery,
    replay_range,
    rotate_secret,
    send_test_event,
    update_endpoint,
)

bp = Blueprint("webhooks_api", __name__)
csrf.exempt(bp)
limiter.limit(api_limit)(bp)
TAGS = ["webhooks"]


@bp.errorhandler(ApiProblem)
def _api_problem(exc: ApiProblem):
    return problem(exc.status, exc.title, exc.detail, **exc.extra)


def _refused(exc: WebhookError) -> ApiProblem:
    """A rule of the webhook services broken: 422 naming the member."""
    member = {UnknownEventType: "/events", UnknownSource: "/sources"}.get(type(exc), "/url")
    if "until" in str(exc):
        member = "/until"
    return ApiProblem(422, "Unprocessable Content", str(exc),
                      errors=[{"pointer": member, "detail": str(exc)}])


def _endpoint(session, endpoint_id: str):
    """The endpoint, or a 404 problem."""
    endpoint = get_endpoint(session, endpoint_id)
    if endpoint is None:
        raise ApiProblem(404, "Not Found", f"No webhook endpoint {endpoint_id!r}.")
    return endpoint


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


@operation(bp, "/webhook-endpoints", "POST", operation_id="createWebhookEndpoint",
           summary="Register a webhook endpoint; its secret is shown once", tags=TAGS,
           body=WebhookEndpointInput,
           responses={201: Response("Registered", WebhookEndpointCreated)})
def create(body: WebhookEndpointInput):
    session = get_session(write=True)
    try:
        endpoint, secret = create_endpoint(session, body.url, events=body.events,
                                           sources=body.sources,
                                           description=body.description or "")
    except WebhookError as exc:
        session.rollback()
        raise _refused(exc) from exc
    session.commit()
    return {**describe_endpoint(endpoint), "secret": secret}, 201


@operation(bp, "/webhook-endpoints", "GET", operation_id="listWebhookEndpoints",
           summary="Every webhook endpoint (never its secrets)", tags=TAGS,
           responses={200: Response("Endpoints", WebhookEndpointList)})
def index():
    return {"endpoints": [describe_endpoint(e) for e in list_endpoints(get_session())]}


@operation(bp, "/webhook-endpoints/<endpoint_id>", "GET", operation_id="getWebhookEndpoint",
           summary="One webhook endpoint", tags=TAGS, path=EndpointPath, problems=(404,),
           responses={200: Response("The endpoint", WebhookEndpoint)})
def show(path: EndpointPath):
    return describe_endpoint(_endpoint(get_session(), path.endpoint_id))


@operation(bp, "/webhook-endpoints/<endpoint_id>", "PATCH",
           operation_id="updateWebhookEndpoint",
           summary="Change url, events, sources, description, or enable/disable", tags=TAGS,
           path=EndpointPath, body=WebhookEndpointPatch, problems=(404,),
           responses={200: Response("Updated", WebhookEndpoint)})
def patch(path: EndpointPath, body: WebhookEndpointPatch):
    session = get_session(write=True)
    endpoint = _endpoint(session, path.endpoint_id)
    try:
        update_endpoint(session, endpoint, url=body.url, events=body.events,
                        sources=body.sources, description=body.description)
    except WebhookError as exc:
        session.rollback()
        raise _refused(exc) from exc
    if body.enabled is True and not endpoint.enabled:
        enable_endpoint(session, endpoint)
    elif body.enabled is False and endpoint.enabled:
        disable_endpoint(session, endpoint, "Disabled through the API.")
    session.commit()
    return describe_endpoint(endpoint)


@operation(bp, "/webhook-endpoints/<endpoint_id>", "DELETE",
           operation_id="deleteWebhookEndpoint", tags=TAGS,
           summary="Remove an endpoint and its pending deliveries", path=EndpointPath,
           problems=(404,), responses={204: Response("Deleted")})
def delete(path: EndpointPath):
    session = get_session(write=True)
    endpoint = _endpoint(session, path.endpoint_id)
    delete_endpoint(session, endpoint)
    session.commit()
    return "", 204


@operation(bp, "/webhook-endpoints/<endpoint_id>/deliveries", "GET",
           operation_id="listWebhookDeliveries", tags=TAGS,
           summary="Deliveries of an endpoint, newest first", path=EndpointPath,
           query=DeliveriesQuery, problems=(404,),
           responses={200: Response("Deliveries", WebhookDeliveryList)})
def deliveries(path: EndpointPath, query: DeliveriesQuery):
    session = get_session()
    endpoint = _endpoint(session, path.endpoint_id)
    found = list_deliveries(session, endpoint_id=endpoint.id, status=query.status,
                            before_id=query.before, limit=query.limit)
    body = {"deliveries": [describe_delivery(session, d) for d in found]}
    if len(found) == query.limit:
        body["next_before"] = found[-1].id
    return body


@operation(bp, "/webhook-endpoints/<endpoint_id>/replay", "POST",
           operation_id="replayWebhookDeliveries", tags=TAGS,
           summary="Send one delivery, or every event of a time range, again",
           path=EndpointPath, body=WebhookReplay, problems=(404, 409),
           responses={202: Response("Queued", WebhookReplayed)})
def replay(path: EndpointPath, body: WebhookReplay):
    session = get_session(write=True)
    endpoint = _endpoint(session, path.endpoint_id)
    try:
        if body.delivery_id is not None:
            delivery = get_delivery(session, body.delivery_id, endpoint.id)
            if delivery is None:
                raise ApiProblem(404, "Not Found", f"No delivery {body.delivery_id} for "
                                                   f"endpoint {endpoint.id!r}.")
            queued = [replay_delivery(session, delivery).id]
            count = 1
        elif body.since is not None and body.until is not None:
            count = replay_range(session, endpoint, _utc(body.since), _utc(body.until))
            queued = None
        else:
            detail = "give either delivery_id or both since and until"
            raise ApiProblem(422, "Unprocessable Content", detail,
                             errors=[{"pointer": "", "detail": detail}])
    except NotReplayable as exc:
        session.rollback()
        raise ApiProblem(409, "Conflict", str(exc)) from exc
    except WebhookError as exc:
        session.rollback()
        raise _refused(exc) from exc
    session.commit()
    answer = {"replayed": count, "endpoint_enabled": endpoint.enabled}
    if queued is not None:
        answer["deliveries"] = queued
    return answer, 202


@operation(bp, "/webhook-endpoints/<endpoint_id>/rotate-secret", "POST",
           operation_id="rotateWebhookSecret", tags=TAGS,
           summary="A new signing secret, shown once; the old one overlaps a while",
           path=EndpointPath, body=WebhookRotate, body_required=False, problems=(404,),
           responses={200: Response("Rotated", WebhookEndpointCreated)})
def rotate(path: EndpointPath, body: WebhookRotate):
    session = get_session(write=True)
    endpoint = _endpoint(session, path.endpoint_id)
    secret = rotate_secret(session, endpoint, overlap=body.overlap_seconds)
    session.commit()
    return {**describe_endpoint(endpoint), "secret": secret}


@operation(bp, "/webhook-endpoints/<endpoint_id>/test", "POST",
           operation_id="testWebhookEndpoint", tags=TAGS,
           summary="Send a signed webhook.test event now and report the answer",
           path=EndpointPath, problems=(404,),
           responses={200: Response("The attempt", WebhookTestResult)})
def test(path: EndpointPath):
    session = get_session()
    endpoint = _endpoint(session, path.endpoint_id)
    result = send_test_event(session, endpoint)
    return {"ok": result.ok, "status_code": result.status_code, "error": result.error}
