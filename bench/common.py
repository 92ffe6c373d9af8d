"""What the HTTP load benchmarks share (bench/pages.py, bench/oneclick.py, bench/api_sync.py).

The app's settings for a server under load, a gunicorn server on a free loopback port, the
load clients (``wrk`` when installed, else an asyncio httpx client), the warm-up, the median
of rounds, and a cProfile printout. Imported as ``common`` (``ROOT / "bench"`` on the path).
"""

from __future__ import annotations

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
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-secret-key-0123456789"
# The limiter stays on (its cost is part of the path), far above the load.
UNLIMITED = "100000000 per minute"


@dataclass
class Result:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    writes: int = 0
    label: str = ""


# --- the app -------------------------------------------------------------------------------------

def app_config(url: str, *unlimited: str) -> dict:
    """The in-process app's settings; ``unlimited`` names rate limits lifted far above the load
    (``"PUBLIC"``, ``"ONE_CLICK"``)."""
    return {"DATABASE_URL": url, "SECRET_KEYS": [SECRET], "BASE_URL": "http://127.0.0.1",
            **{f"RATELIMIT_{name}": UNLIMITED for name in unlimited}}


def app_env(database_url: str, *unlimited: str) -> dict:
    """The environment of a production gunicorn server; ``unlimited`` as for app_config."""
    env = dict(os.environ)
    env.update({
        "PREFCENTER_ENV": "production",
        "PREFCENTER_SECRET_KEY": SECRET,
        "PREFCENTER_DATABASE_URL": database_url,
        "PREFCENTER_BASE_URL": "http://127.0.0.1",
        **{f"PREFCENTER_RATELIMIT_{name}": UNLIMITED for name in unlimited},
        "PYTHONPATH": str(ROOT),
    })
    return env


# --- servers -------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Gunicorn:
    def __init__(self, spec: str, worker_class: str, env: dict, threads: int,
                 processes: int = 2, options: tuple[str, ...] = ()):
        self.port = free_port()
        command = [str(ROOT / ".venv/bin/gunicorn"), "--workers", str(processes),
                   "--worker-class", worker_class, "--bind", f"127.0.0.1:{self.port}",
                   "--log-level", "warning", "--chdir", str(ROOT), *options]
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


# --- load ----------------------------------------------------------------------------------------
# A request is ``method`` on one of ``paths`` in turn, with ``body`` of ``content_type`` if any.

WRK_SCRIPT = """
local paths = {%s}
local i = 0
local headers = %s
request = function()
  i = i + 1
  return wrk.format("%s", paths[((i - 1) %% #paths) + 1], headers, %s)
end
"""


def client_name() -> str:
    return "wrk" if shutil.which("wrk") else "httpx/asyncio"


def drive(base_url: str, paths: list[str], duration: int, connections: int,
          method: str = "GET", body: str | None = None,
          content_type: str | None = None) -> Result:
    """One measurement with the client client_name() names."""
    run = run_wrk if shutil.which("wrk") else run_asyncio
    return run(base_url, paths, duration, connections, method, body, content_type)


def run_wrk(base_url: str, paths: list[str], duration: int, connections: int,
            method: str = "GET", body: str | None = None,
            content_type: str | None = None) -> Result:
    headers = f'{{["Content-Type"] = "{content_type}"}}' if content_type else "nil"
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT % (",".join(f'"{p}"' for p in paths), headers, method,
                                   f'"{body}"' if body is not None else "nil"))
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

    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                              r"timeout (\d+)", output)
    errors = int(non_2xx.group(1)) if non_2xx else 0
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    return Result(float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
                  latency("50"), latency("99"),
                  int(re.search(r"(\d+) requests in", output).group(1)), errors)


def run_asyncio(base_url: str, paths: list[str], duration: int, connections: int,
                method: str = "GET", body: str | None = None,
                content_type: str | None = None) -> Result:
    """The fallback client: ``connections`` coroutines on one keep-alive pool."""
    import httpx

    headers = {"Content-Type": content_type} if content_type else None
    latencies: list[float] = []
    errors = 0
    counter = iter(range(10**9))

    async def worker(client: httpx.AsyncClient, deadline: float) -> None:
        nonlocal errors
        while time.monotonic() < deadline:
            path = paths[next(counter) % len(paths)]
            started = time.perf_counter()
            try:
                response = await client.request(method, path, content=body, headers=headers)
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
    return Result(len(latencies) / elapsed, latencies[len(latencies) // 2],
                  latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
                  len(latencies), errors)


def warm_up(base_url: str, paths: list[str], method: str = "GET", body: str | None = None,
            content_type: str | None = None) -> None:
    """One request to each of ``paths``, each to answer 200."""
    import httpx

    headers = {"Content-Type": content_type} if content_type else None
    # The workers import the app after they fork: the first answers can take a while.
    with httpx.Client(base_url=base_url, timeout=60) as client:
        for path in paths:
            response = client.request(method, path, content=body, headers=headers)
            if response.status_code != 200:
                raise RuntimeError(f"warm-up got {response.status_code} for {path}: "
                                   f"{response.text[:500]}")


# --- figures -------------------------------------------------------------------------------------

def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def summary(rounds: list[Result], label: str = "", writes: int = 0) -> Result:
    """The median round's figures; requests and errors over all rounds."""
    return Result(median([r.requests_per_second for r in rounds]),
                  median([r.p50_ms for r in rounds]), median([r.p99_ms for r in rounds]),
                  sum(r.requests for r in rounds), sum(r.errors for r in rounds), writes, label)


def print_profile(request: Callable[[str], object], paths: list[str],
                  *orders: tuple[str, int]) -> None:
    """``request`` of each of ``paths`` under cProfile; print the top functions, per
    ``(sort key, how many)``."""
    profiler = cProfile.Profile()
    profiler.enable()
    for path in paths:
        request(path)
    profiler.disable()
    out = io.StringIO()
    for key, top in orders:
        pstats.Stats(profiler, stream=out).sort_stats(key).print_stats(top)
    print(out.getvalue())


# --- the command line ----------------------------------------------------------------------------

def database_kinds(databases: str) -> list[str]:
    """The kinds ``--databases`` names, SQLite first."""
    return [kind for kind in ("sqlite", "postgresql") if kind in databases]


def bound_load(parser, args) -> None:
    """Refuse a load that would swamp a shared machine."""
    if (args.duration > 60 or args.connections > 256 or not 1 <= args.rounds <= 10
            or not 1 <= args.processes <= 16):
        parser.error("keep the load bounded: at most 60 s, 256 connections, 10 rounds "
                     "and 16 processes")


# --- the database --------------------------------------------------------------------------------

def seed_subscribers(url: str, count: int, add: Callable, *unlimited: str) -> None:
    """The demo catalogue, then ``add(session, signer, roles, i)`` for i in 0..count-1
    (``roles`` by slug; a commit every 500), into the migrated database ``url``."""
    from app import create_app
    from app.db import write_session
    from app.demo import seed_catalogue
    from app.links.services import get_signer
    from app.topics.models import Role

    app = create_app(app_config(url, *unlimited))
    db = app.extensions["prefcenter.db"]
    session = write_session(db)
    seed_catalogue(session)
    session.commit()
    roles = {role.slug: role for role in session.query(Role)}
    signer = get_signer(app)
    for i in range(count):
        add(session, signer, roles, i)
        if i % 500 == 499:
            session.commit()
    session.commit()
    session.close()
    db.engine.dispose()
