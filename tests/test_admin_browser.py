"""The admin in real headless Chromium: from login to a subscriber's page in Arabic."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.admin.services import create_admin
from app.topics.models import Role, Topic
from tests.browser import screenshot
from tests.test_admin import EMAIL, FAST_HASH, PASSWORD

pytestmark = pytest.mark.browser

ARABIC_NAME = "ندوات مباشرة"


@pytest.fixture
def app_config():
    return dict(FAST_HASH)


def test_admin_adds_an_arabic_topic_to_a_role_and_subscribers_see_it(
        live_app, live_server, live_catalogue, live_links, live_session, page):
    subscriber = live_catalogue.subscriber(role="shopper", locale="en")
    create_admin(live_session, EMAIL, PASSWORD, live_app)
    live_session.commit()

    page.goto(live_server + "/admin/topics")
    assert page.url.startswith(live_server + "/admin/login")
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    screenshot(page, "admin-login")
    page.get_by_role("button", name="Log in").click()
    assert page.url == live_server + "/admin/topics"  # back where it started
    assert page.locator("h1").inner_text() == "Topics"

    page.get_by_role("link", name="New topic").click()
    page.get_by_label("Slug").fill("webinars")
    page.get_by_label("Every two weeks").check()
    page.get_by_label("Default frequency").select_option("biweekly")
    page.locator("#name_en").fill("Webinars")
    page.locator("#description_en").fill("Live sessions with our experts.")
    page.locator("#name_ar").fill(ARABIC_NAME)
    page.locator("#description_ar").fill("جلسات مباشرة مع خبرائنا.")
    screenshot(page, "admin-topic-new")
    page.get_by_role("button", name="Create topic").click()
    assert "Topic webinars created." in page.get_by_role("status").first.inner_text()
    row = page.locator("#topic-webinars")
    assert row.locator(".missing").inner_text().split() == ["ru", "ms"]
    screenshot(page, "admin-topics")

    page.get_by_role("link", name="Roles").click()
    page.get_by_role("link", name="Shopper").click()
    page.get_by_label("Topic", exact=True).select_option(label="Webinars (webinars)")
    page.get_by_role("button", name="Add topic").click()
    assert page.locator("#role-topic-webinars").is_visible()
    page.get_by_role("button", name="Move up: webinars").click()
    order = page.locator(".admin-order li .slug").all_inner_texts()
    assert order == ["offers", "alerts", "news", "webinars", "events"]
    screenshot(page, "admin-role")

    page.locator("#preview-title + ul").get_by_role("link", name="العربية").click()
    assert page.locator("html").get_attribute("dir") == "rtl"
    assert page.locator(".preview-banner").is_visible()
    assert page.get_by_label(ARABIC_NAME).is_visible()
    save = page.locator("button[value=save]")
    assert save.is_disabled()
    screenshot(page, "admin-preview-ar")

    page.goto(live_server + live_links.preferences(subscriber) + "?lang=ar")
    assert page.locator("html").get_attribute("dir") == "rtl"
    assert page.get_by_label(ARABIC_NAME).is_visible()
    assert page.locator(".preview-banner").count() == 0
    assert page.locator("button[value=save]").is_enabled()
    names = page.locator(".topic-name").all_inner_texts()
    assert names.index(ARABIC_NAME) == names.index("الأخبار") + 1  # the role's order
    screenshot(page, "admin-subscriber-page-ar")

    live_session.expire_all()
    webinars = live_session.scalars(select(Topic).where(Topic.slug == "webinars")).one()
    shopper = live_session.scalars(select(Role).where(Role.slug == "shopper")).one()
    assert webinars.id in [rt.topic_id for rt in shopper.role_topics]
