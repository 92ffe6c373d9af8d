"""Outgoing mail over SMTP, rendered in the recipient's locale."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from email.utils import formataddr, make_msgid

from flask import Flask, render_template
from flask_babel import force_locale


def send(app: Flask, *, to: str, subject: str, text: str) -> None:
    message = EmailMessage()
    message["From"] = formataddr((app.config["BRAND_NAME"], app.config["MAIL_FROM"]))
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain=app.config["MAIL_FROM"].rpartition("@")[2])
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(text)
    with smtplib.SMTP(app.config["SMTP_HOST"], app.config["SMTP_PORT"], timeout=10) as smtp:
        smtp.send_message(message)


def send_template(app: Flask, *, to: str, locale: str, subject, template: str, **context) -> None:
    """Render ``template`` with the locale pinned (not the request's) and send it."""
    with force_locale(locale):
        send(app, to=to, subject=str(subject()), text=render_template(template, **context))
