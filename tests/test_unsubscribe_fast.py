"""One rule, two paths: the one-click path writes what the ORM ``unsubscribe()`` writes.

Each case unsubscribes two identical subscribers, one through
:func:`app.subscribers.services.unsubscribe` (the ORM rule every other caller uses) and one
through :func:`app.unsubscribe.services.one_click_unsubscribe` (on SQLite the in-process Core
statements, on PostgreSQL the server-side ``prefcenter_one_click()`` of migration 0002), and
compares the events (every column, the payload modulo the subscriber's own address, ids and
times), the outbox rows and the subscriber's resulting state.
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
from app.subscribers.services import Context, change, erase, snapshot, unsubscribe
from app.topics.models import Topic
from app.unsubscribe.services import one_click_in_force, one_click_unsubscribe
from app.webhooks.models import WebhookDelivery
from app.webhooks.services import create_endpoint, disable_endpoint
from tests.conftest import make_config

CONTEXT = Context(source="one_click", token_id="0123456789abcdef", campaign="spring")


def claims_for(subscriber, topic: str | None) -> LinkClaims:
    return LinkClaims(UNSUBSCRIBE, subscriber.public_id, subscriber.link_epoch, topic,
                      CONTEXT.campaign, None, CONTEXT.token_id)


def arrange(session, catalogue, *, unsubscribed_all: bool = False):
    pair = [catalogue.subscriber(), catalogue.subscriber()]
    if unsubscribed_all:
        for subscriber in pair:
            change(session, subscriber, context=Context(source="system"), unsubscribed_all=True,
                   allowed={})
        session.commit()
    return pair


def via_orm(session, subscriber, topic: str | None) -> None:
    unsubscribe(session, subscriber, topic, context=CONTEXT)
    session.commit()


def via_fast_path(session, subscriber, topic: str | None) -> int:
    count = one_click_unsubscribe(session.connection(), claims_for(subscriber, topic),
                                  context=CONTEXT)
    session.commit()
    return count


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
    # token topic, master switch already on, events expected
    ("offers", False, 1),      # a subscribed marketing topic
    ("offers", True, 1),       # the topic still goes off under the master switch
    (None, False, 1),          # no topic: all marketing
    ("receipts", False, 1),    # a transactional topic means all marketing
    ("no-such-topic", False, 1),  # so does an unknown one
    ("alerts", False, 0),      # already off: a repeat
    (None, True, 0),           # already unsubscribed from everything
    ("receipts", True, 0),
]


@pytest.mark.parametrize("endpoints", [False, True], ids=["no-endpoints", "endpoints"])
@pytest.mark.parametrize(("topic", "already", "expected"), CASES)
def test_fast_path_writes_what_the_orm_rule_writes(app, session, catalogue, topic, already,
                                                   expected, endpoints):
    if endpoints:
        with_endpoints(session)
    orm_subscriber, fast_subscriber = arrange(session, catalogue, unsubscribed_all=already)
    assert state_of(session, orm_subscriber)[1:] == state_of(session, fast_subscriber)[1:]
    before = state_of(session, fast_subscriber)
    assert one_click_in_force(session.connection(),
                              claims_for(fast_subscriber, topic)) is (expected == 0)
    session.rollback()

    via_orm(session, orm_subscriber, topic)
    assert via_fast_path(session, fast_subscriber, topic) == expected

    orm_events, fast_events = recorded(session, orm_subscriber), recorded(session, fast_subscriber)
    assert len(fast_events) == expected
    assert fast_events == orm_events
    if endpoints and expected:
        # "all" and "unsubscribes" want subscriber.unsubscribed; "updates" and "off" do not.
        assert len(fast_events[0]["outbox"]) == 2
    assert state_of(session, fast_subscriber) == state_of(session, orm_subscriber)
    if not expected:
        assert state_of(session, fast_subscriber) == before
    # Now it is in force, and a second click changes nothing.
    assert one_click_in_force(session.connection(), claims_for(fast_subscriber, topic))
    session.rollback()
    assert via_fast_path(session, fast_subscriber, topic) == 0
    assert recorded(session, fast_subscriber) == fast_events


@pytest.mark.parametrize("topic", ["alerts", None])
def test_phone_channels_and_pause_are_in_the_fast_paths_snapshot(app, session, catalogue,
                                                                  topic):
    """The snapshot written by each path carries the phone, each topic's channels and the
    pause (to the second, in UTC with a Z), as the ORM's snapshot() does."""
    import datetime as dt

    from app.subscribers.services import TopicChoice

    pair = arrange(session, catalogue)
    until = dt.datetime(2031, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
    for subscriber in pair:
        change(session, subscriber, context=Context(source="system"), phone="+60123456789",
               paused_until=until,
               topics={"alerts": TopicChoice(subscribed=True, channels=("email", "sms"))})
    session.commit()
    via_orm(session, pair[0], topic)
    assert via_fast_path(session, pair[1], topic) == 1
    orm_events, fast_events = recorded(session, pair[0]), recorded(session, pair[1])
    assert fast_events == orm_events
    shown = fast_events[0]["payload"]["subscriber"]
    assert shown["phone"] == "+60123456789"
    assert shown["paused_until"] == "2031-05-06T07:08:09Z"
    assert shown["topics"]["alerts"]["channels"] == ["email", "sms"]
    assert shown["topics"]["offers"]["channels"] == ["email"]


def test_a_topic_never_subscribed_is_in_force_and_nothing_is_written(app, session, catalogue):
    subscriber = catalogue.subscriber()  # a shopper has no "tips" subscription at all
    assert session.scalar(select(Topic.kind).where(Topic.slug == "tips")) == "marketing"
    before = state_of(session, subscriber)
    assert one_click_in_force(session.connection(), claims_for(subscriber, "tips"))
    session.rollback()
    assert via_fast_path(session, subscriber, "tips") == 0
    assert state_of(session, subscriber) == before
    assert recorded(session, subscriber) == []


def test_revoked_erased_and_unknown_are_refused_by_both_statements(app, session, catalogue):
    subscriber = catalogue.subscriber()
    old = claims_for(subscriber, "offers")
    subscriber.link_epoch += 1
    session.commit()
    for check in (one_click_in_force,
                  lambda conn, claims: one_click_unsubscribe(conn, claims, context=CONTEXT)):
        with pytest.raises(RevokedLink):
            check(session.connection(), old)
        session.rollback()
    current = claims_for(subscriber, "offers")
    erase(session, subscriber, context=Context(source="system"))
    session.commit()
    ghost = LinkClaims(UNSUBSCRIBE, "no-such-public-id", 0, None, None, None, "x")
    for claims in (current, ghost):
        for check in (one_click_in_force,
                      lambda conn, c: one_click_unsubscribe(conn, c, context=CONTEXT)):
            with pytest.raises(UnknownSubscriber):
                check(session.connection(), claims)
            session.rollback()


def test_on_the_engine_one_clicks_run_on_the_threads_own_connection(
        live_app, live_catalogue, live_links, live_session):
    """Through a real engine (no test transaction): a kept connection, outside the pool."""
    subscriber = live_catalogue.subscriber()
    path = live_links.unsubscribe(subscriber, topic="offers")
    client = live_app.test_client()
    one_click = {"List-Unsubscribe": "One-Click"}
    statuses = [client.post(path, data=one_click).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 200]
    db = live_app.extensions["prefcenter.db"]
    engine = db.engine
    kept = db.own_connections.kept()
    assert kept is not None
    if engine.dialect.name == "postgresql":
        assert kept.autocommit is True  # it sends its own BEGIN and COMMIT
        assert kept.info.transaction_status == 0  # idle: nothing left open
    else:
        assert kept.isolation_level is None and not kept.in_transaction
    live_session.close()
    pooled = [engine.connect() for _ in range(engine.pool.checkedin())]  # every pooled one
    assert pooled, engine.pool.status()
    for conn in pooled:
        driver = conn.connection.driver_connection
        assert driver is not kept
        if engine.dialect.name == "postgresql":
            assert driver.autocommit is False  # transactions still begin
        else:
            assert driver.isolation_level is None  # SQLAlchemy still decides when they begin
        conn.close()
    assert len(recorded(live_session, subscriber)) == 1
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


def test_a_kept_connection_that_died_is_replaced_without_a_503(
        live_app, live_catalogue, live_links, live_session):
    """The server closed the kept connection since its last use (a restart, an idle
    timeout): the next one-click finds out, opens a fresh one and succeeds."""
    first, second = live_catalogue.subscriber(), live_catalogue.subscriber()
    client = live_app.test_client()
    one_click = {"List-Unsubscribe": "One-Click"}
    assert client.post(live_links.unsubscribe(first), data=one_click).status_code == 200
    db = live_app.extensions["prefcenter.db"]
    kept = db.own_connections.kept()
    if db.engine.dialect.name == "postgresql":
        live_session.execute(text("SELECT pg_terminate_backend(:pid)"),
                             {"pid": kept.info.backend_pid})
        live_session.commit()
    else:
        kept.close()
    response = client.post(live_links.unsubscribe(second), data=one_click)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert db.own_connections.kept() is not kept
    assert [e["columns"][1] for e in recorded(live_session, second)] == ["unsubscribed_all"]
