"""The preference page through HTTP: what it shows, what a save changes, what it refuses."""

from __future__ import annotations

import re
import threading
import time

import pytest
from sqlalchemy import func, select

from app.events.models import Event
from app.links.services import PREFERENCES, UNSUBSCRIBE, get_signer
from app.mail.worker import MailWorker
from app.subscribers.models import Subscriber
from tests.conftest import csrf_from


def events_of(session, subscriber):
    session.expire_all()
    return session.scalars(
        select(Event).where(Event.subscriber_id == subscriber.id).order_by(Event.id)
    ).all()


def topic_slugs(html: str) -> list[str]:
    return re.findall(r'name="shown" value="([^"]+)"', html)


def form_of(html: str) -> dict[str, str | list[str]]:
    """The fields a browser would submit for the page as shown."""
    data: dict = {"csrf_token": csrf_from(html), "lang": "en", "shown": topic_slugs(html)}
    for slug in data["shown"]:
        if re.search(rf'name="topic-{slug}"\s+checked', html):
            data[f"topic-{slug}"] = "on"
        selected = re.search(
            rf'name="frequency-{slug}">.*?<option value="([^"]+)" selected', html, re.S)
        if selected:
            data[f"frequency-{slug}"] = selected.group(1)
    return data


def state(session, subscriber) -> dict:
    session.expire_all()
    fresh = session.get(Subscriber, subscriber.id)
    return {s.topic.slug: (s.subscribed, s.frequency) for s in fresh.subscriptions}


# --- what the page shows -------------------------------------------------------------

def test_two_roles_see_their_own_topics_in_their_order(client, catalogue, links):
    shopper = catalogue.subscriber(role="shopper")
    developer = catalogue.subscriber(role="developer")
    shopper_html = client.get(links.preferences(shopper)).get_data(as_text=True)
    developer_html = client.get(links.preferences(developer)).get_data(as_text=True)
    assert topic_slugs(shopper_html) == ["offers", "alerts", "news", "events"]
    assert topic_slugs(developer_html) == ["tips", "news", "events"]
    assert "Members save 20% on average" in shopper_html
    assert "Hands-on tips from our engineers" in developer_html
    assert "Members save 20%" not in developer_html


def test_page_shows_defaults_frequencies_notice_privacy_and_masked_email(client, catalogue,
                                                                        links):
    subscriber = catalogue.subscriber(email="jane.doe@example.com")
    response = client.get(links.preferences(subscriber))
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "j*******@e******.com" in html
    assert "jane.doe@example.com" not in html
    # Role default: offers on, alerts off; offers offers exactly its four frequencies.
    assert re.search(r'name="topic-offers"\s+checked', html)
    assert not re.search(r'name="topic-alerts"\s+checked', html)
    offers = re.search(r'name="frequency-offers">(.*?)</select>', html, re.S).group(1)
    assert re.findall(r'value="([^"]+)"', offers) == ["daily", "weekly", "biweekly", "monthly"]
    # Transactional notice lists transactional topics by name; they are not toggles.
    notice = html[html.index('id="transactional-notice"'):]
    for name in ("Receipts", "Shipping updates", "Account security"):
        assert name in notice
    assert 'name="topic-receipts"' not in html
    assert 'name="unsubscribe_all"' in html
    assert 'href="https://example.com/privacy"' in html
    assert "<script" not in html


def test_security_headers_on_every_response(client, catalogue, links):
    subscriber = catalogue.subscriber()
    for path in (links.preferences(subscriber), "/p/not-a-token", "/healthz", "/nowhere"):
        response = client.get(path)
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
    page = client.application.test_client().get(links.preferences(subscriber))
    assert page.headers["Cache-Control"] == "no-store"
    cookie = page.headers.get("Set-Cookie", "")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


# --- saving --------------------------------------------------------------------------

