"""``POST /api/v1/links``: signed links and RFC 8058 headers, one or up to 1,000."""

from __future__ import annotations

from flask import current_app, jsonify
from pydantic import BaseModel

from app.api.errors import ApiProblem
from app.api.schema import Response, operation, validate_body
from app.api.schemas import LinkBatch, LinkBatchRequest, LinkRequest, Links
from app.api.services import mint_links
from app.api.views import bp
from app.db import get_session
from app.links import minting


def _ref(model: type[BaseModel]) -> dict:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _request(item: LinkRequest) -> minting.LinkRequest:
    return minting.LinkRequest(item.external_id, item.topic or None, item.campaign or None,
                       item.locale or None)


@operation(bp, "/links", "POST", operation_id="mintLinks",
           summary="Signed links and List-Unsubscribe headers, one or a batch",
           tags=["links"], problems=(404,), models=(LinkRequest, LinkBatchRequest),
           body_schema={"oneOf": [_ref(LinkRequest), _ref(LinkBatchRequest)]},
           responses={200: Response("Links (a batch answers per item)", schema={
               "oneOf": [_ref(Links), _ref(LinkBatch)]}, models=(Links,
                                                                       LinkBatch))})
def post_links(body):
    bulk = isinstance(body, dict) and "items" in body
    if bulk:
        requests = [_request(item) for item in validate_body(LinkBatchRequest, body).items]
    else:
        requests = [_request(validate_body(LinkRequest, body))]
    results = mint_links(get_session(), current_app, requests)
    if bulk:
        return jsonify(items=results)
    result = results[0]
    if "error" in result:
        error = result["error"]
        title = "Not Found" if error["status"] == 404 else "Unprocessable Content"
        raise ApiProblem(error["status"], title, error["detail"])
    result.pop("external_id")
    return jsonify(result)
