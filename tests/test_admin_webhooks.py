"""Webhook endpoints in the admin: add (secret once), disable, rotate, test, replay."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from app.admin.models import AuditEntry
from app.events.models import Event
from app.subscribers.services import Context, change
from app.webhooks.models import WebhookDelivery, WebhookEndpoint
from tests.test_admin import FAST_HASH, post
from tests.test_admin import admin as admin  # the fixtures, re-exported
from tests.test_admin import admin_client as admin_client
from tests.test_admin import ui as ui
from tests.webhook_receiver import Receiver

SECRET_RE = re.compile(r'id="secret"[^>]*value="(whsec_[^"]+)"')


@pytest.fixture
def app_config():
    return {**FAST_HASH, "WEBHOOK_TIMEOUT": 2}


def add(ui, url="http://127.0.0.1:9/hooks", **fields) -> tuple[str, str]:
    response = post(ui, "/admin/webhooks/new", url=url, **fields)
    assert response.status_code == 201, response.get_data(as_text=True)
    page = response.get_data(as_text=True)
    secret = SECRET_RE.search(page).group(1)
    endpoint_id = re.search(r"<code>(ep_[^<]+)</code>", page).group(1)
    return endpoint_id, secret


def audits(session) -> list[AuditEntry]:
    session.expire_all()
    return list(session.scalars(select(AuditEntry).order_by(AuditEntry.id)))


def test_add_endpoint_shows_the_secret_once(ui, session):
    endpoint_id, secret = add(ui, description="CRM",
                              events=["subscriber.unsubscribed", "subscriber.created"])
    saved = session.get(WebhookEndpoint, endpoint_id)
    assert saved.secret == secret and saved.enabled
    assert saved.event_types == ["subscriber.created", "subscriber.unsubscribed"]
    listing = ui.get("/admin/webhooks").get_data(as_text=True)
    assert endpoint_id in listing and "http://127.0.0.1:9/hooks" in listing
    detail = ui.get(f"/admin/webhooks/{endpoint_id}").get_data(as_text=True)
    assert secret not in listing and secret not in detail
    [entry] = audits(session)
    assert (entry.action, entry.entity, entry.entity_id) == (
        "endpoint.create", "webhook_endpoint", endpoint_id)
    assert secret not in str(entry.details)


@pytest.mark.parametrize("fields,message", [
    ({"url": "ftp://example.com/hooks"}, "url must start with http:// or https://"),
    ({"url": ""}, "This field is required."),
    ({"url": "http://127.0.0.1:9/h", "events": ["subscriber.exploded"]},
     "is not a valid choice"),
])
def test_invalid_endpoint_is_refused(ui, session, fields, message):
    response = post(ui, "/admin/webhooks/new", **fields)
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert session.scalars(select(WebhookEndpoint)).all() == []
    assert audits(session) == []


def test_disable_and_enable(ui, session):
    endpoint_id, _secret = add(ui)
    assert post(ui, f"/admin/webhooks/{endpoint_id}/disable").status_code == 303
    session.expire_all()
    endpoint = session.get(WebhookEndpoint, endpoint_id)
    assert not endpoint.enabled
    assert endpoint.disabled_reason == "Disabled by root@example.com."
    page = ui.get(f"/admin/webhooks/{endpoint_id}").get_data(as_text=True)
    assert 'id="endpoint-state">Disabled<' in page
    assert post(ui, f"/admin/webhooks/{endpoint_id}/enable").status_code == 303
    session.expire_all()
    assert session.get(WebhookEndpoint, endpoint_id).enabled
    assert [e.action for e in audits(session)] == [
        "endpoint.create", "endpoint.disable", "endpoint.enable"]


def test_rotate_secret_shows_the_new_one_once(ui, session):
    endpoint_id, first = add(ui)
    response = post(ui, f"/admin/webhooks/{endpoint_id}/rotate")
    assert response.status_code == 200
    second = SECRET_RE.search(response.get_data(as_text=True)).group(1)
    assert second != first
    session.expire_all()
    endpoint = session.get(WebhookEndpoint, endpoint_id)
    assert (endpoint.secret, endpoint.previous_secret) == (second, first)
    assert "previous secret keeps signing" in response.get_data(as_text=True)
    entry = audits(session)[-1]
    assert entry.action == "endpoint.rotate_secret"
    assert first not in str(entry.details) and second not in str(entry.details)


def test_send_a_test_event_to_a_real_receiver(ui, session):
    with Receiver() as receiver:
        endpoint_id, secret = add(ui, url=receiver.url)
        receiver.secrets = [secret]
        response = post(ui, f"/admin/webhooks/{endpoint_id}/test")
        assert response.status_code == 200
        assert "Test event delivered: HTTP 200" in response.get_data(as_text=True)
        (got,) = receiver.snapshot()
        assert got.verified == {secret: True}
        assert got.data["type"] == "webhook.test"
        receiver.mode = "error"
        failed = post(ui, f"/admin/webhooks/{endpoint_id}/test").get_data(as_text=True)
        assert "Test event failed" in failed
    entry = audits(session)[-1]
    assert entry.action == "endpoint.test" and entry.details["status_code"] == 500


def test_deliveries_are_listed_and_finished_ones_replayed(ui, session, catalogue):
    endpoint_id, _secret = add(ui)
    other_id, _ = add(ui, url="http://127.0.0.1:9/other")
    subscriber = catalogue.subscriber()
    change(session, subscriber, context=Context(source="api"), unsubscribed_all=True)
    session.commit()
    mine = list(session.scalars(select(WebhookDelivery).where(
        WebhookDelivery.endpoint_id == endpoint_id).order_by(WebhookDelivery.id)))
    assert len(mine) == 2  # created + unsubscribed
    dead, pending = mine
    dead.status, dead.attempts, dead.last_status_code = "dead", 9, 500
    session.commit()
    page = ui.get(f"/admin/webhooks/{endpoint_id}").get_data(as_text=True)
    assert f'id="delivery-{dead.id}"' in page and f'id="delivery-{pending.id}"' in page
    assert "HTTP 500" in page
    only_dead = ui.get(f"/admin/webhooks/{endpoint_id}?status=dead").get_data(as_text=True)
    assert f'id="delivery-{dead.id}"' in only_dead
    assert f'id="delivery-{pending.id}"' not in only_dead
    assert ui.get(f"/admin/webhooks/{endpoint_id}?status=bogus").status_code == 400

    replay = f"/admin/webhooks/{endpoint_id}/deliveries/{dead.id}/replay"
    assert post(ui, replay).status_code == 303
    session.expire_all()
    queued = session.scalars(select(WebhookDelivery).where(
        WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.event_id == dead.event_id,
        WebhookDelivery.status == "pending")).one()
    assert queued.id != dead.id
    again = post(ui, replay)
    assert again.status_code == 409
    assert "already queued" in again.get_data(as_text=True)
    still_pending = f"/admin/webhooks/{endpoint_id}/deliveries/{pending.id}/replay"
    assert post(ui, still_pending).status_code == 409
    foreign = f"/admin/webhooks/{other_id}/deliveries/{dead.id}/replay"
    assert post(ui, foreign).status_code == 404
    assert post(ui, f"/admin/webhooks/{endpoint_id}/deliveries/999999/replay").status_code == 404
    assert [e.action for e in audits(session)][-1] == "endpoint.replay"


def test_unknown_endpoint_is_404(ui):
    assert ui.get("/admin/webhooks/ep_nope").status_code == 404
    assert post(ui, "/admin/webhooks/ep_nope/disable").status_code == 404


def test_endpoint_page_counts_only_its_own_deliveries(ui, session, catalogue):
    catalogue.subscriber()
    mine, other = add(ui)[0], add(ui, url="http://127.0.0.1:9/other")[0]
    event_id = session.scalars(select(Event.id)).first()
    session.add_all([
        WebhookDelivery(endpoint_id=mine, event_id=event_id, status="dead"),
        WebhookDelivery(endpoint_id=mine, event_id=event_id, status="delivered"),
        WebhookDelivery(endpoint_id=mine, event_id=event_id, status="delivered"),
        *[WebhookDelivery(endpoint_id=other, event_id=event_id, status=status)
          for status in ("pending", "dead", "dead", "delivered")],
    ])
    session.commit()
    session.expire_all()
    pending = session.scalar(select(func.count()).where(
        WebhookDelivery.endpoint_id == mine, WebhookDelivery.status == "pending"))
    page = ui.get(f"/admin/webhooks/{mine}").get_data(as_text=True)
    assert f"<dt>Waiting</dt><dd>{pending}</dd>" in page
    assert "<dt>Given up</dt><dd>1</dd>" in page
    assert "<dt>Delivered</dt><dd>2</dd>" in page