def test_save_changes_exactly_what_changed_and_logs_one_event_each(client, session, catalogue,
                                                                   links):
    subscriber = catalogue.subscriber()
    url = links.preferences(subscriber, campaign="nov-digest")
    before_events = len(events_of(session, subscriber))
    data = form_of(client.get(url).get_data(as_text=True))
    data["topic-alerts"] = "on"
    data["frequency-offers"] = "monthly"
    response = client.post(url, data=data)
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Your preferences are saved." in html
    assert "You now receive Alerts." in html
    assert "Offers: Monthly." in html

    assert state(session, subscriber) == {
        "offers": (True, "monthly"), "alerts": (True, "daily"),
        "news": (False, "monthly"), "events": (False, "monthly"),
    }
    new = events_of(session, subscriber)[before_events:]
    assert [(e.action, e.topic, e.before, e.after) for e in new] == [
        ("topic.frequency", "offers", {"value": "weekly"}, {"value": "monthly"}),
        ("topic.subscribed", "alerts", {"value": False}, {"value": True}),
    ]
    assert {e.source for e in new} == {"preference_page"}
    assert {e.campaign for e in new} == {"nov-digest"}
    assert all(e.token_id and len(e.token_id) == 16 for e in new)
    assert {e.version for e in new} == {2}
    assert new[1].payload["subscriber"]["topics"]["alerts"] == {
        "subscribed": True, "frequency": "daily", "channels": ["email"]}
    session.expire_all()
    assert session.get(Subscriber, subscriber.id).version == 2

    # The same form again: nothing changes, no event, no version bump.
    again = client.post(url, data=data)
    assert again.status_code == 200
    assert "Nothing needed to change." in again.get_data(as_text=True)
    assert len(events_of(session, subscriber)) == before_events + 2
    assert session.get(Subscriber, subscriber.id).version == 2


def test_unticking_a_topic_unsubscribes_from_it(client, session, catalogue, links):
    subscriber = catalogue.subscriber()
    url = links.preferences(subscriber)
    data = form_of(client.get(url).get_data(as_text=True))
    del data["topic-offers"]
    response = client.post(url, data=data)
    assert "You no longer receive Offers." in response.get_data(as_text=True)
    assert state(session, subscriber)["offers"] == (False, "weekly")
    last = events_of(session, subscriber)[-1]
    assert (last.type, last.action, last.topic) == (
        "subscriber.unsubscribed", "topic.unsubscribed", "offers")


def test_master_unsubscribe_keeps_choices_and_resubscribe_restores_them(client, session,
                                                                       catalogue, links):
    subscriber = catalogue.subscriber()
    url = links.preferences(subscriber)
    data = form_of(client.get(url).get_data(as_text=True))
    data["topic-news"] = "on"
    client.post(url, data=data)
    chosen = state(session, subscriber)

    data = form_of(client.get(url).get_data(as_text=True))
    data["action"] = "unsubscribe_all"
    html = client.post(url, data=data).get_data(as_text=True)
    assert "You are unsubscribed from all marketing email." in html
    session.expire_all()
    assert session.get(Subscriber, subscriber.id).unsubscribed_all is True
    assert state(session, subscriber) == chosen
    assert events_of(session, subscriber)[-1].type == "subscriber.unsubscribed"

    data = form_of(client.get(url).get_data(as_text=True))
    assert data.get("unsubscribe_all") is None  # form_of does not carry the box
    html = client.post(url, data=data).get_data(as_text=True)
    assert "switched back on" in html
    session.expire_all()
    assert session.get(Subscriber, subscriber.id).unsubscribed_all is False
    assert state(session, subscriber) == chosen
    assert events_of(session, subscriber)[-1].type == "subscriber.resubscribed"


@pytest.mark.parametrize("tamper", [
    lambda d: d.update({"shown": [*d["shown"], "tips"], "topic-tips": "on"}),  # not this role
    lambda d: d.update({"shown": [*d["shown"], "nope"]}),  # no such topic
    lambda d: d.update({"topic-receipts": "on"}),  # transactional, not shown
    lambda d: d.update({"frequency-offers": "hourly"}),  # no such frequency
    lambda d: d.update({"frequency-offers": "quarterly"}),  # not offered by this topic
    lambda d: d.update({"action": "explode"}),
])
def test_values_the_role_does_not_offer_are_refused_and_change_nothing(client, session,
                                                                       catalogue, links, tamper):
    subscriber = catalogue.subscriber()
    url = links.preferences(subscriber)
    data = form_of(client.get(url).get_data(as_text=True))
    data["topic-alerts"] = "on"  # a legitimate change riding along must not be saved either
    tamper(data)
    before = (state(session, subscriber), len(events_of(session, subscriber)))
    response = client.post(url, data=data)
    assert response.status_code == 400
    assert (state(session, subscriber), len(events_of(session, subscriber))) == before


