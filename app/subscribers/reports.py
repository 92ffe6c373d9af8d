"""What ESPs report about addresses: complaints, bounces, unsubscribes, deliveries.

Each report is stored once per provider event id (a second arrival changes nothing) with
what it did, then applied through the same rules as every other change:

- a complaint unsubscribes from all marketing (reason ``complaint``);
- a provider's unsubscribe does what a one-click without a topic does (reason ``unsubscribe``);
- a hard bounce marks the address undeliverable (reason ``hard_bounce``);
- a soft bounce adds one to the address's run; ``soft_bounce_limit`` of them in a row (no
  delivery between) mark it undeliverable (reason ``soft_bounces``);
- a delivery ends the run of soft bounces (it is not stored: it reports nothing wrong).

Reports about an address no subscriber has are stored (outcome ``unknown``) and change nothing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db import utcnow
from app.subscribers.models import EspEvent, Subscriber, address_key
from app.subscribers.services import (
    Context,
    InvalidEmail,
    change,
    email_hash,
    normalise_email,
    unsubscribe,
)

DELIVERED = "delivered"


@dataclass(frozen=True, slots=True)
class Report:
    """One provider event about one address, in our words."""

    provider: str
    event_id: str
    kind: str  # complaint, hard_bounce, soft_bounce, unsubscribe, delivered, other
    email: str
    raw: dict
    detail: str = ""
    occurred_at: dt.datetime | None = None


@dataclass(slots=True)
class Tally:
    received: int = 0
    applied: int = 0
    duplicates: int = 0
    unknown: int = 0
    outcomes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"received": self.received, "applied": self.applied,
                "duplicates": self.duplicates, "unknown": self.unknown}


def _subscriber(session: Session, address: str) -> Subscriber | None:
    try:
        email = normalise_email(address)
    except InvalidEmail:
        return None
    return session.scalars(
        select(Subscriber).where(Subscriber.email_key == address_key(email),
                                 Subscriber.erased_at.is_(None))
        .with_for_update(of=Subscriber)
    ).unique().one_or_none()


def _apply(session: Session, subscriber: Subscriber, report: Report, *,
           soft_bounce_limit: int) -> bool:
    """Apply one new report; whether anything changed."""
    def context(reason: str) -> Context:
        return Context(source="esp", actor=report.provider, reason=reason)

    if report.kind == "complaint":
        return bool(change(session, subscriber, context=context("complaint"),
                           unsubscribed_all=True, allowed={}))
    if report.kind == "unsubscribe":
        return bool(unsubscribe(session, subscriber, None, context=context("unsubscribe")))
    if report.kind == "hard_bounce":
        return bool(change(session, subscriber, context=context("hard_bounce"),
                           undeliverable=True, allowed={}))
    if report.kind == "soft_bounce":
        if subscriber.undeliverable_at is not None:
            return False
        subscriber.soft_bounces += 1
        if subscriber.soft_bounces >= soft_bounce_limit:
            change(session, subscriber, context=context("soft_bounces"), undeliverable=True,
                   allowed={})
        return True
    return False


def take_reports(session: Session, reports: list[Report], *,
                 soft_bounce_limit: int) -> Tally:
    """Store and apply ``reports`` in the caller's transaction."""
    tally = Tally()
    for report in reports:
        tally.received += 1
        subscriber = _subscriber(session, report.email)
        if report.kind == DELIVERED:
            if subscriber is not None and subscriber.soft_bounces:
                subscriber.soft_bounces = 0
            tally.outcomes.append("unchanged")
            continue
        row = EspEvent(
            provider=report.provider, provider_event_id=report.event_id[:255],
            kind=report.kind, email=report.email[:320], email_hash=email_hash(report.email),
            subscriber_id=subscriber.id if subscriber is not None else None,
            outcome="unknown", detail=report.detail[:255], raw=report.raw,
            occurred_at=report.occurred_at, created_at=utcnow(),
        )
        if _seen(session, report):
            tally.duplicates += 1
            tally.outcomes.append("duplicate")
            continue
        try:
            with session.begin_nested():
                session.add(row)
        except IntegrityError:  # the same event, committed meanwhile by a concurrent post
            tally.duplicates += 1
            tally.outcomes.append("duplicate")
            continue
        if subscriber is None:
            tally.unknown += 1
        elif _apply(session, subscriber, report, soft_bounce_limit=soft_bounce_limit):
            row.outcome = "applied"
            tally.applied += 1
        else:
            row.outcome = "unchanged"
        tally.outcomes.append(row.outcome)
    session.flush()
    return tally


def _seen(session: Session, report: Report) -> bool:
    return session.scalar(
        select(EspEvent.id).where(EspEvent.provider == report.provider,
                                  EspEvent.provider_event_id == report.event_id[:255])
    ) is not None
