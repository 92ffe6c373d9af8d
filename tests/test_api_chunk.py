"""The upsert of a chunk at once: the PUT's rules, a few statements whatever the size."""

from __future__ import annotations

import pytest
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import event, func, select

from app.api.auth import create_api_key
from app.events.models import Event
from app.subscribers.models import Subscriber, Subscription
from app.subscribers.services import InvalidEmail, normalise_email
from app.webhooks.models import WebhookDelivery
from app.webhooks.services import create_endpoint


@pytest.fixture
def headers(session, catalogue):
    _key, plain = create_api_key(session, "crm")
    session.commit()
    return {"Authorization": f"Bearer {plain}"}


def batch(client, headers, items):
    answer = client.post("/api/v1/subscribers/batch", headers=headers, json={"items": items})
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()["items"]


def new_items(prefix: str, count: int) -> list[dict]:
    return [{"external_id": f"{prefix}-{n}", "email": f"{prefix}-{n}@example.com",
             "topics": {"offers": {"subscribed": True, "frequency": "monthly"},
                        "news": {"subscribed": False}}} for n in range(count)]


def writes_of(app, client, headers, items) -> list[str]:
    statements = []
    engine = app.extensions["prefcenter.db"].engine

    def count(conn, cursor, statement, *args):
        # The API key's last use is stamped at most once a minute, not the upsert's write.
        if statement.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE", "COPY")) \
                and "api_keys" not in statement:
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        assert {i["status"] for i in batch(client, headers, items)} <= {200, 201}
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return statements


def test_a_chunk_writes_once_per_table_whatever_its_size(app, client, session, headers):
    """Ten new subscribers or two hundred: the same statements (one per table written).
    COPY on PostgreSQL bypasses SQLAlchemy's statement events, so there only the
    subscribers' read-back and the events' endpoints read show; the counts still match."""
    few = writes_of(app, client, headers, new_items("few", 10))
    many = writes_of(app, client, headers, new_items("many", 200))
    assert len(few) == len(many), (few, many)
    assert session.scalar(select(func.count(Subscriber.id))) == 210
    assert session.scalar(select(func.count()).select_from(Subscription)) >= 420
    # Changing them is one UPDATE per table too.
    changed = [{**item, "locale": "ru"} for item in new_items("many", 200)]
    updates = writes_of(app, client, headers, changed)
    assert len([s for s in updates if s.lstrip().upper().startswith("UPDATE")]) == 1, updates
    locales = set(session.scalars(select(Subscriber.locale).where(
        Subscriber.external_id.like("many-%"))))
    assert locales == {"ru"}


def test_outbox_rows_name_their_own_events(client, session, headers):
    """Event ids taken in bulk are matched to the right events and subscribers."""
    create_endpoint(session, "https://audit.example/h")
    session.commit()
    batch(client, headers, new_items("o", 60))
    rows = session.execute(
        select(WebhookDelivery.subscriber_id, Event.subscriber_id, Event.payload,
               Subscriber.external_id)
        .join(Event, Event.id == WebhookDelivery.event_id)
        .join(Subscriber, Subscriber.id == Event.subscriber_id)).all()
    # created, offers subscribed (a shopper's default is off), offers' frequency
    assert len(rows) >= 60 * 2
    for delivery_subscriber, event_subscriber, payload, external_id in rows:
        assert delivery_subscriber == event_subscriber
        assert payload["subscriber"]["external_id"] == external_id
        assert payload["source"] == "import"


def test_payloads_show_the_subscriber_after_each_change(client, session, headers):
    [created] = batch(client, headers, new_items("p", 1))
    assert created["status"] == 201
    events = session.scalars(select(Event).join(Subscriber, Subscriber.id == Event.subscriber_id)
                             .where(Subscriber.external_id == "p-0").order_by(Event.id)).all()
    assert events[0].action == "created" and events[0].payload["subscriber"]["version"] == 1
    assert events[0].payload["changes"] == [{"action": "created", "topic": None,
                                             "before": None, "after": "p-0@example.com"}]
    later = events[1:]
    assert later and {e.version for e in later} == {2}
    assert all(e.payload["subscriber"]["topics"]["offers"]["frequency"] == "monthly"
               for e in later)
    assert events[0].before is None and events[0].after == {"value": "p-0@example.com"}


