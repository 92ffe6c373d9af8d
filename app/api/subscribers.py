"""``/api/v1/subscribers``: upsert one or a batch, read, erase."""

from __future__ import annotations

from flask import current_app, jsonify, url_for
from sqlalchemy.exc import IntegrityError

from app import clock
from app.api.errors import ApiProblem
from app.api.schema import Response, operation
from app.api.schemas import (
    MAX_BATCH_ITEMS,
    Subscriber,
    SubscriberBatch,
    SubscriberBatchAnswer,
    SubscriberExport,
    SubscriberInput,
    SubscriberPath,
)
from app.api.services import CONCURRENT, input_of, unchanged_snapshot, upsert_batch, upsert_chunk
from app.api.views import actor, bp
from app.db import get_session
from app.subscribers.export import export_in, export_locale
from app.subscribers.services import Context, by_external_id, erase, snapshot

TAGS = ["subscribers"]
# A full batch of 10,000 subscribers with a few topics each; Werkzeug answers 413 above.
MAX_BATCH_BYTES = 16 * 1024 * 1024


def _found(session, external_id: str, *, for_update: bool = False):
    subscriber = by_external_id(session, external_id, for_update=for_update)
    if subscriber is None:
        raise ApiProblem(404, "Not Found", f"No subscriber with external_id {external_id!r}.")
    return subscriber


def _upsert_settings() -> dict:
    config = current_app.config
    return {"default_role": config["DEFAULT_ROLE"]}


@operation(bp, "/subscribers/<external_id:external_id>", "PUT", operation_id="upsertSubscriber",
           summary="Create or update a subscriber", tags=TAGS, path=SubscriberPath,
           body=SubscriberInput, problems=(405, 409),
           responses={200: Response("Updated (or unchanged)", Subscriber),
                      201: Response("Created", Subscriber)})
def put_subscriber(path: SubscriberPath, body: SubscriberInput):
    external_id = path.external_id
    data = input_of(body)
    same = unchanged_snapshot(get_session(), external_id, data)
    if same is not None:  # one read, no write lock: a CRM's repeated sync costs little
        return jsonify(same)
    session = get_session(write=True)
    try:
        [outcome] = upsert_chunk(session, [(external_id, data)],
                                 context=Context(source="api", actor=actor()),
                                 now=clock.now(), **_upsert_settings())
        if outcome.problem is not None:
            raise outcome.problem
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise ApiProblem(409, "Conflict", CONCURRENT) from exc
    except Exception:
        session.rollback()
        raise
    created = outcome.status == 201
    response = jsonify(snapshot(outcome.subscriber))
    response.status_code = outcome.status
    if created:
        response.headers["Location"] = url_for("api.get_subscriber", external_id=external_id)
    return response


@operation(bp, "/subscribers/batch", "POST", operation_id="upsertSubscribers",
           summary=f"Create or update up to {MAX_BATCH_ITEMS:,} subscribers", tags=TAGS,
           description="Each item is a PUT body with its `external_id`, upserted by the "
                       "same rules; the answer holds one result per item, in order. Events "
                       "carry `source: import`. A body that breaks the schema is refused "
                       "whole (422); the rules that need the database answer per item.",
           body=SubscriberBatch, max_body=MAX_BATCH_BYTES,
           responses={200: Response("One result per item, in order", SubscriberBatchAnswer)})
def post_batch(body: SubscriberBatch):
    results = upsert_batch(get_session(write=True), body.items,
                           context=Context(source="import", actor=actor()),
                           now=clock.now(), **_upsert_settings())
    return {"items": results}


@operation(bp, "/subscribers/<external_id:external_id>", "GET", operation_id="getSubscriber",
           summary="Read a subscriber", tags=TAGS, path=SubscriberPath, problems=(404, 405),
           responses={200: Response("The subscriber", Subscriber)})
def get_subscriber(path: SubscriberPath):
    return jsonify(snapshot(_found(get_session(), path.external_id)))


@operation(bp, "/subscribers/<exported_id:external_id>/export", "GET",
           operation_id="exportSubscriber",
           summary="Everything held about a subscriber, consent history included", tags=TAGS,
           description="Identity, locale, role, every subscription with its channels and "
                       "frequency, the pause, and every change (when, what, source, campaign, "
                       "link id, privacy-policy version), each with its signed consent "
                       "receipt (`prefcenter receipts verify`). Labels are in the "
                       "subscriber's language. An erased subscriber keeps only the history.",
           path=SubscriberPath, problems=(404, 405),
           responses={200: Response("The subscriber's data", SubscriberExport)})
def export_subscriber(path: SubscriberPath):
    session = get_session()
    subscriber = _found(session, path.external_id)
    config = current_app.config
    document = export_in(config, session, subscriber, locale=export_locale(config, subscriber),
                         now=clock.now())
    response = jsonify(document)
    response.headers["Cache-Control"] = "no-store"
    return response


@operation(bp, "/subscribers/<external_id:external_id>", "DELETE", operation_id="eraseSubscriber",
           summary="Erase personal data; the address stays suppressed", tags=TAGS,
           path=SubscriberPath, problems=(404, 405), responses={204: Response("Erased")})
def delete_subscriber(path: SubscriberPath):
    session = get_session(write=True)
    try:
        subscriber = _found(session, path.external_id, for_update=True)
        erase(session, subscriber, context=Context(source="api", actor=actor()))
    except Exception:
        session.rollback()
        raise
    session.commit()
    return "", 204
