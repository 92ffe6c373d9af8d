"""Consent you can prove (issue 18): the privacy-policy version on every event, the
subscriber's data export, signed consent receipts. Through HTTP and the CLI, on the
test database (SQLite or PostgreSQL)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.api.auth import create_api_key
from app.events.models import Event
from tests.conftest import csrf_from

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
