"""Outgoing mail: queued in the caller's transaction, rendered and sent by the worker.

:func:`queue` writes one :class:`~app.mail.models.MailMessage` row; nothing talks to SMTP
on a request. :mod:`app.mail.worker` claims due rows, renders each in its recipient's
locale (pinned, never the request's) and sends it. See docs/mail.md.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import smtplib
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formataddr, make_msgid

from flask import Flask, render_template
from flask_babel import force_locale
from flask_babel import lazy_gettext as _l
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from app.db import utcnow
from app.mail.models import DROPPED, PENDING, MailMessage
from app.retry import parse_schedule


@dataclass(frozen=True, slots=True)
class Kind:
    """A kind of message: its subject (translated when rendered) and its template."""

    subject: object
    template: str


KINDS = {
    "fresh_link": Kind(_l("Your link to manage your email preferences"),
                       "mail/fresh_link.txt"),
    "address_confirm": Kind(_l("Confirm your new email address"),
                            "mail/address_confirm.txt"),
    "address_notice": Kind(_l("A change of your email address was requested"),
                           "mail/address_notice.txt"),
}


@dataclass(frozen=True, slots=True)
class MailSettings:
    """The mail part of the configuration (README, ``PREFCENTER_SMTP_*``/``MAIL_*``)."""

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_timeout: float = 10.0
    mail_from: str = "preferences@example.com"
    brand: str = "Prefcenter"
    retry_schedule: tuple[float, ...] = (10, 60, 300, 900, 3600, 10800)
    lease: float = 120.0
    batch: int = 20
    poll_interval: float = 1.0
    recipient_limit: int = 5
    recipient_window: float = 3600.0
    keep: float = 30 * 86400.0

    @classmethod
    def from_config(cls, config: Mapping) -> MailSettings:
        return cls(
            smtp_host=config.get("SMTP_HOST", "127.0.0.1"),
            smtp_port=int(config.get("SMTP_PORT", 25)),
            smtp_timeout=float(config.get("SMTP_TIMEOUT", 10)),
            mail_from=config.get("MAIL_FROM", "preferences@example.com"),
            brand=config.get("BRAND_NAME", "Prefcenter"),
            retry_schedule=parse_schedule(config.get("MAIL_RETRY_SCHEDULE",
                                                     "10,60,300,900,3600,10800")),
            lease=float(config.get("MAIL_LEASE", 120)),
            poll_interval=float(config.get("MAIL_POLL_INTERVAL", 1)),
            recipient_limit=int(config.get("MAIL_RECIPIENT_LIMIT", 5)),
            recipient_window=float(config.get("MAIL_RECIPIENT_WINDOW", 3600)),
            keep=float(config.get("MAIL_KEEP", 30 * 86400)),
        )


def recipient_key(address: str) -> str:
    """The per-recipient limit's key: sha256 of the address, compared case-insensitively."""
    return hashlib.sha256(address.strip().lower().encode("utf-8")).hexdigest()


def queue(session: Session, settings: MailSettings, *, kind: str, to: str | None,
          locale: str, context: dict | None = None,
          subscriber_id: int | None = None) -> MailMessage:
    """Queue one message in the caller's transaction (sent once it commits).

    Always the same work, whether or not anything will go: the recipient's count in the
    window is read and one row is written. ``to=None`` (nobody we know) and a recipient
    past ``settings.recipient_limit`` messages in the window write a ``dropped`` row,
    which the worker never sends, so the caller's answer and timing tell nothing.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown mail kind {kind!r}")
    now = utcnow()
    # An address nobody has: the same query, finding nothing.
    key = recipient_key(to) if to else None
    since = now - dt.timedelta(seconds=settings.recipient_window)
    recent = session.scalar(
        select(func.count()).select_from(MailMessage)
        .where(MailMessage.recipient_key == (key or "-"), MailMessage.created_at >= since,
               MailMessage.status != DROPPED)
    )
    reason = None
    if to is None:
        reason = "no recipient"
    elif recent >= settings.recipient_limit:
        reason = "recipient limit"
    message = MailMessage(
        kind=kind, recipient=to if reason is None else None, recipient_key=key,
        subscriber_id=subscriber_id, locale=locale,
        context=(context or {}) if reason is None else {},
        status=PENDING if reason is None else DROPPED, last_error=reason,
        next_attempt_at=now, created_at=now,
    )
    session.add(message)
    session.flush()
    return message


def forget(session: Session, subscriber_id: int) -> None:
    """Delete every message to or about a subscriber (erasure): unsent ones too."""
    session.execute(delete(MailMessage).where(MailMessage.subscriber_id == subscriber_id)
                    .execution_options(synchronize_session=False))


def render(app: Flask, settings: MailSettings, *, kind: str, to: str, locale: str,
           context: dict) -> EmailMessage:
    """The message, rendered with ``locale`` pinned."""
    spec = KINDS[kind]
    with force_locale(locale):
        subject = str(spec.subject)
        text = render_template(spec.template, brand=settings.brand, **context)
    message = EmailMessage()
    message["From"] = formataddr((settings.brand, settings.mail_from))
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain=settings.mail_from.rpartition("@")[2])
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(text)
    return message


def connect(settings: MailSettings) -> smtplib.SMTP:
    return smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout)
