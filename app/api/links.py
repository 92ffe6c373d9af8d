"""``POST /api/v1/links``: signed links and RFC 8058 headers, one or up to 1,000."""

from __future__ import annotations

from flask import current_app, jsonify

from app.api.auth import require_api_key
from app.api.services import ApiProblem, mint_links, parse_link_body
from app.api.views import bp, json_body
from app.db import get_session


@bp.post("/links")
@require_api_key
def post_links():
    requests, bulk = parse_link_body(json_body(),
                                     locales=current_app.config["SUPPORTED_LOCALES"])
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
