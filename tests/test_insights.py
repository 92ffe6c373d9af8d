"""Admin insights (issue 18): each figure through HTTP (the page and its CSV) against a known
data set made through the real paths (one-click, unsubscribe page with reason and undo, the
preference page, the API) plus events of earlier days; the daily counts kept by the database
trigger equal the same figures computed from the events. On the test database."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from sqlalchemy import select

from app.admin.services import create_admin
from app.api.auth import create_api_key
from app.db import utcnow
from app.events.insights import FIGURES, Query, figure
from app.events.models import EventCount
from app.events.rollup import rebuild
from app.events.services import record_event
from tests.conftest import csrf_from
from tests.test_admin import EMAIL, FAST_HASH, PASSWORD, login
from tests.test_unsubscribe import undo_data


@pytest.fixture
def app_config():
    return dict(FAST_HASH)


@pytest.fixture
def admin_client(app, session):
    create_admin(session, EMAIL, PASSWORD, app)
    session.commit()
    client = app.test_client()
    assert login(client).status_code == 303
    return client


def one_click(client, path):
    response = client.post(path, data="List-Unsubscribe=One-Click",
                           content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200


@pytest.fixture
def known(app, client, catalogue, links, session):
    """The data set; returns today (UTC)."""
    s1, s2, s3, s4 = (catalogue.subscriber() for _ in range(4))
    one_click(client, links.unsubscribe(s1, topic="offers", campaign="spring"))
    one_click(client, links.unsubscribe(s2, topic="offers", campaign="spring"))
    # The unsubscribe page, from all marketing, a reason, then undo.
    path = links.unsubscribe(s3, campaign="autumn")
    html = client.get(path).get_data(as_text=True)
    html = client.post(path, data={"confirm": "1", "csrf_token": csrf_from(html)}
                       ).get_data(as_text=True)
    assert client.post(path + "/reason", data={"csrf_token": csrf_from(html),
                                               "reason": "too_many"}).status_code == 200
    # Answering "why" changes no choice: the page's undo still reverses the unsubscribe.
    assert client.post(path + "/undo", data=undo_data(html)).status_code == 200
    # The preference page: a frequency, a pause of a month, then offers off with a reason.
    page = links.preferences(s4)
    token = csrf_from(client.get(page).get_data(as_text=True))
    base = {"csrf_token": token, "shown": "offers", "frequency-offers": "daily"}
    assert client.post(page, data={**base, "topic-offers": "on"}).status_code == 200
    assert client.post(page, data={**base, "topic-offers": "on", "action": "pause",
                                   "pause": "1m"}).status_code == 200
    assert client.post(page, data=base).status_code == 200
    assert client.post(page + "/reason", data={"csrf_token": token, "topic": "offers",
                                               "reason": "not_relevant"}).status_code == 200
    # The API: s1 leaves everything.
    _key, plain = create_api_key(session, "insights")
    session.commit()
    assert client.put(f"/api/v1/subscribers/{s1.external_id}",
                      headers={"Authorization": f"Bearer {plain}"},
                      json={"email": s1.email, "unsubscribed_all": True}).status_code == 200
    # Earlier days: three ESP complaints three days ago, one long before the range.
    now = utcnow()
    for days, count in ((3, 3), (200, 1)):
        for _ in range(count):
            event = record_event(session, s2, type="subscriber.unsubscribed",
                                 action="topic.unsubscribed", topic="news", source="esp",
                                 campaign="winter", reason="complaint", before=True,
                                 after=False)
            event.created_at = now - dt.timedelta(days=days)
    session.commit()
    return now.date()


def csv_of(client, name, **args):
    response = client.get(f"/admin/insights/{name}.csv", query_string=args)
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    return list(csv.reader(io.StringIO(response.get_data(as_text=True))))


def test_each_figure_through_http(admin_client, known):
    today = known
    args = {"from": (today - dt.timedelta(days=89)).isoformat(), "to": today.isoformat()}
    daily = csv_of(admin_client, "daily", **args)
    assert daily[0] == ["Day", "Unsubscribes", "Resubscribes"]
    assert len(daily) == 1 + 90
    by_day = {row[0]: (int(row[1]), int(row[2])) for row in daily[1:]}
    assert by_day[today.isoformat()] == (5, 1)
    assert by_day[(today - dt.timedelta(days=3)).isoformat()] == (3, 0)
    assert sum(u for u, _r in by_day.values()) == 8
    assert csv_of(admin_client, "topics", **args)[1:] == [
        ["News", "3", "0"], ["Offers", "3", "0"], ["All marketing", "2", "1"]]
    assert csv_of(admin_client, "campaigns", **args)[1:] == [
        ["winter", "3", "0"], ["(no campaign)", "2", "0"], ["spring", "2", "0"],
        ["autumn", "1", "1"]]
    assert sorted(csv_of(admin_client, "sources", **args)[1:]) == [
        ["api", "1", "0"], ["esp", "3", "0"], ["one_click", "2", "0"],
        ["preference_page", "1", "0"], ["unsubscribe_page", "1", "1"]]
    assert csv_of(admin_client, "reasons", **args) == [
        ["Reason", "Answers"], ["Not relevant to me", "1"], ["Too many emails", "1"]]
    assert csv_of(admin_client, "frequencies", **args) == [
        ["Topic", "How often", "Choices"], ["Offers", "Daily", "1"]]
    assert csv_of(admin_client, "pauses", **args) == [["Pause length", "Choices"],
                                                      ["1 month", "1"]]
    # The event 200 days ago is in a longer range.
    wide = {"from": (today - dt.timedelta(days=365)).isoformat(), "to": today.isoformat()}
    assert csv_of(admin_client, "topics", **wide)[1] == ["News", "4", "0"]
    # Filters narrow every figure.
    assert csv_of(admin_client, "campaigns", topic="offers", **args)[1:] == [
        ["spring", "2", "0"], ["(no campaign)", "1", "0"]]
    offers = csv_of(admin_client, "daily", topic="offers", **args)
    assert {row[0]: row[1] for row in offers[1:]}[today.isoformat()] == "3"
    spring = csv_of(admin_client, "sources", campaign="spring", **args)
    assert spring[1:] == [["one_click", "2", "0"]]


def test_the_page_shows_every_figure_as_svg_with_its_table(admin_client, known):
    response = admin_client.get("/admin/insights")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    for name in FIGURES:
        assert f'id="figure-{name}"' in html
        assert f"/admin/insights/{name}.csv" in html
    assert html.count('class="pygal-chart"') == len(FIGURES)
    assert "<script" not in html and "<style" not in html and ' style="' not in html
    assert "Content-Security-Policy" in response.headers
    assert "script-src" not in response.headers["Content-Security-Policy"]
    assert "<th scope=\"row\">Offers</th>" in html
    css = admin_client.get("/admin/insights/charts.css")
    assert css.status_code == 200 and css.mimetype == "text/css"
    assert ".pygal-chart .color-0" in css.get_data(as_text=True)


def test_bad_ranges_are_refused(admin_client):
    assert admin_client.get("/admin/insights?from=yesterday").status_code == 400
    assert admin_client.get("/admin/insights?from=2026-02-01&to=2026-01-01").status_code == 400
    assert admin_client.get("/admin/insights?from=2020-01-01&to=2026-01-01").status_code == 400
    assert admin_client.get("/admin/insights/nothing.csv").status_code == 404


def test_insights_need_an_admin(client):
    for path in ("/admin/insights", "/admin/insights/daily.csv", "/admin/insights/charts.css"):
        response = client.get(path)
        assert response.status_code in (302, 303) and "/admin/login" in response.location


def test_the_trigger_keeps_the_counts_equal_to_the_events(app, known, session):
    today = known
    query = Query(start=today - dt.timedelta(days=365), end=today)
    for name in FIGURES:
        assert figure(session, query, name) == figure(session, query, name, unrolled=True), name
    counted = sorted(tuple(getattr(c, k) for k in ("day", "kind", "topic", "campaign", "source",
                                                   "reason", "value", "count"))
                     for c in session.scalars(select(EventCount)))
    # Counting again from scratch gives the same rows.
    rebuild(session.connection())
    session.expire_all()
    again = sorted(tuple(getattr(c, k) for k in ("day", "kind", "topic", "campaign", "source",
                                                 "reason", "value", "count"))
                   for c in session.scalars(select(EventCount)))
    assert again == counted
    assert sum(row[-1] for row in counted) == 4 + 5 + 1 + 2 + 1 + 1


def test_a_rolled_back_change_is_not_counted(app, catalogue, session):
    subscriber = catalogue.subscriber()
    before = sum(c.count for c in session.scalars(select(EventCount)))
    record_event(session, subscriber, type="subscriber.unsubscribed",
                 action="unsubscribed_all", source="api", before=False, after=True)
    session.flush()
    assert sum(c.count for c in session.scalars(select(EventCount))) == before + 1
    session.rollback()
    assert sum(c.count for c in session.scalars(select(EventCount))) == before
