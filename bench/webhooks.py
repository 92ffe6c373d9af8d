"""Benchmark: webhook deliveries per second to a loopback receiver, beside its ceiling.

Not a test. For each database (SQLite file, PostgreSQL) it:

1. builds a fresh database (Alembic) and registers one endpoint;
2. starts a receiver in its own process (``tests/webhook_receiver.py``: a
   ThreadingHTTPServer, HTTP/1.1 keep-alive, verifying every signature with the
   ``standardwebhooks`` package, answering 200);
3. measures the receiver's ceiling: a pooled ``httpx.Client`` on a thread pool
   of the same concurrency as the worker POSTs N signed bodies straight at it;
4. writes N outbox rows (events with a realistic subscriber payload, two per
   subscriber so per-subscriber ordering is exercised) in bulk, then times ONE
   worker (``Worker.run_once``: claim, sign, POST, record) draining them;
5. checks every row is delivered and the receiver saw N distinct webhook-ids,
   all verified.

    .venv/bin/python bench/webhooks.py       # both databases, pools of 4 and 16, N = 3000
    .venv/bin/python bench/webhooks.py --databases sqlite --rows 2000 --concurrency 32

PostgreSQL: the script drops and creates the database ``bench_webhooks`` on
the server of ``--pg-url`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from recipients import fresh_database  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from app import create_app  # noqa: E402
from app.db import get_db, write_session  # noqa: E402
from app.events.models import Event  # noqa: E402
from app.webhooks import transport  # noqa: E402
from app.webhooks.models import WebhookDelivery  # noqa: E402
from app.webhooks.services import WebhookSettings, create_endpoint  # noqa: E402
from app.webhooks.worker import Worker  # noqa: E402

PG_DATABASE = "bench_webhooks"


def serve(port_file: str, secret: str) -> None:
    """Child process: run the receiver until killed; write its port to ``port_file``."""
    from tests.webhook_receiver import Receiver

    receiver = Receiver([secret]).start(0)
    Path(port_file + ".tmp").write_text(str(receiver.port))
    os.replace(port_file + ".tmp", port_file)  # the parent never reads half a port
    while True:
        time.sleep(3600)


def start_receiver(secret: str) -> tuple[subprocess.Popen, str]:
    port_file = str(Path(tempfile.mkdtemp(prefix="wh-port-")) / "port")
    proc = subprocess.Popen([sys.executable, __file__, "--serve", port_file, secret], cwd=ROOT)
    deadline = time.monotonic() + 20
    while not (Path(port_file).exists() and Path(port_file).read_text()):
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError("receiver did not start")
        time.sleep(0.05)
    port = int(Path(port_file).read_text())
    os.unlink(port_file)
    os.rmdir(Path(port_file).parent)
    return proc, f"http://127.0.0.1:{port}/hooks"


def receiver_stats(url: str) -> dict:
    return httpx.get(url, timeout=10).json()


def sample_payload(i: int) -> dict:
    return {
        "subscriber": {
            "external_id": f"crm-{i // 2}", "email": f"person{i // 2}@example.com",
            "locale": "en", "role": "shopper", "unsubscribed_all": False,
            "topics": {slug: {"subscribed": bool((i + n) % 2), "frequency": "weekly"}
                       for n, slug in enumerate(("alerts", "events", "news", "offers", "tips"))},
            "version": 2 + i % 2, "updated_at": "2026-11-23T10:00:00Z",
        },
        "changes": [{"action": "topic.unsubscribed", "topic": "offers", "before": True,
                     "after": False}],
        "source": "preference_page",
    }


def populate(db, endpoint_id: str, rows: int) -> None:
    """``rows`` events and their outbox rows, two events per subscriber, in bulk."""
    now = dt.datetime.now(dt.UTC)
    session = write_session(db)
    start = (session.scalar(select(func.max(Event.id))) or 0) + 1
    events, deliveries = [], []
    for n in range(rows):
        event_id = start + n
        events.append({"id": event_id, "subscriber_id": None, "type": "subscriber.unsubscribed",
                       "action": "topic.unsubscribed", "topic": "offers",
                       "source": "preference_page", "version": 2, "created_at": now,
                       "payload": sample_payload(n)})
        deliveries.append({"endpoint_id": endpoint_id, "event_id": event_id,
                           "subscriber_id": 1_000_000 + n // 2, "status": "pending",
                           "attempts": 0, "next_attempt_at": now, "created_at": now})
    session.execute(Event.__table__.insert(), events)
    session.execute(WebhookDelivery.__table__.insert(), deliveries)
    session.commit()
    session.close()


def ceiling(url: str, secret: str, rows: int, concurrency: int) -> float:
    """Requests/s the receiver answers when driven directly (same client, same pool)."""
    body = transport.render_body("subscriber.unsubscribed", dt.datetime.now(dt.UTC),
                                 sample_payload(0))
    client = transport.make_client(10, concurrency, allow_private=True)

    def one(n: int) -> bool:
        return transport.post(client, url, [secret], f"msg_ceiling_{n}", body).ok

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(min(200, rows))))  # warm the connections
        started = time.perf_counter()
        ok = sum(pool.map(one, range(rows)))
        elapsed = time.perf_counter() - started
    client.close()
    assert ok == rows, f"{rows - ok} ceiling requests failed"
    return rows / elapsed


def run(kind: str, args, tmp: Path) -> dict:
    url = fresh_database(kind, args.pg_url, PG_DATABASE, tmp)
    # The receiver listens on 127.0.0.1: allow private destinations for this bench.
    app = create_app({"PREFCENTER_ENV": "test", "TESTING": True, "DATABASE_URL": url,
                      "SECRET_KEYS": ["bench-webhooks-secret-key"],
                      "WEBHOOK_CONCURRENCY": args.concurrency, "WEBHOOK_ALLOW_PRIVATE": True})
    db = get_db(app)
    session = write_session(db)
    endpoint, secret = create_endpoint(session, "http://127.0.0.1:9/placeholder")
    session.commit()
    proc, hook_url = start_receiver(secret)
    try:
        endpoint.url = hook_url
        session.add(endpoint)
        session.commit()
        session.close()
        stats_url = hook_url.rsplit("/", 1)[0] + "/stats"
        ceiling_rate = ceiling(hook_url, secret, args.rows, args.concurrency)
        before = receiver_stats(stats_url)

        populate(db, endpoint.id, args.rows)
        settings = dataclasses.replace(WebhookSettings.from_config(app.config),
                                       concurrency=args.concurrency)
        with Worker(db, settings) as worker:
            started = time.perf_counter()
            stats = worker.run_once()
            elapsed = time.perf_counter() - started
        after = receiver_stats(stats_url)
    finally:
        proc.kill()
        proc.wait()
    check = db.sessionmaker()
    delivered = check.scalar(select(func.count()).select_from(WebhookDelivery)
                             .where(WebhookDelivery.status == "delivered"))
    check.close()
    db.engine.dispose()
    received = after["received"] - before["received"]
    assert stats.delivered == args.rows == delivered, (stats, delivered)
    assert received == args.rows, received
    assert after["distinct_ids"] - before["distinct_ids"] == args.rows
    assert after["unverified"] == 0
    return {"database": kind, "rows": args.rows, "concurrency": args.concurrency,
            "worker_per_s": args.rows / elapsed, "ceiling_per_s": ceiling_rate,
            "seconds": elapsed}


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve(sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--concurrency", default="4,16",
                        help="comma-separated worker pool sizes to measure")
    parser.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind, concurrency in [(k.strip(), int(c)) for k in args.databases.split(",")
                                  for c in args.concurrency.split(",")]:
            options = argparse.Namespace(**{**vars(args), "concurrency": concurrency})
            result = run(kind, options, Path(tmp))
            results.append(result)
            print(f"{result['database']:<11} {result['rows']} deliveries, concurrency "
                  f"{result['concurrency']}: one worker {result['worker_per_s']:,.0f}/s "
                  f"({result['seconds']:.2f} s); receiver ceiling "
                  f"{result['ceiling_per_s']:,.0f}/s "
                  f"({result['worker_per_s'] / result['ceiling_per_s']:.0%} of it)",
                  flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
