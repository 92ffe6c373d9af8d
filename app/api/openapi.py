"""``GET /api/v1/openapi.json``: the OpenAPI 3.1 document, generated from the models that
validate each request (:mod:`app.api.schema`), with the current locales and marketing
topics written in (so a client, or a fuzzer, knows which values exist now)."""

from __future__ import annotations

from flask import current_app, jsonify
from sqlalchemy import select

from app.api.schema import Response, document, operation, resolve
from app.api.views import bp
from app.db import get_session
from app.topics.models import Topic


def catalogue_values(session, locales: list[str]) -> dict:
    topics = list(session.scalars(select(Topic.slug).where(Topic.kind == "marketing")
                                  .order_by(Topic.position, Topic.slug)))
    session.rollback()  # end the read
    return {"locales": list(locales), "marketing-topics": topics}


@operation(bp, "/openapi.json", "GET", operation_id="openapi", summary="This document",
           public=True, tags=["meta"],
           responses={200: Response("OpenAPI 3.1", schema={"type": "object"})})
def openapi_document():
    app = current_app._get_current_object()
    static = app.extensions.get("prefcenter.openapi")
    if static is None:  # built once per app: the routes and models are fixed by then
        static = app.extensions["prefcenter.openapi"] = document(
            app, title="Prefcenter API", version="1",
            description="Subscribers (one or a batch), signed links, topics, recipient "
                        "exports, the change feed and webhook endpoints. Errors are RFC 9457 "
                        "problem details; a 422 names each bad member in `errors`.")
    session = get_session()
    values = catalogue_values(session, app.config["SUPPORTED_LOCALES"])
    found = resolve(static, values)
    found["servers"] = [{"url": app.config["BASE_URL"]}]
    return jsonify(found)
