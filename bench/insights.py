"""Benchmark: the admin insights page on a long history (PostgreSQL).

Not a test. It builds the database ``bench_insights`` (dropped and created on ``--pg-url``),
bulk-writes N events (default 10,000,000) spread over ``--days`` (730) days with the
triggers off (a mix like a real programme: unsubscribes by one-click and the pages, topic
switches, reasons, frequency and pause choices, locale and channel changes; about three new
campaigns a day), counts them into ``event_counts`` with ``rebuild()`` (what the trigger would
have done one by one), then, in the same run:

- checks the trigger: with it on, inserts more events and compares every figure read from the
  daily counts with the same figure computed from ``events`` (they must be equal);
- times ``GET /admin/insights`` for the last 90 days (every figure, the SVG charts and the
  tables; Flask's test client, a logged-in admin): the median of ``--repeat`` runs;
- times the figures' queries alone from the daily counts, and from ``events`` directly (the
  unrolled baseline, the same queries without the rollup);
- times inserting events with the trigger on and off (its cost per event).

    .venv/bin/python bench/insights.py                      # 10,000,000 events
    .venv/bin/python bench/insights.py --events 1000000     # quicker
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from app.events.insights import FIGURES, Query, figure  # noqa: E402
from app.events.rollup import TRIGGER, rebuild  # noqa: E402
from bench.recipients import PG_DEFAULT, fresh_database  # noqa: E402

SECRET = "bench-secret-key-0123456789"
CHUNK = 1_000_000
ADMIN, PASSWORD = "bench@example.com", "bench password 0123"

# One chunk of events: ids lo..hi, spread over :days days before :now.
EVENTS = """
WITH s AS (
    SELECT g, random() AS r, random() AS r2, random() AS r3, random() AS r4,
           floor(random() * :days)::int AS d
      FROM generate_series(:lo, :hi) AS g
), t AS (
    SELECT *, CAST(:now AS timestamptz) - make_interval(days => d, secs => r3 * 86399) AS at,
           CASE WHEN r < .30 THEN 'topic.unsubscribed' WHEN r < .38 THEN 'unsubscribed_all'
                WHEN r < .46 THEN 'topic.subscribed' WHEN r < .48 THEN 'resubscribed_all'
                WHEN r < .53 THEN 'unsubscribe.reason' WHEN r < .61 THEN 'topic.frequency'
                WHEN r < .64 THEN 'paused' WHEN r < .74 THEN 'topic.channels'
                WHEN r < .84 THEN 'locale' ELSE 'created' END AS action,
           CASE WHEN r2 < .45 THEN 'one_click' WHEN r2 < .60 THEN 'unsubscribe_page'
                WHEN r2 < .80 THEN 'preference_page' WHEN r2 < .90 THEN 'api'
                WHEN r2 < .95 THEN 'esp' WHEN r2 < .98 THEN 'import' ELSE 'admin' END AS src
      FROM s
)
INSERT INTO events (subscriber_id, type, action, topic, before, after, source, actor,
                    token_id, campaign, reason, policy_version, version, payload, created_at)
