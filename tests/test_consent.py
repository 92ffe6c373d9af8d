"""Consent you can prove (issue 18): the privacy-policy version on every event, the
subscriber's data export, signed consent receipts. Through HTTP and the CLI, on the
test database (SQLite or PostgreSQL)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from app.api.auth import create_api_key
from app.events.models import Event
from tests.conftest import TEST_SECRET, csrf_from

POLICY = "2026-11-privacy-v3"


@pytest.fixture
def app_config() -> dict:
    return {"PRIVACY_POLICY_VERSION": POLICY}


@pytest.fixture
def api_key(session):
    _key, plain = create_api_key(session, "consent-tests")
    session.commit()
    return plain


def events_of(session, subscriber) -> list[Event]:
    session.expire_all()
    return session.scalars(select(Event).where(Event.subscriber_id == subscriber.id)
                           .order_by(Event.id)).all()


def test_every_event_records_the_policy_version_in_force(app, client, catalogue, links,
                                                         session, api_key):
    with app.app_context():  # as the CLI and the views do: the app's setting is in force
        subscriber = catalogue.subscriber()
    # The preference page, the RFC 8058 one-click (answered below Flask) and the API.
    page = links.preferences(subscriber)
    html = client.get(page).get_data(as_text=True)
    response = client.post(page, data={"csrf_token": csrf_from(html), "shown": "offers",
                                       "topic-offers": "on", "frequency-offers": "daily"})
    assert response.status_code == 200
    response = client.post(links.unsubscribe(subscriber, topic="offers", campaign="c1"),
                           data="List-Unsubscribe=One-Click",
                           content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200
    response = client.put(f"/api/v1/subscribers/{subscriber.external_id}",
                          headers={"Authorization": f"Bearer {api_key}"},
                          json={"email": subscriber.email, "unsubscribed_all": True})
    assert response.status_code == 200
    events = events_of(session, subscriber)
    assert {e.source for e in events} >= {"system", "preference_page", "one_click", "api"}
    assert [e.policy_version for e in events] == [POLICY] * len(events)


def test_without_a_configured_version_events_record_none(app, client, catalogue, links,
                                                         session):
    app.config["PRIVACY_POLICY_VERSION"] = None
    subscriber = catalogue.subscriber()
    response = client.post(links.unsubscribe(subscriber), data="List-Unsubscribe=One-Click",
                           content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200
    assert [e.policy_version for e in events_of(session, subscriber)] == [None, None]


# --- the data export ----------------------------------------------------------------------

def _history_through_http(client, links, subscriber):
    """A few changes through the public pages: a frequency, a one-click, the page's
    unsubscribe from all (with a campaign)."""
    page = links.preferences(subscriber, campaign="autumn")
    html = client.get(page).get_data(as_text=True)
    assert client.post(page, data={"csrf_token": csrf_from(html), "shown": "offers",
                                   "topic-offers": "on", "frequency-offers": "daily"}
                       ).status_code == 200
    one_click = links.unsubscribe(subscriber, topic="offers", campaign="spring-sale")
    assert client.post(one_click, data="List-Unsubscribe=One-Click",
                       content_type="application/x-www-form-urlencoded").status_code == 200
    return one_click


def test_api_export_holds_identity_subscriptions_and_consent_history(
        app, client, catalogue, links, session, api_key):
    with app.app_context():
        subscriber = catalogue.subscriber(locale="ru")
    one_click = _history_through_http(client, links, subscriber)
    response = client.get(f"/api/v1/subscribers/{subscriber.external_id}/export",
                          headers={"Authorization": f"Bearer {api_key}"})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Cache-Control"] == "no-store"
    doc = response.get_json()
    assert doc["format"] == "prefcenter.subscriber-export/1"
    assert doc["language"] == "ru"  # the subscriber's language
    assert doc["subscriber"]["external_id"] == subscriber.external_id
    assert doc["subscriber"]["email"] == subscriber.email
    assert (doc["subscriber"]["locale"], doc["subscriber"]["role"]) == ("ru", "shopper")
    offers = next(s for s in doc["subscriptions"] if s["topic"] == "offers")
    assert offers["topic_name"] == "Предложения"
    assert (offers["subscribed"], offers["frequency"]) == (False, "daily")
    assert offers["frequency_label"] == "Ежедневно"
    assert offers["channels"] == [{"channel": "email", "label": "Эл. почта"}]
    assert doc["paused_until"] is None and doc["unsubscribed_all"] is False
    history = doc["consent_history"]
    assert [h["action"] for h in history] == ["created", "topic.frequency",
                                              "topic.unsubscribed"]
    last = history[-1]
    assert (last["source"], last["campaign"], last["topic"]) == (
        "one_click", "spring-sale", "offers")
    assert last["link_id"] == links.signer.loads("unsubscribe",
                                                 one_click.rsplit("/", 1)[1]).token_id
    assert last["policy_version"] == POLICY
    assert last["source_label"] and last["source_label"] != "one_click"
    assert last["receipt"]["receipt"]["consentReceiptID"] == last["receipt_id"]
    assert history[1]["campaign"] == "autumn"
    assert history[1]["before"] == "weekly" and history[1]["after"] == "daily"


def test_api_export_matches_its_documented_schema(app, client, catalogue, links, api_key):
    from tests.test_api_openapi import conforms

    with app.app_context():
        subscriber = catalogue.subscriber()
    _history_through_http(client, links, subscriber)
    headers = {"Authorization": f"Bearer {api_key}"}
    spec = client.get("/api/v1/openapi.json").get_json()
    assert "/api/v1/subscribers/{external_id}/export" in spec["paths"]
    doc = client.get(f"/api/v1/subscribers/{subscriber.external_id}/export",
                     headers=headers).get_json()
    conforms(spec, "SubscriberExport", doc)


def test_api_export_refuses_unknown_subscribers_and_missing_keys(client, api_key, catalogue):
    missing = client.get("/api/v1/subscribers/nobody/export",
                         headers={"Authorization": f"Bearer {api_key}"})
    assert missing.status_code == 404
    assert missing.mimetype == "application/problem+json"
    assert client.get("/api/v1/subscribers/nobody/export").status_code == 401


def test_download_my_data_from_the_preference_page(app, client, catalogue, links, session):
    with app.app_context():
        subscriber = catalogue.subscriber(locale="en")
    _history_through_http(client, links, subscriber)
    page = links.preferences(subscriber)
    html = client.get(page + "?lang=ar").get_data(as_text=True)
    assert "/export" in html
    before = len(events_of(session, subscriber))
    response = client.post(page + "/export?lang=ar", data={"csrf_token": csrf_from(html)})
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.headers["Content-Disposition"] == 'attachment; filename="my-data.json"'
    doc = response.get_json()
    assert doc["language"] == "ar"
    offers = next(s for s in doc["subscriptions"] if s["topic"] == "offers")
    assert offers["topic_name"] == "العروض"
    assert [h["action"] for h in doc["consent_history"]][-1] == "topic.unsubscribed"
    # Downloading changes nothing.
    assert len(events_of(session, subscriber)) == before


def test_download_my_data_needs_the_page_csrf_token(app, client, catalogue, links):
    subscriber = catalogue.subscriber()
    response = client.post(links.preferences(subscriber) + "/export", data={})
    assert response.status_code == 400
    assert response.mimetype != "application/json"


# --- consent receipts ---------------------------------------------------------------------

def _verify(tmp_path, database_url, document, *, secret=TEST_SECRET, name="receipts.json"):
    """``prefcenter receipts verify FILE`` as a real process."""
    path = tmp_path / name
    path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    env = {**os.environ, "PREFCENTER_DATABASE_URL": database_url, "PREFCENTER_ENV": "test",
           "PREFCENTER_SECRET_KEY": secret}
    return subprocess.run([str(Path(sys.executable).parent / "prefcenter"), "receipts",
                           "verify", str(path)], env=env, capture_output=True, text=True,
                          timeout=60)


@pytest.fixture
def exported(app, client, catalogue, links, api_key):
    with app.app_context():
        subscriber = catalogue.subscriber()
    _history_through_http(client, links, subscriber)
    response = client.get(f"/api/v1/subscribers/{subscriber.external_id}/export",
                          headers={"Authorization": f"Bearer {api_key}"})
    assert response.status_code == 200
    return subscriber, response.get_json()


def test_each_change_has_a_kantara_receipt(exported):
    subscriber, doc = exported
    signed = doc["consent_history"][-1]["receipt"]
    receipt = signed["receipt"]
    assert receipt["version"] == "KI-CR-v1.1.0"
    assert receipt["piiControllers"] == [{"piiController": "Prefcenter",
                                          "url": "http://localhost"}]
    assert receipt["policyUrl"] == "https://example.com/privacy"
    assert receipt["policyVersion"] == POLICY
    assert (receipt["purpose"], receipt["channel"], receipt["action"]) == (
        "offers", ["email"], "topic.unsubscribed")
    assert receipt["consentState"] == "withdrawn"
    assert receipt["collectionMethod"] == "one_click"
    assert receipt["piiPrincipalId"] == subscriber.external_id
    assert receipt["services"][0]["service"] == "email"
    assert receipt["services"][0]["purposes"][0]["purpose"] == "offers"
    assert receipt["time"] == doc["consent_history"][-1]["when"]
    assert signed["signature"]["alg"] == "HS256"
    # One id per event, stable across exports.
    ids = [h["receipt_id"] for h in doc["consent_history"]]
    assert len(set(ids)) == len(ids)


def test_receipts_verify_accepts_an_export_and_a_single_receipt(tmp_path, database_url,
                                                                exported):
    _subscriber, doc = exported
    done = _verify(tmp_path, database_url, doc)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("valid ") == 3
    assert "3 valid, 0 invalid" in done.stderr
    single = doc["consent_history"][0]["receipt"]
    done = _verify(tmp_path, database_url, single, name="one.json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert single["receipt"]["consentReceiptID"] in done.stdout


def test_a_tampered_receipt_fails_verification(tmp_path, database_url, exported):
    _subscriber, doc = exported
    tampered = json.loads(json.dumps(doc))
    # Claim the subscriber gave consent where they withdrew it.
    tampered["consent_history"][-1]["receipt"]["receipt"]["action"] = "topic.subscribed"
    done = _verify(tmp_path, database_url, tampered)
    assert done.returncode == 1
    rid = doc["consent_history"][-1]["receipt_id"]
    assert f"INVALID  {rid}" in done.stdout
    assert "2 valid, 1 invalid" in done.stderr
    # A changed signature, a changed policy version, a foreign key: all fail.
    for change in (
        lambda r: r["signature"].update(value=r["signature"]["value"][:-2] + "AA"),
        lambda r: r["receipt"].update(policyVersion="v0"),
    ):
        single = json.loads(json.dumps(doc["consent_history"][0]["receipt"]))
        change(single)
        assert _verify(tmp_path, database_url, single).returncode == 1
    foreign = _verify(tmp_path, database_url, doc["consent_history"][0]["receipt"],
                      secret="another-server")
    assert foreign.returncode == 1


def test_receipts_verify_refuses_what_is_not_a_receipt(tmp_path, database_url, app):
    assert _verify(tmp_path, database_url, {"hello": "world"}).returncode == 2
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    env = {**os.environ, "PREFCENTER_DATABASE_URL": database_url, "PREFCENTER_ENV": "test",
           "PREFCENTER_SECRET_KEY": TEST_SECRET}
    done = subprocess.run([str(Path(sys.executable).parent / "prefcenter"), "receipts",
                           "verify", str(path)], env=env, capture_output=True, text=True)
    assert done.returncode == 2 and "not JSON" in done.stderr


def test_a_rotated_key_still_verifies_old_receipts(tmp_path, database_url, exported):
    _subscriber, doc = exported
    done = _verify(tmp_path, database_url, doc, secret=f"new-key,{TEST_SECRET}")
    assert done.returncode == 0, done.stdout


def test_other_methods_on_the_export_path_are_405(client, api_key, catalogue):
    headers = {"Authorization": f"Bearer {api_key}"}
    response = client.put("/api/v1/subscribers/someone/export", headers=headers, json={})
    assert response.status_code == 405
    # An external id may hold "/": its export is still found.
    created = client.put("/api/v1/subscribers/crm/42", headers=headers,
                         json={"email": "slash@example.com"})
    assert created.status_code == 201
    export = client.get("/api/v1/subscribers/crm/42/export", headers=headers)
    assert export.status_code == 200
    assert export.get_json()["subscriber"]["external_id"] == "crm/42"
