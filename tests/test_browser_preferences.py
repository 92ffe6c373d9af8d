"""The preference page in real headless Chromium, the way a subscriber uses it."""

import pytest

from app.subscribers.models import Subscriber
from tests.browser import screenshot

pytestmark = pytest.mark.browser


def test_subscriber_changes_a_topic_and_a_frequency_and_reads_it_back(
        live_server, live_catalogue, live_links, live_session, page):
    subscriber = live_catalogue.subscriber(email="browser@example.com")
    url = live_server + live_links.preferences(subscriber)

    page.goto(url)
    assert page.locator("h1").inner_text() == "Choose the emails you want"
    alerts = page.get_by_label("Alerts", exact=True)
    assert not alerts.is_checked()
    screenshot(page, "preferences-en-before")

    alerts.check()  # clicking the label-bound switch, as a person would
    page.get_by_label("How often").first.select_option("monthly")  # Offers comes first
    page.get_by_role("button", name="Save preferences").click()

    status = page.get_by_role("status").first
    assert "Your preferences are saved." in status.inner_text()
    assert "You now receive Alerts." in status.inner_text()
    assert "Offers: Monthly." in status.inner_text()
    screenshot(page, "preferences-en-saved")

    page.goto(url)  # read it back from a fresh load
    assert page.get_by_label("Alerts", exact=True).is_checked()
    assert page.locator("#field-frequency-offers").input_value() == "monthly"

    live_session.expire_all()
    saved = live_session.get(Subscriber, subscriber.id)
    topics = {s.topic.slug: (s.subscribed, s.frequency) for s in saved.subscriptions}
    assert topics["alerts"] == (True, "daily")
    assert topics["offers"] == (True, "monthly")


def test_keyboard_only_subscriber_can_toggle_and_save(live_server, live_catalogue, live_links,
                                                      page):
    subscriber = live_catalogue.subscriber()
    page.goto(live_server + live_links.preferences(subscriber))
    page.focus("#field-topic-alerts")
    page.keyboard.press("Space")
    assert page.locator("#field-topic-alerts").is_checked()
    page.focus("button[value=save]")
    page.keyboard.press("Enter")
    assert "You now receive Alerts." in page.get_by_role("status").first.inner_text()


def test_arabic_subscriber_takes_sms_then_pauses_in_chromium(live_server, live_catalogue,
                                                             live_links, live_session, page):
    """Right to left: the number stays left to right in its box; SMS for Alerts, then a
    pause whose date the page shows in Arabic, then resume now."""
    subscriber = live_catalogue.subscriber(locale="ar")
    url = live_server + live_links.preferences(subscriber)
    page.goto(url)
    assert page.locator("html").get_attribute("dir") == "rtl"
    assert page.locator("#field-phone").evaluate("e => getComputedStyle(e).direction") == "ltr"
    page.locator("#field-topic-alerts").check()
    page.locator("#field-channel-alerts-sms").check()
    page.locator("#field-phone").fill("+60 12-345 6789")
    page.get_by_role("button", name="حفظ التفضيلات").click()
    assert "تم حفظ رقم هاتفك المحمول." in page.get_by_role("status").first.inner_text()
    page.locator("#field-pause").select_option("1m")
    page.locator("button[value=pause]").click()
    notice = page.locator("#paused-notice").inner_text()
    assert "الرسائل التسويقية متوقفة مؤقتًا حتى" in notice
    screenshot(page, "preferences-ar-paused")
    live_session.expire_all()
    saved = live_session.get(Subscriber, subscriber.id)
    assert saved.phone == "+60123456789" and saved.paused_until is not None
    alerts = next(s for s in saved.subscriptions if s.topic.slug == "alerts")
    assert alerts.subscribed and alerts.channels == ["email", "sms"]
    page.locator("button[value=resume]").click()
    page.locator("button[value=pause]").wait_for()  # the page offers a pause again
    assert page.locator("#paused-notice").count() == 0
    live_session.rollback()  # a fresh read transaction sees the resume
    assert live_session.get(Subscriber, subscriber.id).paused_until is None
