"""Minting links for whole sends: the lookups and a signer that derives its keys once.

:class:`Minter` makes exactly the tokens :class:`~app.links.services.LinkSigner`
makes (same payload, salt, key derivation, timestamp and HMAC-SHA1), but
derives each purpose's HMAC key once, copies a keyed HMAC instead of building
one per token, encodes the payload once for both purposes and the timestamp
once per second. itsdangerous re-derives the key on every call.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass

from itsdangerous import URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode, int_to_bytes
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.links.services import MAX_TOKEN_LENGTH, PREFERENCES, SALTS, UNSUBSCRIBE
from app.subscribers.models import Subscriber
from app.topics.models import Topic

MAX_CAMPAIGN_BYTES = 100
ONE_CLICK = "List-Unsubscribe=One-Click"


@dataclass(frozen=True, slots=True)
class LinkRequest:
    external_id: str
    topic: str | None = None
    campaign: str | None = None
    locale: str | None = None


@dataclass(frozen=True, slots=True)
class LinkTarget:
    """What minting needs of a subscriber: its public id and link epoch."""

    public_id: str
    link_epoch: int


def link_targets(session: Session, external_ids) -> dict[str, LinkTarget]:
    """Public id and epoch of each known, unerased external id, in one query."""
    wanted = sorted(set(external_ids))
    if not wanted:
        return {}
    rows = session.execute(
        select(Subscriber.external_id, Subscriber.public_id, Subscriber.link_epoch)
        .where(Subscriber.external_id.in_(wanted), Subscriber.erased_at.is_(None))
    ).all()
    return {row.external_id: LinkTarget(row.public_id, row.link_epoch) for row in rows}


@dataclass(frozen=True, slots=True)
class LinkTopics:
    usable: frozenset[str]
    known: frozenset[str]


def link_topics(session: Session) -> LinkTopics:
    """Marketing, unarchived topics can carry links; the others are named in errors."""
    rows = session.execute(select(Topic.slug, Topic.kind, Topic.archived)).all()
    return LinkTopics(
        usable=frozenset(r.slug for r in rows if r.kind == "marketing" and not r.archived),
        known=frozenset(r.slug for r in rows),
    )


class LinkTooLong(ValueError):
    """A token longer than the pages accept (:data:`MAX_TOKEN_LENGTH`): never handed out."""


def campaign_error(campaign: str | None) -> str | None:
    """Why ``campaign`` cannot go into a link, or None: it must be printable text (control
    characters are escaped six bytes each and would make a link the pages refuse) of at
    most :data:`MAX_CAMPAIGN_BYTES` bytes."""
    if campaign and not campaign.isprintable():
        return "campaign must be printable text: no control characters, tabs or line breaks."
    if campaign and len(campaign.encode("utf-8")) > MAX_CAMPAIGN_BYTES:
        return (f"campaign must be at most {MAX_CAMPAIGN_BYTES} bytes (UTF-8) so that "
                "links stay short.")
    return None


def link_error(req: LinkRequest, targets: dict[str, LinkTarget],
               topics: LinkTopics) -> tuple[int, str] | None:
    """``(status, detail)`` when ``req`` cannot have links, else None."""
    if req.external_id not in targets:
        return 404, f"No subscriber with external_id {req.external_id!r}."
    if req.topic is not None and req.topic not in topics.usable:
        if req.topic in topics.known:
            return 422, (f"Topic {req.topic!r} is transactional or archived: "
                         "it has no unsubscribe link.")
        return 422, f"Unknown topic {req.topic!r}."
    return None


class Minter:
    """Preference and unsubscribe URLs plus RFC 8058 headers, fast."""

    def __init__(self, secret_keys: list[str], base_url: str):
        self.base = base_url.rstrip("/")
        self._macs = {}
        for purpose, salt in SALTS.items():
            # The same derivation LinkSigner's serializers use (first key signs).
            signer = URLSafeTimedSerializer(list(reversed(secret_keys)), salt=salt).make_signer()
            self._macs[purpose] = hmac.new(signer.derive_key(), digestmod=hashlib.sha1)
        self._encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
        self._second = -1
        self._stamp = b""

    @classmethod
    def for_app(cls, app) -> Minter:
        return cls(app.config["SECRET_KEYS"], app.config["BASE_URL"])

    @classmethod
    def cached(cls, app) -> Minter:
        """The app's minter, rebuilt only when its keys or base URL change."""
        key = (tuple(app.config["SECRET_KEYS"]), app.config["BASE_URL"])
        found = app.extensions.get("prefcenter.minter")
        if found is None or found[0] != key:
            found = app.extensions["prefcenter.minter"] = (key, cls.for_app(app))
        return found[1]

    def _timestamp(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._stamp = base64_encode(int_to_bytes(now))
        return self._stamp

    def _sign(self, purpose: str, value: bytes) -> str:
        mac = self._macs[purpose].copy()
        mac.update(value)
        return (value + b"." + base64_encode(mac.digest())).decode("ascii")

    def tokens(self, public_id: str, epoch: int = 0, topic: str | None = None,
               campaign: str | None = None, locale: str | None = None) -> tuple[str, str]:
        """``(preferences token, unsubscribe token)``."""
        values = [public_id, epoch, topic or "", campaign or "", locale or ""]
        while values and values[-1] == "":
            values.pop()
        value = base64_encode(self._encode(values).encode("utf-8")) + b"." + self._timestamp()
        pref, unsub = self._sign(PREFERENCES, value), self._sign(UNSUBSCRIBE, value)
        if len(pref) > MAX_TOKEN_LENGTH:  # both have the same length
            raise LinkTooLong(f"the link would be {len(pref)} characters long; the pages "
                              f"accept at most {MAX_TOKEN_LENGTH}")
        return pref, unsub

    def links(self, target: LinkTarget, *, topic: str | None = None,
              campaign: str | None = None, locale: str | None = None) -> dict:
        """The same shape as :func:`app.links.services.links_for`."""
        pref, unsub = self.tokens(target.public_id, target.link_epoch, topic, campaign, locale)
        unsubscribe_url = f"{self.base}/u/{unsub}"
        return {
            "preferences_url": f"{self.base}/p/{pref}",
            "unsubscribe_url": unsubscribe_url,
            "headers": {"List-Unsubscribe": f"<{unsubscribe_url}>",
                        "List-Unsubscribe-Post": ONE_CLICK},
        }
