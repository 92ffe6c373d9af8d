"""Each ESP's way of proving a post is its own, and its payloads read as :class:`Report`\\ s.

| provider | proof | replay |
| --- | --- | --- |
| ``ses`` | Amazon SNS message signature (RSA, SHA1 or SHA256) by the certificate at
  ``SigningCertURL``, which must be an https ``sns.<region>.amazonaws.com`` URL; the
  ``TopicArn`` must be one configured | SNS ``MessageId`` stored once |
| ``sendgrid`` | ECDSA P-256 over ``timestamp + body`` by the configured public key | timestamp
  window; ``sg_event_id`` stored once |
| ``postmark`` | HTTP basic auth with the configured user and password | event ``ID`` stored once |
| ``mailgun`` | HMAC-SHA256 of ``timestamp + token`` with the signing key | timestamp window;
  each token accepted once |

The signature checks use the ``cryptography`` library (RSA and ECDSA verification, X.509)
and ``hmac.compare_digest``; nothing here reads the request or the database.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from app.subscribers.reports import DELIVERED, Report


class EspError(Exception):
    status = 400
    title = "Bad Request"


class NotConfigured(EspError):
    status = 404
    title = "Not Found"


class Forged(EspError):
    """The post does not prove it comes from the provider."""

    status = 401
    title = "Unauthorized"


class Replayed(EspError):
    """A one-time token seen before. 406 tells Mailgun not to retry."""

    status = 406
    title = "Not Acceptable"


class Malformed(EspError):
    status = 400
    title = "Bad Request"


@dataclass(frozen=True, slots=True)
class Intake:
    """What one verified post holds."""

    reports: list[Report]
    nonce: str | None = None  # a one-time token to accept once
    confirm_url: str | None = None  # SNS subscription confirmation to visit


@dataclass(frozen=True, slots=True)
class Settings:
    """The provider settings of one app (docs/esp.md)."""

    max_age: int
    ses_topic_arns: tuple[str, ...] = ()
    sendgrid_public_key: str | None = None
    postmark_user: str | None = None
    postmark_password: str | None = None
    mailgun_signing_key: str | None = None


def _json(body: bytes):
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise Malformed(f"The body is not JSON: {exc}.") from exc


def _when(value) -> dt.datetime | None:
    """A provider's timestamp (ISO 8601 text or Unix seconds) as an aware datetime."""
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return dt.datetime.fromtimestamp(value, dt.UTC)
        if isinstance(value, str) and value:
            moment = dt.datetime.fromisoformat(value)
            return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    except (ValueError, OverflowError, OSError):
        return None
    return None


def _text(value, limit: int = 255) -> str:
    return value[:limit] if isinstance(value, str) else ""


def _check_window(timestamp: str | None, now: dt.datetime, max_age: int) -> None:
    if not timestamp or not timestamp.isascii() or not timestamp.isdigit():
        raise Forged("The signature timestamp is missing or not Unix seconds.")
    if abs(now.timestamp() - int(timestamp)) > max_age:
        raise Forged(f"The signature timestamp is more than {max_age} seconds away from now.")


# --- Amazon SES through Amazon SNS -------------------------------------------------------------

SNS_HOST = re.compile(r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?")
SNS_SIGNED_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token",
                                 "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token",
                                "TopicArn", "Type"),
}
SNS_HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}


def check_sns_url(url, *, pem: bool = False) -> str:
    """An https URL on an Amazon SNS host (AWS's rule for SigningCertURL and SubscribeURL)."""
    if not isinstance(url, str) or len(url) > 2048:
        raise Forged("The SNS URL is missing.")
    parts = urlsplit(url)
    if parts.scheme != "https" or parts.port not in (None, 443) or parts.username \
            or not SNS_HOST.fullmatch(parts.hostname or ""):
        raise Forged("The SNS URL is not an https URL on an sns.<region>.amazonaws.com host.")
    if pem and not parts.path.endswith(".pem"):
        raise Forged("The SNS signing certificate URL does not name a .pem file.")
    return url


