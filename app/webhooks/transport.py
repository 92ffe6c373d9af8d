"""Signing and posting one webhook, per the Standard Webhooks specification.

The signature covers ``"<webhook-id>.<webhook-timestamp>.<body>"`` where the
body is the exact bytes sent; every secret still valid during a rotation signs,
space-separated (``v1,<sig-new> v1,<sig-old>``), so receivers holding either
secret accept the message.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import time
from dataclasses import dataclass

import httpx

from app.db import iso_z, utcnow

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
USER_AGENT = "Prefcenter-Webhooks/0.1 (+https://www.standardwebhooks.com/)"
MAX_RESPONSE_EXCERPT = 64 * 1024


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What one POST came to: 2xx is ``ok``; anything else carries an error."""

    ok: bool
    status_code: int | None
    error: str | None
    at: dt.datetime
    duration: float



def message_id(event_id: int) -> str:
    """The ``webhook-id`` of an event: identical for every attempt and every replay."""
    return f"msg_{event_id}"


def render_body(event_type: str, created_at: dt.datetime, payload: dict) -> bytes:
    """The webhook body of an event, as the exact bytes that are signed and sent."""
    return json.dumps(
        {"type": event_type, "timestamp": iso_z(created_at), "data": payload},
        ensure_ascii=False, separators=(",", ":"),
    ).encode("utf-8")


def secret_key(secret: str) -> bytes:
    raw = secret[len(SECRET_PREFIX):] if secret.startswith(SECRET_PREFIX) else secret
    return base64.b64decode(raw + "==")


def sign(secrets: list[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header: one ``v1,<base64 HMAC-SHA256>`` per secret."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(
            hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
        ).decode("ascii")
        for secret in secrets
    )


def make_client(timeout: float, concurrency: int) -> httpx.Client:
    """One pooled client for a worker: keep-alive, no redirects, bounded waits."""
    return httpx.Client(
        timeout=httpx.Timeout(timeout),
        limits=httpx.Limits(max_connections=max(concurrency, 1) * 2,
                            max_keepalive_connections=max(concurrency, 1) * 2),
        follow_redirects=False,
        headers={"user-agent": USER_AGENT},
    )


def post(client: httpx.Client, url: str, secrets: list[str], msg_id: str,
         body: bytes) -> AttemptResult:
    """Sign ``body`` now and POST it; never raises for network trouble."""
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secrets, msg_id, timestamp, body),
    }
    at = utcnow()
    started = time.perf_counter()
    status = None
    try:
        with client.stream("POST", url, content=body, headers=headers) as response:
            status = response.status_code
            excerpt = bytearray()
            for chunk in response.iter_raw():
                excerpt += chunk
                if len(excerpt) > MAX_RESPONSE_EXCERPT:
                    break
            location = response.headers.get("location")
    except httpx.TimeoutException as exc:
        error = f"timeout after {client.timeout.read}s ({type(exc).__name__})"
    except httpx.ConnectError as exc:
        error = f"connection failed: {exc}"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"
    except (ValueError, OSError) as exc:  # malformed URL, local socket trouble
        error = f"{type(exc).__name__}: {exc}"
    else:
        if 200 <= status < 300:
            return AttemptResult(True, status, None, at, time.perf_counter() - started)
        text = bytes(excerpt[:300]).decode("utf-8", "replace").strip()
        if 300 <= status < 400:
            error = f"HTTP {status}: redirect to {location or '(no location)'} not followed"
        else:
            error = f"HTTP {status}" + (f": {text}" if text else "")
    return AttemptResult(False, status, error[:2000], at, time.perf_counter() - started)
