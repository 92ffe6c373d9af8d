"""Receiving one ESP post: verify it, accept its one-time token once, store and apply it."""

from __future__ import annotations

import datetime as dt

import httpx
from flask import Flask
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.esp.models import EspNonce
from app.esp.providers import (
    EspError,
    Intake,
    NotConfigured,
    Replayed,
    Settings,
    SnsCertificates,
    parse_mailgun,
    parse_postmark,
    parse_sendgrid,
    parse_ses,
)
from app.subscribers.reports import Tally, take_reports


def settings_of(app: Flask) -> Settings:
    config = app.config
    return Settings(
        max_age=config["ESP_MAX_AGE"],
        ses_topic_arns=tuple(config["SES_TOPIC_ARNS"]),
        sendgrid_public_key=config["SENDGRID_PUBLIC_KEY"],
        postmark_user=config["POSTMARK_WEBHOOK_USER"],
        postmark_password=config["POSTMARK_WEBHOOK_PASSWORD"],
        mailgun_signing_key=config["MAILGUN_SIGNING_KEY"],
    )


def certificates_of(app: Flask) -> SnsCertificates:
    """The app's SNS certificate store (``SNS_CERT_DIR``; ``SNS_HTTP_TRANSPORT`` in tests)."""
    found = app.extensions.get("prefcenter.sns_certificates")
    if found is None:
        found = app.extensions["prefcenter.sns_certificates"] = SnsCertificates(
            app.config["SNS_CERT_DIR"], app.config.get("SNS_HTTP_TRANSPORT"))
    return found


def verify(app: Flask, provider: str, headers, body: bytes, now: dt.datetime) -> Intake:
    """The post's reports if it proves it comes from ``provider``, else an EspError."""
    settings = settings_of(app)
    if provider == "ses":
        return parse_ses(headers, body, settings, now, certificates_of(app))
    parsers = {"sendgrid": parse_sendgrid, "postmark": parse_postmark, "mailgun": parse_mailgun}
    parser = parsers.get(provider)
    if parser is None:
        raise NotConfigured(f"Unknown provider {provider!r}; one of: ses, sendgrid, postmark, "
                            "mailgun.")
    return parser(headers, body, settings, now)


def accept_once(session: Session, provider: str, nonce: str, now: dt.datetime,
                max_age: int) -> None:
    """Record a one-time token; Replayed if it was seen. Tokens older than the timestamp
    window are forgotten (an old token is refused by the window anyway)."""
    session.execute(delete(EspNonce).where(
        EspNonce.seen_at < now - dt.timedelta(seconds=2 * max_age)))
    try:
        with session.begin_nested():
            session.add(EspNonce(provider=provider, nonce=nonce, seen_at=now))
    except IntegrityError as exc:
        raise Replayed("This signed request was received before.") from exc


def confirm_subscription(app: Flask, url: str) -> None:
    """Visit an SNS SubscribeURL (already checked to be https on an SNS host)."""
    try:
        with httpx.Client(transport=app.config.get("SNS_HTTP_TRANSPORT"), timeout=10,
                          follow_redirects=False) as client:
            client.get(url).raise_for_status()
    except httpx.HTTPError as exc:
        raise EspError(f"Could not confirm the SNS subscription: {exc}.") from exc


def receive(session: Session, app: Flask, intake: Intake, provider: str,
            now: dt.datetime) -> Tally:
    """Store and apply a verified post in the caller's transaction."""
    if intake.nonce is not None:
        accept_once(session, provider, intake.nonce, now, app.config["ESP_MAX_AGE"])
    return take_reports(session, intake.reports,
                        soft_bounce_limit=max(1, app.config["ESP_SOFT_BOUNCE_LIMIT"]))
