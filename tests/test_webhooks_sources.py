"""An endpoint's ``sources``: a CRM importing its own contacts gets no echo of them."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.api.auth import create_api_key
from app.links.services import UNSUBSCRIBE, LinkClaims
from app.subscribers.services import Context, change
from app.unsubscribe.services import unsubscribe_by_link
from app.webhooks.models import WebhookDelivery, WebhookEndpoint
from app.webhooks.services import create_endpoint, replay_range


@pytest.fixture
def headers(session, catalogue):
    _key, plain = create_api_key(session, "crm")
    session.commit()
    return {"Authorization": f"Bearer {plain}"}


def queued(session, endpoint_id: str) -> list[str]:
    return [d.event_id for d in session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id))]


def test_sources_are_set_shown_and_changed_over_the_api(client, session, headers):
    created = client.post("/api/v1/webhook-endpoints", headers=headers, json={
        "url": "https://crm.example/hooks", "sources": ["one_click", "api", "preference_page"]})
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    # Canonical order, whatever order was sent.
    assert body["sources"] == ["preference_page", "one_click", "api"]
    assert session.get(WebhookEndpoint, body["id"]).sources == body["sources"]
    patched = client.patch(f"/api/v1/webhook-endpoints/{body['id']}", headers=headers,
                           json={"sources": ["import"]})
    assert patched.status_code == 200 and patched.get_json()["sources"] == ["import"]
    cleared = client.patch(f"/api/v1/webhook-endpoints/{body['id']}", headers=headers,
                           json={"sources": []})
    assert cleared.get_json()["sources"] == []  # every source again
    default = client.post("/api/v1/webhook-endpoints", headers=headers,
                          json={"url": "https://crm.example/all"}).get_json()
    assert default["sources"] == []


@pytest.mark.parametrize("sources", [["crm"], "api", [1], ["api", None]])
def test_unknown_sources_are_refused_with_a_pointer(client, session, headers, sources):
    answer = client.post("/api/v1/webhook-endpoints", headers=headers,
                         json={"url": "https://crm.example/h", "sources": sources})
    assert answer.status_code == 422, answer.get_json()
    assert answer.mimetype == "application/problem+json"
    assert answer.get_json()["errors"][0]["pointer"].startswith("/sources")
    assert session.scalars(select(WebhookEndpoint)).all() == []


def test_only_wanted_sources_are_queued(session, catalogue):
    crm, _ = create_endpoint(session, "https://crm.example/h",
                             sources=["preference_page", "one_click", "api"])
    everyone, _ = create_endpoint(session, "https://audit.example/h")
    subscriber = catalogue.subscriber()
    session.commit()
    [imported] = change(session, subscriber, context=Context(source="import"), locale="ru")
    [by_api] = change(session, subscriber, context=Context(source="api"), locale="ar")
    session.commit()
    assert queued(session, crm.id) == [by_api.id]
    assert queued(session, everyone.id)[-2:] == [imported.id, by_api.id]
    # A replay honours the filter too.
    session.execute(WebhookDelivery.__table__.delete())
    assert replay_range(session, crm, imported.created_at, by_api.created_at.replace(
        year=by_api.created_at.year + 1)) == 1
    assert queued(session, crm.id) == [by_api.id]


@pytest.mark.parametrize("sources", [["api"], ["one_click"]])
def test_the_one_click_path_honours_sources(app, session, catalogue, sources):
    """The one-click's events go through the one rule's endpoint filter too."""
    endpoint, _ = create_endpoint(session, "https://crm.example/h", sources=sources)
    subscriber = catalogue.subscriber()
    session.commit()
    claims = LinkClaims(UNSUBSCRIBE, subscriber.public_id, subscriber.link_epoch, None, None,
                        None, "0123456789abcdef")
    assert len(unsubscribe_by_link(session, claims, context=Context(source="one_click"))) == 1
    assert len(queued(session, endpoint.id)) == (1 if "one_click" in sources else 0)
