"""The preference page's channels, mobile number, pause and follow-us links, through HTTP."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import select

from app.clock import get_clock
from app.events.models import Event
from app.security import CSP
from app.subscribers.models import Subscriber
from app.topics.models import FollowLink, FollowLinkTranslation, Role
from tests.conftest import csrf_from

PHONE = "+60123456789"


def page_form(html: str, **changes) -> dict:
    """What a browser submits for the page as shown, with ``changes`` applied."""
    shown = re.findall(r'name="shown" value="([^"]+)"', html)
    data: dict = {"csrf_token": csrf_from(html), "lang": "en", "shown": shown,
                  "channelled": re.findall(r'name="channelled" value="([^"]+)"', html)}
    for slug in shown:
        if re.search(rf'name="topic-{slug}"\s+checked', html):
            data[f"topic-{slug}"] = "on"
        chosen = re.findall(rf'name="channel-{slug}" value="([a-z]+)" checked', html)
        if chosen:
            data[f"channel-{slug}"] = chosen
    phone = re.search(r'name="phone" value="([^"]*)"', html)
    if phone:
        data["phone"] = phone.group(1)
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def fresh(session, subscriber) -> Subscriber:
    session.expire_all()
    return session.get(Subscriber, subscriber.id)


def channels(session, subscriber) -> dict:
    return {s.topic.slug: s.channels for s in fresh(session, subscriber).subscriptions}


def test_the_page_offers_sms_where_a_topic_does_with_the_consent_wording(client, catalogue,
                                                                       links):
    shopper = catalogue.subscriber(role="shopper")
    html = client.get(links.preferences(shopper)).get_data(as_text=True)
    # alerts and events offer email and SMS; offers and news email only.
    assert re.findall(r'name="channelled" value="([^"]+)"', html) == ["alerts", "events"]
    assert 'name="channel-alerts" value="sms"' in html
    assert 'name="channel-offers"' not in html
    assert 'type="tel" id="field-phone" name="phone" value=""' in html
    assert "you agree that Prefcenter may send you text messages" in html
    assert "This also stops marketing text messages (SMS)." in html
    for locale, words in [("ru", "даёте согласие на обработку"),
                          ("ms", "Akta Perlindungan Data Peribadi 2010"),
                          ("ar", "فإنك توافق على أن ترسل إليك")]:
        localised = client.get(links.preferences(shopper) + f"?lang={locale}")
        assert words in localised.get_data(as_text=True), locale


def test_sms_with_a_number_then_removing_it_stops_sms_everywhere(client, session, catalogue,
                                                                 links):
    shopper = catalogue.subscriber(role="shopper")
    url = links.preferences(shopper)
    html = client.get(url).get_data(as_text=True)
    saved = client.post(url, data=page_form(
        html, phone="+60 12-345 6789", **{"topic-alerts": "on", "channel-alerts": ["email", "sms"],
                                         "topic-events": "on", "channel-events": ["sms"]}))
    assert saved.status_code == 200, saved.get_data(as_text=True)
    text = saved.get_data(as_text=True)
    assert "Your mobile number is saved." in text
    assert "Alerts: By email, By SMS." in text
    assert "Events: By SMS." in text
    assert fresh(session, shopper).phone == PHONE
    assert channels(session, shopper)["alerts"] == ["email", "sms"]
    assert channels(session, shopper)["events"] == ["sms"]
    assert f'name="phone" value="{PHONE}"' in text

    cleared = client.post(url, data=page_form(text, phone=""))
    assert cleared.status_code == 200
    assert "Your mobile number is removed: you will get no more SMS." in cleared.get_data(
        as_text=True)
    assert fresh(session, shopper).phone is None
    assert channels(session, shopper)["alerts"] == ["email"]
    assert channels(session, shopper)["events"] == []


@pytest.mark.parametrize(("changes", "message"), [
    ({"phone": "0123", "topic-alerts": "on", "channel-alerts": ["sms"]},
     "That mobile number does not look right."),
    ({"topic-alerts": "on", "channel-alerts": ["sms"]},
     "To receive SMS, enter your mobile number below."),
    ({"topic-alerts": "on", "channel-alerts": None},
     "Choose at least one way to receive each topic you switch on."),
])
def test_bad_phone_or_channel_choices_are_explained_and_nothing_is_saved(
        client, session, catalogue, links, changes, message):
    shopper = catalogue.subscriber(role="shopper")
    url = links.preferences(shopper)
    before = len(session.scalars(select(Event.id)).all())
    response = client.post(url, data=page_form(client.get(url).get_data(as_text=True),
                                               **changes))
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert 'role="alert"' in response.get_data(as_text=True)
    assert len(session.scalars(select(Event.id)).all()) == before
    assert fresh(session, shopper).phone is None


@pytest.mark.parametrize("changes", [
    {"channel-offers": ["sms"]},                      # no channel boxes were shown for it
    {"channelled": ["alerts", "tips"]},               # a topic the page did not show
    {"channel-alerts": ["fax"], "topic-alerts": "on"},  # no such channel
    {"action": "pause", "pause": "10y"},              # no such pause
])
def test_tampered_fields_are_refused(client, session, catalogue, links, changes):
    shopper = catalogue.subscriber(role="shopper")
    url = links.preferences(shopper)
    html = client.get(url).get_data(as_text=True)
    assert client.post(url, data=page_form(html, **changes)).status_code == 400
    assert fresh(session, shopper).paused_until is None


def test_pause_shows_the_date_resumes_by_itself_and_resume_now(app, client, session,
                                                               catalogue, links):
    shopper = catalogue.subscriber(role="shopper")
    url = links.preferences(shopper)
    html = client.get(url).get_data(as_text=True)
    assert '<option value="2w">2 weeks</option>' in html
    clock = get_clock(app)
    start = clock.now()
    paused = client.post(url, data=page_form(html, action="pause", pause="1m"))
    assert paused.status_code == 200
    text = paused.get_data(as_text=True)
    until = fresh(session, shopper).paused_until
    assert until.date() in {(start + dt.timedelta(days=d)).date() for d in (28, 29, 30, 31)}
    assert "Marketing messages are paused until" in text
    assert 'id="paused-notice"' in text
    assert 'value="resume"' in text and 'value="pause"' not in text
    [event] = session.scalars(select(Event).where(Event.action == "paused")).all()
    assert event.source == "preference_page"

    # A month later the pause is over by itself: the page offers a pause again.
    clock.advance(dt.timedelta(days=32))
    later = client.get(url).get_data(as_text=True)
    assert 'id="paused-notice"' not in later and 'value="pause"' in later

    # Pause again, then resume now.
    again = client.post(url, data=page_form(later, action="pause", pause="2w"))
    assert 'value="resume"' in again.get_data(as_text=True)
    resumed = client.post(url, data=page_form(again.get_data(as_text=True), action="resume"))
    assert "Marketing messages are back on." in resumed.get_data(as_text=True)
    assert fresh(session, shopper).paused_until is None


def test_the_paused_date_is_shown_in_the_pages_language(app, client, session, catalogue,
                                                        links):
    shopper = catalogue.subscriber(role="shopper", locale="ru")
    url = links.preferences(shopper)
    html = client.get(url).get_data(as_text=True)
    text = client.post(url, data=page_form(html, lang="ru", action="pause",
                                           pause="3m")).get_data(as_text=True)
    assert "Рекламные сообщения приостановлены до" in text
    assert re.search(r"<strong>\d{1,2} [а-я]+ \d{4}", text)
    assert "г.." not in text  # Russian long dates end in "г.": no second full stop


def test_unsubscribe_from_all_while_paused_unsubscribes(app, client, session, catalogue,
                                                        links):
    shopper = catalogue.subscriber(role="shopper")
    url = links.preferences(shopper)
    html = client.post(url, data=page_form(client.get(url).get_data(as_text=True),
                                           action="pause", pause="3m")).get_data(as_text=True)
    client.post(url, data=page_form(html, action="unsubscribe_all"))
    subscriber = fresh(session, shopper)
    assert subscriber.unsubscribed_all is True
    assert subscriber.paused_until is not None  # the pause is kept, and outranked


def test_follow_links_are_plain_links_filtered_by_role(client, session, catalogue, links):
    for link in session.scalars(select(FollowLink)).unique():  # the demo's, out of the way
        session.delete(link)
    developer_role = session.scalar(select(Role).where(Role.slug == "developer"))
    forum = FollowLink(url="https://forum.example.org/", position=1)
    forum.translations = [FollowLinkTranslation(locale="en", name="Our forum"),
                          FollowLinkTranslation(locale="ar", name="منتدانا")]
    code = FollowLink(url="https://code.example.com/", role=developer_role, position=2)
    code.translations = [FollowLinkTranslation(locale="en", name="Source code")]
    session.add_all([forum, code])
    session.commit()
    shopper = catalogue.subscriber(role="shopper")
    developer = catalogue.subscriber(role="developer")
    response = client.get(links.preferences(shopper))
    html = response.get_data(as_text=True)
    assert ('<a href="https://forum.example.org/" rel="noopener noreferrer">Our forum</a>'
            in html)
    assert "code.example.com" not in html
    assert "<script" not in html and "<iframe" not in html
    assert response.headers["Content-Security-Policy"] == CSP  # unchanged: no third parties
    dev = client.get(links.preferences(developer)).get_data(as_text=True)
    assert "Our forum" in dev and "Source code" in dev
    arabic = client.get(links.preferences(shopper) + "?lang=ar").get_data(as_text=True)
    assert "منتدانا" in arabic
