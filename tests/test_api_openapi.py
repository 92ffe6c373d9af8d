"""The OpenAPI document: valid 3.1, complete, and true to what the API answers."""

from __future__ import annotations

import json
import re

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from app.api.auth import create_api_key


@pytest.fixture
def spec(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    return response.get_json()


@pytest.fixture
def headers(session, catalogue):
    _key, plain = create_api_key(session, "spec")
    session.commit()
    return {"Authorization": f"Bearer {plain}"}


def conforms(spec: dict, name: str, instance) -> None:
    schema = {"$ref": f"#/components/schemas/{name}", "components": spec["components"]}
    errors = list(Draft202012Validator(schema).iter_errors(instance))
    assert not errors, [e.message for e in errors]


def test_document_is_valid_openapi_31(spec):
    validate(spec)
    assert spec["openapi"].startswith("3.1")
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert spec["security"] == [{"bearer": []}]


def test_every_api_route_is_documented(app, spec):
    documented = {(path, method.upper()) for path, item in spec["paths"].items()
                  for method in item if method != "parameters"}
    routes = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/"):
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            routes.add((path, method))
    assert routes, "no /api/v1 routes registered"
    assert routes <= documented, sorted(routes - documented)
    assert ("/api/v1/webhook-endpoints", "POST") in documented
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method == "parameters" or path.endswith("openapi.json"):
                continue
            assert "401" in operation["responses"], (path, method)
            for status, answer in operation["responses"].items():
                if status[0] in "45":
                    assert "application/problem+json" in answer["content"], (path, status)


def test_responses_match_the_documented_schemas(client, spec, headers):
    created = client.put("/api/v1/subscribers/spec-1", headers=headers,
                         json={"email": "spec@example.com",
                               "topics": {"alerts": {"subscribed": True}}})
    assert created.status_code == 201
    conforms(spec, "Subscriber", created.get_json())
    conforms(spec, "Subscriber", client.get("/api/v1/subscribers/spec-1",
                                            headers=headers).get_json())
    single = client.post("/api/v1/links", headers=headers,
                         json={"external_id": "spec-1", "topic": "alerts"})
    conforms(spec, "Links", single.get_json())
    batch = client.post("/api/v1/links", headers=headers,
                        json={"items": [{"external_id": "spec-1"}, {"external_id": "none"}]})
    conforms(spec, "LinkBatch", batch.get_json())
    conforms(spec, "TopicList", client.get("/api/v1/topics", headers=headers).get_json())
    conforms(spec, "RoleList", client.get("/api/v1/roles", headers=headers).get_json())
    conforms(spec, "EventPage", client.get("/api/v1/events", headers=headers).get_json())
    export = client.get("/api/v1/topics/alerts/recipients", headers=headers)
    rows = [json.loads(line) for line in export.get_data(as_text=True).splitlines()]
    assert rows
    for row in rows:
        conforms(spec, "Recipient", row)
    endpoint = client.post("/api/v1/webhook-endpoints", headers=headers,
                           json={"url": "https://crm.example.com/hooks"})
    assert endpoint.status_code == 201, endpoint.get_json()
    conforms(spec, "WebhookEndpointCreated", endpoint.get_json())
    for response in (
        client.get("/api/v1/subscribers/none", headers=headers),
        client.get("/api/v1/topics"),
        client.put("/api/v1/subscribers/spec-2", headers=headers, json={"email": "bad"}),
        client.get("/api/v1/events?after=x", headers=headers),
    ):
        assert response.mimetype == "application/problem+json"
        conforms(spec, "Problem", response.get_json())


def test_schema_check_can_fail(spec):
    with pytest.raises(AssertionError):
        conforms(spec, "Subscriber", {"external_id": "x"})