class SnsCertificates:
    """Signing certificates by URL: read from ``cert_dir`` when set (pinned, or a test's
    own), else fetched over https from the SNS host; kept once loaded."""

    def __init__(self, cert_dir: str | None = None, transport=None):
        self.cert_dir = Path(cert_dir) if cert_dir else None
        self.transport = transport
        self._cache: dict[str, x509.Certificate] = {}
        self._lock = threading.Lock()

    def get(self, url: str, now: dt.datetime) -> x509.Certificate:
        check_sns_url(url, pem=True)
        with self._lock:
            certificate = self._cache.get(url)
        if certificate is None:
            certificate = self._load(url)
            with self._lock:
                if len(self._cache) > 64:
                    self._cache.clear()
                self._cache[url] = certificate
        if not (certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc):
            raise Forged("The SNS signing certificate is not valid now.")
        return certificate

    def _load(self, url: str) -> x509.Certificate:
        if self.cert_dir is not None:
            name = PurePosixPath(urlsplit(url).path).name
            path = self.cert_dir / name
            if not name or not path.is_file():
                raise Forged(f"No pinned SNS signing certificate {name!r}.")
            pem = path.read_bytes()
        else:
            try:
                with httpx.Client(transport=self.transport, timeout=10,
                                  follow_redirects=False) as client:
                    answer = client.get(url)
                    answer.raise_for_status()
                    pem = answer.content
            except httpx.HTTPError as exc:
                raise EspError(f"Could not fetch the SNS signing certificate: {exc}.") from exc
        try:
            return x509.load_pem_x509_certificate(pem)
        except ValueError as exc:
            raise Forged("The SNS signing certificate is not a PEM certificate.") from exc


def sns_string_to_sign(message: dict) -> bytes:
    fields = SNS_SIGNED_FIELDS.get(message.get("Type"))
    if fields is None:
        raise Malformed(f"Unknown SNS message Type {message.get('Type')!r}.")
    parts = []
    for name in fields:
        value = message.get(name)
        if value is None:
            if name == "Subject":
                continue
            raise Malformed(f"The SNS message has no {name}.")
        if not isinstance(value, str):
            raise Malformed(f"The SNS message's {name} is not a string.")
        parts.append(f"{name}\n{value}\n")
    return "".join(parts).encode("utf-8")


def verify_sns(message: dict, certificates: SnsCertificates, now: dt.datetime) -> None:
    algorithm = SNS_HASHES.get(message.get("SignatureVersion"))
    if algorithm is None:
        raise Forged("Unknown SNS SignatureVersion.")
    try:
        signature = base64.b64decode(message.get("Signature") or "", validate=True)
    except (binascii.Error, TypeError) as exc:
        raise Forged("The SNS Signature is not base64.") from exc
    string_to_sign = sns_string_to_sign(message)
    key = certificates.get(message.get("SigningCertURL"), now).public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise Forged("The SNS signing certificate does not hold an RSA key.")
    try:
        key.verify(signature, string_to_sign, padding.PKCS1v15(), algorithm())
    except InvalidSignature as exc:
        raise Forged("The SNS message signature does not verify.") from exc


def parse_ses(headers, body: bytes, settings: Settings, now: dt.datetime,
              certificates: SnsCertificates) -> Intake:
    if not settings.ses_topic_arns:
        raise NotConfigured("Amazon SES is not configured (PREFCENTER_SES_TOPIC_ARNS).")
    message = _json(body)
    if not isinstance(message, dict):
        raise Malformed("The SNS message is not a JSON object.")
    verify_sns(message, certificates, now)
    if message.get("TopicArn") not in settings.ses_topic_arns:
        raise Forged("The SNS TopicArn is not one configured in PREFCENTER_SES_TOPIC_ARNS.")
    kind = message["Type"]
    if kind == "SubscriptionConfirmation":
        return Intake([], confirm_url=check_sns_url(message.get("SubscribeURL")))
    if kind == "UnsubscribeConfirmation":
        return Intake([])
    notification = _json(message["Message"].encode("utf-8"))
    if not isinstance(notification, dict):
        raise Malformed("The SES notification is not a JSON object.")
    return Intake(ses_reports(notification, message["MessageId"]))


