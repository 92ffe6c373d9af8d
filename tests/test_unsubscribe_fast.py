"""The one unsubscribe rule, as the RFC 8058 one-click runs it.

:func:`app.unsubscribe.services.unsubscribe_by_link` answers a repeat from one unlocked read
and otherwise applies :func:`app.subscribers.services.unsubscribe` (the rule every path uses)
under the subscriber's lock, committed before it returns. These tests state what it writes:
the events (every column), their payload (the subscriber as it now is), the outbox rows of
the endpoints that want them, and the subscriber's resulting state, on both databases.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from app import create_app
from app.events.models import Event
from app.links.services import (
    UNSUBSCRIBE,
    LinkClaims,
    RevokedLink,
    UnknownSubscriber,
    get_signer,
)
from app.subscribers.models import Subscriber
from app.subscribers.services import Context, change, erase, snapshot
from app.topics.models import Topic
from app.unsubscribe.services import in_force, unsubscribe_by_link
from app.webhooks.models import WebhookDelivery
from app.webhooks.services import create_endpoint, disable_endpoint
from tests.conftest import make_config

CONTEXT = Context(source="one_click", token_id="0123456789abcdef", campaign="spring")


def claims_for(subscriber, topic: str | None) -> LinkClaims:
    return LinkClaims(UNSUBSCRIBE, subscriber.public_id, subscriber.link_epoch, topic,
                      CONTEXT.campaign, None, CONTEXT.token_id)


def arrange(session, catalogue, *, unsubscribed_all: bool = False):
    subscriber = catalogue.subscriber()
    if unsubscribed_all:
        change(session, subscriber, context=Context(source="system"), unsubscribed_all=True,
               allowed={})
        session.commit()
    return subscriber


def click(session, subscriber, topic: str | None) -> int:
    return len(unsubscribe_by_link(session, claims_for(subscriber, topic), context=CONTEXT))


def recorded(session, subscriber) -> list[dict]:
    """The one-click events, each with its outbox rows, comparable across subscribers."""
    session.expire_all()
    fresh = session.get(Subscriber, subscriber.id)
    events = session.scalars(
        select(Event).where(Event.subscriber_id == subscriber.id, Event.source == "one_click")
        .order_by(Event.id)).all()
    out = []
    for event in events:
        payload = dict(event.payload)
        shown = dict(payload["subscriber"])
        assert shown["email"] == fresh.email
        assert shown["external_id"] == fresh.external_id
        assert shown["updated_at"] == fresh.updated_at.isoformat().replace("+00:00", "Z")
        assert shown == snapshot(fresh)  # the payload is the subscriber as it now is
        for key in ("email", "external_id", "updated_at"):
            shown.pop(key)
        payload["subscriber"] = shown
        assert event.created_at >= fresh.updated_at
        deliveries = session.scalars(
            select(WebhookDelivery).where(WebhookDelivery.event_id == event.id)
            .order_by(WebhookDelivery.endpoint_id)).all()
        out.append({
            "columns": (event.type, event.action, event.topic, event.before, event.after,
                        event.source, event.actor, event.token_id, event.campaign,
                        event.version),
            "payload": payload,
            "outbox": [
                (d.endpoint_id, d.subscriber_id == subscriber.id, d.status, d.attempts,
                 d.next_attempt_at == event.created_at, d.claimed_until, d.claimed_by,
                 d.last_attempt_at, d.delivered_at)
                for d in deliveries
            ],
        })
    return out


def state_of(session, subscriber) -> tuple:
    session.expire_all()
    fresh = session.get(Subscriber, subscriber.id)
    return (fresh.version, fresh.unsubscribed_all,
            {s.topic.slug: (s.subscribed, s.frequency) for s in fresh.subscriptions})


def with_endpoints(session) -> None:
    create_endpoint(session, "https://crm.example.com/all")
    create_endpoint(session, "https://crm.example.com/unsubscribes",
                    events=["subscriber.unsubscribed"])
    create_endpoint(session, "https://crm.example.com/updates", events=["subscriber.updated"])
    off, _ = create_endpoint(session, "https://crm.example.com/off")
    disable_endpoint(session, off)
    session.commit()


CASES = [
    # token topic, master switch already on, the change expected (None: a repeat)
    ("offers", False, ("topic.unsubscribed", "offers", True, False)),  # a subscribed topic
    ("offers", True, ("topic.unsubscribed", "offers", True, False)),  # still goes off
    (None, False, ("unsubscribed_all", None, False, True)),  # no topic: all marketing
    ("receipts", False, ("unsubscribed_all", None, False, True)),  # transactional: all
    ("no-such-topic", False, ("unsubscribed_all", None, False, True)),  # unknown: all
    ("alerts", False, None),  # already off: a repeat
    (None, True, None),  # already unsubscribed from everything
    ("receipts", True, None),
]


@pytest.mark.parametrize("endpoints", [False, True], ids=["no-endpoints", "endpoints"])
@pytest.mark.parametrize(("topic", "already", "expected"), CASES)
def test_one_click_writes_one_event_its_payload_and_outbox(app, session, catalogue, topic,
                                                           already, expected, endpoints):
    if endpoints:
        with_endpoints(session)
    subscriber = arrange(session, catalogue, unsubscribed_all=already)
    before = state_of(session, subscriber)
    assert in_force(session, claims_for(subscriber, topic)) is (expected is None)
    session.rollback()

    assert click(session, subscriber, topic) == (0 if expected is None else 1)

    events = recorded(session, subscriber)
    version, unsubscribed_all, topics = state_of(session, subscriber)
    if expected is None:
        assert events == []
        assert state_of(session, subscriber) == before
    else:
        action, changed, was, now = expected
        [event] = events
        assert event["columns"] == ("subscriber.unsubscribed", action, changed, {"value": was},
                                    {"value": now}, "one_click", None, CONTEXT.token_id,
                                    CONTEXT.campaign, before[0] + 1)
        assert event["payload"]["changes"] == [
            {"action": action, "topic": changed, "before": was, "after": now}]
        assert event["payload"]["source"] == "one_click"
        assert version == before[0] + 1
        assert unsubscribed_all is (changed is None or already)
        expected_topics = dict(before[2])
        if changed is not None:
            expected_topics[changed] = (False, before[2][changed][1])
        assert topics == expected_topics
        # "all" and "unsubscribes" want subscriber.unsubscribed; "updates" and "off" do not.
        assert [d[0] for d in event["outbox"]] == (
            sorted(wanted(session)) if endpoints else [])
        assert all(d[1:] == (True, "pending", 0, True, None, None, None, None)
                   for d in event["outbox"])
    # Now it is in force, and a second click changes nothing.
    assert in_force(session, claims_for(subscriber, topic))
    session.rollback()
    assert click(session, subscriber, topic) == 0
    assert recorded(session, subscriber) == events


def wanted(session) -> list[str]:
    from app.webhooks.models import WebhookEndpoint

    return [e.id for e in session.scalars(select(WebhookEndpoint)).all()
            if e.url.endswith(("/all", "/unsubscribes"))]


@pytest.mark.parametrize("topic", ["alerts", None])
def test_phone_channels_and_pause_are_in_the_one_clicks_snapshot(app, session, catalogue,
                                                                  topic):
    """The payload carries the phone, each topic's channels and the pause (to the second,
    in UTC with a Z): the snapshot() of every other path."""
    import datetime as dt

    from app.subscribers.services import TopicChoice

    subscriber = arrange(session, catalogue)
    until = dt.datetime(2031, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
    change(session, subscriber, context=Context(source="system"), phone="+60123456789",
           paused_until=until,
           topics={"alerts": TopicChoice(subscribed=True, channels=("email", "sms"))})
    session.commit()
    assert click(session, subscriber, topic) == 1
    [event] = recorded(session, subscriber)
    shown = event["payload"]["subscriber"]
    assert shown["phone"] == "+60123456789"
    assert shown["paused_until"] == "2031-05-06T07:08:09Z"
    assert shown["topics"]["alerts"]["channels"] == ["email", "sms"]
    assert shown["topics"]["offers"]["channels"] == ["email"]


def test_a_topic_never_subscribed_is_in_force_and_nothing_is_written(app, session, catalogue):
    subscriber = catalogue.subscriber()  # a shopper has no "tips" subscription at all
    assert session.scalar(select(Topic.kind).where(Topic.slug == "tips")) == "marketing"
    before = state_of(session, subscriber)
    assert in_force(session, claims_for(subscriber, "tips"))
    session.rollback()
    assert click(session, subscriber, "tips") == 0
    assert state_of(session, subscriber) == before
    assert recorded(session, subscriber) == []


def test_revoked_erased_and_unknown_links_are_refused(app, session, catalogue):
    subscriber = catalogue.subscriber()
    old = claims_for(subscriber, "offers")
    subscriber.link_epoch += 1
    session.commit()
    checks = (in_force, lambda s, claims: unsubscribe_by_link(s, claims, context=CONTEXT))
    for check in checks:
        with pytest.raises(RevokedLink):
            check(session, old)
        session.rollback()
    current = claims_for(subscriber, "offers")
    erase(session, subscriber, context=Context(source="system"))
    session.commit()
    ghost = LinkClaims(UNSUBSCRIBE, "no-such-public-id", 0, None, None, None, "x")
    for claims in (current, ghost):
        for check in checks:
            with pytest.raises(UnknownSubscriber):
                check(session, claims)
            session.rollback()
    assert recorded(session, subscriber) == []


def test_one_clicks_on_a_real_engine_commit_before_the_answer(
        live_app, live_catalogue, live_links, live_session):
    """Through a real engine (no test transaction): each 200 is committed, once."""
    subscriber = live_catalogue.subscriber()
    path = live_links.unsubscribe(subscriber, topic="offers")
    client = live_app.test_client()
    one_click = {"List-Unsubscribe": "One-Click"}
    assert client.post(path, data=one_click).status_code == 200
    # Another connection sees it at once: committed before the answer.
    assert len(recorded(live_session, subscriber)) == 1
    live_session.commit()
    statuses = [client.post(path, data=one_click).status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
    assert len(recorded(live_session, subscriber)) == 1
    live_session.close()
    engine = live_app.extensions["prefcenter.db"].engine
    assert engine.pool.checkedout() == 0  # every session of the one-clicks was closed
    revoked = live_links.unsubscribe(subscriber, topic="offers")
    live_session.get(Subscriber, subscriber.id).link_epoch += 1
    live_session.commit()
    assert client.post(revoked, data=one_click).status_code == 410
    erase(live_session, live_session.get(Subscriber, subscriber.id),
          context=Context(source="system"))
    live_session.commit()
    fresh = live_links.unsubscribe(live_session.get(Subscriber, subscriber.id))
    assert client.post(fresh, data=one_click).status_code == 404


def test_an_unreachable_database_answers_503_with_retry_after(database_url, tmp_path):
    """No server behind the URL (PostgreSQL: a closed port; SQLite: no such directory)."""
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        unreachable = url.set(host="127.0.0.1", port=1).render_as_string(hide_password=False)
    else:
        unreachable = f"sqlite:///{tmp_path / 'missing' / 'db.sqlite3'}"
    application = create_app(make_config(unreachable))
    try:
        token = get_signer(application).mint(UNSUBSCRIBE, "someone", topic="offers")
        response = application.test_client().post(
            f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
        assert response.status_code == 503, response.get_data(as_text=True)
        assert response.mimetype == "text/plain"
        assert int(response.headers["Retry-After"]) > 0
    finally:
        application.extensions["prefcenter.db"].engine.dispose()


def test_connections_that_died_in_the_pool_are_replaced_without_a_503(
        live_app, live_catalogue, live_links, live_session):
    """The server closed the pooled connections since their last use (a restart, an idle
    timeout): the next one-click finds out, takes a fresh connection and succeeds (SQLite:
    the statement fails and the work runs once more; PostgreSQL: the pool's ping)."""
    first, second = live_catalogue.subscriber(), live_catalogue.subscriber()
    live_session.commit()
    live_session.connection()  # its own connection, kept out of the ones to kill
    client = live_app.test_client()
    one_click = {"List-Unsubscribe": "One-Click"}
    assert client.post(live_links.unsubscribe(first), data=one_click).status_code == 200
    engine = live_app.extensions["prefcenter.db"].engine
    pooled = [engine.connect() for _ in range(engine.pool.checkedin())]
    assert pooled
    drivers = [conn.connection.driver_connection for conn in pooled]
    for conn in pooled:
        conn.close()
    if engine.dialect.name == "postgresql":
        live_session.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                  "WHERE pid = ANY(:pids)"),
                             {"pids": [d.info.backend_pid for d in drivers]})
        live_session.commit()
    else:
        for driver in drivers:
            driver.close()
    response = client.post(live_links.unsubscribe(second), data=one_click)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert [e["columns"][1] for e in recorded(live_session, second)] == ["unsubscribed_all"]
