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
import asyncio
import cProfile
import io
import os
import pstats
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flask import Flask, Response  # noqa: E402

SECRET = "bench-secret-key-0123456789"
BODY = "List-Unsubscribe=One-Click"
FORM = "application/x-www-form-urlencoded"

# (b): the floor. The same server, the same request, no work at all.
bare_app = Flask("bare")


@bare_app.post("/u/<token>")
def bare_one_click(token: str) -> Response:
    return Response("Unsubscribed.\n", mimetype="text/plain")


@dataclass
class Result:
    label: str
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    writes: int = 0


# --- databases -------------------------------------------------------------------------------

def app_env(database_url: str) -> dict:
    env = dict(os.environ)
    env.update({
        "PREFCENTER_ENV": "production",
        "PREFCENTER_SECRET_KEY": SECRET,
        "PREFCENTER_DATABASE_URL": database_url,
        "PREFCENTER_BASE_URL": "http://127.0.0.1",
        # The limiter stays on (its cost is part of the path), far above the load.
        "PREFCENTER_RATELIMIT_ONE_CLICK": "100000000 per minute",
        "PYTHONPATH": str(ROOT),
    })
    return env


def prepare_database(url: str, subscribers: int) -> list[str]:
    """Migrate, load the catalogue and ``subscribers`` subscribers; return one path each."""
    from app import create_app
    from app.db import write_session
    from app.demo import seed_catalogue
    from app.links.services import UNSUBSCRIBE, get_signer
    from app.migrate import upgrade
    from app.subscribers.services import Context, create_subscriber
    from app.topics.models import Role

    if url.startswith("postgresql"):
        import psycopg
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
        admin = parsed.set(drivername="postgresql", database="postgres")
        with psycopg.connect(admin.render_as_string(hide_password=False),
                             autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{parsed.database}"')
    upgrade(url)
    app = create_app({"DATABASE_URL": url, "SECRET_KEYS": [SECRET],
                      "BASE_URL": "http://127.0.0.1"})
    db = app.extensions["prefcenter.db"]
    session = write_session(db)
    seed_catalogue(session)
    session.commit()
    role = session.query(Role).filter_by(slug="shopper").one()
    signer = get_signer(app)
    paths = []
    for i in range(subscribers):
        subscriber, _ = create_subscriber(
            session, email=f"bench{i}@example.com", external_id=f"bench-{i}",
            role=role, context=Context(source="system"))
        paths.append("/u/" + signer.mint(UNSUBSCRIBE, subscriber.public_id,
                                         topic="offers" if i % 2 else None,
                                         campaign="bench"))
        if i % 500 == 499:
            session.commit()
    session.commit()
    session.close()
    db.engine.dispose()
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


# --- servers and load --------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Gunicorn:
    def __init__(self, spec: str, worker_class: str, env: dict, threads: int,
                 processes: int = 2):
        self.port = free_port()
        command = [str(ROOT / ".venv/bin/gunicorn"), "--workers", str(processes),
                   "--worker-class", worker_class, "--bind", f"127.0.0.1:{self.port}",
                   "--log-level", "warning", "--chdir", str(ROOT)]
        if worker_class == "gthread":
            command += ["--threads", str(threads)]
        self.process = subprocess.Popen([*command, spec], env=env, cwd=ROOT)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait(self, timeout: float = 30) -> None:
        until = time.monotonic() + timeout
        while time.monotonic() < until:
            if self.process.poll() is not None:
                raise RuntimeError("gunicorn exited")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("gunicorn did not start")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def warm_up(base_url: str, path: str, count: int = 40) -> None:
    import httpx

    with httpx.Client(base_url=base_url, timeout=30) as client:
        for _ in range(count):
            response = client.post(path, content=BODY, headers={"Content-Type": FORM})
            if response.status_code != 200:
                raise RuntimeError(f"warm-up got {response.status_code}: {response.text}")


WRK_SCRIPT = """
local paths = {%s}
local i = 0
local headers = {["Content-Type"] = "%s"}
request = function()
  i = i + 1
  return wrk.format("POST", paths[((i - 1) %% #paths) + 1], headers, "%s")
end
"""


def run_wrk(base_url: str, paths: list[str], duration: int, connections: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT % (",".join(f'"{p}"' for p in paths), FORM, BODY))
    try:
        output = subprocess.run(
            ["wrk", "--threads", "1", "--connections", str(connections),
             "--duration", f"{duration}s", "--timeout", "10s", "--latency",
             "--script", script.name, base_url],
            capture_output=True, text=True, check=True, timeout=duration + 60,
        ).stdout
    finally:
        os.unlink(script.name)

    def latency(label: str) -> float:
        value, unit = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    requests = int(re.search(r"(\d+) requests in", output).group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                              r"timeout (\d+)", output)
    errors = int(non_2xx.group(1)) if non_2xx else 0
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "p50": latency("50"), "p99": latency("99"), "requests": requests, "errors": errors,
    }