def test_one_address_twice_in_a_chunk_is_409_whatever_its_case(client, session, headers):
    items = batch(client, headers, [
        {"external_id": "case-1", "email": "Case.Person@Example.com"},
        {"external_id": "case-2", "email": "case.person@example.com"},
        {"external_id": "case-3", "email": "other@example.com"},
    ])
    assert [i["status"] for i in items] == [201, 409, 201]
    assert "case-1" in items[1]["detail"]
    assert session.scalar(select(Subscriber).where(Subscriber.external_id == "case-2")) is None


def test_a_later_item_sees_an_earlier_ones_change_of_address(client, session, headers):
    items = batch(client, headers, [
        {"external_id": "m-1", "email": "first@example.com"},
        {"external_id": "m-1", "email": "moved@example.com"},
        {"external_id": "m-2", "email": "first@example.com"},  # free again
        {"external_id": "m-3", "email": "moved@example.com"},  # taken by m-1
    ])
    assert [i["status"] for i in items] == [201, 200, 201, 409]
    emails = dict(session.execute(select(Subscriber.external_id, Subscriber.email)
                                  .where(Subscriber.external_id.like("m-%"))).all())
    assert emails == {"m-1": "moved@example.com", "m-2": "first@example.com"}


ADDRESSES = [
    "a@example.com", "A.B@Example.COM", "a..b@example.com", ".a@example.com", "a.@example.com",
    "a@localhost", "a@example", "a@-example.com", "a@exa_mple.com", "a@example.123",
    "x" * 64 + "@example.com", "x" * 65 + "@example.com", "a@" + "b" * 64 + ".com",
    "a@" + ("b" * 60 + ".") * 4 + "com", "a+tag@example.com", "a/b=c@example.com",
    "a@example.test", "a@example.invalid", "a@[127.0.0.1]", '"q"@example.com',
    "a b@example.com", "a@example.com ", "Name <a@example.com>", "a@example..com",
    "@example.com", "a@", "a@b@example.com", "a@sub.example.co.uk", "a@EXAMPLE.ORG.",
    "x" * 60 + "@" + ("b" * 60 + ".") * 3 + "com", "a@例え.jp", "é@example.com",
]


@pytest.mark.parametrize("raw", ADDRESSES)
def test_addresses_are_normalised_as_email_validator_does(raw):
    """The per-domain shortcut of normalise_email gives email_validator's answer."""
    try:
        result = validate_email(raw, check_deliverability=False).normalized
    except EmailNotValidError:
        with pytest.raises(InvalidEmail):
            normalise_email(raw)
        return
    local, _, domain = result.rpartition("@")
    assert normalise_email(raw) == f"{local}@{domain.lower()}"


def test_a_chunk_writes_the_address_key_the_policy_version_and_no_locale(app, client, session,
                                                                        headers):
    """What the ORM writes, the chunk writes too: ``email_key`` (created and changed), the
    policy version on every event, and no locale when the item gives none."""
    app.config["PRIVACY_POLICY_VERSION"] = "chunk-v9"
    assert [i["status"] for i in batch(client, headers, [
        {"external_id": "k-1", "email": "Mixed.Case@Example.COM",
         "topics": {"offers": {"subscribed": True}}}])] == [201]
    assert [i["status"] for i in batch(client, headers, [
        {"external_id": "k-1", "email": "Other.Case@Example.com"}])] == [200]
    session.expire_all()
    row = session.scalar(select(Subscriber).where(Subscriber.external_id == "k-1"))
    assert (row.email, row.email_key, row.locale) == (
        "Other.Case@example.com", "other.case@example.com", None)
    events = session.scalars(select(Event).where(Event.subscriber_id == row.id)).all()
    assert {e.action for e in events} >= {"created", "email.changed"}
    assert {e.policy_version for e in events} == {"chunk-v9"}
