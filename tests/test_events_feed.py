"""The change feed never skips an event, whatever order transactions commit in."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.api.auth import create_api_key
from app.subscribers.models import Subscriber
from app.subscribers.services import Context, change


def read_all(client, headers, cursor: str | None) -> tuple[list[dict], str]:
    seen = []
    while True:
        query = "/api/v1/events?limit=2" + (f"&after={cursor}" if cursor else "")
        page = client.get(query, headers=headers).get_json()
        seen += page["events"]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            return seen, cursor


def test_a_transaction_that_commits_late_is_not_skipped(live_app, live_session,
                                                        live_catalogue):
    """T1 writes first (lower event id) and commits last: the reader still gets it."""
    if live_session.get_bind().dialect.name != "postgresql":
        pytest.skip("SQLite runs one writer at a time: ids follow commits")
    first = live_catalogue.subscriber(external_id="late-1")
    second = live_catalogue.subscriber(external_id="early-2")
    _key, plain = create_api_key(live_session, "feed")
    live_session.commit()
    headers = {"Authorization": f"Bearer {plain}"}
    client = live_app.test_client()
    before, cursor = read_all(client, headers, None)
    assert {e["subscriber"] for e in before} == {"late-1", "early-2"}

    db = live_app.extensions["prefcenter.db"]
    late, early = db.sessionmaker(), db.sessionmaker()
    try:
        one = late.scalars(select(Subscriber).where(Subscriber.id == first.id)).one()
        [late_event] = change(late, one, context=Context(source="api"), locale="ru")
        late_id = late_event.id  # flushed: the row and its id exist, uncommitted
        two = early.scalars(select(Subscriber).where(Subscriber.id == second.id)).one()
        change(early, two, context=Context(source="api"), locale="ar")
        early.commit()
        seen, cursor = read_all(client, headers, cursor)
        assert [(e["subscriber"], e["after"]) for e in seen] == [("early-2", "ar")]
        assert late_id < seen[0]["id"]  # the id order and the commit order disagree
        late.commit()
    finally:
        late.close()
        early.close()
    seen, cursor = read_all(client, headers, cursor)
    assert [(e["subscriber"], e["after"]) for e in seen] == [("late-1", "ru")]
    assert seen[0]["id"] == late_id
    assert read_all(client, headers, cursor)[0] == []


def test_cursors_are_opaque_strings_that_resume(live_app, live_session, live_catalogue):
    for n in range(3):
        live_catalogue.subscriber(external_id=f"c-{n}")
    _key, plain = create_api_key(live_session, "feed")
    live_session.commit()
    headers = {"Authorization": f"Bearer {plain}"}
    client = live_app.test_client()
    everything, _cursor = read_all(client, headers, None)
    assert [e["subscriber"] for e in everything] == ["c-0", "c-1", "c-2"]
    first = client.get("/api/v1/events?limit=1", headers=headers).get_json()
    rest, _ = read_all(client, headers, first["next_cursor"])
    assert [e["subscriber"] for e in rest] == ["c-1", "c-2"]
    # An event id alone (what earlier versions handed out) resumes after that event.
    by_id, _ = read_all(client, headers, str(everything[0]["id"]))
    assert [e["subscriber"] for e in by_id] == ["c-1", "c-2"]