SELECT NULL,
       CASE WHEN action IN ('topic.unsubscribed', 'unsubscribed_all')
            THEN 'subscriber.unsubscribed'
            WHEN action = 'resubscribed_all' THEN 'subscriber.resubscribed'
            WHEN action = 'created' THEN 'subscriber.created' ELSE 'subscriber.updated' END,
       action,
       CASE WHEN action IN ('topic.unsubscribed', 'topic.subscribed', 'unsubscribe.reason',
                            'topic.frequency', 'topic.channels')
            THEN (ARRAY['offers', 'news', 'tips', 'alerts', 'events', 'webinars'])
                 [1 + floor(r4 * 6)::int] END,
       json_build_object('value', CASE WHEN action = 'topic.frequency' THEN 'weekly' END),
       json_build_object('value', CASE
            WHEN action = 'topic.frequency'
            THEN (ARRAY['daily', 'weekly', 'biweekly', 'monthly'])[1 + floor(r3 * 4)::int]
            WHEN action = 'paused'
            THEN to_char((at + make_interval(days => (ARRAY[14, 30, 91])[1 + floor(r4 * 3)::int]))
                         AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
            WHEN action = 'topic.unsubscribed' THEN 'false' END),
       CASE WHEN action = 'unsubscribe.reason' THEN 'unsubscribe_page' ELSE src END,
       NULL, md5(g::text)::varchar(32),
       CASE WHEN r4 < .75 THEN 'campaign-' || (d * 3 + floor(r3 * 3)::int) END,
       CASE WHEN action = 'unsubscribe.reason'
            THEN (ARRAY['too_many', 'not_relevant', 'never_signed_up', 'other'])
                 [1 + floor(r2 * 4)::int]
            WHEN src = 'esp' AND action IN ('topic.unsubscribed', 'unsubscribed_all')
            THEN 'complaint' END,
       'v3', 1 + (g % 40)::int,
       json_build_object('subscriber', json_build_object(
           'external_id', 'crm-' || (g % 1000003),
           'email', 'user' || (g % 1000003) || '@example.com',
           'locale', 'en', 'role', 'shopper', 'unsubscribed_all', false,
           'topics', json_build_object('offers', json_build_object(
               'subscribed', true, 'frequency', 'weekly', 'channels', json_build_array('email'))),
           'version', 1 + (g % 40)),
           'changes', json_build_array(json_build_object('action', action)), 'source', src),
       at
  FROM t
"""


def load(url: str, n: int, days: int, now: dt.datetime) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE events DISABLE TRIGGER USER"))
    started = time.perf_counter()
    for lo in range(1, n + 1, CHUNK):
        hi = min(n, lo + CHUNK - 1)
        with engine.begin() as conn:
            conn.execute(text(EVENTS), {"lo": lo, "hi": hi, "days": days, "now": now})
        print(f"  events {hi:>12,} written ({time.perf_counter() - started:.0f} s)", flush=True)
    started = time.perf_counter()
    with engine.begin() as conn:
        rebuild(conn)
        conn.execute(text("ALTER TABLE events ENABLE TRIGGER USER"))
    print(f"  counted into event_counts by rebuild() in {time.perf_counter() - started:.1f} s")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE events"))
        conn.execute(text("VACUUM ANALYZE event_counts"))
        rows = conn.scalar(text("SELECT count(*) FROM event_counts"))
        size = conn.scalar(text("SELECT pg_size_pretty(pg_total_relation_size('events'))"))
    print(f"  event_counts: {rows:,} rows; events: {size}")
    engine.dispose()


def timed(work, repeat: int) -> tuple[float, object]:
    """(median seconds, last result) of ``repeat`` runs."""
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def trigger_check(url: str, now: dt.datetime) -> None:
    """With the trigger on, more events arrive; the counts still equal the events."""
    engine = create_engine(url)
    with engine.begin() as conn:
        top = conn.scalar(text("SELECT max(id) FROM events"))
        conn.execute(text(EVENTS), {"lo": top + 1, "hi": top + 20_000, "days": 90, "now": now})
    query = Query(start=now.date() - dt.timedelta(days=89), end=now.date())
    with Session(engine) as session:
        for name in FIGURES:
            rolled = figure(session, query, name)
            unrolled = figure(session, query, name, unrolled=True)
            assert rolled == unrolled, f"{name}: the daily counts differ from the events"
    print("  trigger on: 20,000 more events, every 90-day figure from the daily counts equals "
          "the same figure from events")
    engine.dispose()


ONE = """
INSERT INTO events (subscriber_id, type, action, topic, before, after, source, token_id,
                    campaign, policy_version, version, payload, created_at)
VALUES (NULL, 'subscriber.unsubscribed', 'topic.unsubscribed', 'offers', '{"value": true}',
        '{"value": false}', 'one_click', md5(CAST(:i AS text)),
        'campaign-' || (CAST(:i AS int) % 5), 'v3', 2,
        CAST(:payload AS json), CAST(:at AS timestamptz))
"""
PAYLOAD = ('{"subscriber": {"external_id": "crm-1", "email": "user1@example.com", "locale": "en", '
           '"role": "shopper", "unsubscribed_all": false, "topics": {"offers": {"subscribed": '
           'false, "frequency": "weekly", "channels": ["email"]}}, "version": 2}, "changes": '
           '[{"action": "topic.unsubscribed", "topic": "offers", "before": true, "after": '
           'false}], "source": "one_click"}')


def trigger_cost(url: str, now: dt.datetime, rows: int = 100_000, single: int = 1000,
                 rounds: int = 3) -> None:
    """Insert time with the trigger on and off, in turns: ``rows`` events in one statement (an
    import; rolled back), and ``single`` transactions of one counted event each (one-clicks;
    dated ten years ahead, so outside any page, and deleted after)."""
    engine = create_engine(url)
    far = now + dt.timedelta(days=3650)
    bulk = {"DISABLE": [], "ENABLE": []}
    one = {"DISABLE": [], "ENABLE": [], "trigger": [], "insert": []}
    try:
        _measure(engine, far, rows, single, rounds, bulk, one)
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"ALTER TABLE events ENABLE TRIGGER {TRIGGER}"))
            conn.execute(text("DELETE FROM events WHERE created_at > CAST(:at AS timestamptz)"),
                         {"at": now + dt.timedelta(days=1000)})
            conn.execute(text("DELETE FROM event_counts WHERE day > :day"),
                         {"day": (now + dt.timedelta(days=1000)).date()})
    off, on = statistics.median(bulk["DISABLE"]), statistics.median(bulk["ENABLE"])
    print(f"  {rows:,} events in one statement (median of {rounds}): {off:.2f} s without the "
          f"trigger, {on:.2f} s with it ({(on - off) / rows * 1e6:+.1f} µs per event)")
    off, on = statistics.median(one["DISABLE"]), statistics.median(one["ENABLE"])
    print(f"  {single:,} transactions of one counted event (median of {rounds}): "
          f"{off / single * 1e3:.3f} ms each without the trigger, {on / single * 1e3:.3f} ms "
          "with it (wall time, commit included: the load on the machine decides)")
    server = statistics.median(one["trigger"])
    total = statistics.median(one["insert"])
    print(f"  one counted event per statement, server time (EXPLAIN ANALYZE, median of "
          f"{len(one['trigger'])}): the trigger {server:.3f} ms of the insert's {total:.3f} ms")
    engine.dispose()


def _measure(engine, far, rows, single, rounds, bulk, one) -> None:
    """The timed inserts of :func:`trigger_cost`, trigger off then on, ``rounds`` times."""
    for _ in range(rounds):
        for state in ("DISABLE", "ENABLE"):
            with engine.begin() as conn:
                conn.execute(text(f"ALTER TABLE events {state} TRIGGER {TRIGGER}"))
            with engine.connect() as conn:
                transaction = conn.begin()
                top = conn.scalar(text("SELECT max(id) FROM events"))
                started = time.perf_counter()
                conn.execute(text(EVENTS), {"lo": top + 1, "hi": top + rows, "days": 2,
                                            "now": far})
                bulk[state].append(time.perf_counter() - started)
                transaction.rollback()
                started = time.perf_counter()
                for i in range(single):
                    conn.execute(text(ONE), {"i": i, "payload": PAYLOAD, "at": far})
                    conn.commit()
                one[state].append(time.perf_counter() - started)
    with engine.connect() as conn:
        for i in range(200):
            plan = "\n".join(row[0] for row in conn.execute(
                text("EXPLAIN (ANALYZE) " + ONE), {"i": i, "payload": PAYLOAD, "at": far}))
            conn.commit()
            if i >= 20:  # warm
                one["trigger"].append(float(re.search(
                    rf"Trigger {TRIGGER}: time=([\d.]+)", plan).group(1)))
                one["insert"].append(float(re.search(
                    r"Execution Time: ([\d.]+)", plan).group(1)))


def page(url: str, now: dt.datetime, repeat: int) -> None:
    from app import create_app
    from app.admin.services import DuplicateAdmin, create_admin
    from app.db import get_db

    app = create_app({"DATABASE_URL": url, "SECRET_KEYS": [SECRET], "PREFCENTER_ENV": "test",
                      "RATELIMIT_ENABLED": False, "ADMIN_ARGON2_TIME_COST": 1,
                      "ADMIN_ARGON2_MEMORY_COST": 64, "ADMIN_ARGON2_PARALLELISM": 1})
    db = get_db(app)
    # (with --keep, the admin of an earlier run is there already)
    with db.sessionmaker() as session, contextlib.suppress(DuplicateAdmin):
        create_admin(session, ADMIN, PASSWORD, app)
        session.commit()
    client = app.test_client()
    login = client.get("/admin/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', login).group(1)
    assert client.post("/admin/login", data={"csrf_token": token, "email": ADMIN,
                                             "password": PASSWORD}).status_code == 303
    client.get("/admin/insights/charts.css")  # built once per process

    def get():
        response = client.get("/admin/insights")
        assert response.status_code == 200
        return response

    get()  # warm: connections, templates, catalogue
    seconds, response = timed(get, repeat)
    html = response.get_data(as_text=True)
    assert html.count('class="pygal-chart"') == len(FIGURES)
    query = Query(start=now.date() - dt.timedelta(days=89), end=now.date())
    with db.sessionmaker() as session:
        rolled, _ = timed(lambda: [figure(session, query, n, top=10) for n in FIGURES], repeat)
        unrolled, _ = timed(lambda: [figure(session, query, n, top=10, unrolled=True)
                                     for n in FIGURES], 1)
    print()
    print("| what (last 90 days) | seconds |")
    print("| --- | --- |")
    print(f"| `GET /admin/insights` (7 figures: queries, SVG charts, tables), median of "
          f"{repeat} | **{seconds:.3f}** |")
    print(f"| the 7 figures' queries from the daily counts, median of {repeat} | {rolled:.3f} |")
    print(f"| the same queries from `events` (unrolled baseline), 1 run | {unrolled:.3f} |")
    print(f"\npage size {len(html) / 1024:.0f} KiB; the rollup is {unrolled / rolled:.0f}x "
          "faster than the unrolled queries")
    db.engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--pg-url", default=PG_DEFAULT)
    parser.add_argument("--keep", action="store_true",
                        help="reuse bench_insights as it is (skip the load)")
    args = parser.parse_args()
    now = dt.datetime.now(dt.UTC)
    if args.keep:
        url = f"{args.pg_url}/bench_insights"
    else:
        print(f"PostgreSQL: {args.events:,} events over {args.days} days")
        url = fresh_database("postgresql", args.pg_url, "bench_insights")
        load(url, args.events, args.days, now)
    trigger_check(url, now)
    trigger_cost(url, now)
    page(url, now, args.repeat)


if __name__ == "__main__":
    main()
