"""Unsubscribe pages and RFC 8058 one-click through HTTP: what changes, what never does."""

from __future__ import annotations

import re
import time

import pytest
from flask import request
from itsdangerous import TimestampSigner
from sqlalchemy import select

from app.events.models import Event
from app.links.services import PREFERENCES, SALTS, UNSUBSCRIBE, _Serializer, get_signer, token_id
from app.subscribers.models import Subscriber
from app.unsubscribe.one_click import PLAIN, get_answer
from tests.conftest import TEST_SECRET, csrf_from

ONE_CLICK = {"List-Unsubscribe": "One-Click"}
SECURITY_HEADERS = ("Content-Security-Policy", "X-Content-Type-Options", "X-Frame-Options",
                    "Referrer-Policy")


def changes_of(session, subscriber) -> list[Event]:
    """Every event after the subscriber's creation."""
    session.expire_all()
    return session.scalars(
        select(Event).where(Event.subscriber_id == subscriber.id,
                            Event.type != "subscriber.created").order_by(Event.id)
    ).all()


RECEIPT_RE = re.compile(r'name="receipt" type="hidden" value="([^"]*)"')


def undo_data(done: str) -> dict:
    """The undo form of a confirmation page, as the browser submits it."""
    return {"csrf_token": csrf_from(done), "receipt": RECEIPT_RE.search(done).group(1)}


def fresh(session, subscriber) -> Subscriber:
    session.expire_all()
    return session.get(Subscriber, subscriber.id)


def subscribed(session, subscriber, slug: str) -> bool:
    return next(s.subscribed for s in fresh(session, subscriber).subscriptions
                if s.topic.slug == slug)


def token_of(path: str) -> str:
    return path.removeprefix("/u/")


def assert_plain_final(response, status: int) -> None:
    """A one-click answer: the status, text/plain, no redirect, no cookie, secure headers."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "text/plain"
    assert "Location" not in response.headers
    assert "Set-Cookie" not in response.headers
    for header in SECURITY_HEADERS:
        assert header in response.headers


# --- GET and HEAD change nothing ---------------------------------------------------------

def test_get_and_head_show_the_topic_and_change_nothing(client, catalogue, links, session):
    subscriber = catalogue.subscriber(email="jane.doe@example.com")
    path = links.unsubscribe(subscriber, topic="offers", campaign="spring")
    version = subscriber.version
    for _ in range(3):
        response = client.get(path)
        html = response.get_data(as_text=True)
        assert response.status_code == 200
        assert client.head(path).status_code == 200
    assert re.search(r"Unsubscribe <strong class=\"email\">j\*+@e\*+\.com</strong> from Offers",
                     html)
    assert "jane.doe@example.com" not in html
    assert 'name="confirm" type="hidden" value="1"' in html
    assert html.count('type="submit"') == 1
    for header in SECURITY_HEADERS:
        assert header in response.headers
    assert response.headers["Cache-Control"] == "no-store"
    assert changes_of(session, subscriber) == []
    assert fresh(session, subscriber).version == version
    assert subscribed(session, subscriber, "offers")


def test_get_links_to_a_preference_page_with_the_same_claims(client, catalogue, links):
    subscriber = catalogue.subscriber()
    html = client.get(links.unsubscribe(subscriber, topic="offers", campaign="spring",
                                        locale="ms")).get_data(as_text=True)
    url = re.search(r'href="http://localhost(/p/[^"]+)"', html).group(1)
    claims = get_signer(client.application).loads(PREFERENCES, url.removeprefix("/p/"))
    assert (claims.public_id, claims.topic, claims.campaign, claims.locale) == (
        subscriber.public_id, "offers", "spring", "ms")
    assert client.get(url).status_code == 200


def test_token_without_topic_offers_all_marketing(client, catalogue, links):
    subscriber = catalogue.subscriber()
    html = client.get(links.unsubscribe(subscriber)).get_data(as_text=True)
    assert "from all marketing email." in html
    assert "Offers" not in html.split("<form")[0]


def test_page_speaks_the_links_language_and_switches(client, catalogue, links):
    subscriber = catalogue.subscriber(locale="en")
    path = links.unsubscribe(subscriber, topic="offers", locale="ru")
    html = client.get(path).get_data(as_text=True)
    assert '<html lang="ru" dir="ltr">' in html
    assert "Предложения" in html
    assert f'href="{path}?lang=ar"' in html
    arabic = client.get(path + "?lang=ar").get_data(as_text=True)
    assert '<html lang="ar" dir="rtl">' in arabic
    assert "العروض" in arabic


def test_page_says_when_it_is_already_done(client, catalogue, links):
    subscriber = catalogue.subscriber()
    path = links.unsubscribe(subscriber, topic="alerts")  # the shopper default is off
    assert "already unsubscribed" in client.get(path).get_data(as_text=True)
    assert "already unsubscribed" not in client.get(
        links.unsubscribe(subscriber, topic="offers")).get_data(as_text=True)


# --- one-click -----------------------------------------------------------------------------

def test_one_click_urlencoded_unsubscribes_the_topic_only(app, catalogue, links, session):
    subscriber = catalogue.subscriber()
    path = links.unsubscribe(subscriber, topic="offers", campaign="spring-sale")
    version = subscriber.version
    response = app.test_client().post(
        path, data="List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded")
    assert_plain_final(response, 200)
    assert response.get_data(as_text=True) == "Unsubscribed.\n"
    assert not subscribed(session, subscriber, "offers")
    assert fresh(session, subscriber).unsubscribed_all is False
    [event] = changes_of(session, subscriber)
    assert (event.type, event.action, event.topic) == (
        "subscriber.unsubscribed", "topic.unsubscribed", "offers")
    assert event.source == "one_click"
    assert event.campaign == "spring-sale"
    assert event.token_id == token_id(token_of(path))
    assert event.payload["source"] == "one_click"
    assert fresh(session, subscriber).version == version + 1


def test_one_click_multipart_without_topic_unsubscribes_from_all(app, catalogue, links,
                                                                 session):
    subscriber = catalogue.subscriber()
    path = links.unsubscribe(subscriber)
    response = app.test_client().post(path, data=ONE_CLICK, content_type="multipart/form-data")
    assert_plain_final(response, 200)
    after = fresh(session, subscriber)
    assert after.unsubscribed_all is True
    assert subscribed(session, subscriber, "offers")  # topic choices are kept
    [event] = changes_of(session, subscriber)
    assert (event.action, event.source, event.campaign) == ("unsubscribed_all", "one_click",
                                                            None)


def flask_requests(app) -> list[str]:
    """The paths that went through Flask's request machinery (a before_request hook)."""
    seen: list[str] = []
    app.before_request(lambda: seen.append(request.path))
    return seen


