"""The public pages as link scanners load them: GET and HEAD of /u/ and /p/ change nothing,
read one statement, render nothing for HEAD; the catalogue cache follows every admin change
at once, on every app instance; page views never use up the one-click limit."""

from __future__ import annotations

import re
import threading
import time
from contextlib import contextmanager

import pytest
from flask import template_rendered
from sqlalchemy import event, func, select

from app import create_app
from app.admin.services import create_admin
from app.events.models import Event
from app.limits import SweptMemoryStorage, limiter
from app.links.services import UNSUBSCRIBE
from app.subscribers.models import Subscriber, Subscription
from app.subscribers.services import Context, TopicChoice, change
from app.topics.catalogue import get_catalogue
from app.topics.models import CatalogueVersion, Topic
from app.webhooks.models import WebhookDelivery
from tests.conftest import Links, make_config
from tests.test_admin import EMAIL, FAST_HASH, login, post
from tests.test_unsubscribe import minted_401_days_ago

LOCALES = ("en", "ar", "ru", "ms")
ONE_CLICK = {"List-Unsubscribe": "One-Click"}
TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")


def state(session) -> dict:
    """Everything a page view must leave as it was."""
    session.expire_all()
    return {
        "events": session.scalar(select(func.count()).select_from(Event)),
        "deliveries": session.scalar(select(func.count()).select_from(WebhookDelivery)),
        "subscribers": session.execute(
            select(Subscriber.id, Subscriber.version, Subscriber.updated_at,
                   Subscriber.unsubscribed_all, Subscriber.locale, Subscriber.link_epoch)
            .order_by(Subscriber.id)).all(),
        "subscriptions": session.execute(
            select(Subscription.subscriber_id, Subscription.topic_id, Subscription.subscribed,
                   Subscription.frequency, Subscription.updated_at)
            .order_by(Subscription.subscriber_id, Subscription.topic_id)).all(),
        "catalogue": session.scalar(select(CatalogueVersion.version)),
    }


@contextmanager
def rendered(app):
    """The names of the templates ``app`` renders meanwhile."""
    names: list[str] = []

    def record(_sender, template, context, **_extra):
        names.append(template.name)

    template_rendered.connect(record, app)
    try:
        yield names
    finally:
        template_rendered.disconnect(record, app)


@contextmanager
def statements(engine):
    """The SQL statements run on ``engine`` meanwhile (transaction control left out)."""
    executed: list[str] = []

    def record(_conn, _cursor, statement, _parameters, _context, _executemany):
        if not statement.lstrip().upper().startswith(TRANSACTION_CONTROL):
            executed.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield executed
    finally:
        event.remove(engine, "before_cursor_execute", record)


def engine_of(app):
    return app.extensions["prefcenter.db"].engine


def scanner_paths(links, subscriber, locale: str) -> list[str]:
    """Links that name ``locale`` (in the token or with ``?lang=``)."""
    return [
        links.unsubscribe(subscriber, topic="offers", campaign="spring", locale=locale),
        links.unsubscribe(subscriber) + f"?lang={locale}",
        links.preferences(subscriber, locale=locale),
        links.preferences(subscriber) + f"?lang={locale}",
    ]


# --- GET and HEAD change nothing, in every locale ---------------------------------------------

@pytest.mark.parametrize("locale", LOCALES)
def test_get_and_head_of_both_pages_change_nothing_in_every_locale(app, client, catalogue,
                                                                  links, session, locale):
    subscriber = catalogue.subscriber(locale=locale)
    other = catalogue.subscriber(locale="en", role="developer")
    change(session, other, context=Context(source="system"), unsubscribed_all=True, allowed={})
    session.commit()
    before = state(session)
    paths = [*scanner_paths(links, subscriber, locale), *scanner_paths(links, other, locale),
             # no locale in the link: the subscriber's, before Accept-Language
             links.unsubscribe(subscriber), links.preferences(subscriber)]
    for path in paths:
        for _ in range(2):
            page = client.get(path, headers={"Accept-Language": "ru, en;q=0.5"})
            assert page.status_code == 200, path
            assert f'<html lang="{locale}"' in page.get_data(as_text=True), path
            assert page.headers["Cache-Control"] == "no-store"
            head = client.head(path)
            assert head.status_code == 200, path
            assert head.get_data() == b""
    assert state(session) == before


def test_expired_unsubscribe_links_are_shown_and_change_nothing(client, catalogue, session):
    subscriber = catalogue.subscriber()
    path = "/u/" + minted_401_days_ago(UNSUBSCRIBE, subscriber, topic="offers")
    before = state(session)
    page = client.get(path)
    assert page.status_code == 200 and "from Offers" in page.get_data(as_text=True)
    assert client.head(path).status_code == 200
    assert state(session) == before