def ses_reports(notification: dict, message_id: str) -> list[Report]:
    """An SES notification (``notificationType``) or event (``eventType``) as reports."""
    kind = notification.get("notificationType") or notification.get("eventType")
    found: list[tuple[str, str, str, object]] = []  # (kind, address, detail, when)
    if kind == "Bounce":
        bounce = notification.get("bounce") or {}
        ours = "hard_bounce" if bounce.get("bounceType") == "Permanent" else "soft_bounce"
        detail = f"{bounce.get('bounceType')}/{bounce.get('bounceSubType')}"
        for recipient in bounce.get("bouncedRecipients") or []:
            found.append((ours, recipient.get("emailAddress"), detail, bounce.get("timestamp")))
    elif kind == "Complaint":
        complaint = notification.get("complaint") or {}
        feedback = complaint.get("complaintFeedbackType")
        ours = "other" if feedback == "not-spam" else "complaint"
        for recipient in complaint.get("complainedRecipients") or []:
            found.append((ours, recipient.get("emailAddress"), _text(feedback) or "complaint",
                          complaint.get("timestamp")))
    elif kind == "Delivery":
        delivery = notification.get("delivery") or {}
        for address in delivery.get("recipients") or []:
            found.append((DELIVERED, address, "", delivery.get("timestamp")))
    return [
        Report(provider="ses", event_id=f"{message_id}:{address}", kind=ours, email=address,
               raw=notification, detail=detail, occurred_at=_when(when))
        for ours, address, detail, when in found if isinstance(address, str) and address
    ]


# --- SendGrid Event Webhook ------------------------------------------------------------------

SENDGRID_SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
SENDGRID_TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"


def sendgrid_key(configured: str) -> ec.EllipticCurvePublicKey:
    """The verification key as SendGrid shows it (base64 DER), or as PEM."""
    try:
        if "BEGIN PUBLIC KEY" in configured:
            key = serialization.load_pem_public_key(configured.encode("ascii"))
        else:
            key = serialization.load_der_public_key(base64.b64decode(configured))
    except (ValueError, binascii.Error) as exc:
        raise NotConfigured("PREFCENTER_SENDGRID_PUBLIC_KEY is not a public key.") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise NotConfigured("PREFCENTER_SENDGRID_PUBLIC_KEY is not an ECDSA P-256 key.")
    return key


def parse_sendgrid(headers, body: bytes, settings: Settings, now: dt.datetime) -> Intake:
    if not settings.sendgrid_public_key:
        raise NotConfigured("SendGrid is not configured (PREFCENTER_SENDGRID_PUBLIC_KEY).")
    key = sendgrid_key(settings.sendgrid_public_key)
    timestamp = headers.get(SENDGRID_TIMESTAMP)
    _check_window(timestamp, now, settings.max_age)
    try:
        signature = base64.b64decode(headers.get(SENDGRID_SIGNATURE) or "", validate=True)
        key.verify(signature, timestamp.encode("ascii") + body, ec.ECDSA(hashes.SHA256()))
    except (binascii.Error, InvalidSignature, ValueError) as exc:
        raise Forged("The SendGrid signature does not verify.") from exc
    events = _json(body)
    if not isinstance(events, list):
        raise Malformed("A SendGrid post is a JSON array of events.")
    reports = []
    for event in events:
        if not isinstance(event, dict) or not isinstance(event.get("email"), str):
            raise Malformed("Every SendGrid event is an object with an email.")
        name = event.get("event")
        if name == "bounce":
            # "bounce" is permanent; "blocked" is the receiver refusing for now.
            ours = "soft_bounce" if event.get("type") == "blocked" else "hard_bounce"
        elif name == "spamreport":
            ours = "complaint"
        elif name in ("unsubscribe", "group_unsubscribe"):
            ours = "unsubscribe"
        elif name == "delivered":
            ours = DELIVERED
        else:  # dropped, deferred, processed, open, click...: nothing to change
            ours = "other"
        event_id = event.get("sg_event_id") or hashlib.sha256(
            json.dumps(event, sort_keys=True).encode()).hexdigest()
        detail = _text(event.get("reason") or event.get("type") or name)
        reports.append(Report(provider="sendgrid", event_id=str(event_id), kind=ours,
                              email=event["email"], raw=event, detail=detail,
                              occurred_at=_when(event.get("timestamp"))))
    return Intake(reports)


# --- Postmark --------------------------------------------------------------------------------

POSTMARK_HARD = {"HardBounce", "BadEmailAddress", "ManuallyDeactivated"}
POSTMARK_SOFT = {"SoftBounce", "Transient", "DnsError", "Undeliverable"}


def check_basic_auth(authorization: str | None, user: str, password: str) -> None:
    scheme, _, encoded = (authorization or "").partition(" ")
    try:
        given = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        given = ""
    given_user, _, given_password = given.partition(":")
    user_ok = hmac.compare_digest(given_user.encode(), user.encode())
    password_ok = hmac.compare_digest(given_password.encode(), password.encode())
    if scheme.lower() != "basic" or not (user_ok and password_ok):
        raise Forged("Postmark posts carry the configured basic auth user and password.")


