"""The daily counts behind the admin insights (``event_counts``), kept by the database.

A trigger on ``events`` adds each counted event to its day's row as the event is inserted,
in the inserting transaction, whichever code path inserts it (the events code, the one-click
fast path, a server-side function). So the counts are right as events arrive, roll back with
them, and the insights read a few thousand rows instead of millions of events.

The classification (which actions count, as what, with which value) is written once here, as
SQL expressions over an event row, and used by both the trigger and :func:`rebuild`.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Connection

from app.events.models import COUNTED_ACTIONS

TRIGGER = "events_count_daily"
FUNCTION = "prefcenter_count_event"
COLUMNS = "day, kind, topic, campaign, source, reason, value, count"
KEY = "day, kind, topic, campaign, source, reason, value"

# Pause lengths, in days, and the name of each bucket (the page offers 2 weeks, 1 and 3 months).
PAUSE_BUCKETS = ((20, "2w"), (45, "1m"), (100, "3m"))


def _in_list() -> str:
    return ", ".join(f"'{action}'" for action in COUNTED_ACTIONS)


def _kind(row: str) -> str:
    whens = " ".join(f"WHEN '{action}' THEN '{kind}'" for action, kind in COUNTED_ACTIONS.items())
    return f"CASE {row}action {whens} END"


def expressions(dialect: str, row: str) -> dict[str, str]:
    """SQL for each rollup column from an event row (``row`` is ``NEW.`` or ``e.``)."""
    if dialect == "postgresql":
        day = f"({row}created_at AT TIME ZONE 'UTC')::date"
        after = f"({row}after ->> 'value')"
        days = (f"(EXTRACT(EPOCH FROM (({row}after ->> 'value')::timestamptz - {row}created_at))"
                " / 86400.0)")
    else:
        day = f"date({row}created_at)"
        after = f"json_extract({row}after, '$.value')"
        days = f"(julianday(json_extract({row}after, '$.value')) - julianday({row}created_at))"
    buckets = " ".join(f"WHEN {days} <= {limit} THEN '{name}'" for limit, name in PAUSE_BUCKETS)
    value = (f"CASE {row}action WHEN 'topic.frequency' THEN COALESCE({after}, '') "
             f"WHEN 'paused' THEN (CASE WHEN {after} IS NULL THEN '' {buckets} "
             "ELSE 'longer' END) ELSE '' END")
    return {
        "day": day,
        "kind": _kind(row),
        "topic": f"COALESCE({row}topic, '')",
        "campaign": f"COALESCE({row}campaign, '')",
        "source": f"{row}source",
        "reason": f"COALESCE({row}reason, '')",
        "value": value,
    }


def _upsert(dialect: str) -> str:
    values = ", ".join(expressions(dialect, "NEW.").values())
    return (f"INSERT INTO event_counts ({COLUMNS}) VALUES ({values}, 1) "
            f"ON CONFLICT ({KEY}) DO UPDATE SET count = count + 1;")


def _counted(dialect: str, table: str) -> str:
    """SELECT the rollup rows (with their counts) of the events in ``table``."""
    exprs = expressions(dialect, "e.")
    group = ", ".join(str(i) for i in range(1, len(exprs) + 1))
    return (f"SELECT {', '.join(exprs.values())}, COUNT(*) FROM {table} e "
            f"WHERE e.action IN ({_in_list()}) GROUP BY {group}")


def create_trigger_sql(dialect: str) -> list[str]:
    """The statements that make the trigger (migration 20261202_18_insights).

    PostgreSQL: a statement-level trigger over the statement's new rows (a transition
    table), so a bulk insert (an import, a batch) adds each rollup row once, not once per
    event. SQLite has no statement-level triggers: one per counted row."""
    if dialect == "postgresql":
        return [
            f"CREATE FUNCTION {FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
            f"BEGIN\n    INSERT INTO event_counts ({COLUMNS}) "
            f"{_counted(dialect, 'new_events')} ON CONFLICT ({KEY}) "
            "DO UPDATE SET count = event_counts.count + EXCLUDED.count;\n"
            "    RETURN NULL;\nEND;\n$$",
            f"CREATE TRIGGER {TRIGGER} AFTER INSERT ON events REFERENCING NEW TABLE AS "
            f"new_events FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTION}()",
        ]
    return [
        f"CREATE TRIGGER {TRIGGER} AFTER INSERT ON events FOR EACH ROW "
        f"WHEN NEW.action IN ({_in_list()}) BEGIN {_upsert(dialect)} END",
    ]


def drop_trigger_sql(dialect: str) -> list[str]:
    """The statements that remove the trigger (and its function)."""
    if dialect == "postgresql":
        return [f"DROP TRIGGER IF EXISTS {TRIGGER} ON events",
                f"DROP FUNCTION IF EXISTS {FUNCTION}()"]
    return [f"DROP TRIGGER IF EXISTS {TRIGGER}"]


def backfill_sql(dialect: str) -> str:
    """Count every event already in ``events`` (into an empty ``event_counts``)."""
    return f"INSERT INTO event_counts ({COLUMNS}) {_counted(dialect, 'events')}"


def rebuild(connection: Connection) -> None:
    """Count every event again from scratch (after a bulk load with the trigger off)."""
    connection.execute(text("DELETE FROM event_counts"))
    connection.execute(text(backfill_sql(connection.dialect.name)))
