"""Signed links: one serializer per purpose, library errors mapped to domain errors.

A token carries ``[public_id, epoch, topic, campaign, locale]`` (trailing empty
values dropped), signed with HMAC-SHA1 and a timestamp. The payload is never
compressed: itsdangerous' URL-safe serializers try zlib on every dump, which
costs half the minting time and saves nothing on payloads this small.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass

from itsdangerous import BadData, BadSignature, SignatureExpired, URLSafeTimedSerializer
from itsdangerous.encoding import base64_decode, base64_encode, bytes_to_int

PREFERENCES = "preferences"
UNSUBSCRIBE = "unsubscribe"
# The longest token any page accepts; minting refuses to make a longer one.
MAX_TOKEN_LENGTH = 512
SALTS = {
    PREFERENCES: "prefcenter.link.preferences.v1",
    UNSUBSCRIBE: "prefcenter.link.unsubscribe.v1",
}


class LinkError(Exception):
    """A link that cannot be honoured; ``status`` is the HTTP answer."""

    status = 400
    reason = "invalid"


class InvalidLink(LinkError):
    """Tampered, truncated, foreign-purpose or otherwise unreadable."""


class ExpiredLink(LinkError):
    status = 410
    reason = "expired"

    def __init__(self, claims: LinkClaims | None):
        super().__init__("link expired")
        self.claims = claims


class RevokedLink(LinkError):
    status = 410
    reason = "revoked"


class UnknownSubscriber(LinkError):
    status = 404
    reason = "unknown"


@dataclass(frozen=True, slots=True)
class LinkClaims:
    purpose: str
    public_id: str
    epoch: int = 0
    topic: str | None = None
    campaign: str | None = None
    locale: str | None = None
    token_id: str = ""

    def payload(self) -> list:
        values = [self.public_id, self.epoch, self.topic or "", self.campaign or "",
                  self.locale or ""]
        while values and values[-1] == "":
            values.pop()
        return values


class _CompactJSON:
    @staticmethod
    def dumps(obj, **_kw) -> str:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)

    @staticmethod
    def loads(raw, **_kw):
        return json.loads(raw)


class _Serializer(URLSafeTimedSerializer):
    default_serializer = _CompactJSON

    def dump_payload(self, obj) -> bytes:
        return base64_encode(self.serializer.dumps(obj).encode("utf-8"))


def token_id(token: str) -> str:
    """A short, stable id for a token, for the event log (never the token itself)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()[:16]


class LinkSigner:
    """Mints and reads links for both purposes with a rotating list of keys."""

    def __init__(self, secret_keys: list[str], max_ages: dict[str, int]):
        if not secret_keys:
            raise ValueError("at least one secret key is needed")
        # itsdangerous signs with the last key and verifies with all of them.
        keys = list(reversed(secret_keys))
        self.max_ages = dict(max_ages)
        self._serializers = {
            purpose: _Serializer(keys, salt=salt) for purpose, salt in SALTS.items()
        }
        # Every key's HMAC, derived once (itsdangerous derives it again on every call).
        self._macs = {}
        for purpose, serializer in self._serializers.items():
            signer = serializer.make_signer()
            self._macs[purpose] = [
                hmac.new(signer.derive_key(key), digestmod=hashlib.sha1)
                for key in reversed(signer.secret_keys)
            ]

    def dumps(self, claims: LinkClaims) -> str:
        return self._serializers[claims.purpose].dumps(claims.payload())

    def mint(self, purpose: str, public_id: str, *, epoch: int = 0, topic: str | None = None,
             campaign: str | None = None, locale: str | None = None) -> str:
        return self.dumps(LinkClaims(purpose, public_id, epoch, topic, campaign, locale))

    def loads(self, purpose: str, token: str) -> LinkClaims:
        """The token's claims, else InvalidLink or ExpiredLink (with the claims if readable)."""
        claims = self._fresh(purpose, token)
        return claims if claims is not None else self._read(purpose, token)

    def _read(self, purpose: str, token: str) -> LinkClaims:
        """:meth:`loads` by itsdangerous alone: every answer, at its own pace."""
        serializer = self._serializers[purpose]
        try:
            payload = serializer.loads(token, max_age=self.max_ages[purpose])
        except SignatureExpired as exc:
            claims = None
            if exc.payload is not None:
                try:
                    claims = _claims(purpose, serializer.load_payload(exc.payload), token)
                except (BadData, ValueError, TypeError):
                    claims = None
            raise ExpiredLink(claims) from exc
        except (BadSignature, BadData, ValueError, UnicodeError) as exc:
            raise InvalidLink("link is not valid") from exc
        try:
            return _claims(purpose, payload, token)
        except (ValueError, TypeError) as exc:
            raise InvalidLink("link payload is not valid") from exc

    def _fresh(self, purpose: str, token: str) -> LinkClaims | None:
        """The claims of an authentic, unexpired, well-formed token, read the way
        itsdangerous reads it but with keys derived once; None for anything else, which
        :meth:`loads` then leaves to :meth:`_read` (tests/test_links.py holds both to the
        same answers)."""
        try:
            signed = token.encode("ascii")
        except UnicodeEncodeError:
            return None
        value, dot, signature = signed.rpartition(b".")
        payload, dot_too, stamp = value.rpartition(b".")
        if not (dot and dot_too and payload) or payload.startswith(b"."):
            return None  # not signed, or compressed: never ours, itsdangerous says why
        try:
            expected = base64_decode(signature)
            issued = bytes_to_int(base64_decode(stamp))
        except BadData:
            return None
        for mac in self._macs[purpose]:
            mac = mac.copy()
            mac.update(value)
            if hmac.compare_digest(mac.digest(), expected):
                break
        else:
            return None
        if not 0 <= int(time.time()) - issued <= self.max_ages[purpose]:
            return None
        try:
            return _claims(purpose, json.loads(base64_decode(payload)), token)
        except (BadData, ValueError, TypeError, UnicodeError):
            return None


