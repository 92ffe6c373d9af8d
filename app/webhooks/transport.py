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

import httpcore
import httpx

from app.db import iso_z, utcnow
from app.webhooks.destinations import GuardedBackend, RefusedDestination

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


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport over :class:`~app.webhooks.destinations.GuardedBackend`: every
    connection goes to an address the destination rule accepted when it was opened."""

    def __init__(self, *, limits: httpx.Limits, allow_private: bool = False):
        super().__init__(limits=limits, trust_env=False)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(allow_private),
        )


def make_client(timeout: float, concurrency: int, *,
                allow_private: bool = False) -> httpx.Client:
    """One pooled client for a worker: keep-alive, no redirects, no proxies from the
    environment, bounded waits, public destinations only (unless ``allow_private``)."""
    limits = httpx.Limits(max_connections=max(concurrency, 1) * 2,
                          max_keepalive_connections=max(concurrency, 1) * 2)
    return httpx.Client(
        timeout=httpx.Timeout(timeout),
        transport=GuardedTransport(limits=limits, allow_private=allow_private),
        follow_redirects=False,
        trust_env=False,
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
            # Read (a little of) the answer so the connection can be kept alive, but keep
            # none of it: a receiver's body never reaches our records or our callers.
            drained = 0
            for chunk in response.iter_raw():
                drained += len(chunk)
                if drained > MAX_RESPONSE_EXCERPT:
                    break
    except httpx.TimeoutException:
        error = f"timeout after {client.timeout.read}s"
    except httpx.ConnectError as exc:
        refused = isinstance(exc.__cause__, RefusedDestination) or isinstance(
            exc.__context__, RefusedDestination)
        error = ("destination refused: not a public address" if refused
                 else "connection failed")
    except (httpx.HTTPError, ValueError, OSError):  # protocol trouble, malformed URL
        error = "request failed"
    else:
        if 200 <= status < 300:
            return AttemptResult(True, status, None, at, time.perf_counter() - started)
        error = f"HTTP {status}" + (": redirect not followed" if 300 <= status < 400 else "")
    return AttemptResult(False, status, error, at, time.perf_counter() - started)
