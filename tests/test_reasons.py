""""Why are you leaving?" (issue 18): asked only after an unsubscribe (the confirmation page
with its undo, or the preference page after a save that unsubscribed), never before, never
on a one-click, never required; recorded as an event with its own webhook change action and
shown in the admin trail. Through HTTP on the test database."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.events.models import Event
from app.webhooks.models import WebhookDelivery, WebhookEndpoint
from tests.conftest import csrf_from
from tests.test_unsubscribe import undo_data

REASON_FORM = 'class="reason-form"'


def events_of(session, subscriber) -> list[Event]:
    session.expire_all()
    return session.scalars(select(Event).where(Event.subscriber_id == subscriber.id)
                           .order_by(Event.id)).all()


def reasons_of(session, subscriber) -> list[Event]:
    return [e for e in events_of(session, subscriber) if e.action == "unsubscribe.reason"]


def unsubscribe_on_the_page(client, path):
    html = client.get(path).get_data(as_text=True)
    assert REASON_FORM not in html  # never before the unsubscribe
    response = client.post(path, data={"confirm": "1", "csrf_token": csrf_from(html)})
    assert response.status_code == 200
    return response.get_data(as_text=True)


@pytest.mark.parametrize("lang", ["en", "ar", "ru", "ms"])
def test_the_confirmation_page_asks_why_in_every_locale(client, catalogue, links, lang):
    subscriber = catalogue.subscriber()
    html = unsubscribe_on_the_page(client, links.unsubscribe(subscriber, topic="offers")
                                   + f"?lang={lang}")
    assert REASON_FORM in html
    for value in ("too_many", "not_relevant", "never_signed_up", "other"):
        assert f'value="{value}"' in html
    assert 'name="text"' in html
    assert 'required' not in html.split(REASON_FORM)[1].split("</form>")[0]
    # The undo stays beside the question.
    assert "/undo" in html
    if lang != "en":
        assert "Would you tell us why you unsubscribed?" not in html
        assert "Too many emails" not in html


def test_an_answer_is_recorded_with_the_link_topic_and_campaign(app, client, catalogue,
                                                                 links, session):
    endpoint = WebhookEndpoint(url="https://crm.example.com/hooks", secret="whsec_dGVzdA==",
                               event_types=["subscriber.updated"])
    session.add(endpoint)
    session.commit()
    subscriber = catalogue.subscriber()
    path = links.unsubscribe(subscriber, topic="offers", campaign="spring-sale")
    html = unsubscribe_on_the_page(client, path)
    version = events_of(session, subscriber)[-1].version
    response = client.post(path + "/reason", data={
        "csrf_token": csrf_from(html), "reason": "other", "text": "  I moved abroad  "})
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert 'id="reason-thanks"' in page and REASON_FORM not in page
    [event] = reasons_of(session, subscriber)
    assert (event.type, event.action, event.reason) == (
        "subscriber.updated", "unsubscribe.reason", "other")
    assert (event.topic, event.campaign, event.source) == ("offers", "spring-sale",
                                                           "unsubscribe_page")
    assert event.after == {"value": "I moved abroad"}
    assert event.version == version + 1
    # Its own change action in the webhook payload, queued for the endpoint.
    assert event.payload["changes"] == [{"action": "unsubscribe.reason", "topic": "offers",
                                         "before": None, "after": "I moved abroad",
                                         "reason": "other"}]
    assert session.scalar(select(WebhookDelivery).where(
        WebhookDelivery.event_id == event.id)) is not None


def test_the_question_is_optional(client, catalogue, links, session):
    subscriber = catalogue.subscriber()
    path = links.unsubscribe(subscriber)
    html = unsubscribe_on_the_page(client, path)
    # The unsubscribe is done before any answer.
    assert [e.action for e in events_of(session, subscriber)][-1] == "unsubscribed_all"
    response = client.post(path + "/reason", data={"csrf_token": csrf_from(html)})
    assert response.status_code == 200
    assert reasons_of(session, subscriber) == []
    # Text alone counts as "other".
    response = client.post(path + "/reason", data={"csrf_token": csrf_from(html),
                                                   "text": "Just because"})
    assert response.status_code == 200
    [event] = reasons_of(session, subscriber)
    assert (event.reason, event.topic) == ("other", None)


def test_bad_answers_are_refused_and_change_nothing(client, catalogue, links, session):
    subscriber = catalogue.subscriber()
    path = links.unsubscribe(subscriber, topic="offers")
    html = unsubscribe_on_the_page(client, path)
    token = csrf_from(html)
    assert client.post(path + "/reason", data={"csrf_token": token,
                                               "reason": "spam"}).status_code == 400
    assert client.post(path + "/reason", data={"csrf_token": token, "reason": "other",
                                               "text": "x" * 501}).status_code == 400
    assert client.post(path + "/reason", data={"reason": "too_many"}).status_code == 400
    assert reasons_of(session, subscriber) == []


def test_never_before_the_unsubscribe(client, catalogue, links, session):
    subscriber = catalogue.subscriber()
    path = links.unsubscribe(subscriber, topic="offers")
    html = client.get(path).get_data(as_text=True)
    assert REASON_FORM not in html
    response = client.post(path + "/reason", data={"csrf_token": csrf_from(html),
                                                   "reason": "too_many"})
    assert response.status_code == 409
    assert reasons_of(session, subscriber) == []


def test_a_one_click_never_asks(client, catalogue, links, session):
    subscriber = catalogue.subscriber()
    for body, content_type in (("List-Unsubscribe=One-Click",
                                "application/x-www-form-urlencoded"),
                               ({"List-Unsubscribe": "One-Click"}, "multipart/form-data")):
        response = client.post(links.unsubscribe(subscriber, topic="offers"), data=body,
                               content_type=content_type)
        assert response.status_code == 200
        assert response.mimetype == "text/plain"
        assert response.get_data(as_text=True) == "Unsubscribed.\n"
    assert reasons_of(session, subscriber) == []


def test_the_undo_screen_does_not_ask_again_after_undo(client, catalogue, links):
    subscriber = catalogue.subscriber()
    path = links.unsubscribe(subscriber, topic="offers")
    html = unsubscribe_on_the_page(client, path)
    response = client.post(path + "/undo", data=undo_data(html))
    assert response.status_code == 200
    assert REASON_FORM not in response.get_data(as_text=True)


def test_the_preference_page_asks_after_an_unsubscribe_only(client, catalogue, links,
                                                            session):
    subscriber = catalogue.subscriber()
    page = links.preferences(subscriber, campaign="weekly-digest")
    html = client.get(page + "?lang=ms").get_data(as_text=True)
    assert REASON_FORM not in html
    token = csrf_from(html)
    # A save that unsubscribes nothing does not ask.
    saved = client.post(page + "?lang=ms", data={"csrf_token": token, "shown": "offers",
                                                 "topic-offers": "on",
                                                 "frequency-offers": "daily"})
    assert REASON_FORM not in saved.get_data(as_text=True)
    # Switching the topic off asks, about that topic, in the page's language.
    saved = client.post(page + "?lang=ms", data={"csrf_token": token, "shown": "offers",
                                                 "frequency-offers": "daily"})
    html = saved.get_data(as_text=True)
    assert REASON_FORM in html
    assert 'name="topic" value="offers"' in html
    assert "Terlalu banyak e-mel" in html
    response = client.post(page + "/reason?lang=ms", data={
        "csrf_token": token, "topic": "offers", "reason": "not_relevant"})
    assert response.status_code == 200
    assert 'id="reason-thanks"' in response.get_data(as_text=True)
    [event] = reasons_of(session, subscriber)
    assert (event.reason, event.topic, event.source, event.campaign) == (
        "not_relevant", "offers", "preference_page", "weekly-digest")
    # A topic switched on again has nothing to explain.
    client.post(page, data={"csrf_token": token, "shown": "offers", "topic-offers": "on",
                            "frequency-offers": "daily"})
    assert client.post(page + "/reason", data={"csrf_token": token, "topic": "offers",
                                               "reason": "too_many"}).status_code == 409
    assert len(reasons_of(session, subscriber)) == 1


def test_answers_show_in_the_admin_trail_and_the_export(app, client, catalogue, links,
                                                        session):
    from app.admin.services import create_admin
    from tests.test_admin import FAST_HASH

    subscriber = catalogue.subscriber()
    path = links.unsubscribe(subscriber, topic="offers")
    html = unsubscribe_on_the_page(client, path)
    client.post(path + "/reason", data={"csrf_token": csrf_from(html),
                                        "reason": "never_signed_up"})
    app.config.update(FAST_HASH)
    create_admin(session, "ops@example.com", "correct horse battery staple", app)
    session.commit()
    admin = app.test_client()
    login = admin.get("/admin/login").get_data(as_text=True)
    assert admin.post("/admin/login", data={
        "csrf_token": csrf_from(login), "email": "ops@example.com",
        "password": "correct horse battery staple"}).status_code == 303
    trail = admin.get(f"/admin/subscribers/{subscriber.id}").get_data(as_text=True)
    assert "unsubscribe.reason" in trail
    assert "<code>never_signed_up</code>" in trail
