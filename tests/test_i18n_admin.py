"""The admin in every locale: translated, right-to-left in Arabic, numbers and dates by Babel."""

from __future__ import annotations

import re

import pytest
from babel.dates import format_datetime
from sqlalchemy import select

from app.events.models import Event
from tests.test_admin import FAST_HASH, login
from tests.test_admin import admin as admin  # the fixture, re-exported

LOCALES = ["en", "ar", "ru", "ms"]
HISTORY = {"en": "History", "ar": "السجلّ", "ru": "История", "ms": "Sejarah"}


@pytest.fixture
def app_config():
    return dict(FAST_HASH)


@pytest.mark.parametrize("locale", LOCALES)
def test_event_history_dates_are_formatted_for_the_locale(client, admin, session, catalogue,
                                                          locale):
    assert login(client).status_code == 303
    subscriber = catalogue.subscriber()
    created = session.scalars(select(Event).where(Event.subscriber_id == subscriber.id)).first()
    html = client.get(f"/admin/subscribers/{subscriber.id}?lang={locale}").get_data(as_text=True)
    assert re.search(rf'<html lang="{locale}" dir="{"rtl" if locale == "ar" else "ltr"}"', html)
    assert HISTORY[locale] in html
    when = format_datetime(created.created_at, "medium", tzinfo="UTC", locale=locale)
    assert f"{when} UTC" in html
    if locale == "ru":  # "23 нояб. 2026 г., 09:05:00", not "2026-11-23 09:05:00"
        assert re.search(r"\d{1,2} [а-я]+\.? \d{4}\s?г\., \d{2}:\d{2}:\d{2} UTC", html)
