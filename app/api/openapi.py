"""``GET /api/v1/openapi.json``: the OpenAPI 3.1 document of every /api/v1 path."""

from __future__ import annotations

from flask import current_app, jsonify

from app.api.views import bp
from app.topics.models import CHANNELS, FREQUENCIES, KINDS

STRING_OR_NULL = {"type": ["string", "null"]}
CHANNEL_LIST = {"type": "array", "uniqueItems": True, "items": {"enum": list(CHANNELS)}}
PHONE = {"type": ["string", "null"], "description": "E.164, e.g. +60123456789 (the "
         "phonenumbers library checks it); null removes it, which stops SMS for every topic"}
PAUSED_UNTIL = {"type": ["string", "null"], "format": "date-time",
                "description": "Every marketing message (every channel) stops until this "
                               "moment (UTC, to the second) and starts again by itself; "
                               "null resumes now."}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(name: str, description: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": _ref(name)}}}


def _problem(description: str) -> dict:
    return {"description": description,
            "content": {"application/problem+json": {"schema": _ref("Problem")}}}


def _problems(*statuses: int) -> dict:
    texts = {
        400: "Malformed request (bad JSON, bad query parameter)",
        401: "Missing, wrong or revoked API key (ESP intake: the provider's proof fails)",
        404: "Not found",
        409: "Conflict with the stored state",
        413: "Body or batch too large",
        415: "Body is not application/json",
        422: "Well-formed JSON that breaks a rule; `errors` points at the member",
        429: "Rate limited; see Retry-After",
    }
    answers = {str(s): _problem(texts[s]) for s in (401, 429, *statuses)}
    answers["429"]["headers"] = {"Retry-After": {
        "description": "seconds to wait", "schema": {"type": "integer"}}}
    return answers


SCHEMAS = {
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details.",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "errors": {"type": "array", "items": {
                "type": "object", "required": ["pointer", "detail"],
                "properties": {"pointer": {"type": "string", "description": "JSON pointer"},
                               "detail": {"type": "string"}}}},
            "conflicting_external_id": STRING_OR_NULL,
        },
    },
    "TopicState": {
        "type": "object",
        "required": ["subscribed", "frequency", "channels"],
        "additionalProperties": False,
        "properties": {"subscribed": {"type": "boolean"},
                       "frequency": {"enum": list(FREQUENCIES)},
                       "channels": {**CHANNEL_LIST,
                                    "description": "the channels chosen for this topic"}},
    },
    "Subscriber": {
        "type": "object",
        "required": ["external_id", "email", "locale", "role", "unsubscribed_all", "topics",
                     "phone", "paused_until", "version", "updated_at"],
        "additionalProperties": False,
        "properties": {
            "external_id": {"type": "string"},
            "email": {"type": "string"},
            "locale": {"type": "string"},
            "role": STRING_OR_NULL,
            "unsubscribed_all": {"type": "boolean"},
            "topics": {"type": "object", "additionalProperties": _ref("TopicState")},
            "phone": PHONE,
            "paused_until": {**PAUSED_UNTIL, "description": "a moment already past means "
                             "not paused (the resumption is recorded shortly after)"},
            "version": {"type": "integer", "minimum": 1,
                        "description": "Bumped once per change; drop older versions."},
            "updated_at": {"type": "string", "format": "date-time"},
        },
    },
    "TopicChoice": {
        "type": "object",
        "required": ["subscribed"],
        "additionalProperties": False,
        "properties": {"subscribed": {"type": "boolean"},
                       "frequency": {"enum": list(FREQUENCIES),
                                     "description": "one the topic offers"},
                       "channels": {**CHANNEL_LIST, "description":
                                    "among the topic's channels; sms needs a phone; "
                                    "at least one when subscribed"}},
    },
    "SubscriberInput": {
        "type": "object",
        "additionalProperties": False,
        "description": "email is required when creating. A suppressed (erased) address "
                       "always stays unsubscribed_all.",
        "properties": {
            "email": {"type": "string", "format": "email"},
            "locale": {"type": "string"},
            "role": {"type": "string", "description": "default: the configured default role"},
            "topics": {"type": "object", "additionalProperties": _ref("TopicChoice")},
            "unsubscribed_all": {"type": "boolean",
                                 "description": "extension: push a master unsubscribe"},
            "phone": {**PHONE, "description": PHONE["description"] + "; international "
                      "format (+ and the country code) in any punctuation"},
            "paused_until": {**PAUSED_UNTIL, "description": PAUSED_UNTIL["description"]
                             + " Must be in the future, with a time zone."},
        },
    },
    "LinkRequest": {
        "type": "object",
        "required": ["external_id"],
        "additionalProperties": False,
        "properties": {
            "external_id": {"type": "string"},
            "topic": {"type": "string", "description": "a marketing topic slug"},
            "campaign": {"type": "string", "maxLength": 100},
            "locale": {"type": "string"},
        },
    },
    "LinkBatchRequest": {
        "type": "object",
        "required": ["items"],
        "additionalProperties": False,
        "properties": {"items": {"type": "array", "minItems": 1, "maxItems": 1000,
                                 "items": _ref("LinkRequest")}},
    },
    "Links": {
        "type": "object",
        "required": ["preferences_url", "unsubscribe_url", "headers"],
        "properties": {
            "external_id": {"type": "string"},
            "preferences_url": {"type": "string", "format": "uri"},
            "unsubscribe_url": {"type": "string", "format": "uri"},
            "headers": {
                "type": "object",
                "required": ["List-Unsubscribe", "List-Unsubscribe-Post"],
                "additionalProperties": False,
                "properties": {
                    "List-Unsubscribe": {"type": "string", "pattern": "^<https?://[^>]+>$"},
                    "List-Unsubscribe-Post": {"const": "List-Unsubscribe=One-Click"},
                },
            },
        },
    },
    "LinkItemError": {
        "type": "object",
        "required": ["external_id", "error"],
        "additionalProperties": False,
        "properties": {
            "external_id": {"type": "string"},
            "error": {"type": "object", "required": ["status", "detail"],
                      "properties": {"status": {"type": "integer"},
                                     "detail": {"type": "string"}}},
        },
    },
    "LinkBatch": {
        "type": "object",
        "required": ["items"],
        "properties": {"items": {"type": "array", "items": {"oneOf": [
            {"allOf": [_ref("Links"), {"required": ["external_id"]}]},
            _ref("LinkItemError"),
        ]}}},
    },
    "Topic": {
        "type": "object",
        "required": ["slug", "kind", "frequencies", "names", "archived"],
        "properties": {
            "slug": {"type": "string"},
            "kind": {"enum": list(KINDS)},
            "frequencies": {"type": "array", "items": {"enum": list(FREQUENCIES)}},
            "default_frequency": {"enum": list(FREQUENCIES)},
            "channels": {**CHANNEL_LIST, "minItems": 1,
                         "description": "the channels the topic offers"},
            "names": {"type": "object", "additionalProperties": {"type": "string"}},
            "archived": {"type": "boolean"},
        },
    },
    "TopicList": {"type": "object", "required": ["topics"],
                  "properties": {"topics": {"type": "array", "items": _ref("Topic")}}},
    "Role": {
        "type": "object",
        "required": ["slug", "names", "topics"],
        "properties": {
            "slug": {"type": "string"},
            "names": {"type": "object", "additionalProperties": {"type": "string"}},
            "topics": {"type": "array", "items": {"type": "string"}},
        },
    },
    "RoleList": {"type": "object", "required": ["roles"],
                 "properties": {"roles": {"type": "array", "items": _ref("Role")}}},
    "Recipient": {
        "type": "object",
        "description": "One line of the NDJSON export: `email` on the email channel, "
                       "`phone` (E.164) on the sms channel.",
        "required": ["external_id", "locale", "frequency"],
        "oneOf": [{"required": ["email"]}, {"required": ["phone"]}],
        "additionalProperties": False,
        "properties": {"external_id": STRING_OR_NULL, "email": {"type": "string"},
                       "phone": {"type": "string"},
                       "locale": {"type": "string"}, "frequency": {"enum": list(FREQUENCIES)}},
    },
    "SendRequest": {
        "type": "object",
        "required": ["campaign"],
        "additionalProperties": False,
        "properties": {
            "campaign": {"type": "string", "minLength": 1, "maxLength": 255,
                         "description": "names the send: a retry with the same campaign "
                                        "returns the same recipients"},
            "channel": {"enum": list(CHANNELS), "default": "email"},
        },
    },
    "Event": {
        "type": "object",
        "required": ["id", "type", "action", "topic", "before", "after", "source", "campaign",
                     "version", "created_at", "subscriber"],
        "properties": {
            "id": {"type": "integer"},
            "type": {"type": "string"},
            "action": {"type": "string"},
            "topic": STRING_OR_NULL,
            "before": {}, "after": {},
            "source": {"type": "string"},
            "campaign": STRING_OR_NULL,
            "version": {"type": "integer"},
            "created_at": {"type": "string", "format": "date-time"},
            "subscriber": {"type": ["string", "null"],
                           "description": "the subscriber's external_id"},
        },
    },
    "EventPage": {
        "type": "object",
        "required": ["events", "next_cursor"],
        "properties": {
            "events": {"type": "array", "items": _ref("Event")},
            "next_cursor": {"type": "string",
                            "description": "pass as ?after= to read on; opaque"},
            "has_more": {"type": "boolean"},
        },
    },
    "WebhookEndpointInput": {
        "type": "object",
        "required": ["url"],
        "properties": {
            "url": {"type": "string", "format": "uri"},
            "events": {"type": "array", "items": {"type": "string"},
                       "description": "event types; all when absent"},
        },
    },
    "WebhookEndpointCreated": {
        "allOf": [_ref("WebhookEndpoint")],
        "type": "object",
        "required": ["id", "secret"],
        "properties": {"id": {"type": "string"},
                       "secret": {"type": "string", "pattern": "^whsec_",
                                  "description": "shown once; verifies signatures"}},
    },
    "WebhookEndpoint": {
        "type": "object",
        "required": ["id", "url", "events", "enabled"],
        "properties": {
            "id": {"type": "string"},
            "url": {"type": "string", "format": "uri"},
            "description": {"type": "string"},
            "events": {"type": "array", "items": {"type": "string"}},
            "enabled": {"type": "boolean"},
            "disabled_reason": STRING_OR_NULL,
            "failing_since": STRING_OR_NULL,
            "previous_secret_expires_at": STRING_OR_NULL,
            "created_at": STRING_OR_NULL,
        },
    },
    "WebhookEndpointPatch": {
        "type": "object",
        "properties": {
            "url": {"type": "string", "format": "uri"},
            "events": {"type": "array", "items": {"type": "string"}},
            "description": {"type": "string"},
            "enabled": {"type": "boolean"},
        },
    },
    "WebhookEndpointList": {
        "type": "object", "required": ["endpoints"],
        "properties": {"endpoints": {"type": "array", "items": _ref("WebhookEndpoint")}},
    },
    "WebhookDelivery": {
        "type": "object",
        "required": ["id", "endpoint_id", "event_id", "webhook_id", "status", "attempts"],
        "properties": {
            "id": {"type": "integer"},
            "endpoint_id": {"type": "string"},
            "event_id": {"type": "integer"},
            "webhook_id": {"type": "string", "description": "the webhook-id header sent"},
            "event_type": STRING_OR_NULL,
            "status": {"type": "string"},
            "attempts": {"type": "integer"},
            "next_attempt_at": STRING_OR_NULL,
            "last_attempt_at": STRING_OR_NULL,
            "last_status_code": {"type": ["integer", "null"]},
            "last_error": STRING_OR_NULL,
            "delivered_at": STRING_OR_NULL,
            "created_at": STRING_OR_NULL,
        },
    },
    "WebhookDeliveryList": {
        "type": "object", "required": ["deliveries"],
        "properties": {"deliveries": {"type": "array", "items": _ref("WebhookDelivery")},
                       "next_before": {"type": "integer",
                                       "description": "pass as ?before= for older ones"}},
    },
    "WebhookReplay": {
        "type": "object",
        "description": "either delivery_id, or since and until (ISO 8601)",
        "properties": {"delivery_id": {"type": "integer"},
                       "since": {"type": "string", "format": "date-time"},
                       "until": {"type": "string", "format": "date-time"}},
    },
    "WebhookReplayed": {
        "type": "object", "required": ["replayed", "endpoint_enabled"],
        "properties": {"replayed": {"type": "integer"},
                       "endpoint_enabled": {"type": "boolean"},
                       "deliveries": {"type": "array", "items": {"type": "integer"}}},
    },
    "WebhookRotate": {
        "type": "object",
        "properties": {"overlap_seconds": {"type": "integer", "minimum": 0,
                                           "description": "how long the old secret "
                                                          "still signs too"}},
    },
    "EspTally": {
        "type": "object",
        "required": ["received", "applied", "duplicates", "unknown"],
        "properties": {
            "received": {"type": "integer", "description": "events in the post"},
            "applied": {"type": "integer", "description": "events that changed a subscriber"},
            "duplicates": {"type": "integer", "description": "events received before"},
            "unknown": {"type": "integer", "description": "events about unknown addresses"},
        },
    },
    "WebhookTestResult": {
        "type": "object", "required": ["ok"],
        "properties": {"ok": {"type": "boolean"},
                       "status_code": {"type": ["integer", "null"]},
                       "error": STRING_OR_NULL},
    },
}

