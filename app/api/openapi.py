"""``GET /api/v1/openapi.json``: the OpenAPI 3.1 document, generated from the models that
validate each request (:mod:`app.api.schema`)."""

from __future__ import annotations

from flask import current_app, jsonify

from app.api.schema import Response, document, operation
from app.api.views import bp


@operation(bp, "/openapi.json", "GET", operation_id="openapi", summary="This document",
           public=True, tags=["meta"],
           responses={200: Response("OpenAPI 3.1", schema={"type": "object"})})
def openapi_document():
    app = current_app._get_current_object()
    found = app.extensions.get("prefcenter.openapi")
    if found is None:  # built once per app: the routes and models are fixed by then
        found = document(
            app, title="Prefcenter API", version="1",
            description="Subscribers (one or a batch), signed links, topics, recipient "
                        "exports, the change feed and webhook endpoints. Errors are RFC 9457 "
                        "problem details; a 422 names each bad member in `errors`.")
        found["servers"] = [{"url": app.config["BASE_URL"]}]
        app.extensions["prefcenter.openapi"] = found
    return jsonify(found)