def test_missing_or_wrong_csrf_token_is_400_and_changes_nothing(client, session, catalogue,
                                                                links):
    subscriber = catalogue.subscriber()
    url = links.preferences(subscriber)
    data = form_of(client.get(url).get_data(as_text=True))
    data["topic-alerts"] = "on"
    before = len(events_of(session, subscriber))
    for token in (None, "forged"):
        attempt = dict(data)
        if token is None:
            attempt.pop("csrf_token")
        else:
            attempt["csrf_token"] = token
        assert client.post(url, data=attempt).status_code == 400
    assert len(events_of(session, subscriber)) == before
    assert state(session, subscriber)["alerts"] == (False, "daily")


def test_oversized_body_is_refused(client, catalogue, links):
    subscriber = catalogue.subscriber()
    url = links.preferences(subscriber)
    response = client.post(url, data={"junk": "x" * (2 * 1024 * 1024)})
    assert response.status_code == 413


# --- bad links -----------------------------------------------------------------------

def test_bad_tokens_get_a_clear_page_and_change_nothing(app, client, session, catalogue, links):
    subscriber = catalogue.subscriber()
    good = links.preferences(subscriber)[len("/p/"):]
    signer = get_signer(app)
    flipped = good[:-3] + ("A" if good[-3] != "A" else "B") + good[-2:]
    cases = {
        "tampered": flipped,
        "truncated": good[:-6],
        "foreign purpose": signer.mint(UNSUBSCRIBE, subscriber.public_id),
        "garbage": "not-a-token",
        "other key": get_signer.__globals__["LinkSigner"](
            ["another-key"], {PREFERENCES: 60, UNSUBSCRIBE: 60}
        ).mint(PREFERENCES, subscriber.public_id),
        "wrong payload": signer._serializers[PREFERENCES].dumps({"id": 1}),
    }
    for name, token in cases.items():
        for method in ("get", "post"):
            response = getattr(client, method)(f"/p/{token}", data={})
            assert response.status_code == 400, (name, method)
            if method == "get":
                assert "This link is not valid" in response.get_data(as_text=True), name
    assert client.get("/p/" + "A" * 600).status_code in (400, 404, 414)
    assert events_of(session, subscriber)[-1].action == "created"


def test_expired_link_offers_a_fresh_one_by_email(app, client, session, catalogue, links,
                                                  smtp_server):
    subscriber = catalogue.subscriber(email="late@example.com", locale="en")
    app.config.update(SMTP_HOST="127.0.0.1", SMTP_PORT=smtp_server.port)
    signer = get_signer(app)
    token = signer.mint(PREFERENCES, subscriber.public_id)
    signer.max_ages[PREFERENCES] = -1  # every token is now too old
    response = client.get(f"/p/{token}")
    html = response.get_data(as_text=True)
    assert response.status_code == 410
    assert "This link has expired" in html
    assert "Email me a fresh link" in html
    assert client.post(f"/p/{token}", data={}).status_code in (400, 410)

    renew = client.post(f"/p/{token}/renew", data={"csrf_token": csrf_from(html)})
    assert renew.status_code == 200
    assert "Check your inbox" in renew.get_data(as_text=True)
    assert smtp_server.messages == []  # queued: the worker sends it
    MailWorker(app).run_once()
    message = smtp_server.wait_for_message()
    assert message["To"] == "late@example.com"
    fresh = re.search(r"http://localhost(/p/\S+)", message.get_content()).group(1)

    signer.max_ages[PREFERENCES] = 3600
    assert client.get(fresh).status_code == 200
    assert client.get(f"/p/{token}").status_code == 200  # the old one is merely old


