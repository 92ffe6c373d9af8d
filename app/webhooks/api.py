"""``/api/v1/webhook-endpoints``: manage CRM endpoints over the API (thin views)."""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, request

from app import csrf
from app.api.auth import require_api_key
from app.api.services import ApiProblem
from app.db import get_session
from app.errors import problem
from app.limits import api_limit, limiter
from app.webhooks.services import (
    DELIVERY_FILTERS,
    NotReplayable,
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


@bp.errorhandler(ApiProblem)
def _api_problem(exc: ApiProblem):
    return problem(exc.status, exc.title, exc.detail, **exc.extra)


def _invalid(detail: str):
    return problem(422, "Unprocessable Content", detail)


def _body() -> dict:
    """The request's JSON object, or a 400 problem."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ApiProblem(400, "Bad Request", "The body must be a JSON object.")
    return data


def _endpoint(session, endpoint_id: str):
    """The endpoint, or a 404 problem."""
    endpoint = get_endpoint(session, endpoint_id)
    if endpoint is None:
        raise ApiProblem(404, "Not Found", f"No webhook endpoint {endpoint_id!r}.")
    return endpoint


def _when(value, name: str) -> dt.datetime:
    if not isinstance(value, str):
        raise WebhookError(f"{name} must be an ISO 8601 timestamp")
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise WebhookError(f"{name} is not an ISO 8601 timestamp: {value!r}") from exc
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


@bp.post("/webhook-endpoints")
@require_api_key
def create():
    data = _body()
    session = get_session(write=True)
    try:
        endpoint, secret = create_endpoint(session, data.get("url"), events=data.get("events"),
                                           description=str(data.get("description") or ""))
    except WebhookError as exc:
        return _invalid(str(exc))
    session.commit()
    return {**describe_endpoint(endpoint), "secret": secret}, 201


@bp.get("/webhook-endpoints")
@require_api_key
def index():
    return {"endpoints": [describe_endpoint(e) for e in list_endpoints(get_session())]}


@bp.get("/webhook-endpoints/<endpoint_id>")
@require_api_key
def show(endpoint_id: str):
    return describe_endpoint(_endpoint(get_session(), endpoint_id))


@bp.patch("/webhook-endpoints/<endpoint_id>")
@require_api_key
def patch(endpoint_id: str):
    data = _body()
    session = get_session(write=True)
    endpoint = _endpoint(session, endpoint_id)
    enabled = data.get("enabled")
    if enabled is not None and not isinstance(enabled, bool):
        return _invalid("enabled must be true or false")
    try:
        update_endpoint(session, endpoint, url=data.get("url"), events=data.get("events"),
                        description=data.get("description"))
    except WebhookError as exc:
        return _invalid(str(exc))
    if enabled is True and not endpoint.enabled:
        enable_endpoint(session, endpoint)
    elif enabled is False and endpoint.enabled:
        disable_endpoint(session, endpoint, "Disabled through the API.")
    session.commit()
    return describe_endpoint(endpoint)


@bp.delete("/webhook-endpoints/<endpoint_id>")
@require_api_key
def delete(endpoint_id: str):
    session = get_session(write=True)
    endpoint = _endpoint(session, endpoint_id)
    delete_endpoint(session, endpoint)
    session.commit()
    return "", 204


@bp.get("/webhook-endpoints/<endpoint_id>/deliveries")
@require_api_key
def deliveries(endpoint_id: str):
    session = get_session()
    endpoint = _endpoint(session, endpoint_id)
    status = request.args.get("status") or None
    if status is not None and status not in DELIVERY_FILTERS:
        return _invalid(f"status must be one of {', '.join(DELIVERY_FILTERS)}")
    try:
        limit = int(request.args.get("limit", 100))
        before = request.args.get("before")
        before_id = int(before) if before else None
    except ValueError:
        return _invalid("limit and before must be integers")
    if not 1 <= limit <= 1000:
        return _invalid("limit must be between 1 and 1000")
    found = list_deliveries(session, endpoint_id=endpoint.id, status=status,
                            before_id=before_id, limit=limit)
    body = {"deliveries": [describe_delivery(session, d) for d in found]}
    if len(found) == limit:
        body["next_before"] = found[-1].id
    return body


@bp.post("/webhook-endpoints/<endpoint_id>/replay")
@require_api_key
def replay(endpoint_id: str):
    data = _body()
    session = get_session(write=True)
    endpoint = _endpoint(session, endpoint_id)
    try:
        if "delivery_id" in data:
            delivery_id = data["delivery_id"]
            if not isinstance(delivery_id, int) or isinstance(delivery_id, bool):
                return _invalid("delivery_id must be an integer")
            delivery = get_delivery(session, delivery_id, endpoint.id)
            if delivery is None:
                return problem(404, "Not Found",
                               f"No delivery {delivery_id} for endpoint {endpoint.id!r}.")
            queued = [replay_delivery(session, delivery).id]
            count = 1
        elif "since" in data and "until" in data:
            count = replay_range(session, endpoint, _when(data["since"], "since"),
                                 _when(data["until"], "until"))
            queued = None
        else:
            return _invalid("give either delivery_id or both since and until")
    except NotReplayable as exc:
        return problem(409, "Conflict", str(exc))
    except WebhookError as exc:
        return _invalid(str(exc))
    session.commit()
    body = {"replayed": count, "endpoint_enabled": endpoint.enabled}
    if queued is not None:
        body["deliveries"] = queued
    return body, 202


@bp.post("/webhook-endpoints/<endpoint_id>/rotate-secret")
@require_api_key
def rotate(endpoint_id: str):
    data = _body() if request.get_data() else {}
    overlap = data.get("overlap_seconds")
    if overlap is not None and (not isinstance(overlap, int) or isinstance(overlap, bool)
                                or overlap < 0):
        return _invalid("overlap_seconds must be a non-negative integer")
    session = get_session(write=True)
    endpoint = _endpoint(session, endpoint_id)
    secret = rotate_secret(session, endpoint, overlap=overlap)
    session.commit()
    return {**describe_endpoint(endpoint), "secret": secret}


@bp.post("/webhook-endpoints/<endpoint_id>/test")
@require_api_key
def test(endpoint_id: str):
    session = get_session()
    endpoint = _endpoint(session, endpoint_id)
    result = send_test_event(session, endpoint)
    return {"ok": result.ok, "status_code": result.status_code, "error": result.error}
