"""Benchmark: RFC 8058 one-click POSTs, the real app against a bare Flask app.

Not a test. For each database (SQLite, PostgreSQL) and each gunicorn worker
class (sync, gthread), it serves (a) the real app over a migrated database of
N subscribers and (b) a bare Flask app whose POST returns a constant, with the
same gunicorn settings (2 workers), drives each from a loopback client at 32
concurrent connections for a bounded time (``wrk`` when installed, else an
asyncio httpx client), and prints requests/s, p50 and p99 of both and their
ratio. The two servers run side by side and are measured in turns (real, bare,
real, bare...; ``--rounds``), and each figure is the median of its rounds, so a
machine that slows down or speeds up mid-run (a shared host) moves both alike.
Every round starts with everyone subscribed again, and every measured request
names a different subscriber until the tokens run out: the first pass
unsubscribes (writes) and later passes are repeats; the table shows how many
requests of a round were writes.

    .venv/bin/python bench/oneclick.py                      # both databases
    .venv/bin/python bench/oneclick.py --databases sqlite --duration 5
    .venv/bin/python bench/oneclick.py --profile            # cProfile of the one-click path

PostgreSQL: the script drops and creates the database ``bench_oneclick`` on
the server of ``--pg-url`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import common  # noqa: E402  (bench/common.py: servers, load, figures)
from common import Gunicorn, Result, app_config, app_env, median  # noqa: E402
from flask import Flask, Response  # noqa: E402
from recipients import fresh_database  # noqa: E402

BODY = "List-Unsubscribe=One-Click"
FORM = "application/x-www-form-urlencoded"

# (b): the floor. The same server, the same request, no work at all.
bare_app = Flask("bare")


@bare_app.post("/u/<token>")
def bare_one_click(token: str) -> Response:
    return Response("Unsubscribed.\n", mimetype="text/plain")


# --- databases -------------------------------------------------------------------------------

def prepare_database(url: str, subscribers: int) -> list[str]:
    """Load the catalogue and ``subscribers`` subscribers into the migrated ``url``; return
    one path each."""
    from app.links.services import UNSUBSCRIBE
    from app.subscribers.services import Context, create_subscriber

    paths = []

    def add(session, signer, roles, i: int) -> None:
        subscriber, _ = create_subscriber(
            session, email=f"bench{i}@example.com", external_id=f"bench-{i}",
            role=roles["shopper"], context=Context(source="system"))
        paths.append("/u/" + signer.mint(UNSUBSCRIBE, subscriber.public_id,
                                         topic="offers" if i % 2 else None,
                                         campaign="bench"))

    common.seed_subscribers(url, subscribers, add)
    return paths


def resubscribe_everyone(url: str) -> None:
    """Undo the previous round's unsubscribes so every round starts with writes.

    Only the rows a round changed are updated, and PostgreSQL is vacuumed afterwards:
    rewriting every row each round would leave the measured rounds on ever more bloated
    tables (autovacuum does not keep up between 8-second rounds).
    """
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE subscribers SET unsubscribed_all = false "
                          "WHERE unsubscribed_all"))
        conn.execute(text("UPDATE subscriptions SET subscribed = true WHERE NOT subscribed"))
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE subscribers, subscriptions"))
    engine.dispose()


# --- load ------------------------------------------------------------------------------------

def compare(url: str, worker_class: str, env: dict, paths: list[str], warm_path: str,
            args) -> tuple[Result, Result]:
    """The real app and the bare one, served side by side, driven in turns."""
    servers = [Gunicorn("wsgi:app", worker_class, env, args.threads, args.processes),
               Gunicorn("bench.oneclick:bare_app", worker_class, env, args.threads,
                        args.processes)]
    real_rounds, bare_rounds = [], []
    try:
        for server in servers:
            server.wait()
            common.warm_up(server.base_url, [warm_path] * 40, "POST", BODY, FORM)
        for number in range(1, args.rounds + 1):
            resubscribe_everyone(url)
            real, bare = (common.drive(server.base_url, paths, args.duration, args.connections,
                                       "POST", BODY, FORM) for server in servers)
            real_rounds.append(real)
            bare_rounds.append(bare)
            print(f"    round {number}: real {real.requests_per_second:8.1f} rps"
                  f" p99 {real.p99_ms:6.1f} ms | bare {bare.requests_per_second:8.1f} rps"
                  f" | ratio {real.requests_per_second / bare.requests_per_second:.2f}"
                  f" | load average {os.getloadavg()[0]:.1f}", flush=True)
    finally:
        for server in servers:
            server.stop()
    writes = int(median([min(len(paths), r.requests) for r in real_rounds]))
    return (common.summary(real_rounds, "prefcenter", writes),
            common.summary(bare_rounds, "bare flask"))


# --- profile ---------------------------------------------------------------------------------

def profile(url: str, paths: list[str], count: int = 400) -> None:
    """cProfile of ``count`` one-clicks through the WSGI stack (half write, half repeat)."""
    from app import create_app

    app = create_app(app_config(url, "ONE_CLICK"))
    client = app.test_client()
    chosen = (paths[: count // 2] * 2)[:count]
    for path in chosen[:20]:
        client.post(path, data=BODY, content_type=FORM)
    common.print_profile(lambda path: client.post(path, data=BODY, content_type=FORM), chosen,
                         ("cumulative", 30), ("tottime", 15))
    app.extensions["prefcenter.db"].engine.dispose()


# --- main ------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=int, default=5000)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3,
                        help="turns of (real, bare) per database and worker class")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--workers", default="sync,gthread")
    parser.add_argument("--threads", type=int, default=4, help="threads per gthread worker")
    parser.add_argument("--processes", type=int, default=2,
                        help="gunicorn worker processes of each server (its --workers)")
    parser.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432")
    parser.add_argument("--profile", action="store_true",
                        help="print a cProfile of the one-click path instead")
    args = parser.parse_args(argv)
    common.bound_load(parser, args)

    results: list[tuple[str, str, Result, Result]] = []
    with tempfile.TemporaryDirectory(prefix="bench-oneclick-") as tmp:
        for name in common.database_kinds(args.databases):
            print(f"# {name}: preparing {args.subscribers} subscribers", flush=True)
            url = fresh_database(name, args.pg_url.rstrip("/"), "bench_oneclick", Path(tmp))
            paths = prepare_database(url, args.subscribers + 1)
            warm_path, paths = paths[0], paths[1:]
            if args.profile:
                profile(url, paths)
                continue
            for worker_class in args.workers.split(","):
                real, bare = compare(url, worker_class, app_env(url, "ONE_CLICK"), paths,
                                     warm_path, args)
                results.append((name, worker_class, real, bare))
                print_row(name, worker_class, real, bare)
    if results:
        print()
        print_table(results, args)
    return 0


def print_row(name: str, worker_class: str, real: Result, bare: Result) -> None:
    print(f"  {name:<10} {worker_class:<8} real {real.requests_per_second:8.1f} rps "
          f"p50 {real.p50_ms:6.1f} ms p99 {real.p99_ms:6.1f} ms | bare "
          f"{bare.requests_per_second:8.1f} rps | ratio "
          f"{real.requests_per_second / bare.requests_per_second:.2f}", flush=True)


def print_table(results, args) -> None:
    client = common.client_name()
    print(f"one-click POST, gunicorn {args.processes} workers "
          f"({args.threads} threads with gthread), "
          f"{args.connections} connections, median of {args.rounds} rounds of "
          f"{args.duration} s each, client {client}, {args.subscribers} subscribers")
    header = ("| database | workers | app | requests/s | p50 ms | p99 ms | requests | errors "
              "| writes per round | ratio |")
    print(header)
    print("|" + "---|" * 10)
    for name, worker_class, real, bare in results:
        ratio = real.requests_per_second / bare.requests_per_second
        for result in (real, bare):
            shown = f"{ratio:.2f}" if result is real else ""
            print(f"| {name} | {worker_class} | {result.label} | "
                  f"{result.requests_per_second:.0f} | {result.p50_ms:.1f} | "
                  f"{result.p99_ms:.1f} | {result.requests} | {result.errors} | "
                  f"{result.writes if result is real else ''} | {shown} |")


if __name__ == "__main__":
    raise SystemExit(main())
