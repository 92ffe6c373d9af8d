"""Benchmark: link scanners opening the public pages, the real app against a bare Flask app.

Not a test. Mail security gateways open every link of every message within seconds of
delivery, so a large send brings bursts of ``GET /u/<token>`` and ``GET /p/<token>``.
For each database (SQLite, PostgreSQL) this serves (a) the real app over a migrated
database of N subscribers (every supported locale, three roles, tokens with and without
a topic and a locale) and (b) a bare Flask app answering the same paths with a constant
page, with the same gunicorn settings (2 sync workers), and drives each path of each
server from a loopback client at 32 connections for a bounded time (``wrk`` when
installed, else an asyncio httpx client), in turns (real /u/, bare /u/, real /p/, bare
/p/, for ``--rounds`` rounds) so that a shared machine slowing down moves both alike. It
prints requests/s, p50 and p99 of each, their ratio against the targets and the load
average, and then checks that the load changed nothing: the events, outbox, subscribers'
versions and update times, subscriptions and the catalogue version are as before.

    .venv/bin/python bench/pages.py                          # SQLite and PostgreSQL
    .venv/bin/python bench/pages.py --databases sqlite --duration 5 --rounds 1
    .venv/bin/python bench/pages.py --databases sqlite --profile   # in process, cProfile

PostgreSQL: the script drops and creates the database ``bench_pages`` on the server of
``--pg-url`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import common  # noqa: E402  (bench/common.py: servers, load, figures)
from common import Gunicorn, Result, app_config, app_env  # noqa: E402
from flask import Flask, Response  # noqa: E402
from recipients import fresh_database  # noqa: E402

LOCALES = ("en", "ar", "ru", "ms")
ROLES = ("shopper", "developer", "marketer")
# (database, path): the ratio to the bare app to reach; p99 under 60 ms everywhere.
TARGETS = {("sqlite", "/u/"): 0.25, ("sqlite", "/p/"): 0.15,
           ("postgresql", "/u/"): 0.2, ("postgresql", "/p/"): 0.12}
P99_TARGET_MS = 60.0

# (b): the floor. The same server and paths, a constant page.
bare_app = Flask("bare")
BARE_PAGE = "<!doctype html><title>Unsubscribe</title><p>Nothing to see.</p>\n"


@bare_app.get("/u/<token>")
def bare_unsubscribe(token: str) -> Response:
    return Response(BARE_PAGE, mimetype="text/html")


@bare_app.get("/p/<token>")
def bare_preferences(token: str) -> Response:
    return Response(BARE_PAGE, mimetype="text/html")


# --- the database ------------------------------------------------------------------------------

def prepare_database(url: str, subscribers: int) -> dict[str, list[str]]:
    """Load the demo catalogue and ``subscribers`` subscribers into the migrated ``url``;
    their paths."""
    from app.links.services import PREFERENCES, UNSUBSCRIBE
    from app.subscribers.services import Context, create_subscriber

    paths: dict[str, list[str]] = {"/u/": [], "/p/": []}

    def add(session, signer, roles, i: int) -> None:
        locale = LOCALES[i % len(LOCALES)]
        subscriber, _ = create_subscriber(
            session, email=f"scan{i}@example.com", external_id=f"scan-{i}", locale=locale,
            role=roles[ROLES[i % len(ROLES)]], context=Context(source="system"))
        # Half the unsubscribe links name a topic; a quarter of all links name a locale.
        claim_locale = LOCALES[(i // 4) % len(LOCALES)] if i % 4 == 1 else None
        paths["/u/"].append("/u/" + signer.mint(
            UNSUBSCRIBE, subscriber.public_id, topic="offers" if i % 2 else None,
            campaign="bench", locale=claim_locale))
        paths["/p/"].append("/p/" + signer.mint(PREFERENCES, subscriber.public_id,
                                                campaign="bench", locale=claim_locale))

    common.seed_subscribers(url, subscribers, add, "PUBLIC")
    return paths


def snapshot(url: str) -> dict:
    """What a page view must not change."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    queries = {
        "events": "SELECT count(*) FROM events",
        "outbox": "SELECT count(*) FROM webhook_deliveries",
        "subscriber versions": "SELECT sum(version) FROM subscribers",
        "last subscriber update": "SELECT max(updated_at) FROM subscribers",
        "unsubscribed from all": "SELECT count(*) FROM subscribers WHERE unsubscribed_all",
        "subscribed": "SELECT count(*) FROM subscriptions WHERE subscribed",
        "last subscription update": "SELECT max(updated_at) FROM subscriptions",
        "catalogue version": "SELECT version FROM catalogue_versions",
    }
    try:
        with engine.connect() as conn:
            return {name: conn.execute(text(sql)).scalar() for name, sql in queries.items()}
    finally:
        engine.dispose()


# --- load ----------------------------------------------------------------------------------------