def parse_postmark(headers, body: bytes, settings: Settings, now: dt.datetime) -> Intake:
    if not (settings.postmark_user and settings.postmark_password):
        raise NotConfigured("Postmark is not configured (PREFCENTER_POSTMARK_WEBHOOK_USER "
                            "and PREFCENTER_POSTMARK_WEBHOOK_PASSWORD).")
    check_basic_auth(headers.get("Authorization"), settings.postmark_user,
                     settings.postmark_password)
    record = _json(body)
    if not isinstance(record, dict):
        raise Malformed("A Postmark post is a JSON object.")
    record_type = record.get("RecordType")
    if record_type in ("Bounce", "SpamComplaint"):
        bounce_type = record.get("Type")
        if record_type == "SpamComplaint" or bounce_type == "SpamComplaint":
            ours = "complaint"
        elif bounce_type in POSTMARK_HARD:
            ours = "hard_bounce"
        elif bounce_type in POSTMARK_SOFT:
            ours = "soft_bounce"
        elif bounce_type == "Unsubscribe":
            ours = "unsubscribe"
        else:
            ours = "other"
        email, when = record.get("Email"), record.get("BouncedAt")
        event_id = f"{record_type}:{record.get('ID')}"
        detail = _text(bounce_type)
    elif record_type == "SubscriptionChange":
        reason = record.get("SuppressionReason")
        if not record.get("SuppressSending"):
            ours = "other"  # reactivated at Postmark: our own state stays as it is
        elif reason == "HardBounce":
            ours = "hard_bounce"
        elif reason == "SpamComplaint":
            ours = "complaint"
        else:  # ManualSuppression: the recipient unsubscribed (or the sender suppressed)
            ours = "unsubscribe"
        email, when = record.get("Recipient"), record.get("ChangedAt")
        event_id = (f"SubscriptionChange:{record.get('MessageID')}:{email}:{when}:"
                    f"{bool(record.get('SuppressSending'))}")
        detail = _text(reason) or "reactivated"
    elif record_type == "Delivery":
        email, when, ours = record.get("Recipient"), record.get("DeliveredAt"), DELIVERED
        event_id, detail = f"Delivery:{record.get('MessageID')}:{email}", ""
    else:
        raise Malformed(f"Unknown Postmark RecordType {record_type!r}.")
    if not isinstance(email, str) or not email:
        raise Malformed("The Postmark record names no address.")
    return Intake([Report(provider="postmark", event_id=event_id, kind=ours, email=email,
                          raw=record, detail=detail, occurred_at=_when(when))])


# --- Mailgun ---------------------------------------------------------------------------------


def parse_mailgun(headers, body: bytes, settings: Settings, now: dt.datetime) -> Intake:
    if not settings.mailgun_signing_key:
        raise NotConfigured("Mailgun is not configured (PREFCENTER_MAILGUN_SIGNING_KEY).")
    post = _json(body)
    if not isinstance(post, dict):
        raise Malformed("A Mailgun post is a JSON object.")
    signed = post.get("signature")
    if not isinstance(signed, dict):
        raise Forged("The Mailgun post has no signature.")
    timestamp, token = str(signed.get("timestamp") or ""), signed.get("token")
    if not isinstance(token, str) or not token or len(token) > 128:
        raise Forged("The Mailgun signature has no token.")
    _check_window(timestamp, now, settings.max_age)
    expected = hmac.new(settings.mailgun_signing_key.encode("utf-8"),
                        (timestamp + token).encode("utf-8"), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, str(signed.get("signature") or "")):
        raise Forged("The Mailgun signature does not verify.")
    event = post.get("event-data")
    if not isinstance(event, dict) or not isinstance(event.get("recipient"), str):
        raise Malformed("The Mailgun post has no event-data with a recipient.")
    name = event.get("event")
    if name == "failed":
        ours = "hard_bounce" if event.get("severity") == "permanent" else "soft_bounce"
    elif name == "complained":
        ours = "complaint"
    elif name == "unsubscribed":
        ours = "unsubscribe"
    elif name == "delivered":
        ours = DELIVERED
    else:
        ours = "other"
    event_id = event.get("id") or token
    detail = _text(event.get("reason") or event.get("severity") or name)
    return Intake([Report(provider="mailgun", event_id=str(event_id), kind=ours,
                          email=event["recipient"], raw=event, detail=detail,
                          occurred_at=_when(event.get("timestamp")))],
                  nonce=token)