def _claims(purpose: str, payload, token: str) -> LinkClaims:
    if not isinstance(payload, list) or not payload or not isinstance(payload[0], str):
        raise ValueError("bad payload")
    if len(payload) > 5:
        raise ValueError("bad payload")
    values = [*payload, *[0, 0, "", "", ""][len(payload):]]
    public_id, epoch, topic, campaign, locale = values
    if not isinstance(epoch, int):
        raise ValueError("bad epoch")
    for value in (topic, campaign, locale):
        if not isinstance(value, str):
            raise ValueError("bad field")
    return LinkClaims(purpose, public_id, epoch, topic or None, campaign or None, locale or None,
                      token_id(token))


def get_signer(app) -> LinkSigner:
    signer = app.extensions.get("prefcenter.links")
    if signer is None:
        signer = app.extensions["prefcenter.links"] = LinkSigner(
            app.config["SECRET_KEYS"],
            {PREFERENCES: app.config["PREFERENCE_LINK_MAX_AGE"],
             UNSUBSCRIBE: app.config["UNSUBSCRIBE_LINK_MAX_AGE"]},
        )
    return signer


def links_for(app, subscriber, *, topic: str | None = None, campaign: str | None = None,
              locale: str | None = None) -> dict:
    """Preference URL, unsubscribe URL and the RFC 8058 headers for one email."""
    from app.links.minting import Minter

    return Minter.cached(app).links(subscriber, topic=topic, campaign=campaign, locale=locale)


def verify_link(signer: LinkSigner, purpose: str, token: str) -> LinkClaims:
    """The claims of an authentic, unexpired ``token`` of ``purpose``, else a LinkError."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise InvalidLink("link is too long")
    return signer.loads(purpose, token)


def open_link(session, signer: LinkSigner, purpose: str, token: str, *, for_update: bool = False):
    """Verify ``token`` and load its subscriber: ``(claims, subscriber)`` or a LinkError."""
    from app.subscribers.services import by_public_id

    claims = verify_link(signer, purpose, token)
    subscriber = by_public_id(session, claims.public_id, for_update=for_update)
    if subscriber is None:
        raise UnknownSubscriber("no such subscriber")
    if claims.epoch < subscriber.link_epoch:
        raise RevokedLink("link revoked")
    return claims, subscriber


def read_link(db, claims: LinkClaims):
    """The subscriber verified ``claims`` name, as the public pages read it, with the
    catalogue version, in one statement (:func:`app.subscribers.reading.read_for_page`);
    changes nothing. A LinkError as :func:`open_link` raises it."""
    from app.subscribers.reading import read_for_page

    found = read_for_page(db, claims.public_id)
    if found is None:
        raise UnknownSubscriber("no such subscriber")
    if claims.epoch < found.subscriber.link_epoch:
        raise RevokedLink("link revoked")
    return found
