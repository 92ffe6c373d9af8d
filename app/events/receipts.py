"""Consent receipts: one event as the fields of ISO/IEC TS 27560 / the Kantara Initiative
consent receipt (v1.1), signed with the server's key so it can be verified later.

A receipt is ``{"receipt": {...}, "signature": {"alg", "kid", "value"}}``. The signature is
HMAC-SHA256 over the receipt's canonical JSON (keys sorted, no spaces, UTF-8), with a key
derived from each ``PREFCENTER_SECRET_KEY`` for this purpose only: the first key signs, every
configured key verifies (rotation), and ``kid`` says which key signed. Changing one character
of the receipt, or of its signature, makes :func:`verify` fail.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from app.db import iso_z
from app.events.models import Event

RECEIPT_VERSION = "KI-CR-v1.1.0"
ALGORITHM = "HS256"
_PURPOSE = b"prefcenter.consent-receipt"

# What an event's action means for consent (ISO/IEC TS 27560 "consent status" events).
GIVEN = ("created", "topic.subscribed", "resubscribed_all")
WITHDRAWN = ("topic.unsubscribed", "unsubscribed_all", "erased")
MODIFIED = ("topic.frequency", "topic.channels", "paused", "resumed")


@dataclass(frozen=True, slots=True)
class Controller:
    """Who the receipt names as PII controller: the brand, its site and privacy notice."""

    name: str
    url: str
    policy_url: str


def receipt_id(base_url: str, event_id: int) -> str:
    """A stable, unique UUID for the receipt of one event of one deployment."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{base_url}/events/{event_id}"))


def consent_state(action: str) -> str:
    if action in GIVEN:
        return "given"
    if action in WITHDRAWN:
        return "withdrawn"
    if action in MODIFIED:
        return "modified"
    return "recorded"


def channels_of(event: Event) -> list[str]:
    """The channels the event is about: the topic's channels as the event left them (a
    ``topic.channels`` change: the new ones); for the master switch, every channel the
    subscriber had for any topic; ``email`` when nothing says otherwise."""
    if event.action == "topic.channels":
        after = (event.after or {}).get("value")
        if isinstance(after, list) and after:
            return after
    topics = ((event.payload or {}).get("subscriber") or {}).get("topics") or {}
    if event.topic is not None:
        found = (topics.get(event.topic) or {}).get("channels")
        return list(found) if found else ["email"]
    every = sorted({c for state in topics.values() for c in state.get("channels") or []})
    return every or ["email"]


def receipt_of(event: Event, *, external_id: str | None, controller: Controller,
               base_url: str) -> dict:
    """The unsigned receipt of one event."""
    purpose = event.topic or "all_marketing"
    created = event.created_at.astimezone(dt.UTC)
    channels = channels_of(event)
    return {
        "version": RECEIPT_VERSION,
        "consentReceiptID": receipt_id(base_url, event.id),
        "consentTimestamp": int(created.timestamp()),
        "time": iso_z(created),
        "collectionMethod": event.source,
        "piiPrincipalId": external_id,
        "piiControllers": [{"piiController": controller.name, "url": controller.url}],
        "policyUrl": controller.policy_url,
        "policyVersion": event.policy_version,
        "services": [{
            "service": channel,
            "purposes": [{"purpose": purpose, "consentType": "EXPLICIT",
                          "purposeCategory": ["marketing"], "thirdPartyDisclosure": False}],
        } for channel in channels],
        "purpose": purpose,
        "channel": channels,
        "action": event.action,
        "consentState": consent_state(event.action),
        "campaign": event.campaign,
        "linkId": event.token_id,
        "eventId": event.id,
        "sensitive": False,
        "spiCat": [],
    }


def canonical(receipt: dict) -> bytes:
    return json.dumps(receipt, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def _key(secret: str) -> bytes:
    return hmac.new(secret.encode("utf-8"), _PURPOSE, hashlib.sha256).digest()


def key_id(secret: str) -> str:
    return hashlib.sha256(_key(secret)).hexdigest()[:16]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def sign(receipt: dict, secrets: list[str]) -> dict:
    """``{"receipt", "signature"}``: signed with the first of ``secrets``."""
    secret = secrets[0]
    mac = hmac.new(_key(secret), canonical(receipt), hashlib.sha256).digest()
    return {"receipt": receipt,
            "signature": {"alg": ALGORITHM, "kid": key_id(secret), "value": _b64(mac)}}


def signed_receipt(event: Event, *, external_id: str | None, controller: Controller,
                   base_url: str, secrets: list[str]) -> dict:
    return sign(receipt_of(event, external_id=external_id, controller=controller,
                           base_url=base_url), secrets)


class InvalidReceipt(ValueError):
    """Not a receipt, or one whose signature does not match: it was changed or is foreign."""


def verify(signed, secrets: list[str]) -> dict:
    """The receipt, if ``signed`` carries a valid signature by one of ``secrets``."""
    if not isinstance(signed, dict) or set(signed) != {"receipt", "signature"}:
        raise InvalidReceipt("not a signed consent receipt")
    receipt, signature = signed["receipt"], signed["signature"]
    if not isinstance(receipt, dict) or not isinstance(signature, dict):
        raise InvalidReceipt("not a signed consent receipt")
    if signature.get("alg") != ALGORITHM or not isinstance(signature.get("value"), str):
        raise InvalidReceipt("unknown signature algorithm")
    body = canonical(receipt)
    given = signature["value"].encode("ascii", "replace")
    for secret in secrets:
        expected = _b64(hmac.new(_key(secret), body, hashlib.sha256).digest()).encode("ascii")
        if hmac.compare_digest(expected, given):
            return receipt
    raise InvalidReceipt("signature does not match: the receipt was changed or is not ours")


def receipts_in(document) -> Iterator[dict]:
    """Every signed receipt in a document: one receipt, a list of them, or an export."""
    if isinstance(document, list):
        for item in document:
            yield from receipts_in(item)
    elif isinstance(document, dict):
        if "signature" in document or "receipt" in document:
            yield document
        else:
            for item in document.get("consent_history", ()):
                if isinstance(item, dict) and "receipt" in item:
                    yield item["receipt"]


def verify_all(document, secrets: Iterable[str]) -> list[tuple[str, str | None]]:
    """``(receipt id or "?", None if valid else why)`` for every receipt in ``document``."""
    secrets = list(secrets)
    results = []
    for signed in receipts_in(document):
        inner = signed.get("receipt") if isinstance(signed, dict) else None
        rid = str(inner.get("consentReceiptID", "?")) if isinstance(inner, dict) else "?"
        try:
            verify(signed, secrets)
        except InvalidReceipt as exc:
            results.append((rid, str(exc)))
        else:
            results.append((rid, None))
    return results
