"""``/api/v1/subscribers/<external_id>``: upsert, read, erase."""

from __future__ import annotations

from flask import current_app, jsonify, url_for
from sqlalchemy.exc import IntegrityError

from app import clock
from app.api.auth import require_api_key
from app.api.services import ApiProblem, check_external_id, parse_subscriber, upsert_subscriber
from app.api.views import actor, bp, json_body
from app.db import get_session
from app.subscribers.services import Context, by_external_id, erase, snapshot


def _found(session, external_id: str, *, for_update: bool = False):
    subscriber = by_external_id(session, check_external_id(external_id), for_update=for_update)
    if subscriber is None:
        raise ApiProblem(404, "Not Found", f"No subscriber with external_id {external_id!r}.")
    return subscriber


@bp.put("/subscribers/<path:external_id>")
@require_api_key
def put_subscriber(external_id: str):
    check_external_id(external_id)
    data = parse_subscriber(json_body(), locales=current_app.config["SUPPORTED_LOCALES"])
    session = get_session(write=True)
    try:
        subscriber, created, _events = upsert_subscriber(
            session, external_id, data, context=Context(source="api", actor=actor()),
            default_role=current_app.config["DEFAULT_ROLE"],
            default_locale=current_app.config["DEFAULT_LOCALE"], now=clock.now())
    except IntegrityError as exc:
        session.rollback()
        raise ApiProblem(409, "Conflict", "A concurrent request changed this subscriber or "
                                          "its address; retry the request.") from exc
    except Exception:
        session.rollback()
        raise
    session.commit()
    response = jsonify(snapshot(subscriber))
    response.status_code = 201 if created else 200
    if created:
        response.headers["Location"] = url_for("api.get_subscriber", external_id=external_id)
    return response


@bp.get("/subscribers/<path:external_id>")
@require_api_key
def get_subscriber(external_id: str):
    return jsonify(snapshot(_found(get_session(), external_id)))


@bp.delete("/subscribers/<path:external_id>")
@require_api_key
def delete_subscriber(external_id: str):
    session = get_session(write=True)
    try:
        subscriber = _found(session, external_id, for_update=True)
        erase(session, subscriber, context=Context(source="api", actor=actor()))
    except Exception:
        session.rollback()
        raise
    session.commit()
    return "", 204
