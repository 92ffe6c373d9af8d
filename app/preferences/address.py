"""A subscriber changes their address from the preference page.

The request queues a confirmation link to the new address and a notice to the old one
(the mail outbox, :mod:`app.mail`); nothing changes until the new address confirms. The
link carries a random code whose sha256 is kept in :class:`AddressChange`: it works once
and until it expires, and a newer request replaces it. Confirming applies
:func:`~app.subscribers.services.change_address`, the rule (an address another subscriber
has is refused; a suppressed one stays suppressed). See docs/address-change.md.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Callable

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.db import utcnow
from app.events.models import Event
from app.mail.services import MailSettings, queue
from app.preferences.services import mask_email
from app.subscribers.models import AddressChange, Subscriber
from app.subscribers.services import (
    Context,
    PreferenceError,
    change_address,
    normalise_email,
)

MAX_CODE_LENGTH = 64


class SameAddress(PreferenceError):
    """The new address is the one the subscriber has."""


class CodeNotUsable(Exception):
    """A confirmation link that cannot be used: ``invalid``, ``expired`` or ``used``."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason
        self.status = 400 if reason == "invalid" else 410


def code_hash(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8")).hexdigest()


def request_change(session: Session, subscriber: Subscriber, new_email: str, *,
                   mail: MailSettings, max_age: int, locale: str,
                   confirm_url: Callable[[str], str]) -> str:
    """Record the request and queue both messages, in the caller's transaction.

    Returns the new address as it will be stored. Raises
    :class:`~app.subscribers.services.InvalidEmail` or :class:`SameAddress`. Whether the
    address belongs to someone else is not said here (only to whoever reads the new
    address's mail, when they confirm).
    """
    new = normalise_email(new_email)
    if subscriber.email and new.lower() == subscriber.email.lower():
        raise SameAddress("that is the subscriber's address already")
    now = utcnow()
    session.execute(
        delete(AddressChange).where(AddressChange.subscriber_id == subscriber.id,
                                    AddressChange.confirmed_at.is_(None))
        .execution_options(synchronize_session=False)
    )
    code = secrets.token_urlsafe(32)
    session.add(AddressChange(subscriber_id=subscriber.id, new_email=new,
                              code_hash=code_hash(code), created_at=now,
                              expires_at=now + dt.timedelta(seconds=max_age)))
    hours = max(1, round(max_age / 3600))
    queue(session, mail, kind="address_confirm", to=new, locale=locale,
          context={"url": confirm_url(code), "hours": hours}, subscriber_id=subscriber.id)
    queue(session, mail, kind="address_notice", to=subscriber.email, locale=locale,
          context={"new_email": mask_email(new)}, subscriber_id=subscriber.id)
    return new


def open_code(session: Session, code: str, *,
              for_update: bool = False) -> tuple[AddressChange, Subscriber]:
    """The pending change a confirmation code names and its subscriber, or
    :class:`CodeNotUsable`."""
    if not code or len(code) > MAX_CODE_LENGTH:
        raise CodeNotUsable("invalid")
    pending = session.scalar(
        select(AddressChange).where(AddressChange.code_hash == code_hash(code))
    )
    if pending is None:
        raise CodeNotUsable("invalid")
    query = select(Subscriber).where(Subscriber.id == pending.subscriber_id,
                                     Subscriber.erased_at.is_(None))
    if for_update:
        query = query.with_for_update(of=Subscriber)
    subscriber = session.scalars(query).unique().one_or_none()
    if subscriber is None:
        raise CodeNotUsable("invalid")
    if pending.confirmed_at is not None:
        raise CodeNotUsable("used")
    if pending.expires_at <= utcnow():
        raise CodeNotUsable("expired")
    return pending, subscriber


def confirm(session: Session, pending: AddressChange, subscriber: Subscriber, *,
            context: Context) -> list[Event]:
    """Apply the change (raises :class:`~app.subscribers.services.AddressTaken`); the
    code is spent and every other pending request of the subscriber dropped."""
    events = change_address(session, subscriber, pending.new_email, context=context)
    pending.confirmed_at = utcnow()
    session.execute(
        delete(AddressChange).where(AddressChange.subscriber_id == subscriber.id,
                                    AddressChange.confirmed_at.is_(None))
        .execution_options(synchronize_session=False)
    )
    return events
