"""Words for the codes a subscriber sees in their data export and the reason question
(lazy: translated in the locale in force when they are shown)."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

FREQUENCY_LABELS = {
    "daily": _l("Daily"),
    "weekly": _l("Weekly"),
    "biweekly": _l("Every two weeks"),
    "monthly": _l("Monthly"),
    "quarterly": _l("Every three months"),
}

CHANNEL_LABELS = {"email": _l("Email"), "sms": _l("SMS")}

SOURCE_LABELS = {
    "preference_page": _l("Preference page"),
    "unsubscribe_page": _l("Unsubscribe page"),
    "one_click": _l("One-click unsubscribe from your mail app"),
    "api": _l("Our customer system"),
    "admin": _l("Our staff"),
    "import": _l("Import from our customer system"),
    "esp": _l("Our email provider"),
    "system": _l("Automatic"),
}

ACTION_LABELS = {
    "created": _l("Subscribed to our emails"),
    "topic.subscribed": _l("Topic switched on"),
    "topic.unsubscribed": _l("Topic switched off"),
    "topic.frequency": _l("How often changed"),
    "topic.channels": _l("Channels changed"),
    "unsubscribed_all": _l("Unsubscribed from all marketing"),
    "resubscribed_all": _l("Marketing switched back on"),
    "paused": _l("Paused"),
    "resumed": _l("Resumed"),
    "locale": _l("Language changed"),
    "role": _l("Profile changed"),
    "phone": _l("Mobile number changed"),
    "email.changed": _l("Email address changed"),
    "email.undeliverable": _l("Email address marked undeliverable"),
    "unsubscribe.reason": _l("Reason for unsubscribing"),
    "erased": _l("Personal data erased"),
}

# The answers to "why are you leaving?" (app.subscribers.services.REASONS).
REASON_LABELS = {
    "too_many": _l("Too many emails"),
    "not_relevant": _l("Not relevant to me"),
    "never_signed_up": _l("I never signed up"),
    "other": _l("Other"),
}


def label(labels: dict, code: str | None) -> str | None:
    """The label of ``code`` in the current locale (the code itself if it has none)."""
    if code is None:
        return None
    found = labels.get(code)
    return str(found) if found is not None else code
