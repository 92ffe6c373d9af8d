"""The admin insights' figures: unsubscribes and resubscribes per day, by topic, campaign,
source and reason; frequency and pause choices; the top campaigns by unsubscribes.

Read from the daily counts (``event_counts``, :mod:`app.events.rollup`), so a 90-day page
reads a few thousand rows whatever the size of the history. ``unrolled=True`` computes the
same figures from ``events`` itself (the benchmark's baseline, and the tests' cross-check).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import String, bindparam, case, column, func, select, text
from sqlalchemy.orm import Session

from app.db import UTCDateTime
from app.events.models import COUNTED_ACTIONS, EventCount
from app.events.rollup import expressions

FIGURES = ("daily", "topics", "campaigns", "sources", "reasons", "frequencies", "pauses")
TOP_CAMPAIGNS = 10
MAX_DAYS = 3 * 366
FILTERS = ("topic", "campaign", "source")


@dataclass(frozen=True)
class Query:
    """A day range (inclusive, UTC) and optional filters on topic, campaign, source."""

    start: dt.date
    end: dt.date
    filters: dict[str, str] = field(default_factory=dict)

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1


def _rows(session: Session, unrolled: bool):
    """A selectable of (day, kind, topic, campaign, source, reason, value, count)."""
    if not unrolled:
        return EventCount.__table__
    dialect = session.get_bind().dialect.name
    exprs = expressions(dialect, "e.")
    actions = ", ".join(f"'{a}'" for a in COUNTED_ACTIONS)
    sql = (f"SELECT {', '.join(f'{expr} AS {name}' for name, expr in exprs.items())}, "
           f"1 AS count FROM events e WHERE e.action IN ({actions}) "
           "AND e.created_at >= :since AND e.created_at < :until")
    names = [column(name, String) for name in exprs] + [column("count")]
    return (text(sql).bindparams(bindparam("since", type_=UTCDateTime()),
                                 bindparam("until", type_=UTCDateTime()))
            .columns(*names).subquery("counted"))


def _where(rows, query: Query, *kinds: str):
    conditions = [rows.c.day >= query.start, rows.c.day <= query.end]
    if len(kinds) == 1:
        conditions.append(rows.c.kind == kinds[0])
    else:
        conditions.append(rows.c.kind.in_(kinds))
    for name in FILTERS:
        if query.filters.get(name) is not None:
            conditions.append(rows.c[name] == query.filters[name])
    return conditions


def _params(query: Query, unrolled: bool) -> dict:
    if not unrolled:
        return {}
    since = dt.datetime.combine(query.start, dt.time(), tzinfo=dt.UTC)
    until = dt.datetime.combine(query.end + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    return {"since": since, "until": until}


def _by(session: Session, query: Query, dimension: str, *, unrolled: bool,
        limit: int | None = None) -> list[tuple[str, int, int]]:
    """(value of ``dimension``, unsubscribes, resubscribes), most unsubscribes first."""
    rows = _rows(session, unrolled)
    kind = rows.c.kind
    total = rows.c["count"]
    unsubscribes = func.sum(_case(kind == "unsubscribe", total))
    resubscribes = func.sum(_case(kind == "resubscribe", total))
    statement = (select(rows.c[dimension], unsubscribes, resubscribes)
                 .where(*_where(rows, query, "unsubscribe", "resubscribe"))
                 .group_by(rows.c[dimension])
                 .order_by(unsubscribes.desc(), rows.c[dimension]))
    if limit is not None:
        statement = statement.limit(limit)
    return [(value, int(u or 0), int(r or 0))
            for value, u, r in session.execute(statement, _params(query, unrolled))]


def _case(condition, value):
    return case((condition, value), else_=0)


def daily(session: Session, query: Query, *, unrolled: bool = False):
    """(day, unsubscribes, resubscribes) for every day of the range, zeros included."""
    found = {}
    for day, u, r in _by(session, query, "day", unrolled=unrolled):
        day = day if isinstance(day, dt.date) else dt.date.fromisoformat(str(day))
        found[day] = (u, r)
    return [(day, *found.get(day, (0, 0)))
            for day in (query.start + dt.timedelta(days=i) for i in range(query.days))]


def _counts(session: Session, query: Query, kind: str, dimensions: tuple[str, ...], *,
            unrolled: bool):
    rows = _rows(session, unrolled)
    total = func.sum(rows.c["count"])
    statement = (select(*(rows.c[d] for d in dimensions), total)
                 .where(*_where(rows, query, kind))
                 .group_by(*(rows.c[d] for d in dimensions))
                 .order_by(*(rows.c[d] for d in dimensions)))
    return [(*values[:-1], int(values[-1]))
            for values in session.execute(statement, _params(query, unrolled))]


def figure(session: Session, query: Query, name: str, *, unrolled: bool = False,
           top: int | None = None):
    """One figure (a name of :data:`FIGURES`); ``top`` limits ``campaigns`` to the most
    unsubscribed (the page's chart), without it every campaign (the CSV)."""
    if name == "daily":
        return daily(session, query, unrolled=unrolled)
    if name in ("topics", "sources"):
        return _by(session, query, name[:-1], unrolled=unrolled)
    if name == "campaigns":
        return _by(session, query, "campaign", unrolled=unrolled, limit=top)
    if name == "reasons":
        return _counts(session, query, "reason", ("reason",), unrolled=unrolled)
    if name == "frequencies":
        return _counts(session, query, "frequency", ("topic", "value"), unrolled=unrolled)
    if name == "pauses":
        return _counts(session, query, "pause", ("value",), unrolled=unrolled)
    raise KeyError(name)


def figures(session: Session, query: Query, *, unrolled: bool = False) -> dict:
    """Every figure of the insights page (:data:`FIGURES`), campaigns limited to the top."""
    return {name: figure(session, query, name, unrolled=unrolled, top=TOP_CAMPAIGNS)
            for name in FIGURES}
