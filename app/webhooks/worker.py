"""The delivery worker: claim due outbox rows, POST them, record what happened.

Several workers may run at once. A claim is a short transaction: PostgreSQL
selects due rows ``FOR UPDATE SKIP LOCKED`` (workers never wait for, nor take,
each other's rows); SQLite runs the same select-and-mark under ``BEGIN
IMMEDIATE`` (one writer at a time). Claimed rows get ``claimed_by`` and a lease
(``claimed_until``); the POSTs happen outside any transaction, on a thread
pool sharing one pooled HTTP client; results are recorded in another short
transaction. A worker that dies leaves its leases to expire, and the rows are
claimed again: delivery is at least once.

Per-subscriber order: a delivery is not even claimed while an earlier event of
the same subscriber is still pending for the same endpoint; a dead one stops
blocking.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import httpx
from sqlalchemy import bindparam, exists, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import aliased

from app.db import Database, write_session
from app.db import utcnow as _utcnow
from app.events.models import Event
from app.webhooks import transport
from app.webhooks.models import WebhookDelivery, WebhookEndpoint
from app.webhooks.services import DEAD, DELIVERED, PENDING, WebhookSettings, retry_delay
from app.webhooks.services import signing_secrets as _signing_secrets

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Job:
    """One claimed delivery with everything needed to send it."""

    delivery_id: int
    endpoint_id: str
    event_id: int
    attempts: int
    url: str
    secrets: list[str]
    event_type: str
    created_at: dt.datetime
    payload: dict


@dataclass(slots=True)
class Stats:
    delivered: int = 0
    failed: int = 0
    dead: int = 0
    released: int = 0
    disabled: set[str] = field(default_factory=set)

    @property
    def attempted(self) -> int:
        return self.delivered + self.failed


def default_worker_id() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{threading.get_ident() % 100000}"


class Worker:
    """Delivers due webhooks from one database.

    ``run_once()`` drains what is due when it starts (each due delivery gets one
    attempt; what is blocked only by an earlier delivery of the same subscriber
    that succeeds in the meantime goes too); ``run(stop)`` loops until ``stop``
    is set, then finishes in-flight POSTs, records them and releases the rest.
    """

    def __init__(self, db: Database, settings: WebhookSettings, *,
                 worker_id: str | None = None, client: httpx.Client | None = None,
                 concurrency: int | None = None):
        self.db = db
        self.settings = settings
        self.worker_id = (worker_id or default_worker_id())[:64]
        self.concurrency = max(1, concurrency or settings.concurrency)
        self._own_client = client is None
        self.client = client or transport.make_client(settings.timeout, self.concurrency)

    def close(self) -> None:
        if self._own_client:
            self.client.close()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    # Claiming --------------------------------------------------------------------------

    def claim(self, limit: int, *, due_before: dt.datetime | None = None) -> list[Job]:
        """Lease up to ``limit`` due deliveries to this worker (committed) and return them."""
        d, e = WebhookDelivery, WebhookEndpoint
        earlier = aliased(WebhookDelivery)
        session = write_session(self.db)
        try:
            now = _utcnow()
            blocked = exists().where(
                earlier.endpoint_id == d.endpoint_id,
                earlier.subscriber_id == d.subscriber_id,
                earlier.event_id < d.event_id,
                earlier.status == PENDING,
            )
            query = (
                select(d.id)
                .join(e, e.id == d.endpoint_id)
                .where(
                    d.status == PENDING,
                    d.next_attempt_at <= (due_before or now),
                    (d.claimed_until.is_(None)) | (d.claimed_until < now),
                    e.enabled.is_(True),
                    ~blocked,
                )
                .order_by(d.next_attempt_at, d.id)
                .limit(limit)
            )
            if not self.db.is_sqlite:
                query = query.with_for_update(of=d, skip_locked=True)
            ids = list(session.scalars(query))
            if not ids:
                session.commit()
                return []
            session.execute(
                update(d).where(d.id.in_(ids))
                .values(claimed_by=self.worker_id,
                        claimed_until=now + dt.timedelta(seconds=self.settings.lease))
                .execution_options(synchronize_session=False)
            )
            rows = session.execute(
                select(d.id, d.endpoint_id, d.event_id, d.attempts, e.url, e.secret,
                       e.previous_secret, e.previous_secret_expires_at, Event.type,
                       Event.created_at, Event.payload)
                .join(e, e.id == d.endpoint_id)
                .join(Event, Event.id == d.event_id)
                .where(d.id.in_(ids))
                .order_by(d.next_attempt_at, d.id)
            ).all()
            session.commit()
        finally:
            session.close()
        return [
            Job(delivery_id=r[0], endpoint_id=r[1], event_id=r[2], attempts=r[3], url=r[4],
                secrets=_signing_secrets(r[5], r[6], r[7], now), event_type=r[8],
                created_at=r[9], payload=r[10])
            for r in rows
        ]

    def release(self, jobs: list[Job]) -> None:
        """Give claimed but unsent deliveries back (shutdown)."""
        if not jobs:
            return
        d = WebhookDelivery
        session = write_session(self.db)
        try:
            session.execute(
                update(d)
                .where(d.id.in_([j.delivery_id for j in jobs]), d.claimed_by == self.worker_id)
                .values(claimed_by=None, claimed_until=None)
                .execution_options(synchronize_session=False)
            )
            session.commit()
        finally:
            session.close()

    # Sending ---------------------------------------------------------------------------

    def send(self, job: Job) -> transport.AttemptResult:
        """POST one job (runs on the pool; touches no database)."""
        body = transport.render_body(job.event_type, job.created_at, job.payload)
        result = transport.post(self.client, job.url, job.secrets,
                                transport.message_id(job.event_id), body)
        if result.ok:
            log.info("webhook delivery %s (event %s) to %s: %s", job.delivery_id,
                     job.event_id, job.endpoint_id, result.status_code)
        else:
            log.warning("webhook delivery %s (event %s) to %s failed: %s", job.delivery_id,
                        job.event_id, job.endpoint_id, result.error)
        return result

    # Recording -------------------------------------------------------------------------

    def record(self, results: list[tuple[Job, transport.AttemptResult]],
               stats: Stats | None = None) -> Stats:
        """Store a batch of outcomes: delivered, or rescheduled with backoff, or dead;
        track each endpoint's failure streak and disable it past the limit."""
        stats = stats or Stats()
        if not results:
            return stats
        t = WebhookDelivery.__table__
        successes, failures = [], []
        ok_endpoints: set[str] = set()
        failed_endpoints: dict[str, tuple[dt.datetime, str]] = {}
        for job, result in results:
            if result.ok:
                successes.append({"b_id": job.delivery_id, "b_at": result.at,
                                  "b_code": result.status_code})
                ok_endpoints.add(job.endpoint_id)
                failed_endpoints.pop(job.endpoint_id, None)
                stats.delivered += 1
                continue
            attempts = job.attempts + 1
            delay = retry_delay(self.settings.retry_schedule, attempts)
            failures.append({
                "b_id": job.delivery_id, "b_attempts": attempts, "b_at": result.at,
                "b_code": result.status_code, "b_error": result.error,
                "b_status": DEAD if delay is None else PENDING,
                "b_next": result.at if delay is None
                else result.at + dt.timedelta(seconds=delay),
            })
            stats.failed += 1
            stats.dead += delay is None
            failed_endpoints.setdefault(job.endpoint_id, (result.at, result.error or ""))
            ok_endpoints.discard(job.endpoint_id)
        session = write_session(self.db)
        try:
            if successes:
                session.connection().execute(
                    t.update()
                    .where(t.c.id == bindparam("b_id"), t.c.status == PENDING)
                    .values(status=DELIVERED, delivered_at=bindparam("b_at"),
                            attempts=t.c.attempts + 1, last_attempt_at=bindparam("b_at"),
                            last_status_code=bindparam("b_code"), last_error=None,
                            claimed_by=None, claimed_until=None),
                    successes,
                )
            if failures:
                session.connection().execute(
                    t.update()
                    .where(t.c.id == bindparam("b_id"), t.c.status == PENDING,
                           t.c.claimed_by == self.worker_id)
                    .values(status=bindparam("b_status"), attempts=bindparam("b_attempts"),
                            next_attempt_at=bindparam("b_next"),
                            last_attempt_at=bindparam("b_at"),
                            last_status_code=bindparam("b_code"),
                            last_error=bindparam("b_error"), claimed_by=None,
                            claimed_until=None),
                    failures,
                )
            self._track_endpoints(session, ok_endpoints, failed_endpoints, stats)
            session.commit()
        finally:
            session.close()
        return stats

    def _track_endpoints(self, session, ok: set[str],
                         failed: dict[str, tuple[dt.datetime, str]], stats: Stats) -> None:
        e = WebhookEndpoint
        if ok:
            session.execute(
                update(e).where(e.id.in_(sorted(ok)), e.failing_since.is_not(None))
                .values(failing_since=None).execution_options(synchronize_session=False)
            )
        limit = dt.timedelta(seconds=self.settings.disable_after)
        for endpoint_id, (at, error) in sorted(failed.items()):
            session.execute(
                update(e).where(e.id == endpoint_id, e.failing_since.is_(None))
                .values(failing_since=at).execution_options(synchronize_session=False)
            )
            since = session.scalar(select(e.failing_since).where(e.id == endpoint_id))
            if since is not None and at - since > limit:
                reason = (f"Disabled automatically: every delivery failed since "
                          f"{transport.iso_z(since)} (longer than "
                          f"{self.settings.disable_after / 86400:g} days). "
                          f"Last error: {error}")[:2000]
                done = session.execute(
                    update(e).where(e.id == endpoint_id, e.enabled.is_(True))
                    .values(enabled=False, disabled_reason=reason, updated_at=at)
                    .execution_options(synchronize_session=False)
                )
                if done.rowcount:
                    stats.disabled.add(endpoint_id)
                    log.warning("webhook endpoint %s disabled: %s", endpoint_id, reason)

    # Loops -----------------------------------------------------------------------------

    def run_once(self) -> Stats:
        """Drain what is due now, then return."""
        return self.run(threading.Event(), once=True)

    def run(self, stop: threading.Event, *, once: bool = False) -> Stats:
        """Deliver until ``stop`` is set (or, with ``once``, until nothing due is left).

        On stop: POSTs already under way finish and are recorded; claimed rows not
        yet started are released at once for other workers.
        """
        stats = Stats()
        started = _utcnow()
        window = self.concurrency * 2
        inflight: dict[Future, Job] = {}
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="webhook")
        try:
            while not stop.is_set():
                self._collect(inflight, stats)
                room = window - len(inflight)
                claimed: list[Job] = []
                if room >= max(1, self.concurrency // 2):
                    try:
                        claimed = self.claim(room, due_before=started if once else None)
                    except DBAPIError:
                        log.exception("webhook worker could not claim deliveries")
                        stop.wait(self.settings.poll_interval)
                        continue
                    for job in claimed:
                        inflight[pool.submit(self.send, job)] = job
                if not inflight:
                    if once:
                        break
                    stop.wait(self.settings.poll_interval)
                    continue
                wait(list(inflight), timeout=self.settings.poll_interval,
                     return_when=FIRST_COMPLETED)
        finally:
            unstarted = [job for future, job in inflight.items() if future.cancel()]
            for future in [f for f in inflight if f.cancelled()]:
                inflight.pop(future)
            wait(list(inflight))
            self._collect(inflight, stats)
            self.release(unstarted)
            stats.released += len(unstarted)
            pool.shutdown(wait=True)
        return stats

    def _collect(self, inflight: dict[Future, Job], stats: Stats) -> None:
        done = [f for f in inflight if f.done()]
        if not done:
            return
        results = []
        for future in done:
            job = inflight.pop(future)
            try:
                results.append((job, future.result()))
            except Exception as exc:  # a bug in sending: record it as a failed attempt
                log.exception("webhook delivery %s crashed", job.delivery_id)
                results.append((job, transport.AttemptResult(
                    False, None, f"internal error: {exc!r}"[:2000], _utcnow(), 0.0)))
        try:
            self.record(results, stats)
        except DBAPIError:
            # The leases will expire and the deliveries go again: at least once.
            log.exception("webhook worker could not record %d results", len(results))
