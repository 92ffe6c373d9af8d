"""The admin in every locale: translated, right-to-left in Arabic, numbers and dates by Babel."""

from __future__ import annotations

import re

import pytest
from babel.dates import format_datetime
from sqlalchemy import select

from app.events.models import Event
from tests.conftest import csrf_from
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


TOO_LONG = {
    "en": "Field cannot be longer than 200 characters.",
    "ar": "لا يمكن أن يتجاوز الحقل 200 حرف.",
    "ru": "Поле не может быть длиннее 200 символов.",
    "ms": "Medan tidak boleh melebihi 200 aksara.",
}


@pytest.mark.parametrize("locale", LOCALES)
def test_form_errors_come_from_our_catalogues(client, admin, catalogue, locale):
    """WTForms' built-in messages too: it ships no Malay and patchy Arabic."""
    assert login(client).status_code == 303
    url = f"/admin/topics/new?lang={locale}"
    page = client.get(url).get_data(as_text=True)
    response = client.post(url, data={
        "csrf_token": csrf_from(page), "slug": "long-name", "kind": "marketing",
        "frequencies": ["weekly"], "default_frequency": "weekly", "name_en": "x" * 201})
    assert response.status_code == 422
    errors = re.findall(r'<p class="field-error"[^>]*>([^<]*)</p>', response.get_data(as_text=True))
    assert TOO_LONG[locale] in errors


def test_plural_form_errors_follow_each_language(app):
    from flask_babel import force_locale

    from app.i18n.forms import translations

    message = ("Field cannot be longer than %(max)d character.",
               "Field cannot be longer than %(max)d characters.")
    expected = {("ru", 1): "Поле не может быть длиннее 1 символа.",
                ("ru", 3): "Поле не может быть длиннее 3 символов.",
                ("ar", 2): "لا يمكن أن يتجاوز الحقل حرفين.",
                ("ar", 11): "لا يمكن أن يتجاوز الحقل 11 حرفًا.",
                ("ms", 1): "Medan tidak boleh melebihi 1 aksara.",
                ("en", 1): "Field cannot be longer than 1 character."}
    with app.test_request_context():
        for (locale, n), text in expected.items():
            with force_locale(locale):
                assert translations.ngettext(*message, n) % {"max": n} == text
                assert translations.gettext("This field is required.")