def run_asyncio(base_url: str, paths: list[str], duration: int, connections: int) -> dict:
    """The fallback client: ``connections`` coroutines on one keep-alive pool."""
    import httpx

    latencies: list[float] = []
    errors = 0
    counter = iter(range(10**9))

    async def worker(client: httpx.AsyncClient, deadline: float) -> None:
        nonlocal errors
        while time.monotonic() < deadline:
            path = paths[next(counter) % len(paths)]
            started = time.perf_counter()
            try:
                response = await client.post(path, content=BODY,
                                             headers={"Content-Type": FORM})
                if response.status_code != 200:
                    errors += 1
            except httpx.HTTPError:
                errors += 1
            latencies.append((time.perf_counter() - started) * 1000)

    async def main() -> float:
        limits = httpx.Limits(max_connections=connections,
                              max_keepalive_connections=connections)
        async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=10) as client:
            started = time.monotonic()
            await asyncio.gather(*(worker(client, started + duration)
                                   for _ in range(connections)))
            return time.monotonic() - started

    elapsed = asyncio.run(main())
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50": latencies[len(latencies) // 2],
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "requests": len(latencies), "errors": errors,
    }


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def summary(label: str, rounds: list[dict], writes: int) -> Result:
    """The median round's figures; requests and errors over all rounds."""
    return Result(label, median([r["rps"] for r in rounds]), median([r["p50"] for r in rounds]),
                  median([r["p99"] for r in rounds]), sum(r["requests"] for r in rounds),
                  sum(r["errors"] for r in rounds), writes)


def compare(url: str, worker_class: str, env: dict, paths: list[str], warm_path: str,
            args) -> tuple[Result, Result]:
    """The real app and the bare one, served side by side, driven in turns."""
    drive = run_wrk if shutil.which("wrk") else run_asyncio
    servers = [Gunicorn("wsgi:app", worker_class, env, args.threads, args.processes),
               Gunicorn("bench.oneclick:bare_app", worker_class, env, args.threads,
                        args.processes)]
    real_rounds, bare_rounds = [], []
    try:
        for server in servers:
            server.wait()
            warm_up(server.base_url, warm_path)
        for number in range(1, args.rounds + 1):
            resubscribe_everyone(url)
            real = drive(servers[0].base_url, paths, args.duration, args.connections)
            bare = drive(servers[1].base_url, paths, args.duration, args.connections)
            real_rounds.append(real)
            bare_rounds.append(bare)
            print(f"    round {number}: real {real['rps']:8.1f} rps p99 {real['p99']:6.1f} ms"
                  f" | bare {bare['rps']:8.1f} rps | ratio {real['rps'] / bare['rps']:.2f}"
                  f" | load average {os.getloadavg()[0]:.1f}", flush=True)
    finally:
        for server in servers:
            server.stop()
    writes = int(median([min(len(paths), r["requests"]) for r in real_rounds]))
    return summary("prefcenter", real_rounds, writes), summary("bare flask", bare_rounds, 0)


# --- profile ---------------------------------------------------------------------------------

def profile(url: str, paths: list[str], count: int = 400) -> None:
    """cProfile of ``count`` one-clicks through the WSGI stack (half write, half repeat)."""
    from app import create_app

    app = create_app({"DATABASE_URL": url, "SECRET_KEYS": [SECRET],
                      "BASE_URL": "http://127.0.0.1",
                      "RATELIMIT_ONE_CLICK": "100000000 per minute"})
    client = app.test_client()
    chosen = (paths[: count // 2] * 2)[:count]
    for path in chosen[:20]:
        client.post(path, data=BODY, content_type=FORM)
    profiler = cProfile.Profile()
    profiler.enable()
    for path in chosen:
        client.post(path, data=BODY, content_type=FORM)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(30)
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(15)
    print(out.getvalue())
    app.extensions["prefcenter.db"].engine.dispose()


# --- main ------------------------------------------------------------------------------------

def database_urls(args, workdir: Path) -> dict[str, str]:
    urls = {}
    if "sqlite" in args.databases:
        urls["sqlite"] = f"sqlite:///{workdir / 'bench.sqlite3'}"
    if "postgresql" in args.databases:
        urls["postgresql"] = f"{args.pg_url.rstrip('/')}/bench_oneclick"
    return urls


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
    if (args.duration > 60 or args.connections > 256 or not 1 <= args.rounds <= 10
            or not 1 <= args.processes <= 16):
        parser.error("keep the load bounded: at most 60 s, 256 connections, 10 rounds "
                     "and 16 processes")

    results: list[tuple[str, str, Result, Result]] = []
    with tempfile.TemporaryDirectory(prefix="bench-oneclick-") as tmp:
        for name, url in database_urls(args, Path(tmp)).items():
            print(f"# {name}: preparing {args.subscribers} subscribers", flush=True)
            paths = prepare_database(url, args.subscribers + 1)
            warm_path, paths = paths[0], paths[1:]
            if args.profile:
                profile(url, paths)
                continue
            for worker_class in args.workers.split(","):
                real, bare = compare(url, worker_class, app_env(url), paths, warm_path, args)
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
    client = "wrk" if shutil.which("wrk") else "httpx/asyncio"
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