def test_renew_for_an_unknown_token_answers_the_same_and_sends_nothing(app, client, catalogue,
                                                                      links, smtp_server):
    app.config.update(SMTP_HOST="127.0.0.1", SMTP_PORT=smtp_server.port)
    subscriber = catalogue.subscriber()
    html = client.get(links.preferences(subscriber)).get_data(as_text=True)
    response = client.post("/p/forged.token.here/renew", data={"csrf_token": csrf_from(html)})
    assert response.status_code == 200
    assert "Check your inbox" in response.get_data(as_text=True)
    assert smtp_server.messages == []


def test_revoked_and_erased_subscribers(client, session, catalogue, links):
    subscriber = catalogue.subscriber()
    url = links.preferences(subscriber)
    fresh = session.get(Subscriber, subscriber.id)
    fresh.link_epoch += 1
    session.commit()
    response = client.get(url)
    assert response.status_code == 410
    assert "no longer valid" in response.get_data(as_text=True)
    assert client.get(links.preferences(fresh)).status_code == 200

    from app.db import utcnow

    fresh.erased_at = utcnow()
    session.commit()
    assert client.get(links.preferences(fresh)).status_code == 404


def test_rotated_keys_still_open_old_links(database_url, catalogue, session):
    from app import create_app
    from tests.conftest import make_config

    subscriber = catalogue.subscriber()
    old = create_app(make_config(database_url, SECRET_KEYS=["old-key"]))
    token = get_signer(old).mint(PREFERENCES, subscriber.public_id)
    rotated = create_app(make_config(database_url, SECRET_KEYS=["new-key", "old-key"]))
    claims = get_signer(rotated).loads(PREFERENCES, token)
    assert claims.public_id == subscriber.public_id
    assert get_signer(rotated).mint(PREFERENCES, subscriber.public_id) != token
    retired = create_app(make_config(database_url, SECRET_KEYS=["new-key"]))
    with pytest.raises(Exception, match="not valid"):
        get_signer(retired).loads(PREFERENCES, token)


# --- concurrency ---------------------------------------------------------------------

def test_concurrent_saves_do_not_corrupt_state(live_app, live_session, live_catalogue,
                                               live_links):
    """Four browsers save four different changes at once: all four land, in order."""
    subscriber = live_catalogue.subscriber()
    url = live_links.preferences(subscriber)
    clients = [live_app.test_client() for _ in range(4)]
    pages = [form_of(c.get(url).get_data(as_text=True)) for c in clients]
    changes = [("alerts", "on", "daily"), ("news", "on", "monthly"),
               ("events", "on", "monthly"), ("offers", "on", "daily")]
    forms = []
    for page, (slug, toggle, frequency) in zip(pages, changes, strict=True):
        # Each browser submits one topic only (a page showing just that topic).
        forms.append({"csrf_token": page["csrf_token"], "lang": "en", "shown": [slug],
                      f"topic-{slug}": toggle, f"frequency-{slug}": frequency})
    barrier = threading.Barrier(4)
    statuses = []

    def post(c, form):
        barrier.wait()
        statuses.append(c.post(url, data=form).status_code)

    threads = [threading.Thread(target=post, args=pair) for pair in zip(clients, forms,
                                                                        strict=True)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert time.monotonic() - started < 60
    assert statuses == [200] * 4
    assert state(live_session, subscriber) == {
        "offers": (True, "daily"), "alerts": (True, "daily"),
        "news": (True, "monthly"), "events": (True, "monthly"),
    }
    live_session.expire_all()
    fresh = live_session.get(Subscriber, subscriber.id)
    assert fresh.version == 5
    versions = live_session.scalars(
        select(Event.version).where(Event.subscriber_id == subscriber.id,
                                    Event.action != "created").order_by(Event.id)).all()
    assert sorted(versions) == [2, 3, 4, 5]
    assert live_session.scalar(select(func.count(Event.id)).where(
        Event.subscriber_id == subscriber.id)) == 5