EXTERNAL_ID = {"name": "external_id", "in": "path", "required": True,
               "description": "the CRM's id of the subscriber (may contain /)",
               "schema": {"type": "string", "maxLength": 255}}


ENDPOINT_ID = {"name": "endpoint_id", "in": "path", "required": True,
               "schema": {"type": "string"}}


def _json_body(name: str) -> dict:
    return {"required": True, "content": {"application/json": {"schema": _ref(name)}}}


PATHS = {
    "/api/v1/subscribers/{external_id}": {
        "parameters": [EXTERNAL_ID],
        "put": {
            "operationId": "upsertSubscriber",
            "summary": "Create or update a subscriber",
            "requestBody": _json_body("SubscriberInput"),
            "responses": {"200": _json("Subscriber", "Updated (or unchanged)"),
                          "201": _json("Subscriber", "Created"),
                          **_problems(400, 409, 413, 415, 422)},
        },
        "get": {
            "operationId": "getSubscriber",
            "summary": "Read a subscriber",
            "responses": {"200": _json("Subscriber", "The subscriber"), **_problems(404)},
        },
        "delete": {
            "operationId": "eraseSubscriber",
            "summary": "Erase personal data; the address stays suppressed",
            "responses": {"204": {"description": "Erased"}, **_problems(404)},
        },
    },
    "/api/v1/links": {
        "post": {
            "operationId": "mintLinks",
            "summary": "Signed links and List-Unsubscribe headers, one or a batch",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "oneOf": [_ref("LinkRequest"), _ref("LinkBatchRequest")]}}}},
            "responses": {
                "200": {"description": "Links (a batch answers per item)",
                        "content": {"application/json": {"schema": {
                            "oneOf": [_ref("Links"), _ref("LinkBatch")]}}}},
                **_problems(400, 404, 413, 415, 422),
            },
        },
    },
    "/api/v1/topics": {
        "get": {"operationId": "listTopics", "summary": "Every topic",
                "responses": {"200": _json("TopicList", "Topics"), **_problems()}},
    },
    "/api/v1/roles": {
        "get": {"operationId": "listRoles", "summary": "Every role and its topics",
                "responses": {"200": _json("RoleList", "Roles"), **_problems()}},
    },
    "/api/v1/topics/{slug}/recipients": {
        "parameters": [{"name": "slug", "in": "path", "required": True,
                        "schema": {"type": "string"}}],
        "get": {
            "operationId": "exportRecipients",
            "summary": "Who may be mailed this topic now, streamed as NDJSON",
            "description": "Subscribed to the topic with that channel chosen, not "
                           "unsubscribed from all, not paused, not suppressed; every one of "
                           "them, whenever they were last sent the topic (see sends for "
                           "cadence).",
            "parameters": [{"name": "frequency", "in": "query", "required": False,
                            "schema": {"enum": list(FREQUENCIES)}},
                           {"name": "channel", "in": "query", "required": False,
                            "schema": {"enum": list(CHANNELS), "default": "email"}}],
            "responses": {
                "200": {"description": "One Recipient per line",
                        "content": {"application/x-ndjson": {"schema": _ref("Recipient")}}},
                **_problems(400, 404),
            },
        },
    },
    "/api/v1/topics/{slug}/sends": {
        "parameters": [{"name": "slug", "in": "path", "required": True,
                        "schema": {"type": "string"}}],
        "post": {
            "operationId": "sendToDueRecipients",
            "summary": "Who is due this topic on this channel now, recorded as sent",
            "description": "The recipients of the export whose last send of the topic on the "
                           "channel is at least their frequency ago (daily 1 day, weekly 7, "
                           "biweekly 14, monthly 1 calendar month, quarterly 3; less "
                           "PREFCENTER_SEND_GRACE), streamed as NDJSON. Each batch is "
                           "recorded as sent by this campaign in the transaction that reads "
                           "it, and committed before it is streamed. A retry of the same "
                           "campaign returns the same recipients (those whose last send is "
                           "this campaign) plus any now due; sends of one topic and channel "
                           "take turns, so two campaigns never share a recipient. See "
                           "docs/sends.md.",
            "requestBody": _json_body("SendRequest"),
            "responses": {
                "200": {"description": "One Recipient per line",
                        "content": {"application/x-ndjson": {"schema": _ref("Recipient")}}},
                **_problems(400, 404, 415, 422),
            },
        },
    },
    "/api/v1/events": {
        "get": {
            "operationId": "listEvents",
            "summary": "The change feed, oldest first",
            "parameters": [
                {"name": "after", "in": "query", "required": False,
                 "schema": {"type": "string"}, "description": "a next_cursor"},
                {"name": "limit", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}},
            ],
            "responses": {"200": _json("EventPage", "A page of events"), **_problems(400)},
        },
    },
    "/api/v1/webhook-endpoints": {
        "post": {
            "operationId": "createWebhookEndpoint",
            "summary": "Register a webhook endpoint; its secret is shown once",
            "requestBody": _json_body("WebhookEndpointInput"),
            "responses": {"201": _json("WebhookEndpointCreated", "Registered"),
                          **_problems(400, 415, 422)},
        },
        "get": {
            "operationId": "listWebhookEndpoints",
            "summary": "Every webhook endpoint (never its secrets)",
            "responses": {"200": _json("WebhookEndpointList", "Endpoints"), **_problems()},
        },
    },
    "/api/v1/webhook-endpoints/{endpoint_id}": {
        "parameters": [ENDPOINT_ID],
        "get": {
            "operationId": "getWebhookEndpoint",
            "summary": "One webhook endpoint",
            "responses": {"200": _json("WebhookEndpoint", "The endpoint"), **_problems(404)},
        },
        "patch": {
            "operationId": "updateWebhookEndpoint",
            "summary": "Change url, events, description, or enable/disable",
            "requestBody": _json_body("WebhookEndpointPatch"),
            "responses": {"200": _json("WebhookEndpoint", "Updated"),
                          **_problems(400, 404, 422)},
        },
        "delete": {
            "operationId": "deleteWebhookEndpoint",
            "summary": "Remove an endpoint and its pending deliveries",
            "responses": {"204": {"description": "Deleted"}, **_problems(404)},
        },
    },
    "/api/v1/webhook-endpoints/{endpoint_id}/deliveries": {
        "parameters": [ENDPOINT_ID],
        "get": {
            "operationId": "listWebhookDeliveries",
            "summary": "Deliveries of an endpoint, newest first",
            "parameters": [
                {"name": "status", "in": "query", "required": False,
                 "schema": {"type": "string"}},
                {"name": "before", "in": "query", "required": False,
                 "schema": {"type": "integer"}},
                {"name": "limit", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
            ],
            "responses": {"200": _json("WebhookDeliveryList", "Deliveries"),
                          **_problems(404, 422)},
        },
    },
    "/api/v1/webhook-endpoints/{endpoint_id}/replay": {
        "parameters": [ENDPOINT_ID],
        "post": {
            "operationId": "replayWebhookDeliveries",
            "summary": "Send one delivery, or every event of a time range, again",
            "requestBody": _json_body("WebhookReplay"),
            "responses": {"202": _json("WebhookReplayed", "Queued"),
                          **_problems(400, 404, 409, 422)},
        },
    },
    "/api/v1/webhook-endpoints/{endpoint_id}/rotate-secret": {
        "parameters": [ENDPOINT_ID],
        "post": {
            "operationId": "rotateWebhookSecret",
            "summary": "A new signing secret, shown once; the old one overlaps a while",
            "requestBody": {"required": False,
                            "content": {"application/json": {"schema": _ref("WebhookRotate")}}},
            "responses": {"200": _json("WebhookEndpointCreated", "Rotated"),
                          **_problems(400, 404, 422)},
        },
    },
    "/api/v1/webhook-endpoints/{endpoint_id}/test": {
        "parameters": [ENDPOINT_ID],
        "post": {
            "operationId": "testWebhookEndpoint",
            "summary": "Send a signed webhook.test event now and report the answer",
            "responses": {"200": _json("WebhookTestResult", "The attempt"), **_problems(404)},
        },
    },
    "/api/v1/esp/{provider}": {
        "parameters": [{"name": "provider", "in": "path", "required": True,
                        "schema": {"enum": ["ses", "sendgrid", "postmark", "mailgun"]}}],
        "post": {
            "operationId": "receiveEspEvents",
            "summary": "Bounces, complaints and unsubscribes in the provider's own format",
            "description": "No API key: Amazon SES posts through SNS (message signature), "
                           "SendGrid signs with ECDSA, Postmark sends basic auth, Mailgun "
                           "signs with HMAC. See docs/esp.md for each provider's setup and "
                           "what each event does. A repeated event changes nothing.",
            "security": [],
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": {"type": ["object", "array"]}},
                "text/plain": {"schema": {"type": "string",
                                          "description": "an SNS message (JSON)"}}}},
            "responses": {
                "200": {"description": "Received (or an SNS subscription confirmed)",
                        "content": {"application/json": {"schema": {"oneOf": [
                            _ref("EspTally"),
                            {"type": "object", "required": ["confirmed"],
                             "properties": {"confirmed": {"const": True}}}]}}}},
                **_problems(400, 404, 413),
                "406": _problem("A Mailgun token seen before (Mailgun does not retry a 406)"),
            },
        },
    },
    "/api/v1/openapi.json": {
        "get": {
            "operationId": "openapi",
            "summary": "This document",
            "security": [],
            "responses": {"200": {"description": "OpenAPI 3.1",
                                  "content": {"application/json": {"schema": {
                                      "type": "object"}}}}},
        },
    },
}


def document(base_url: str) -> dict:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Prefcenter API",
            "version": "1",
            "description": "Subscribers, signed links, topics, recipient exports and the "
                           "change feed. Errors are RFC 9457 problem details.",
        },
        "servers": [{"url": base_url}],
        "security": [{"bearer": []}],
        "paths": PATHS,
        "components": {
            "securitySchemes": {"bearer": {
                "type": "http", "scheme": "bearer",
                "description": "An API key from `prefcenter api-keys create NAME`."}},
            "schemas": SCHEMAS,
        },
    }


@bp.get("/openapi.json")
def openapi_document():
    return jsonify(document(current_app.config["BASE_URL"]))