def answer_of(response) -> tuple:
    headers = sorted((k, v) for k, v in response.headers.items() if k != "Content-Length")
    return response.status_code, response.get_data(as_text=True), headers


ANSWER_CASES = {
    "topic": lambda links, s: links.unsubscribe(s, topic="offers"),
    "all": lambda links, s: links.unsubscribe(s),
    "tampered": lambda links, s: _tampered(links.unsubscribe(s)),
    "revoked": lambda links, s: links.unsubscribe(s, epoch=s.link_epoch - 1),
    "not ascii": lambda links, s: "/u/%C3%A9t%C3%A9",
    "preference token": lambda links, s: "/u/" + links.preferences(s).removeprefix("/p/"),
}


@pytest.mark.parametrize("app_config", [{"RATELIMIT_ENABLED": True,
                                         "RATELIMIT_ONE_CLICK": "6 per minute",
                                         "BASE_URL": "https://prefs.example.com"}])
@pytest.mark.parametrize("case", ANSWER_CASES)
def test_one_click_answers_alike_below_flask_and_through_the_view(app, catalogue, links,
                                                                   session, case):
    """Providers' urlencoded one-clicks are answered before Flask; multipart ones by the
    view. Both give the same answers, refusals and rate limit."""
    seen = flask_requests(app)
    answers = {}
    for address, encoding in (("192.0.2.1", "application/x-www-form-urlencoded"),
                              ("192.0.2.2", "multipart/form-data")):  # a limit each
        subscriber = catalogue.subscriber()
        subscriber.link_epoch = 1
        session.commit()
        path = ANSWER_CASES[case](links, subscriber)
        client = app.test_client()
        answers[encoding] = [
            answer_of(client.post(path, data=ONE_CLICK, content_type=encoding,
                                  environ_base={"REMOTE_ADDR": address}))
            for _ in range(7)]
        changed = [e.source for e in changes_of(session, subscriber)]
        assert changed == (["one_click"] if case in ("topic", "all") else [])
        assert len(seen) == (0 if encoding.endswith("urlencoded") else 7)
    below, view = answers.values()
    assert below == view
    statuses = [status for status, _body, _headers in below]
    assert statuses[-1] == 429
    if case in ("topic", "all"):
        assert statuses[:6] == [200] * 6
    else:
        assert len(set(statuses[:6])) == 1 and statuses[0] in (400, 410)
    assert dict(below[0][2])["Strict-Transport-Security"] == "max-age=31536000"


