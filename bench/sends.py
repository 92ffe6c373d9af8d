"""Benchmark: a due send (POST /api/v1/topics/<slug>/sends) against the plain export.

Not a test. Loads the data of ``bench/recipients.py`` (N subscribers, default
1,000,000; offers subscribed by 80% over four frequencies, 2% unsubscribed from
all, 0.5% erased) into a fresh database, then, in one child process serving the
real app on 127.0.0.1, runs in turns, ``--rounds`` times:

* ``GET /api/v1/topics/offers/recipients`` (the plain export, read only), and
* ``POST /api/v1/topics/offers/sends {"campaign": "bench-<round>"}``: every
  recipient is due (the app's clock is moved 100 days on between rounds), so
  the send streams the same rows as the export and records every one of them.

Each is checked against the expected row count; it prints rows/s of both, their
ratio (the send's rate over the export's, in the same round), and the child's
peak RSS during each (VmHWM, reset before it). The machine is shared: compare
the ratio, not the absolute rates.

    .venv/bin/python bench/sends.py                                    # both, 1M
    .venv/bin/python bench/sends.py --databases postgresql --rows 200000
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import recipients as data  # noqa: E402  (bench/recipients.py: loader and RSS helpers)

DATABASE = "bench_sends"


def measure(client, method: str, path: str, headers: dict, body=None) -> dict:
    rss_before = data.reset_peak_rss()
    rows = size = 0
    started = time.perf_counter()
    with client.stream(method, path, headers=headers, json=body) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line:
                rows += 1
                size += len(line) + 1
    elapsed = time.perf_counter() - started
    return {"rows": rows, "bytes": size, "seconds": elapsed, "rate": rows / elapsed,
            "rss_before_kib": rss_before, "rss_peak_kib": data.peak_rss()}


def child(url: str, rounds: int) -> None:
    import httpx

    from app import create_app
    from app.api.auth import create_api_key
    from app.clock import get_clock
    from app.db import get_db, write_session
    from tests.conftest import serve

    app = create_app({"PREFCENTER_ENV": "test", "SECRET_KEYS": [data.SECRET],
                      "DATABASE_URL": url, "RATELIMIT_ENABLED": False})
    with app.app_context():
        session = write_session(get_db())
        _key, plain = create_api_key(session, "bench")
        session.commit()
        session.close()
    headers = {"Authorization": f"Bearer {plain}"}
    results = []
    with serve(app) as base, httpx.Client(base_url=base, timeout=1800) as client:
        for round_ in range(rounds):
            export = measure(client, "GET", "/api/v1/topics/offers/recipients", headers)
            send = measure(client, "POST", "/api/v1/topics/offers/sends", headers,
                           {"campaign": f"bench-{round_}", "channel": "email"})
            results.append({"export": export, "send": send})
            get_clock(app).advance(dt.timedelta(days=100))  # everybody due again
    json.dump(results, sys.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--pg-url", default=data.PG_DEFAULT)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.rounds)
        return
    print(f"due send vs plain export of topic 'offers', {args.rows:,} subscribers, "
          f"{args.rounds} rounds")
    expected = data.expected_offers(args.rows)
    for kind in args.databases.split(","):
        started = time.perf_counter()
        url = data.fresh_database(kind, args.pg_url, DATABASE)
        data.populate(url, args.rows)
        print(f"\n[{kind}] loaded {args.rows:,} subscribers in "
              f"{time.perf_counter() - started:.1f} s")
        done = subprocess.run([sys.executable, __file__, "--child", url, "--rounds",
                               str(args.rounds)], capture_output=True, text=True,
                              check=False, cwd=ROOT, timeout=7200)
        if done.returncode != 0:
            raise SystemExit(f"child failed:\n{done.stderr[-3000:]}")
        results = json.loads(done.stdout.strip().splitlines()[-1])
        ratios = []
        for i, result in enumerate(results):
            for name in ("export", "send"):
                r = result[name]
                ok = "ok" if r["rows"] == expected else f"MISMATCH (expected {expected:,})"
                print(f"[{kind}] round {i + 1} {name:6}: {r['rows']:,} rows {ok}, "
                      f"{r['bytes'] / 1e6:.0f} MB in {r['seconds']:.1f} s = "
                      f"{r['rate']:,.0f} rows/s; RSS {r['rss_before_kib'] / 1024:.0f} -> "
                      f"peak {r['rss_peak_kib'] / 1024:.0f} MiB")
            ratios.append(result["send"]["rate"] / result["export"]["rate"])
            print(f"[{kind}] round {i + 1} send/export rate: {ratios[-1]:.2f}")
        print(f"[{kind}] median send/export rate: {statistics.median(ratios):.2f}")
    print("\n(server thread and httpx client share one process on a shared 2-core machine)")


if __name__ == "__main__":
    main()