def compare(url: str, paths: dict[str, list[str]], args) -> dict[str, tuple[Result, Result]]:
    """Both servers side by side, every path driven in turns, real then bare."""
    env = app_env(url, "PUBLIC")
    servers = [Gunicorn("wsgi:app", "sync", env, 1, args.processes),
               Gunicorn("bench.pages:bare_app", "sync", env, 1, args.processes)]
    rounds: dict[str, tuple[list[Result], list[Result]]] = {p: ([], []) for p in paths}
    try:
        for server in servers:
            server.wait()
            for kind_paths in paths.values():
                common.warm_up(server.base_url, kind_paths[:20])
        for number in range(1, args.rounds + 1):
            for kind, kind_paths in paths.items():
                real, bare = (common.drive(server.base_url, kind_paths, args.duration,
                                           args.connections) for server in servers)
                rounds[kind][0].append(real)
                rounds[kind][1].append(bare)
                print(f"    round {number} GET {kind}: real {real.requests_per_second:8.1f} rps"
                      f" p99 {real.p99_ms:6.1f} ms | bare {bare.requests_per_second:8.1f} rps"
                      f" | ratio {real.requests_per_second / bare.requests_per_second:.2f}"
                      f" | load {os.getloadavg()[0]:.1f}", flush=True)
    finally:
        for server in servers:
            server.stop()
    return {kind: (common.summary(real), common.summary(bare))
            for kind, (real, bare) in rounds.items()}


# --- profile -------------------------------------------------------------------------------------

def profile(url: str, paths: dict[str, list[str]], count: int = 400, top: int = 25) -> None:
    """In one process (Flask's test client): per page, statements per request, CPU time
    against a bare app's, and a cProfile of ``count`` requests (cumulative time)."""
    from sqlalchemy import event

    from app import create_app

    app = create_app(app_config(url, "PUBLIC"))
    engine = app.extensions["prefcenter.db"].engine
    executed = []

    def record(_conn, _cursor, statement, *_args):
        if not statement.lstrip().upper().startswith(("BEGIN", "COMMIT", "ROLLBACK")):
            executed.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    # No cookie kept between requests: scanners send none.
    client, bare = app.test_client(use_cookies=False), bare_app.test_client(use_cookies=False)
    for kind, kind_paths in paths.items():
        chosen = kind_paths[:count]
        for path in chosen[:20]:
            assert client.get(path).status_code == 200
        executed.clear()
        cpu = {}
        for name, test_client in (("app", client), ("bare", bare)):
            started = time.process_time()
            for path in chosen:
                test_client.get(path)
            cpu[name] = (time.process_time() - started) / len(chosen) * 1000
        print(f"GET {kind}: {len(executed) / len(chosen):.1f} statements per request; CPU "
              f"{cpu['app']:.3f} ms per request, bare {cpu['bare']:.3f} ms "
              f"(in-process ratio {cpu['bare'] / cpu['app']:.2f})")
        common.print_profile(client.get, chosen, ("cumulative", top))
    event.remove(engine, "before_cursor_execute", record)
    engine.dispose()


# --- main ----------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=int, default=2000)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3,
                        help="turns of (real, bare) per database and path")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--paths", default="/u/,/p/")
    parser.add_argument("--processes", type=int, default=2,
                        help="gunicorn sync worker processes of each server")
    parser.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432")
    parser.add_argument("--profile", action="store_true",
                        help="print an in-process profile of each page instead")
    args = parser.parse_args(argv)
    common.bound_load(parser, args)
    kinds = [kind for kind in ("/u/", "/p/") if kind in args.paths.split(",")]

    results = []
    unchanged = True
    with tempfile.TemporaryDirectory(prefix="bench-pages-") as tmp:
        for name in common.database_kinds(args.databases):
            print(f"# {name}: preparing {args.subscribers} subscribers", flush=True)
            url = fresh_database(name, args.pg_url.rstrip("/"), "bench_pages", Path(tmp))
            paths = prepare_database(url, args.subscribers)
            paths = {kind: paths[kind] for kind in kinds}
            if args.profile:
                profile(url, paths)
                continue
            before = snapshot(url)
            load_before = os.getloadavg()
            measured = compare(url, paths, args)
            load_after = os.getloadavg()
            after = snapshot(url)
            same = before == after
            unchanged &= same
            print(f"  nothing changed: {'yes' if same else 'NO'}", flush=True)
            if not same:
                for key in before:
                    if before[key] != after[key]:
                        print(f"    {key}: {before[key]} -> {after[key]}")
            for kind, (real, bare) in measured.items():
                results.append((name, kind, real, bare, load_before, load_after))
    if results:
        print()
        print_table(results, args)
    return 0 if unchanged else 1


def print_table(results, args) -> None:
    client = common.client_name()
    print(f"GET of the public pages, gunicorn {args.processes} sync workers, "
          f"{args.connections} connections, median of {args.rounds} rounds of "
          f"{args.duration} s each, client {client}, {args.subscribers} subscribers")
    print("| database | path | req/s | p50 ms | p99 ms | bare req/s | bare p99 ms | ratio "
          "| target | errors | load average (1 min), before/after |")
    print("|" + "---|" * 11)
    for name, kind, real, bare, load_before, load_after in results:
        ratio = real.requests_per_second / bare.requests_per_second
        target = TARGETS.get((name, kind))
        met = (target is not None and ratio >= target and real.p99_ms < P99_TARGET_MS)
        verdict = f"{target}, p99 < {P99_TARGET_MS:.0f}: {'met' if met else 'not met'}"
        print(f"| {name} | GET {kind} | {real.requests_per_second:.0f} | {real.p50_ms:.1f} | "
              f"{real.p99_ms:.1f} | {bare.requests_per_second:.0f} | {bare.p99_ms:.1f} | "
              f"**{ratio:.2f}** | {verdict} | {real.errors} | "
              f"{load_before[0]:.1f}/{load_after[0]:.1f} |")


if __name__ == "__main__":
    raise SystemExit(main())