def test_a_request_the_one_click_route_passes_on_keeps_its_body(client, catalogue, links,
                                                                session):
    """Same length and type as a one-click, another value: Flask reads the body the route
    already read, and answers the plain 400 (a lost body would be a 400 page)."""
    subscriber = catalogue.subscriber()
    body = b"List-Unsubscribe=Two-Click"
    assert len(body) == len("List-Unsubscribe=One-Click")
    response = client.post(links.unsubscribe(subscriber), data=body,
                           content_type="application/x-www-form-urlencoded")
    assert_plain_final(response, 400)
    assert response.get_data(as_text=True) == PLAIN[400]
    assert changes_of(session, subscriber) == []


@pytest.mark.parametrize("app_config", [{"PROPAGATE_EXCEPTIONS": False}])
def test_a_failure_below_flask_is_a_logged_plain_500(app, catalogue, links, session,
                                                     monkeypatch, caplog):
    subscriber = catalogue.subscriber()

    def broken(_claims):
        raise RuntimeError("a bug")

    monkeypatch.setattr(get_answer(app), "_unsubscribe", broken)
    response = app.test_client().post(links.unsubscribe(subscriber), data=ONE_CLICK)
    assert_plain_final(response, 500)
    assert "nothing may have been changed" in response.get_data(as_text=True)
    assert "one-click failed" in caplog.text and "a bug" in caplog.text
    assert changes_of(session, subscriber) == []


def test_one_click_for_a_topic_no_longer_marketing_stops_everything(app, catalogue, links,
                                                                    session):
    subscriber = catalogue.subscriber()
    response = app.test_client().post(links.unsubscribe(subscriber, topic="receipts"),
                                      data=ONE_CLICK)
    assert_plain_final(response, 200)
    assert fresh(session, subscriber).unsubscribed_all is True


def test_repeated_one_clicks_answer_200_and_record_one_event(app, catalogue, links, session):
    subscriber = catalogue.subscriber()
    path = links.unsubscribe(subscriber, topic="offers")
    client = app.test_client()
    for _ in range(4):
        assert_plain_final(client.post(path, data=ONE_CLICK), 200)
    assert len(changes_of(session, subscriber)) == 1
    master = links.unsubscribe(subscriber)
    for _ in range(3):
        assert_plain_final(client.post(master, data=ONE_CLICK, content_type="multipart/form-data"),
                           200)
    assert [e.action for e in changes_of(session, subscriber)] == [
        "topic.unsubscribed", "unsubscribed_all"]


@pytest.mark.parametrize(("body", "content_type", "status"), [
    ("List-Unsubscribe=Two-Clicks", "application/x-www-form-urlencoded", 400),
    ("list-unsubscribe=one-click", "application/x-www-form-urlencoded", 400),
    ("", "application/x-www-form-urlencoded", 400),
    ("foo=bar&unsubscribe=yes", "application/x-www-form-urlencoded", 400),
    ("List-Unsubscribe=One-Click", "text/plain", 415),
    ('{"List-Unsubscribe": "One-Click"}', "application/json", 415),
    ("List-Unsubscribe=One-Click", None, 415),
    ("--nope\r\ngarbage", "multipart/form-data; boundary=xyz", 400),
    ("List-Unsubscribe=One-Click", "multipart/form-data", 400),  # no boundary: unreadable
])
def test_other_bodies_are_refused_and_change_nothing(app, catalogue, links, session, body,
                                                     content_type, status):
    subscriber = catalogue.subscriber()
    path = links.unsubscribe(subscriber, topic="offers")
    headers = {"Content-Type": content_type} if content_type else {}
    response = app.test_client().post(path, data=body.encode(), headers=headers)
    assert_plain_final(response, status)
    assert changes_of(session, subscriber) == []
    assert subscribed(session, subscriber, "offers")


@pytest.mark.parametrize("app_config", [{"MAX_CONTENT_LENGTH": 2048}])
def test_oversized_bodies_are_413_and_change_nothing(app, catalogue, links, session):
    subscriber = catalogue.subscriber()
    path = links.unsubscribe(subscriber, topic="offers")
    client = app.test_client()
    for content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        response = client.post(path, data={"List-Unsubscribe": "One-Click", "pad": "x" * 4096},
                               content_type=content_type)
        assert_plain_final(response, 413)
    assert changes_of(session, subscriber) == []
    assert subscribed(session, subscriber, "offers")


