"""CRM-scale sync: `prefcenter subscribers import`, the batch endpoint, concurrent PUTs.

    .venv/bin/python bench/api_sync.py                                   # SQLite
    .venv/bin/python bench/api_sync.py --database postgresql+psycopg://postgres@127.0.0.1/bench

Against a fresh database (its schema is dropped and rebuilt), in one run:

1. import: `prefcenter subscribers import` of --rows CSV rows (two topics each), as a
   subprocess: seconds, rows/s, and its peak RSS next to the peak RSS of a tenth of the
   rows (flat memory: the two should be close);
2. batch: --batches calls of POST /api/v1/subscribers/batch with 10,000 new subscribers
   each, through gunicorn (2 workers): subscribers/s; then the same batches again
   (unchanged: one read per 500);
3. PUT: 8 concurrent clients for --seconds, PUT of an unchanged subscriber (one read, no
   lock), against the baseline of the same run: 8 clients whose PUT changes the
   subscriber each time (the write path every PUT took before).
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import Gunicorn, warm_up  # noqa: E402  (bench/common.py: the gunicorn server)

from tests.conftest import reset_database  # noqa: E402

SECRET = "bench-secret-" + "x" * 32


def seed(url: str) -> str:
    from app import create_app
    from app.api.auth import create_api_key
    from app.demo import seed_catalogue

    app = create_app({"PREFCENTER_ENV": "test", "TESTING": True, "SECRET_KEYS": [SECRET],
                      "DATABASE_URL": url, "BASE_URL": "http://localhost",
                      "RATELIMIT_ENABLED": False})
    session = app.extensions["prefcenter.db"].sessionmaker()
    seed_catalogue(session)
    _key, plain = create_api_key(session, "bench")
    session.commit()
    session.close()
    app.extensions["prefcenter.db"].engine.dispose()
    return plain


def env_for(url: str) -> dict:
    return {**os.environ, "PREFCENTER_DATABASE_URL": url, "PREFCENTER_SECRET_KEY": SECRET,
            "PREFCENTER_BASE_URL": "http://localhost",
            "PREFCENTER_RATELIMIT_API": "1000000 per minute"}


def write_csv(path: Path, rows: int, prefix: str) -> None:
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["external_id", "email", "topic.offers", "frequency.offers",
                         "topic.news"])
        for n in range(rows):
            writer.writerow([f"{prefix}-{n}", f"{prefix}-{n}@example.com", "true", "monthly",
                             "false"])


def run_import(url: str, path: Path) -> tuple[float, int, float, str]:
    code = ("import resource, sys\nfrom app.cli import main\n"
            f"sys.argv = ['prefcenter', 'subscribers', 'import', {str(path)!r}]\n"
            "try:\n    main()\nfinally:\n"
            "    usage = resource.getrusage(resource.RUSAGE_SELF)\n"
            "    print('maxrss', usage.ru_maxrss, usage.ru_utime + usage.ru_stime, "
            "file=sys.stderr)\n")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], env=env_for(url), cwd=ROOT,
                          capture_output=True, text=True, check=False)
    took = time.perf_counter() - started
    _, rss, cpu = next(line.split() for line in done.stderr.splitlines()
                       if line.startswith("maxrss"))
    summary = [line for line in done.stderr.splitlines() if " rows: " in line]
    return took, int(rss), float(cpu), summary[-1] if summary else done.stderr[-500:]


def batches(base: str, headers: dict, count: int, prefix: str) -> float:
    started = time.perf_counter()
    with httpx.Client(base_url=base, headers=headers, timeout=600) as client:
        for b in range(count):
            items = [{"external_id": f"{prefix}-{b}-{n}", "email": f"{prefix}-{b}-{n}@example.com",
                      "topics": {"offers": {"subscribed": True}, "news": {"subscribed": False}}}
                     for n in range(10_000)]
            answer = client.post("/api/v1/subscribers/batch", json={"items": items})
            answer.raise_for_status()
            statuses = {i["status"] for i in answer.json()["items"]}
            assert statuses <= {200, 201}, statuses
    return count * 10_000 / (time.perf_counter() - started)


def puts(base: str, headers: dict, ids: list[str], seconds: float, *, change: bool,
         clients: int = 8) -> float:
    done = [0] * clients
    stop = time.perf_counter() + seconds

    def client_loop(k: int):
        rng = random.Random(k)
        with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
            while time.perf_counter() < stop:
                external_id = rng.choice(ids)
                body = {"email": f"{external_id}@example.com",
                        "topics": {"offers": {"subscribed": True}}}
                if change:
                    body["locale"] = rng.choice(["en", "ru", "ar", "ms"])
                    body["topics"]["offers"]["frequency"] = rng.choice(["monthly",
                                                                        "weekly"])
                answer = client.put(f"/api/v1/subscribers/{external_id}", json=body)
                assert answer.status_code == 200, answer.text
                done[k] += 1

    threads = [threading.Thread(target=client_loop, args=(k,)) for k in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", default="")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-sync-"))
    url = args.database or f"sqlite:///{tmp / 'bench.sqlite3'}"
    print(f"database: {url.split('@')[-1]}; load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs")
    reset_database(url)
    key = seed(url)
    headers = {"Authorization": f"Bearer {key}"}

    small, large = tmp / "small.csv", tmp / "large.csv"
    write_csv(small, max(args.rows // 10, 1), "s")
    write_csv(large, args.rows, "l")
    small_took, small_rss, _cpu, _ = run_import(url, small)
    took, rss, cpu, summary = run_import(url, large)
    # CPU seconds of the import process itself (its share of a loaded machine aside).
    print(f"import   {args.rows:>9,} rows  {took:8.1f} s  {args.rows / took:8.0f} rows/s  "
          f"CPU {cpu:.1f} s ({args.rows / cpu:.0f} rows per CPU second)  "
          f"peak RSS {rss / 1024:.0f} MiB (a tenth of the rows: {small_rss / 1024:.0f} MiB, "
          f"{small_took:.1f} s)   [{summary}]")

    # 2 sync workers; a batch of 10,000 can outlast gunicorn's default 30 s worker timeout.
    server = Gunicorn("wsgi:app", "sync", env_for(url), 1, 2, ("--timeout", "900"))
    server.wait()
    base = server.base_url
    warm_up(base, ["/healthz"])  # a worker answers: its boot is not timed as batch work
    try:
        created = batches(base, headers, args.batches, "b")
        print(f"batch    {args.batches} x 10,000 new       {created:8.0f} subscribers/s")
        ids = [f"l-{n}" for n in range(min(args.rows, 5_000))]
        baseline = puts(base, headers, ids, args.seconds, change=True)
        fast = puts(base, headers, ids, args.seconds, change=False)
        print(f"PUT x8   changing (baseline, the write path)  {baseline:8.0f} /s")
        print(f"PUT x8   unchanged (one read)                  {fast:8.0f} /s  "
              f"({fast / baseline:.1f}x)")
    finally:
        server.stop()
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
