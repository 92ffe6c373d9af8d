"""The /api/v1 models: what requests may hold (validated) and what answers hold (documented).

One model per shape; a field added here is validated and documented at once. The rules
that need the database (which topics and roles exist, an address's syntax and
suppression, uniqueness) stay in the services and answer a 422 or 409 problem of the
same shape.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from flask import current_app
from pydantic import AfterValidator, AwareDatetime, Field, StringConstraints

from app.api.schema import MAX_INT, Input, Output, PositiveInt, Query, bounded, catalogue
from app.events.models import EVENT_TYPES, SOURCES
from app.links.minting import MAX_CAMPAIGN_BYTES, campaign_error
from app.topics.models import CHANNELS, FREQUENCIES, KINDS

MAX_EXTERNAL_ID = 255
MAX_LINK_ITEMS = 1000
MAX_BATCH_ITEMS = 10_000
EVENTS_DEFAULT_LIMIT = 100
EVENTS_MAX_LIMIT = 1000
CURSOR_PATTERN = r"^[0-9]{1,18}(\.[0-9]{1,18})?$"

Frequency = Literal[FREQUENCIES]  # type: ignore[valid-type]
Channel = Literal[CHANNELS]  # type: ignore[valid-type]
Source = Literal[SOURCES]  # type: ignore[valid-type]
EventType = Literal[EVENT_TYPES]  # type: ignore[valid-type]


def _supported_locale(value: str) -> str:
    locales = current_app.config["SUPPORTED_LOCALES"]
    if value not in locales:
        raise ValueError(f"unknown locale {value!r}; supported: {', '.join(locales)}")
    return value


ExternalId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_EXTERNAL_ID),
                       Field(description="the CRM's id of the subscriber")]
Slug = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Email = Annotated[str, StringConstraints(min_length=3, max_length=254),
                  Field(description="an address (syntax checked with email-validator)")]
Locale = Annotated[str, AfterValidator(_supported_locale), catalogue("locales"),
                   Field(description="one of the locales this server supports")]


# --- subscribers -----------------------------------------------------------------------


def _unique(channels: list[str]) -> list[str]:
    if len(set(channels)) != len(channels):
        raise ValueError("must not repeat a channel")
    return channels


Channels = Annotated[list[Channel], AfterValidator(_unique),
                     Field(json_schema_extra={"uniqueItems": True})]


class TopicChoice(Input):
    subscribed: bool
    frequency: Frequency | None = Field(default=None, description="one the topic offers")
    channels: Channels | None = Field(
        default=None, description="among the topic's channels; sms needs a phone; at least "
                                  "one when subscribed")


class SubscriberInput(Input):
    """email is required when creating. A suppressed (erased) address always stays
    unsubscribed_all."""

    email: Email | None = None
    locale: Locale | None = Field(default=None, description=(
        "the subscriber's language; never sent: unknown (null), and the pages follow the "
        "browser's Accept-Language until the subscriber picks one"))
    role: Slug | None = Field(default=None, description="a role (GET /api/v1/roles); "
                                                        "default: the configured default role")
    topics: dict[Slug, TopicChoice] | None = Field(
        default=None, description="marketing topics (GET /api/v1/topics) by slug, each with a "
                                  "frequency it offers; topics left out keep their state")
    unsubscribed_all: bool | None = Field(default=None,
                                          description="push a master unsubscribe")
    phone: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = Field(
        default=None, description="E.164 (e.g. +60123456789), in any punctuation, checked by "
                                  "the phonenumbers library; null removes it, which stops "
                                  "SMS for every topic; absent keeps it")
    paused_until: AwareDatetime | None = Field(
        default=None, description="every marketing message (every channel) stops until this "
                                  "moment (UTC, to the second; in the future, with a time "
                                  "zone) and starts again by itself; null resumes now; "
                                  "absent keeps it")


class SubscriberBatchItem(SubscriberInput):
    """One subscriber of a batch: the PUT body and its external_id."""

    external_id: ExternalId


class SubscriberBatch(Input):
    items: list[SubscriberBatchItem] = Field(min_length=1, max_length=MAX_BATCH_ITEMS)


class SubscriberPath(Query):
    external_id: Annotated[ExternalId, Field(json_schema_extra={"not": {"const": "batch"}})] = \
        Field(description="the CRM's id (may contain /); `batch` names the batch endpoint, "
                          "so a subscriber with that id is reached through it only")


class TopicState(Output):
    subscribed: bool
    frequency: Frequency
    channels: list[Channel] = Field(description="the channels chosen for this topic")


class Subscriber(Output):
    external_id: str | None
    email: str | None
    locale: str | None
    role: str | None
    unsubscribed_all: bool
    topics: dict[str, TopicState]
    phone: str | None
    paused_until: dt.datetime | None = Field(
        description="a moment already past means not paused")
    version: int = Field(ge=1, le=MAX_INT,
                         description="bumped once per change; drop older versions")
    updated_at: dt.datetime


class SubscriberBatchResult(Output):
    external_id: str
    status: Literal[200, 201, 409, 422] = Field(
        description="201 created, 200 updated (or unchanged), 409 conflict, 422 refused")
    detail: str | None = Field(default=None, description="why, for a 409 or a 422")
    errors: list[dict[str, str]] | None = Field(
        default=None, description="for a 422: [{pointer, detail}], pointers into the item")


class SubscriberBatchAnswer(Output):
    items: list[SubscriberBatchResult]


# --- links -----------------------------------------------------------------------------


def _campaign(value: str) -> str:
    too_long = campaign_error(value)
    if too_long:
        raise ValueError(too_long)
    return value


# Bytes, not characters: JSON Schema can only say "at most 100 characters" too.
Campaign = Annotated[str, AfterValidator(_campaign),
                     Field(json_schema_extra={"maxLength": MAX_CAMPAIGN_BYTES},
                           description=f"at most {MAX_CAMPAIGN_BYTES} bytes of UTF-8")]


class LinkRequest(Input):
    external_id: ExternalId
    topic: Slug | None = Field(default=None, description="a marketing topic slug")
    campaign: Campaign | None = None
    locale: Locale | None = None


class LinkBatchRequest(Input):
    items: list[LinkRequest] = Field(min_length=1, max_length=MAX_LINK_ITEMS)


class LinkHeaders(Output):
    List_Unsubscribe: str = Field(alias="List-Unsubscribe", pattern=r"^<https?://[^>]+>$")
    List_Unsubscribe_Post: Literal["List-Unsubscribe=One-Click"] = Field(
        alias="List-Unsubscribe-Post")


class Links(Output):
    preferences_url: str
    unsubscribe_url: str
    headers: LinkHeaders


class LinkItem(Links):
    external_id: str


class LinkError(Output):
    status: int = Field(ge=400, le=499)
    detail: str


class LinkItemError(Output):
    external_id: str
    error: LinkError


class LinkBatch(Output):
    items: list[LinkItem | LinkItemError]


# --- catalogue, recipients, events --------------------------------------------------------


class Topic(Output):
    slug: str
    kind: Literal[KINDS]  # type: ignore[valid-type]
    frequencies: list[Frequency]
    default_frequency: Frequency
    channels: list[Channel] = Field(description="the channels the topic offers", min_length=1)
    names: dict[str, str]
    archived: bool


class TopicList(Output):
    topics: list[Topic]


class Role(Output):
    slug: str
    names: dict[str, str]
    topics: list[str]


class RoleList(Output):
    roles: list[Role]


class RecipientsPath(Query):
    slug: Annotated[Slug, catalogue("marketing-topics")] = Field(
        description="a marketing topic, archived or not (transactional topics go to all)")


class RecipientsQuery(Query):
    frequency: Frequency | None = None
    channel: Channel = "email"


class SendRequest(Input):
    campaign: Annotated[str, StringConstraints(min_length=1, max_length=255)] = Field(
        description="names the send: a retry with the same campaign returns the same "
                    "recipients")
    channel: Channel = "email"


class Recipient(Output):
    """One line of the NDJSON export: `email` on the email channel, `phone` (E.164) on the
    sms channel."""

    external_id: str | None
    email: str | None = None
    phone: str | None = None
    locale: str | None
    frequency: Frequency


class EventsQuery(Query):
    after: Annotated[str, StringConstraints(pattern=CURSOR_PATTERN)] | None = Field(
        default=None, description="the next_cursor of an earlier page; opaque")
    limit: bounded(1, EVENTS_MAX_LIMIT) = EVENTS_DEFAULT_LIMIT


class Event(Output):
    id: int = Field(ge=1, le=MAX_INT)
    type: str
    action: str
    topic: str | None
    before: Any
    after: Any
    source: str
    campaign: str | None
    version: int
    created_at: dt.datetime
    subscriber: str | None = Field(description="the subscriber's external_id")


class EventPage(Output):
    events: list[Event]
    next_cursor: str = Field(description="pass as ?after= to read on; opaque")
    has_more: bool


__all__ = ["MAX_INT", "EventType", "PositiveInt", "Source"]


# --- ESP intake ------------------------------------------------------------------------


class EspPath(Query):
    # Not enforced here: an unknown provider is the intake's own 404.
    provider: str = Field(json_schema_extra={"enum": ["ses", "sendgrid", "postmark",
                                                      "mailgun"]})


class EspTally(Output):
    received: int = Field(ge=0, description="events in the post")
    applied: int = Field(ge=0, description="events that changed a subscriber")
    duplicates: int = Field(ge=0, description="events received before")
    unknown: int = Field(ge=0, description="events about unknown addresses")


class EspConfirmed(Output):
    confirmed: Literal[True]


# --- subscriber export and consent receipts (docs/consent.md) ----------------------------


class ReceiptPurpose(Output):
    purpose: str
    consentType: Literal["EXPLICIT"]
    purposeCategory: list[str]
    thirdPartyDisclosure: bool


class ReceiptService(Output):
    service: str = Field(description="the channel")
    purposes: list[ReceiptPurpose]


class ReceiptController(Output):
    piiController: str
    url: str


class ConsentReceipt(Output):  # the Kantara receipt's own (camelCase) names
    """ISO/IEC TS 27560 / Kantara consent receipt v1.1 fields of one event."""

    version: str
    consentReceiptID: str = Field(description="a UUID, stable per event")
    consentTimestamp: int = Field(description="seconds since the epoch")
    time: dt.datetime
    collectionMethod: Source = Field(description="the event's source")
    piiPrincipalId: str | None = Field(description="the external_id")
    piiControllers: list[ReceiptController]
    policyUrl: str
    policyVersion: str | None = Field(
        description="PREFCENTER_PRIVACY_POLICY_VERSION when the event was recorded")
    services: list[ReceiptService]
    purpose: str = Field(description="the topic, or all_marketing")
    channel: list[str]
    action: str
    consentState: Literal["given", "withdrawn", "modified", "recorded"]
    campaign: str | None
    linkId: str | None = Field(description="the id of the link that made the change")
    eventId: int
    sensitive: bool
    spiCat: list[str]


class ReceiptSignature(Output):
    alg: Literal["HS256"]
    kid: str = Field(description="which of the server's keys signed")
    value: str = Field(description="base64url HMAC-SHA256 of the receipt's canonical JSON")


class SignedReceipt(Output):
    receipt: ConsentReceipt
    signature: ReceiptSignature


class ExportChannel(Output):
    channel: Channel
    label: str


class ExportSubscription(Output):
    topic: str
    topic_name: str
    kind: Literal[KINDS]  # type: ignore[valid-type]
    subscribed: bool
    frequency: str
    frequency_label: str
    channels: list[ExportChannel]
    updated_at: dt.datetime | None


class ExportEvent(Output):
    id: int = Field(ge=1, le=MAX_INT)
    when: dt.datetime
    type: str
    action: str
    action_label: str
    topic: str | None
    topic_name: str | None
    before: Any
    after: Any
    source: Source
    source_label: str
    campaign: str | None
    link_id: str | None
    reason: str | None
    reason_label: str | None
    policy_version: str | None
    receipt_id: str
    receipt: SignedReceipt


class ExportController(Output):
    name: str
    url: str
    privacy_policy: str


class ExportIdentity(Output):
    external_id: str | None
    email: str | None
    phone: str | None
    locale: str | None
    role: str | None
    role_name: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    version: int
    undeliverable_since: dt.datetime | None


class SubscriberExport(Output):
    """Everything held about one subscriber; labels in the subscriber's language."""

    format: Literal["prefcenter.subscriber-export/1"]
    generated_at: dt.datetime
    language: str = Field(description="the language of every *_label and *_name")
    controller: ExportController
    subscriber: ExportIdentity
    unsubscribed_all: bool
    paused_until: dt.datetime | None
    subscriptions: list[ExportSubscription]
    consent_history: list[ExportEvent] = Field(description="every change, oldest first")
