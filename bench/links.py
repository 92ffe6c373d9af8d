"""Benchmark: links minted per second, next to raw HMAC-SHA1 over the same payloads.

Not a test. Builds a SQLite database of N subscribers (``bench/recipients.py``'s
bulk loader, file in the temp directory), then measures, in one run:

* raw ``hmac.new(key, payload, sha1).digest()`` over the very payloads the
  tokens sign (two per link: a preference and an unsubscribe token);
* ``LinkSigner.mint`` (itsdangerous, as ``links_for`` uses it) and the
  ``Minter`` that ``prefcenter links mint`` uses, in-process;
* ``POST /api/v1/links`` with batches of 1,000 through Flask's test client
  (in-process: the app's work without a network stack);
* ``prefcenter links mint`` as a real process over a CSV of N rows (database
  lookups, CSV in and out included), extrapolated to 1M rows.

    .venv/bin/python bench/links.py                  # N = 200,000
    .venv/bin/python bench/links.py --rows 1000000   # the full million
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import hmac
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from recipients import fresh_database, populate  # noqa: E402

from app import create_app  # noqa: E402
from app.api.auth import create_api_key  # noqa: E402
from app.db import get_db, write_session  # noqa: E402
from app.links.minting import LinkTarget, Minter  # noqa: E402
from app.links.services import SALTS, UNSUBSCRIBE, get_signer  # noqa: E402

SECRET = "bench-secret-key-0123456789"
BASE_URL = "https://prefs.example.com"


def live_ids(n: int) -> list[str]:
    """External ids the loader left unerased."""
    return [f"ext-{i}" for i in range(1, n + 1) if i % 200 != 3]


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:>12,.0f}/s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()
    tmp = Path(tempfile.gettempdir())
    started = time.perf_counter()
    url = fresh_database("sqlite", "", "bench_links")
    populate(url, args.rows)
    print(f"{args.rows:,} subscribers loaded into {url} in {time.perf_counter() - started:.1f} s")
    app = create_app({"PREFCENTER_ENV": "test", "SECRET_KEYS": [SECRET], "DATABASE_URL": url,
                      "BASE_URL": BASE_URL, "RATELIMIT_ENABLED": False})
    ids = live_ids(args.rows)
    with app.app_context():
        session = write_session(get_db())
        _key, api_key = create_api_key(session, "bench")
        session.commit()
        from sqlalchemy import select

        from app.subscribers.models import Subscriber

        targets = [LinkTarget(p, e) for p, e in session.execute(
            select(Subscriber.public_id, Subscriber.link_epoch)
            .where(Subscriber.erased_at.is_(None)).order_by(Subscriber.id))]
        session.close()
    n = len(targets)
    print(f"minting for {n:,} subscribers (topic 'offers', campaign 'bench'), one core\n")

    # Raw HMAC over the same payloads: what signing alone costs.
    minter = Minter.for_app(app)
    from itsdangerous import URLSafeTimedSerializer
    from itsdangerous.encoding import base64_encode, int_to_bytes

    stamp = base64_encode(int_to_bytes(int(time.time())))
    payloads = [base64_encode(minter._encode([t.public_id, 0, "offers", "bench"]).encode())
                + b"." + stamp for t in targets]
    key = URLSafeTimedSerializer([SECRET], salt=SALTS[UNSUBSCRIBE]).make_signer().derive_key()
    t0 = time.perf_counter()
    for payload in payloads:
        hmac.new(key, payload, hashlib.sha1).digest()
        hmac.new(key, payload, hashlib.sha1).digest()
    raw = time.perf_counter() - t0
    del payloads

    signer = get_signer(app)
    sample = targets[: min(n, 100_000)]
    t0 = time.perf_counter()
    for t in sample:
        signer.mint("preferences", t.public_id, epoch=t.link_epoch, topic="offers",
                    campaign="bench")
        signer.mint(UNSUBSCRIBE, t.public_id, epoch=t.link_epoch, topic="offers",
                    campaign="bench")
    itsdangerous_time = time.perf_counter() - t0

    t0 = time.perf_counter()
    for t in targets:
        minter.links(t, topic="offers", campaign="bench")
    fast = time.perf_counter() - t0

    client = app.test_client()
    headers = {"Authorization": f"Bearer {api_key}"}
    api_ids = ids[: min(len(ids), 100_000)]
    t0 = time.perf_counter()
    for start in range(0, len(api_ids), 1000):
        items = [{"external_id": x, "topic": "offers", "campaign": "bench"}
                 for x in api_ids[start:start + 1000]]
        response = client.post("/api/v1/links", json={"items": items}, headers=headers)
        assert response.status_code == 200, response.get_data(as_text=True)
    api = time.perf_counter() - t0

    source = tmp / "bench_links_in.csv"
    target = tmp / "bench_links_out.csv"
    with source.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["external_id", "topic", "campaign"])
        for x in ids:
            writer.writerow([x, "offers", "bench"])
    env = {**os.environ, "PREFCENTER_DATABASE_URL": url, "PREFCENTER_ENV": "test",
           "PREFCENTER_SECRET_KEY": SECRET, "PREFCENTER_BASE_URL": BASE_URL}
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "app.cli", "links", "mint", "--input",
                           str(source), "--output", str(target)], env=env, cwd=ROOT,
                          capture_output=True, text=True, check=False, timeout=900)
    cli = time.perf_counter() - t0
    assert done.returncode == 0, done.stderr
    with target.open() as handle:
        written = sum(1 for _ in handle) - 1
    assert written == len(ids), (written, len(ids))

    print(f"{'raw hmac-sha1 x2 (signing floor)':<44}{rate(n, raw)} links")
    print(f"{'LinkSigner.mint x2 (itsdangerous)':<44}{rate(len(sample), itsdangerous_time)}"
          " links")
    print(f"{'Minter.links (prefcenter links mint)':<44}{rate(n, fast)} links")
    print(f"{'POST /api/v1/links, 1000/batch, test client':<44}{rate(len(api_ids), api)} links")
    print(f"{'prefcenter links mint, process, CSV':<44}{rate(len(ids), cli)} links "
          f"({len(ids):,} rows in {cli:.1f} s incl. start-up; "
          f"1M rows ≈ {cli * 1_000_000 / len(ids):.0f} s)")
    source.unlink()
    target.unlink()


if __name__ == "__main__":
    main()