# --- HEAD renders nothing -----------------------------------------------------------------------

def test_head_renders_no_template_and_sets_no_cookie(app, client, catalogue, links):
    subscriber = catalogue.subscriber()
    for path in (links.unsubscribe(subscriber, topic="offers"), links.preferences(subscriber)):
        with rendered(app) as names:
            head = client.head(path)
        assert head.status_code == 200
        assert names == []
        assert head.get_data() == b""
        assert head.mimetype == "text/html"
        assert head.headers["Cache-Control"] == "no-store"
        assert "Content-Security-Policy" in head.headers
        assert "Set-Cookie" not in head.headers
        with rendered(app) as names:
            get = client.get(path)
        assert get.status_code == 200 and len(names) == 1


def test_head_of_a_bad_link_answers_its_status_without_a_page(app, client, catalogue, links,
                                                             session):
    subscriber = catalogue.subscriber()
    revoked_u = links.unsubscribe(subscriber)
    revoked_p = links.preferences(subscriber)
    subscriber.link_epoch += 1
    session.commit()
    for path, status in (("/u/not-a-token", 400), ("/p/not-a-token", 400),
                         (revoked_u, 410), (revoked_p, 410)):
        with rendered(app) as names:
            head = client.head(path)
        assert head.status_code == status, path
        assert names == [] and head.get_data() == b""
        assert client.get(path).status_code == status


# --- one statement per page ---------------------------------------------------------------------

def test_a_page_is_one_statement_once_the_catalogue_is_cached(app, client, catalogue, links):
    subscriber = catalogue.subscriber()
    paths = [links.unsubscribe(subscriber, topic="offers"), links.unsubscribe(subscriber),
             links.preferences(subscriber)]
    for path in paths:
        client.get(path)
    for path in paths:
        for method in (client.get, client.head):
            with statements(engine_of(app)) as executed:
                assert method(path).status_code == 200
            assert len(executed) == 1, executed
            assert "catalogue_versions" in executed[0]


# --- the catalogue cache ------------------------------------------------------------------------

def test_catalogue_changes_bump_the_version_and_other_writes_do_not(app, catalogue, session):
    def version():
        return session.scalar(select(CatalogueVersion.version))

    start = version()
    subscriber = catalogue.subscriber()
    change(session, subscriber, context=Context(source="system"),
           topics={"offers": TopicChoice(subscribed=False)},
           allowed={"offers": session.scalar(select(Topic).where(Topic.slug == "offers"))})
    session.commit()
    assert version() == start  # a subscriber's change is not a catalogue change
    offers = session.scalar(select(Topic).where(Topic.slug == "offers"))
    offers.position = offers.position  # set, but unchanged
    session.commit()
    assert version() == start
    offers.archived = True
    session.commit()
    assert version() == start + 1
    offers.translations[0].name = "Deals"
    session.commit()
    assert version() == start + 2


def test_the_cached_catalogue_is_kept_until_the_version_moves(app, client, catalogue, links,
                                                             session):
    subscriber = catalogue.subscriber()
    path = links.preferences(subscriber)
    assert "Offers" in client.get(path).get_data(as_text=True)
    cache = app.extensions["prefcenter.catalogue"]
    cached = cache.current
    client.get(links.unsubscribe(subscriber))
    assert cache.current is cached
    offers = session.scalar(select(Topic).where(Topic.slug == "offers"))
    next(t for t in offers.translations if t.locale == "en").name = "Deals"
    session.commit()
    page = client.get(path).get_data(as_text=True)
    assert "Deals" in page and ">Offers<" not in page
    assert cache.current is not cached
    assert cache.current.version == session.scalar(select(CatalogueVersion.version))
    with app.test_request_context():
        assert get_catalogue(session).topic("offers").names["en"] == "Deals"


