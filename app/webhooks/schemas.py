"""The models of ``/api/v1/webhook-endpoints``: validated requests, documented answers."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, StringConstraints

from app.api.schema import MAX_INT, Input, Output, PositiveInt, Query, bounded
from app.events.models import EVENT_TYPES, SOURCES
from app.webhooks.services import DELIVERY_FILTERS, WebhookError, validate_url

# The secret overlap: at most a year.
MAX_OVERLAP = 366 * 24 * 3600

EventType = Literal[EVENT_TYPES]  # type: ignore[valid-type]
Source = Literal[SOURCES]  # type: ignore[valid-type]
PORT = r"(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4})"
URL_PATTERN = (rf"^[Hh][Tt][Tt][Pp][Ss]?://([A-Za-z0-9._~-]+|\[[0-9A-Fa-f:.]+\])(:{PORT})?"
               r"([/?][^\s#]*)?$")


def _url(value):
    """The services' own check first, for its precise message; the pattern then holds the
    URL to what the document promises (no user info, a plain host)."""
    if isinstance(value, str):
        try:
            validate_url(value)
        except WebhookError as exc:
            raise ValueError(str(exc)) from exc
    return value


Url = Annotated[str, StringConstraints(min_length=1, max_length=2000, pattern=URL_PATTERN),
                BeforeValidator(_url),
                Field(description="absolute http(s) URL; private addresses are refused "
                                  "unless PREFCENTER_WEBHOOK_ALLOW_PRIVATE=1")]
Description = Annotated[str, StringConstraints(max_length=255)]
EVENTS = Field(default=None, description="event types to send; all when absent or empty")
SOURCES_FIELD = Field(default=None, description="event sources to send; all when absent or "
                                                "empty. Leave out `import` for a CRM that "
                                                "imports its own contacts.")


class WebhookEndpointInput(Input):
    url: Url
    events: list[EventType] | None = EVENTS
    sources: list[Source] | None = SOURCES_FIELD
    description: Description | None = None


class WebhookEndpointPatch(Input):
    url: Url | None = None
    events: list[EventType] | None = EVENTS
    sources: list[Source] | None = SOURCES_FIELD
    description: Description | None = None
    enabled: bool | None = None


class WebhookReplay(Input):
    """Either delivery_id, or since and until (ISO 8601)."""

    delivery_id: PositiveInt | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None


class WebhookRotate(Input):
    overlap_seconds: bounded(0, MAX_OVERLAP) | None = Field(
        default=None,
        description="how long the old secret still signs too (default 24 hours)")


class EndpointPath(Query):
    endpoint_id: Annotated[str, StringConstraints(min_length=1, max_length=32)]


class DeliveriesQuery(Query):
    status: Literal[DELIVERY_FILTERS] | None = None  # type: ignore[valid-type]
    before: PositiveInt | None = Field(default=None,
                                       description="a next_before, for older deliveries")
    limit: bounded(1, 1000) = 100


class WebhookEndpoint(Output):
    id: str
    url: str
    description: str
    events: list[EventType]
    sources: list[Source]
    enabled: bool
    disabled_reason: str | None
    failing_since: str | None
    previous_secret_expires_at: str | None
    created_at: str | None


class WebhookEndpointCreated(WebhookEndpoint):
    secret: str = Field(pattern="^whsec_", description="shown once; verifies signatures")


class WebhookEndpointList(Output):
    endpoints: list[WebhookEndpoint]


class WebhookDelivery(Output):
    id: int = Field(ge=1, le=MAX_INT)
    endpoint_id: str
    event_id: int = Field(ge=1, le=MAX_INT)
    webhook_id: str = Field(description="the webhook-id header sent")
    event_type: str | None
    status: str
    attempts: int = Field(ge=0)
    next_attempt_at: str | None
    last_attempt_at: str | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: str | None
    created_at: str | None


class WebhookDeliveryList(Output):
    deliveries: list[WebhookDelivery]
    next_before: int | None = Field(default=None, ge=1, le=MAX_INT,
                                    description="pass as ?before= for older ones")


class WebhookReplayed(Output):
    replayed: int = Field(ge=0)
    endpoint_enabled: bool
    deliveries: list[int] | None = None


class WebhookTestResult(Output):
    ok: bool
    status_code: int | None
    error: str | None
