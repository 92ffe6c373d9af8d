"""A subscriber whose language nobody told us has no stored locale: the API shows null, the
page follows Accept-Language (then the default) until the subscriber picks a language there,
and everything that reads the locale (webhooks, the export, the admin) copes with none."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import select

from app.events.models import Event
from app.subscribers.models import Subscriber
from app.webhooks.models import WebhookDelivery, WebhookEndpoint
from tests.test_admin import FAST_HASH
from tests.test_admin import admin as admin  # the fixtures, re-exported
from tests.test_admin import admin_client as admin_client
from tests.test_admin import ui as ui
from tests.test_api import api as api
from tests.test_api import api_key as api_key
from tests.test_i18n import csrf_from, html_of, root_attributes


@pytest.fixture
def app_config():
    return dict(FAST_HASH)


def lang_of(response) -> str:
    return root_attributes(html_of(response))[0]


def test_put_without_locale_stores_none_and_the_page_follows_the_browser(
        api, client, session, links):
    created = api.put("/subscribers/crm-nolang", json={"email": "nolang@example.com"})
    assert created.status_code == 201
    assert created.get_json()["locale"] is None
    assert api.get("/subscribers/crm-nolang").get_json()["locale"] is None
    subscriber = session.scalars(select(Subscriber).filter_by(external_id="crm-nolang")).one()
    assert subscriber.locale is None

    url = links.preferences(subscriber)
    assert lang_of(client.get(url, headers={"Accept-Language": "ru"})) == "ru"
    assert lang_of(client.get(url, headers={"Accept-Language": "ar-EG,ar;q=0.9"})) == "ar"
    assert lang_of(client.get(url)) == "en"  # no header: the default

    # Saving the page shown in the browser's language is not a choice of language.
    page = client.get(url, headers={"Accept-Language": "ru"})
    html = html_of(page)
    assert 'name="lang"' not in html
    action = re.search(r'<form method="post" action="([^"]+)" class="preferences"', html)
    saved = client.post(action.group(1), headers={"Accept-Language": "ru"}, data={
        "csrf_token": csrf_from(html), "action": "save", "shown": ["offers"],
        "frequency-offers": "weekly"})
    assert saved.status_code == 200
    assert lang_of(saved) == "ru"
    assert api.get("/subscribers/crm-nolang").get_json()["locale"] is None

    # A later update without locale keeps it unknown.
    again = api.put("/subscribers/crm-nolang", json={"role": "shopper"})
    assert again.status_code == 200
    assert again.get_json()["locale"] is None

    # A one-click (on PostgreSQL, one call of the database function) keeps it unknown and
    # says so in the event's snapshot, which the webhooks carry.
    one_click = client.post(links.unsubscribe(subscriber),  # from all marketing
                            data=b"List-Unsubscribe=One-Click",
                            content_type="application/x-www-form-urlencoded")
    assert one_click.status_code == 200
    session.expire_all()
    last = session.scalars(select(Event).where(Event.subscriber_id == subscriber.id)
                           .order_by(Event.id.desc())).first()
    assert (last.source, last.payload["subscriber"]["locale"]) == ("one_click", None)

    # Picking a language on the page is what stores one; from then on it wins.
    picked = client.get(url + "?lang=ms", headers={"Accept-Language": "ru"})
    html = html_of(picked)
    assert 'name="lang" value="ms"' in html
    action = re.search(r'<form method="post" action="([^"]+)" class="preferences"', html)
    client.post(action.group(1), data={
        "csrf_token": csrf_from(html), "lang": "ms", "action": "save", "shown": ["offers"],
        "frequency-offers": "weekly"})
    assert api.get("/subscribers/crm-nolang").get_json()["locale"] == "ms"
    assert lang_of(client.get(url, headers={"Accept-Language": "ru"})) == "ms"


def test_a_told_locale_is_kept_and_shown(api):
    told = api.put("/subscribers/crm-ar", json={"email": "ar@example.com", "locale": "ar"})
    assert told.get_json()["locale"] == "ar"
    kept = api.put("/subscribers/crm-ar", json={"unsubscribed_all": True})
    assert kept.get_json()["locale"] == "ar"


def test_webhooks_export_batch_and_admin_cope_with_no_locale(api, ui, session):
    session.add(WebhookEndpoint(url="http://127.0.0.1:9/hook", secret="whsec_dGVzdA=="))
    session.commit()
    batch = api.post("/subscribers/batch", json={"items": [
        {"external_id": "b-1", "email": "b1@example.com"},
        {"external_id": "b-2", "email": "b2@example.com", "locale": "ru"}]})
    assert [r["status"] for r in batch.get_json()["items"]] == [201, 201]
    assert api.get("/subscribers/b-1").get_json()["locale"] is None

    payloads = session.scalars(select(Event.payload).join(
        WebhookDelivery, WebhookDelivery.event_id == Event.id))  # what the CRM is sent
    locales = {p["subscriber"]["external_id"]: p["subscriber"]["locale"] for p in payloads}
    assert locales == {"b-1": None, "b-2": "ru"}

    export = api.get("/topics/offers/recipients")
    assert export.status_code == 200
    rows = {r["external_id"]: r for r in map(json.loads, export.get_data(as_text=True).split())}
    assert rows["b-1"]["locale"] is None and rows["b-2"]["locale"] == "ru"

    subscriber = session.scalars(select(Subscriber).filter_by(external_id="b-1")).one()
    page = ui.get(f"/admin/subscribers/{subscriber.id}")
    assert page.status_code == 200
    assert "Not known (pages follow the browser)" in page.get_data(as_text=True)
    listing = ui.get("/admin/subscribers?q=b-1")
    assert listing.status_code == 200
