"""Benchmark: the recipient export (NDJSON) of a topic with a million subscribers.

Not a test. For each database it builds a fresh schema (Alembic), bulk-loads N
subscribers (default 1,000,000) with two subscriptions each (offers: 80%
subscribed over four frequencies; news: 50%), 2% unsubscribed from all and
0.5% erased, then, in a child process, serves the real app on 127.0.0.1
(werkzeug, threaded), streams ``GET /api/v1/topics/offers/recipients`` with
httpx, checks the row count against what the data says, and prints rows/s and
the child's peak RSS during the export (VmHWM) next to its RSS before it.

    .venv/bin/python bench/recipients.py                        # both, 1M rows
    .venv/bin/python bench/recipients.py --databases sqlite --rows 200000

SQLite lives in ``/tmp/bench_recipients.sqlite3``; PostgreSQL in the database
``bench_recipients`` (dropped and created) on the server of ``--pg-url``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, insert, select, text  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from app.migrate import upgrade  # noqa: E402

SECRET = "bench-secret-key-0123456789"
TMP = Path(tempfile.gettempdir())
PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432"
OFFER_FREQUENCIES = ["daily", "weekly", "biweekly", "monthly"]
LOCALES = ["en", "ar", "ru", "ms"]
SUBSCRIBER_COLUMNS = ["id", "public_id", "external_id", "email", "locale", "role_id",
                      "unsubscribed_all", "link_epoch", "version", "created_at", "updated_at",
                      "erased_at", "soft_bounces"]
SUBSCRIPTION_COLUMNS = ["subscriber_id", "topic_id", "subscribed", "frequency", "updated_at"]


def fresh_database(kind: str, pg_url: str, name: str, directory: Path = TMP) -> str:
    """An empty, migrated database ``name``: a SQLite file in ``directory``, or on PostgreSQL."""
    if kind == "sqlite":
        path = directory / f"{name}.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        url = f"sqlite:///{path}"
    else:
        admin = create_engine(f"{pg_url}/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        url = f"{pg_url}/{name}"
    upgrade(url)
    return url


def subscriber_rows(n: int, role_id: int, now: dt.datetime):
    """``(subscriber row, erased?, unsubscribed_all?)`` for ids 1..n."""
    for i in range(1, n + 1):
        erased = i % 200 == 3
        stopped = i % 50 == 1
        yield (i, secrets.token_urlsafe(16), None if erased else f"ext-{i}",
               None if erased else f"user{i}@example.com", LOCALES[i % 4], role_id,
               stopped or erased, 0, 1, now, now, now if erased else None, 0)


def subscription_rows(n: int, offers: int, news: int, now: dt.datetime):
    for i in range(1, n + 1):
        if i % 200 == 3:
            continue  # erased: no subscriptions
        yield (i, offers, i % 5 != 0, OFFER_FREQUENCIES[i % 4], now)
        yield (i, news, i % 2 == 0, "monthly", now)


def expected_offers(n: int, frequency: str | None = None) -> int:
    return sum(1 for i in range(1, n + 1)
               if i % 200 != 3 and i % 50 != 1 and i % 5 != 0
               and (frequency is None or OFFER_FREQUENCIES[i % 4] == frequency))


def populate(url: str, n: int) -> dict[str, int]:
    """Catalogue plus ``n`` subscribers, bulk-loaded; returns topic ids by slug."""
    from app.demo import seed_catalogue
    from app.topics.models import Role, Topic

    engine = create_engine(url)
    with Session(engine) as session:
        seed_catalogue(session)
        session.commit()
        topics = dict(session.execute(select(Topic.slug, Topic.id)).all())
        role_id = session.scalar(select(Role.id).where(Role.slug == "shopper"))
    now = dt.datetime.now(dt.UTC)
    if engine.dialect.name == "postgresql":
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            with cursor.copy(f"COPY subscribers ({', '.join(SUBSCRIBER_COLUMNS)}) FROM STDIN"
                             ) as copy:
                for row in subscriber_rows(n, role_id, now):
                    copy.write_row(row)
            with cursor.copy(f"COPY subscriptions ({', '.join(SUBSCRIPTION_COLUMNS)}) "
                             "FROM STDIN") as copy:
                for row in subscription_rows(n, topics["offers"], topics["news"], now):
                    copy.write_row(row)
            cursor.execute("SELECT setval('subscribers_id_seq', %s)", (n,))
            cursor.execute("ANALYZE subscribers")
            cursor.execute("ANALYZE subscriptions")
            raw.commit()
        finally:
            raw.close()
    else:
        from app.subscribers.models import Subscriber, Subscription

        with engine.begin() as conn:
            conn.exec_driver_sql("PRAGMA synchronous=OFF")
            batch: list[dict] = []
            for row in subscriber_rows(n, role_id, now):
                batch.append(dict(zip(SUBSCRIBER_COLUMNS, row, strict=True)))
                if len(batch) == 50_000:
                    conn.execute(insert(Subscriber.__table__), batch)
                    batch = []
            if batch:
                conn.execute(insert(Subscriber.__table__), batch)
            batch = []
            for row in subscription_rows(n, topics["offers"], topics["news"], now):
                batch.append(dict(zip(SUBSCRIPTION_COLUMNS, row, strict=True)))
                if len(batch) == 50_000:
                    conn.execute(insert(Subscription.__table__), batch)
                    batch = []
            if batch:
                conn.execute(insert(Subscription.__table__), batch)
            conn.exec_driver_sql("ANALYZE")
    engine.dispose()
    return topics


def peak_rss() -> int:
    """This process's peak RSS in KiB (VmHWM; getrusage where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def reset_peak_rss() -> int:
    """Current RSS in KiB, after resetting the peak to it (Linux ``clear_refs`` 5).

    ``getrusage``'s maximum survives exec, so a child would report its parent's
    peak (the bulk load); VmHWM, reset here, covers the export alone.
    """
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    return peak_rss()


