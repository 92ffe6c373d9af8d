"""Due sends: who is due a topic on a channel now, recorded as sent in the same transaction.

A subscriber is due when their last send of the topic on the channel is at
least one period of their frequency ago (or there was none): daily 1 day,
weekly 7 days, biweekly 14 days, monthly one calendar month, quarterly three.
A grace (``PREFCENTER_SEND_GRACE``, one hour by default) keeps a send that runs
at the same time each week from missing subscribers sent a few seconds later
last week.

A send names a campaign. Each batch is read and recorded in one transaction
(``last_sends`` keeps, per subscriber, topic and channel, the time and the
campaign of the last send), so a retry of the same campaign finds its
recipients again: their last send is this campaign, and they are returned
again without being recorded twice. Sends of one topic and channel take turns
per batch (a transaction-level lock), so two campaigns racing never both get
the same subscriber.
"""

from __future__ import annotations

import datetime as dt
import json
import zlib
from collections.abc import Iterator

from sqlalchemy import bindparam, select, text
from sqlalchemy.orm import Session

from app.db import UTCDateTime
from app.sends.models import LastSend
from app.subscribers.recipients import BATCH, eligible, ndjson, without_suppressed
from app.subscribers.services import add_months
from app.topics.models import FREQUENCIES

# A frequency's period: (months, days).
PERIODS = {"daily": (0, 1), "weekly": (0, 7), "biweekly": (0, 14), "monthly": (1, 0),
           "quarterly": (3, 0)}
assert set(PERIODS) == set(FREQUENCIES)
DEFAULT_GRACE = dt.timedelta(hours=1)


def cutoffs(now: dt.datetime, grace: dt.timedelta = DEFAULT_GRACE) -> dict[str, dt.datetime]:
    """Per frequency, the latest last-send time that makes a subscriber due at ``now``."""
    return {frequency: add_months(now, -months) - dt.timedelta(days=days) + grace
            for frequency, (months, days) in PERIODS.items()}


# The last sends of one keyset page: a range of the primary key (topic, channel, subscriber).
_LAST = (
    select(LastSend.subscriber_id, LastSend.campaign, LastSend.sent_at)
    .where(LastSend.topic_id == bindparam("topic_id"), LastSend.channel == bindparam("channel"),
           LastSend.subscriber_id > bindparam("after"),
           LastSend.subscriber_id <= bindparam("last"))
)


def _due(rows, last: dict, campaign: str, cut: dict[str, dt.datetime]) -> list[tuple]:
    """``(row, again)`` for the rows due: never sent, sent this campaign (``again``), or
    last sent at least a period of their frequency ago."""
    due = []
    for row in rows:
        found = last.get(row.id)
        if found is None:
            due.append((row, False))
        elif found[0] == campaign:
            due.append((row, True))
        elif found[1] <= cut.get(row.frequency, cut["daily"]):
            due.append((row, False))
    return due


_RECORD = {
    "postgresql": (
        "INSERT INTO last_sends (topic_id, channel, subscriber_id, campaign, sent_at) "
        "SELECT :topic_id, :channel, id, :campaign, :now "
        "FROM unnest(CAST(:ids AS integer[])) AS id "
        "ON CONFLICT (topic_id, channel, subscriber_id) "
        "DO UPDATE SET campaign = excluded.campaign, sent_at = excluded.sent_at"
    ),
    "sqlite": (
        "INSERT INTO last_sends (topic_id, channel, subscriber_id, campaign, sent_at) "
        "SELECT :topic_id, :channel, value, :campaign, :now FROM json_each(:ids) WHERE true "
        "ON CONFLICT (topic_id, channel, subscriber_id) "
        "DO UPDATE SET campaign = excluded.campaign, sent_at = excluded.sent_at"
    ),
}


def _record(session: Session, ids: list[int], params: dict) -> None:
    """Record a send to ``ids``: one statement, the ids as one array parameter."""
    dialect = session.get_bind().dialect.name
    statement = text(_RECORD[dialect]).bindparams(bindparam("now", type_=UTCDateTime()))
    session.execute(statement, {**params, "ids": ids if dialect == "postgresql"
                                else json.dumps(ids)})


def _take_turn(session: Session, topic_id: int, channel: str) -> None:
    """Begin the batch's transaction holding the send lock of the topic and channel."""
    bind = session.get_bind()
    if bind.dialect.name == "sqlite":
        session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
    elif bind.dialect.name == "postgresql":
        # The commit need not wait for the WAL flush: a crash could forget the last batches
        # recorded, which only makes those subscribers due a little early, never skipped.
        session.execute(text("SET LOCAL synchronous_commit TO OFF"))
        session.execute(text("SELECT pg_advisory_xact_lock(:a, :b)"),
                        {"a": topic_id, "b": zlib.crc32(b"send:" + channel.encode()) >> 1})


def due_send_lines(session: Session, topic_id: int, channel: str, campaign: str, *,
                   now: dt.datetime, grace: dt.timedelta = DEFAULT_GRACE,
                   batch: int = BATCH) -> Iterator[str]:
    """NDJSON chunks (one per batch) of the recipients due ``topic_id`` on ``channel``,
    each batch recorded as sent (campaign ``campaign`` at ``now``) and committed before
    it is yielded: memory stays constant and nothing is returned that is not recorded."""
    query = eligible(channel, batch=batch)
    cut = cutoffs(now, grace)
    params = {"topic_id": topic_id, "channel": channel, "campaign": campaign, "now": now}
    after = 0
    while True:
        session.rollback()
        _take_turn(session, topic_id, channel)
        rows = session.execute(query, {**params, "after": after}).all()
        if not rows:
            session.commit()
            return
        last = {r.subscriber_id: (r.campaign, r.sent_at) for r in session.execute(
            _LAST, {**params, "after": after, "last": rows[-1].id})}
        due = _due(without_suppressed(session, rows), last, campaign, cut)
        fresh = [row.id for row, again in due if not again]
        if fresh:
            _record(session, fresh, params)
        session.commit()
        if due:
            yield ndjson([row for row, _again in due], channel)
        if len(rows) < batch:
            return
        after = rows[-1].id
