"""Who may be sent a topic on a channel now: one rule for the export and for due sends.

Subscribed to the topic, that channel chosen for it, not unsubscribed from all
marketing, not paused (a pause whose date has passed is over), not erased, with
an address for the channel (email, or a phone for SMS), and not suppressed; for
email, an address the ESPs have not reported undeliverable.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import Select, bindparam, or_, select, text
from sqlalchemy.orm import Session

from app.db import UTCDateTime
from app.subscribers.models import Subscriber, Subscription, Suppression, channel_flag
from app.subscribers.services import email_hash

BATCH = 5000


def eligible(channel: str, *, batch: int = BATCH) -> Select:
    """One keyset page of recipients of ``:topic_id`` on ``channel`` at ``:now``, after
    subscriber id ``:after``, in id order."""
    flag = getattr(Subscription, channel_flag(channel))
    address = Subscriber.phone if channel == "sms" else Subscriber.email
    deliverable = [] if channel == "sms" else [Subscriber.undeliverable_at.is_(None)]
    return (
        select(Subscriber.id, Subscriber.external_id, Subscriber.email, Subscriber.phone,
               Subscriber.locale, Subscription.frequency)
        .join(Subscription, Subscription.subscriber_id == Subscriber.id)
        .where(Subscription.topic_id == bindparam("topic_id"),
               Subscription.subscribed.is_(True), flag.is_(True),
               Subscriber.unsubscribed_all.is_(False), Subscriber.erased_at.is_(None),
               address.is_not(None), *deliverable,
               or_(Subscriber.paused_until.is_(None),
                   Subscriber.paused_until <= bindparam("now", type_=UTCDateTime())),
               # Both sides, so either index range-scans from the cursor.
               Subscription.subscriber_id > bindparam("after"),
               Subscriber.id > bindparam("after"))
        .order_by(Subscription.subscriber_id)
        .limit(batch)
    )


def suppressed_hashes(session: Session, hashes: list[str]) -> list[str]:
    """Which of ``hashes`` are suppressed: one query with one parameter.

    An IN list of thousands of parameters costs more to send and parse than
    the lookup itself; an array (PostgreSQL) or a JSON list (SQLite) is one.
    """
    if session.get_bind().dialect.name == "postgresql":
        query = text("SELECT email_hash FROM suppressions WHERE email_hash = ANY(:hashes)")
        return list(session.scalars(query, {"hashes": hashes}))
    if session.get_bind().dialect.name == "sqlite":
        query = text("SELECT email_hash FROM suppressions "
                     "WHERE email_hash IN (SELECT value FROM json_each(:hashes))")
        return list(session.scalars(query, {"hashes": json.dumps(hashes)}))
    return list(session.scalars(
        select(Suppression.email_hash).where(Suppression.email_hash.in_(hashes))))


def without_suppressed(session: Session, rows: Sequence) -> list:
    """``rows`` (with ``id`` and ``email``) less those whose address is suppressed."""
    hashes = {email_hash(r.email): r.id for r in rows if r.email}
    if not hashes:
        return list(rows)
    suppressed = {hashes[h] for h in suppressed_hashes(session, list(hashes))}
    return [r for r in rows if r.id not in suppressed] if suppressed else list(rows)


_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def ndjson(rows: Sequence, channel: str) -> str:
    """The export's lines: the address of the channel, the locale and the frequency."""
    if channel == "sms":
        return "".join(_dumps({"external_id": r.external_id, "phone": r.phone,
                               "locale": r.locale, "frequency": r.frequency}) + "\n"
                       for r in rows)
    return "".join(_dumps({"external_id": r.external_id, "email": r.email, "locale": r.locale,
                           "frequency": r.frequency}) + "\n" for r in rows)
