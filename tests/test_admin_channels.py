"""The admin's side of channels, pause and follow-us links, through HTTP."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from app.admin.models import AuditEntry
from app.clock import get_clock
from app.events.models import Event
from app.subscribers.models import Subscriber
from app.topics.models import FollowLink, Topic
from tests.test_admin import FAST_HASH, post
from tests.test_admin import admin as admin  # the fixtures, re-exported
from tests.test_admin import admin_client as admin_client
from tests.test_admin import ui as ui
from tests.test_admin_catalogue import topic_fields


@pytest.fixture
def app_config():
    return dict(FAST_HASH)


def audits(session, action):
    session.expire_all()
    return session.scalars(select(AuditEntry).where(AuditEntry.action == action)).all()


def test_a_topic_needs_a_channel_and_lists_its_channels(ui, session):
    refused = post(ui, "/admin/topics/new", **topic_fields(channels=None))
    assert refused.status_code == 422
    assert "choose at least one channel" in refused.get_data(as_text=True)
    assert post(ui, "/admin/topics/new", **topic_fields(channels=["fax"])).status_code == 422
    assert session.scalar(select(Topic).where(Topic.slug == "webinars")) is None
    created = post(ui, "/admin/topics/new", **topic_fields(channels=["email", "sms"]))
    assert created.status_code == 303
    session.expire_all()
    assert session.scalar(select(Topic).where(Topic.slug == "webinars")).channels == [
        "email", "sms"]
    listing = ui.get("/admin/topics").get_data(as_text=True)
    assert "Email, SMS" in listing


def no_links(session):
    """The demo catalogue's links out of the way."""
    for link in session.scalars(select(FollowLink)).unique():
        session.delete(link)
    session.commit()


def test_follow_links_are_created_edited_and_deleted_with_an_audit(ui, session):
    no_links(session)
    page = ui.get("/admin/follow-links/new")
    assert page.status_code == 200
    for bad in ("javascript:alert(1)", "/relative", "https://", "ftp://example.com/x"):
        refused = post(ui, "/admin/follow-links/new", url=bad, role="0",
                       name_en="Forum")
        assert refused.status_code == 422, bad
    assert post(ui, "/admin/follow-links/new", url="https://forum.example.com/", role="0",
                name_en="").status_code == 422
    assert session.scalars(select(FollowLink)).all() == []

    created = post(ui, "/admin/follow-links/new", url="https://forum.example.com/", role="0",
                   name_en="Forum", name_ar="المنتدى")
    assert created.status_code == 303
    [link] = session.scalars(select(FollowLink)).unique().all()
    assert link.role_id is None
    assert {t.locale: t.name for t in link.translations} == {"en": "Forum", "ar": "المنتدى"}
    listing = ui.get("/admin/follow-links").get_data(as_text=True)
    assert "https://forum.example.com/" in listing and "Every role" in listing

    from app.topics.models import Role
    role = session.scalar(select(Role).where(Role.slug == "developer"))
    edited = post(ui, f"/admin/follow-links/{link.id}", url="https://forum.example.com/dev",
                  role=str(role.id), name_en="Dev forum", name_ar="")
    assert edited.status_code == 303
    session.expire_all()
    link = session.get(FollowLink, link.id)
    assert (link.url, link.role_id) == ("https://forum.example.com/dev", role.id)
    assert {t.locale: t.name for t in link.translations} == {"en": "Dev forum"}
    assert post(ui, f"/admin/follow-links/{link.id}/delete").status_code == 303
    assert session.scalars(select(FollowLink)).all() == []
    assert [len(audits(session, f"follow_link.{a}")) for a in ("create", "update", "delete")] == [
        1, 1, 1]
    assert post(ui, "/admin/follow-links/999999/delete").status_code == 404


def test_follow_links_need_a_csrf_token_and_a_login(client, session, catalogue, admin):
    no_links(session)
    response = client.post("/admin/follow-links/new",
                           data={"url": "https://x.example.com/", "role": "0",
                                 "name_en": "X"})
    assert response.status_code in (302, 303, 400)
    assert session.scalars(select(FollowLink)).all() == []


def test_admin_sets_phone_channels_and_pause_of_a_subscriber(ui, app, session, catalogue):
    subscriber = catalogue.subscriber(role="shopper")
    page = ui.get(f"/admin/subscribers/{subscriber.id}").get_data(as_text=True)
    assert 'name="channel-alerts" value="sms"' in page
    shown = ["offers", "alerts", "news", "events"]
    base = {"shown": shown, "topic-offers": "on", "channelled": ["alerts", "events"],
            "frequency-offers": "weekly", "frequency-alerts": "daily",
            "frequency-news": "monthly", "frequency-events": "monthly"}
    saved = post(ui, f"/admin/subscribers/{subscriber.id}", **base, phone="+44 7911 123456",
                 **{"topic-alerts": "on", "channel-alerts": ["sms"]}, action="pause",
                 pause="2w")
    assert saved.status_code == 303, saved.get_data(as_text=True)
    session.expire_all()
    fresh = session.get(Subscriber, subscriber.id)
    assert fresh.phone == "+447911123456"
    assert fresh.subscription(
        session.scalar(select(Topic.id).where(Topic.slug == "alerts"))).channels == ["sms"]
    until = fresh.paused_until
    assert until - get_clock(app).now() > dt.timedelta(days=13)
    actions = [(e.action, e.source) for e in session.scalars(
        select(Event).where(Event.subscriber_id == subscriber.id).order_by(Event.id))]
    assert ("paused", "admin") in actions and ("phone", "admin") in actions
    page = ui.get(f"/admin/subscribers/{subscriber.id}").get_data(as_text=True)
    assert "+447911123456" in page and 'value="resume"' in page

    bad = post(ui, f"/admin/subscribers/{subscriber.id}", **base, phone="not a number",
               action="save")
    assert bad.status_code == 422
    resumed = post(ui, f"/admin/subscribers/{subscriber.id}", **base, phone="",
                   action="resume")
    assert resumed.status_code == 303
    session.expire_all()
    fresh = session.get(Subscriber, subscriber.id)
    assert fresh.paused_until is None and fresh.phone is None