def export_child(url: str, path: str) -> None:
    """In a fresh process: serve the app, stream the export, report JSON on stdout."""
    import httpx

    from app import create_app
    from app.api.auth import create_api_key
    from app.db import get_db, write_session
    from tests.conftest import serve

    app = create_app({"PREFCENTER_ENV": "test", "SECRET_KEYS": [SECRET], "DATABASE_URL": url,
                      "RATELIMIT_ENABLED": False})
    with app.app_context():
        session = write_session(get_db())
        _key, plain = create_api_key(session, "bench")
        session.commit()
        session.close()
    rss_before = reset_peak_rss()
    rows = 0
    size = 0
    with serve(app) as base, httpx.Client(base_url=base, timeout=600) as client:
        started = time.perf_counter()
        with client.stream("GET", path, headers={"Authorization": f"Bearer {plain}"}
                           ) as response:
            assert response.status_code == 200, response.read()
            kind = response.headers["content-type"]
            first = None
            for line in response.iter_lines():
                if line:
                    rows += 1
                    size += len(line) + 1
                    if first is None:
                        first = json.loads(line)
        elapsed = time.perf_counter() - started
    json.dump({"rows": rows, "seconds": elapsed, "bytes": size, "content_type": kind,
               "first": first, "rss_before_kib": rss_before,
               "rss_peak_kib": peak_rss()},
              sys.stdout)


def run_export(url: str, path: str) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child-export", url, "--path", path],
                          capture_output=True, text=True, check=False, cwd=ROOT, timeout=900)
    if done.returncode != 0:
        raise SystemExit(f"export child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--pg-url", default=PG_DEFAULT)
    parser.add_argument("--child-export", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_export:
        export_child(args.child_export, args.path)
        return
    print(f"recipient export of topic 'offers', {args.rows:,} subscribers")
    for kind in args.databases.split(","):
        started = time.perf_counter()
        url = fresh_database(kind, args.pg_url, "bench_recipients")
        populate(url, args.rows)
        print(f"\n[{kind}] loaded {args.rows:,} subscribers + {2 * args.rows:,} subscriptions "
              f"in {time.perf_counter() - started:.1f} s")
        for frequency in (None, "weekly"):
            path = "/api/v1/topics/offers/recipients"
            if frequency:
                path += f"?frequency={frequency}"
            result = run_export(url, path)
            expected = expected_offers(args.rows, frequency)
            status = "ok" if result["rows"] == expected else f"MISMATCH (expected {expected:,})"
            print(f"[{kind}] {path}: {result['rows']:,} rows {status}, "
                  f"{result['bytes'] / 1e6:.0f} MB in {result['seconds']:.1f} s = "
                  f"{result['rows'] / result['seconds']:,.0f} rows/s; "
                  f"peak RSS {result['rss_peak_kib'] / 1024:.0f} MiB "
                  f"(before the export {result['rss_before_kib'] / 1024:.0f} MiB); "
                  f"{result['content_type']}")
    print("\n(server thread and httpx client share one process on this 2-core machine)")


if __name__ == "__main__":
    main()