# --- the browser form and its undo ----------------------------------------------------------

def test_browser_form_unsubscribes_then_undo_restores_the_topic(client, catalogue, links,
                                                                session):
    subscriber = catalogue.subscriber(email="jane.doe@example.com")
    path = links.unsubscribe(subscriber, topic="offers", campaign="spring")
    page = client.get(path).get_data(as_text=True)
    action = re.search(r'<form method="post" action="([^"]+)"', page).group(1)
    response = client.post(action.replace("&amp;", "&"),
                           data={"csrf_token": csrf_from(page), "confirm": "1"})
    done = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Location" not in response.headers
    assert "will no longer receive Offers" in done
    assert "/p/" in done  # the link to the full preference page
    assert not subscribed(session, subscriber, "offers")
    [event] = changes_of(session, subscriber)
    assert (event.action, event.topic, event.source, event.campaign, event.token_id) == (
        "topic.unsubscribed", "offers", "unsubscribe_page", "spring", token_id(token_of(path)))

    undo_action = re.search(r'<form method="post" action="([^"]+)" class="undo"', done).group(1)
    response = client.post(undo_action, data=undo_data(done))
    assert response.status_code == 200
    assert "receives Offers again" in response.get_data(as_text=True)
    assert subscribed(session, subscriber, "offers")
    assert fresh(session, subscriber).unsubscribed_all is False
    undo_event = changes_of(session, subscriber)[-1]
    assert (undo_event.action, undo_event.topic, undo_event.source) == (
        "topic.subscribed", "offers", "unsubscribe_page")


def test_browser_form_without_topic_and_undo_of_the_master_switch(client, catalogue, links,
                                                                  session):
    subscriber = catalogue.subscriber()
    path = links.unsubscribe(subscriber)
    page = client.get(path).get_data(as_text=True)
    done = client.post(path, data={"csrf_token": csrf_from(page), "confirm": "1"})
    assert "will no longer receive marketing email" in done.get_data(as_text=True)
    assert fresh(session, subscriber).unsubscribed_all is True
    html = done.get_data(as_text=True)
    client.post(path + "/undo", data=undo_data(html))
    assert fresh(session, subscriber).unsubscribed_all is False
    assert [(e.action, e.source) for e in changes_of(session, subscriber)] == [
        ("unsubscribed_all", "unsubscribe_page"), ("resubscribed_all", "unsubscribe_page")]


def test_confirming_what_is_already_done_offers_no_undo(client, catalogue, links, session):
    subscriber = catalogue.subscriber()
    path = links.unsubscribe(subscriber, topic="alerts")  # already off by default
    page = client.get(path).get_data(as_text=True)
    done = client.post(path, data={"csrf_token": csrf_from(page), "confirm": "1"})
    assert done.status_code == 200
    assert 'class="undo"' not in done.get_data(as_text=True)
    assert changes_of(session, subscriber) == []


def test_browser_form_without_a_valid_csrf_token_is_400(app, client, catalogue, links,
                                                        session):
    subscriber = catalogue.subscriber()
    path = links.unsubscribe(subscriber, topic="offers")
    page = client.get(path).get_data(as_text=True)
    assert client.post(path, data={"confirm": "1"}).status_code == 400
    assert client.post(path, data={"confirm": "1", "csrf_token": "forged"}).status_code == 400
    # A valid token but no cookie (another site's form post) is refused too.
    cookieless = app.test_client().post(path, data={"confirm": "1",
                                                    "csrf_token": csrf_from(page)})
    assert cookieless.status_code == 400
    assert changes_of(session, subscriber) == []


def test_undo_needs_its_csrf_token(client, catalogue, links, session):
    subscriber = catalogue.subscriber()
    path = links.unsubscribe(subscriber, topic="offers")
    page = client.get(path).get_data(as_text=True)
    client.post(path, data={"csrf_token": csrf_from(page), "confirm": "1"})
    assert client.post(path + "/undo").status_code == 400
    assert not subscribed(session, subscriber, "offers")
    assert len(changes_of(session, subscriber)) == 1


# --- bad links ------------------------------------------------------------------------------

def _tampered(path: str) -> str:
    payload, stamp, signature = token_of(path).split(".")
    flipped = ("A" if signature[5] != "A" else "B").join((signature[:5], signature[6:]))
    return f"/u/{payload}.{stamp}.{flipped}"


