"""The insights page and the reason question in real headless Chromium: charts drawn,
nothing refused by the CSP (no script, no inline style), screenshots kept in
test-artifacts/ for a person to look at."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from app.admin.services import create_admin
from app.db import utcnow
from app.events.services import record_event
from tests.browser import ARTIFACTS, screenshot
from tests.test_admin import EMAIL, FAST_HASH, PASSWORD

pytestmark = pytest.mark.browser


@pytest.fixture
def app_config():
    return dict(FAST_HASH)


def _history(session, subscribers) -> None:
    """90 days of changes with a weekly rhythm and a campaign that went badly."""
    rng = random.Random(18)
    now = utcnow()
    campaigns = ["spring-sale", "weekly-digest", "black-friday", "launch-x", None]
    sources = ["one_click"] * 5 + ["unsubscribe_page"] * 2 + ["preference_page", "api",
                                                               "esp"]
    for days in range(90):
        moment = now - dt.timedelta(days=days, hours=1)
        base = 3 + (4 if moment.weekday() == 1 else 0) + (12 if 40 <= days <= 42 else 0)
        for _ in range(base + rng.randrange(4)):
            topic = rng.choice(["offers", "offers", "news", "alerts", None])
            action = "topic.unsubscribed" if topic else "unsubscribed_all"
            campaign = "black-friday" if 40 <= days <= 42 else rng.choice(campaigns)
            event = record_event(session, rng.choice(subscribers),
                                 type="subscriber.unsubscribed", action=action, topic=topic,
                                 source=rng.choice(sources), campaign=campaign)
            event.created_at = moment
        for _ in range(rng.randrange(3)):
            event = record_event(session, rng.choice(subscribers), type="subscriber.updated",
                                 action="topic.subscribed", topic=rng.choice(["offers", "news"]),
                                 source="preference_page", before=False, after=True)
            event.created_at = moment
        if rng.random() < .5:
            event = record_event(session, rng.choice(subscribers), type="subscriber.updated",
                                 action="unsubscribe.reason", topic="offers",
                                 source="unsubscribe_page",
                                 reason=rng.choice(["too_many", "too_many", "not_relevant",
                                                    "never_signed_up", "other"]))
            event.created_at = moment
        if rng.random() < .4:
            event = record_event(session, rng.choice(subscribers), type="subscriber.updated",
                                 action="topic.frequency", topic=rng.choice(["offers", "news"]),
                                 source="preference_page", before="weekly",
                                 after=rng.choice(["monthly", "biweekly", "daily"]))
            event.created_at = moment
        if rng.random() < .3:
            length = rng.choice([14, 30, 91])
            event = record_event(session, rng.choice(subscribers), type="subscriber.updated",
                                 action="paused", source="preference_page",
                                 after=(moment + dt.timedelta(days=length)).isoformat())
            event.created_at = moment
    session.commit()


def test_insights_charts_render_in_chromium(live_app, live_server, live_catalogue,
                                            live_session, page):
    subscribers = [live_catalogue.subscriber() for _ in range(5)]
    _history(live_session, subscribers)
    create_admin(live_session, EMAIL, PASSWORD, live_app)
    live_session.commit()
    refused = []
    page.on("console", lambda message: refused.append(message.text)
            if "Content Security Policy" in message.text else None)
    page.goto(live_server + "/admin/insights")
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    assert page.url.startswith(live_server + "/admin/insights")
    assert page.locator("h1").inner_text() == "Insights"
    charts = page.locator("svg.pygal-chart")
    assert charts.count() == 7
    for index in range(7):
        box = charts.nth(index).bounding_box()
        assert box["width"] > 300 and box["height"] > 100
    # The series are coloured by the stylesheet served from our origin (not black).
    fill = page.eval_on_selector("#figure-daily .color-0 .line, #figure-daily .color-0 path",
                                 "e => getComputedStyle(e).stroke")
    assert fill in ("rgb(180, 35, 24)",), fill
    assert refused == []
    screenshot(page, "admin-insights")
    for name in ("daily", "campaigns"):
        page.locator(f"#figure-{name}").screenshot(path=str(ARTIFACTS / f"insights-{name}.png"))
    page.get_by_label("Topic", exact=True).select_option("offers")
    page.get_by_role("button", name="Show").click()
    assert "topic=offers" in page.url
    screenshot(page, "admin-insights-offers")


def test_the_reason_question_in_arabic(live_server, live_catalogue, live_links, page):
    subscriber = live_catalogue.subscriber(locale="ar")
    page.goto(live_server + live_links.unsubscribe(subscriber, topic="offers"))
    assert page.locator(".reason-form").count() == 0
    page.locator("form button[type=submit]").first.click()
    assert page.locator(".reason-form").is_visible()
    assert page.locator("html").get_attribute("dir") == "rtl"
    screenshot(page, "unsubscribe-reason-ar")
    page.locator("#reason-too_many").check()
    page.locator(".reason-form button").click()
    assert page.locator("#reason-thanks").is_visible()