@pytest.mark.parametrize("app_config", [dict(FAST_HASH)])
def test_an_admin_change_on_one_instance_is_seen_at_once_by_another(live_app, live_session,
                                                                     live_catalogue,
                                                                     database_url):
    """Two app instances on one database: the admin edits through one, the pages of the
    other show the change on their next request."""
    admin_app = live_app
    create_admin(live_session, EMAIL, "correct horse battery staple", admin_app)
    live_session.commit()
    pages_app = create_app(make_config(database_url))
    try:
        subscriber = live_catalogue.subscriber(role="shopper")
        links = Links(pages_app)
        pages = pages_app.test_client()
        preferences = links.preferences(subscriber)
        unsubscribe = links.unsubscribe(subscriber, topic="offers")
        page = pages.get(preferences).get_data(as_text=True)
        assert "Offers" in page and "Special offers" not in page
        assert "Our user forum" not in page
        cached = pages_app.extensions["prefcenter.catalogue"].current

        admin = admin_app.test_client()
        assert login(admin).status_code == 303
        offers = live_session.scalar(select(Topic).where(Topic.slug == "offers"))
        edited = post(admin, f"/admin/topics/{offers.id}", slug="offers", kind="marketing",
                      frequencies=["weekly", "monthly"], default_frequency="weekly",
                      channels=["email"], name_en="Special offers", name_ar="عروض خاصة",
                      name_ru="Спецпредложения", name_ms="Tawaran istimewa")
        assert edited.status_code == 303
        page = pages.get(preferences).get_data(as_text=True)
        assert "Special offers" in page
        assert pages_app.extensions["prefcenter.catalogue"].current is not cached
        assert "Special offers" in pages.get(unsubscribe).get_data(as_text=True)
        assert "عروض خاصة" in pages.get(preferences + "?lang=ar").get_data(as_text=True)

        created = post(admin, "/admin/follow-links/new", url="https://forum.example.com/",
                       role="0", name_en="Our user forum")
        assert created.status_code == 303
        assert "Our user forum" in pages.get(preferences).get_data(as_text=True)

        alerts = live_session.scalar(select(Topic).where(Topic.slug == "alerts"))
        assert "Alerts" in pages.get(preferences).get_data(as_text=True)
        assert post(admin, f"/admin/topics/{alerts.id}/archive").status_code == 303
        html = pages.get(preferences).get_data(as_text=True)
        assert not re.search(r">\s*Alerts\s*<", html)
    finally:
        engine_of(pages_app).dispose()


# --- scanners cannot use up the one-clicks ------------------------------------------------------

@pytest.mark.parametrize("app_config", [{
    "RATELIMIT_ENABLED": True, "RATELIMIT_PUBLIC": "3 per minute",
    "RATELIMIT_ONE_CLICK": "2 per minute",
}])
def test_page_views_and_one_clicks_of_one_client_have_separate_limits(app, catalogue, links,
                                                                       session):
    """A scanner and a mailbox provider behind one address: the scanner's page views run
    out of their limit (and a refused view reads nothing), the one-clicks keep theirs."""
    first, second, third = (catalogue.subscriber() for _ in range(3))
    client = app.test_client()
    path = links.unsubscribe(first, topic="offers")
    statuses = [client.get(path).status_code for _ in range(3)]
    statuses.append(client.head(path).status_code)
    assert statuses == [200, 200, 200, 429]
    with statements(engine_of(app)) as executed:
        assert client.get(path).status_code == 429
    assert executed == []
    # The one-clicks of the same address are counted apart, against their own limit.
    clicks = [client.post(links.unsubscribe(s), data=ONE_CLICK).status_code
              for s in (first, second, third)]
    assert clicks == [200, 200, 429]
    session.expire_all()
    assert [session.get(Subscriber, s.id).unsubscribed_all
            for s in (first, second, third)] == [True, True, False]
    # ... and used none of the page views: the preference pages still have all of theirs.
    views = [client.get(links.preferences(s)).status_code for s in (first, second, third)]
    assert views == [200, 200, 200]
    assert client.get(links.preferences(first)).status_code == 429


@pytest.mark.parametrize("app_config", [{"RATELIMIT_ENABLED": True,
                                         "RATELIMIT_PUBLIC": "1000 per minute"}])
def test_in_memory_limits_start_no_thread_per_request(app, catalogue, links, monkeypatch):
    """limits' memory storage starts a timer thread 10 ms after a hit whenever the last
    one has run, and the request waits for it to start: ours sweeps from one thread."""
    assert isinstance(limiter.storage, SweptMemoryStorage)
    started = []
    start = threading.Thread.start

    def counted(thread):
        started.append(thread.name)
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", counted)
    subscriber = catalogue.subscriber()
    client = app.test_client()
    for _ in range(5):
        assert client.get(links.unsubscribe(subscriber)).status_code == 200
        time.sleep(0.02)
    assert len(started) <= 1, started
    # Counters still expire: a spent window is forgotten by the next read.
    key = "sweep-test"
    limiter.storage.incr(key, 0.05)
    time.sleep(0.1)
    assert limiter.storage.get(key) == 0