BAD_LINKS = {
    "tampered": (lambda links, s: _tampered(links.unsubscribe(s)), 400),
    "truncated": (lambda links, s: links.unsubscribe(s)[:-6], 400),
    "garbage": (lambda links, s: "/u/not-a-token", 400),
    "too long": (lambda links, s: "/u/" + "a" * 600, 400),
    "preference token": (lambda links, s: "/u/" + links.preferences(s).removeprefix("/p/"), 400),
    "revoked epoch": (lambda links, s: links.unsubscribe(s, epoch=s.link_epoch - 1), 410),
}


@pytest.mark.parametrize("case", BAD_LINKS)
def test_bad_links_are_refused_on_every_method(client, catalogue, links, session, case):
    subscriber = catalogue.subscriber()
    subscriber.link_epoch = 1
    session.commit()
    make, status = BAD_LINKS[case]
    path = make(links, subscriber)
    page = client.get(path)
    assert page.status_code == status
    assert page.mimetype == "text/html"
    assert client.head(path).status_code == status
    one_click = client.post(path, data=ONE_CLICK)
    assert_plain_final(one_click, status)
    assert changes_of(session, subscriber) == []
    assert fresh(session, subscriber).unsubscribed_all is False
    assert subscribed(session, subscriber, "offers")


def test_erased_or_unknown_subscribers_are_404(client, catalogue, links, session):
    subscriber = catalogue.subscriber()
    path = links.unsubscribe(subscriber)
    subscriber.erased_at = subscriber.created_at
    session.commit()
    assert client.get(path).status_code == 404
    assert_plain_final(client.post(path, data=ONE_CLICK), 404)
    unknown = "/u/" + get_signer(client.application).mint(UNSUBSCRIBE, "no-such-public-id")
    assert client.get(unknown).status_code == 404
    assert_plain_final(client.post(unknown, data=ONE_CLICK), 404)
    assert fresh(session, subscriber).unsubscribed_all is False


class _LongAgo(TimestampSigner):
    def get_timestamp(self) -> int:
        return int(time.time()) - 401 * 24 * 3600


def minted_401_days_ago(purpose: str, subscriber, **claims) -> str:
    serializer = _Serializer([TEST_SECRET], salt=SALTS[purpose], signer=_LongAgo)
    payload = [subscriber.public_id, subscriber.link_epoch, claims.get("topic", ""),
               claims.get("campaign", "")]
    return serializer.dumps(payload)


def test_an_expired_but_authentic_unsubscribe_link_is_still_honoured(client, catalogue,
                                                                     session):
    subscriber = catalogue.subscriber()
    path = "/u/" + minted_401_days_ago(UNSUBSCRIBE, subscriber, topic="offers", campaign="old")
    html = client.get(path).get_data(as_text=True)
    assert "from Offers" in html
    assert "/p/" not in html  # no fresh preference link from an old email
    assert_plain_final(client.post(path, data=ONE_CLICK), 200)
    assert not subscribed(session, subscriber, "offers")
    [event] = changes_of(session, subscriber)
    assert (event.source, event.campaign) == ("one_click", "old")
    # An old preference token is still foreign here.
    foreign = "/u/" + minted_401_days_ago(PREFERENCES, subscriber)
    assert_plain_final(client.post(foreign, data=ONE_CLICK), 400)


# --- rate limits ------------------------------------------------------------------------------

@pytest.mark.parametrize("app_config", [{
    "RATELIMIT_ENABLED": True, "RATELIMIT_PUBLIC": "2 per minute",
    "RATELIMIT_ONE_CLICK": "4 per minute",
}])
def test_pages_have_the_public_limit_and_one_click_its_own(app, catalogue, links, session):
    subscriber = catalogue.subscriber()
    path = links.unsubscribe(subscriber, topic="offers")
    client = app.test_client()
    assert [client.get(path).status_code for _ in range(3)] == [200, 200, 429]
    limited = client.get(path)
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) > 0
    assert limited.mimetype == "text/html"
    # One-clicks are counted apart, with their own (higher) limit.
    statuses = [app.test_client().post(path, data=ONE_CLICK).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 200, 429]
    refused = app.test_client().post(path, data=ONE_CLICK)
    assert_plain_final(refused, 429)
    assert int(refused.headers["Retry-After"]) > 0
    assert len(changes_of(session, subscriber)) == 1
