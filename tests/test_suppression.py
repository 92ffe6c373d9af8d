"""Issue 12, finding 3: a suppressed address stays unsubscribed on every path.

An erased subscriber leaves a hashed suppression of its address. When the CRM creates the
same address again, it starts unsubscribed from all marketing, and no path turns that off:
the preference page, the unsubscribe page's undo, the admin, the API (one and batch), the
import and the ESP intake are each driven through HTTP or the CLI, and each leaves the
subscriber unsubscribed, writes no event, and says why.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from app.events.models import Event
from app.subscribers.models import Subscriber, Suppression
from app.subscribers.services import email_hash
from tests.conftest import csrf_from
from tests.test_admin import FAST_HASH, post
from tests.test_admin import admin as admin  # the fixtures, re-exported
from tests.test_admin import admin_client as admin_client
from tests.test_admin import ui as ui
from tests.test_api import api as api
from tests.test_api import api_key as api_key
from tests.test_api import assert_problem
from tests.test_esp import POSTMARK_PASSWORD, POSTMARK_USER, basic, fixture
from tests.test_esp import esp as esp
from tests.test_preferences import form_of
from tests.test_unsubscribe import undo_data

ADDRESS = "gone@example.com"
PUBLIC = "removed from our lists at its owner"


@pytest.fixture
def app_config():
    return dict(FAST_HASH, POSTMARK_WEBHOOK_USER=POSTMARK_USER,
                POSTMARK_WEBHOOK_PASSWORD=POSTMARK_PASSWORD)


def recreated(api, session) -> Subscriber:
    """Created, erased (DELETE), created again by the CRM with the same address."""
    assert api.put("/subscribers/first", json={"email": ADDRESS}).status_code == 201
    assert api.delete("/subscribers/first").status_code == 204
    again = api.put("/subscribers/again", json={"email": ADDRESS,
                                                "topics": {"offers": {"subscribed": True}}})
    assert again.status_code == 201
    assert again.get_json()["unsubscribed_all"] is True
    return session.scalar(select(Subscriber).where(Subscriber.external_id == "again"))


def assert_still_suppressed(session, subscriber, api=None) -> None:
    session.rollback()
    session.expire_all()
    fresh = session.get(Subscriber, subscriber.id)
    assert fresh.unsubscribed_all is True
    resubscribed = session.scalars(select(Event).where(
        Event.subscriber_id == subscriber.id, Event.action == "resubscribed_all")).all()
    assert resubscribed == []
    if api is not None:
        assert api.get("/subscribers/again").get_json()["unsubscribed_all"] is True


def test_preference_page_cannot_resubscribe(api, client, session, links):
    subscriber = recreated(api, session)
    url = links.preferences(subscriber)
    data = form_of(client.get(url).get_data(as_text=True))  # without the master box: "on"
    response = client.post(url, data=data)
    assert response.status_code == 409
    assert PUBLIC in response.get_data(as_text=True)
    assert_still_suppressed(session, subscriber, api)


def test_undo_cannot_resubscribe(api, client, session, catalogue, links):
    """A master unsubscribe on the page, then the address is suppressed (erased elsewhere
    and re-created): the undo, within its 15 minutes, in the same browser, is refused."""
    subscriber = catalogue.subscriber(email="undo@example.com")
    path = links.unsubscribe(subscriber)
    page = client.get(path).get_data(as_text=True)
    done = client.post(path, data={"csrf_token": csrf_from(page), "confirm": "1"})
    session.add(Suppression(email_hash=email_hash("undo@example.com"), reason="erased"))
    session.commit()
    response = client.post(path + "/undo", data=undo_data(done.get_data(as_text=True)))
    assert response.status_code == 409
    assert PUBLIC in response.get_data(as_text=True)
    assert_still_suppressed(session, subscriber)


def test_admin_cannot_resubscribe(api, ui, session):
    subscriber = recreated(api, session)
    response = post(ui, f"/admin/subscribers/{subscriber.id}", action="save",
                    shown=["offers", "alerts", "news", "events"], **{"topic-offers": "on"})
    assert response.status_code == 409
    assert "suppressed" in response.get_data(as_text=True)
    assert_still_suppressed(session, subscriber, api)


def test_api_and_batch_cannot_resubscribe(api, session):
    subscriber = recreated(api, session)
    assert_problem(api.put("/subscribers/again", json={"unsubscribed_all": False}), 409,
                   "suppressed")
    batch = api.post("/subscribers/batch", json={"items": [
        {"external_id": "again", "unsubscribed_all": False}]})
    assert batch.status_code == 200
    [item] = batch.get_json()["items"]
    assert (item["status"], "suppressed" in item["detail"]) == (409, True)
    assert_still_suppressed(session, subscriber, api)


def test_import_cannot_resubscribe(api, app, session):
    subscriber = recreated(api, session)
    row = json.dumps({"external_id": "again", "email": ADDRESS, "unsubscribed_all": False})
    result = app.test_cli_runner().invoke(args=["subscribers", "import", "--format", "ndjson",
                                                "-"], input=row + "\n")
    assert result.exit_code == 1, result.output
    assert "409" in result.output and "suppressed" in result.output
    assert_still_suppressed(session, subscriber, api)


def test_esp_cannot_resubscribe(esp, live_app, live_session):
    from app.subscribers.services import Context, create_subscriber, erase

    first, _ = create_subscriber(live_session, email="leaver@example.com", external_id="x1",
                                 context=Context(source="system"))
    erase(live_session, first, context=Context(source="system"))
    again, _ = create_subscriber(live_session, email="leaver@example.com", external_id="x2",
                                 context=Context(source="system"))
    live_session.commit()
    assert again.unsubscribed_all is True
    # Postmark lifts its own suppression of the address: that resubscribes nobody here.
    reactivated = {**fixture("postmark_subscription_change.json"), "SuppressSending": False,
                   "SuppressionReason": None, "ChangedAt": "2026-12-01T09:00:00Z"}
    answer = esp("postmark", json_body=reactivated, headers={
        "Content-Type": "application/json", **basic(POSTMARK_USER, POSTMARK_PASSWORD)})
    assert answer.status_code == 200, answer.text
    assert_still_suppressed(live_session, again)
