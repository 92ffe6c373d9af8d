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
import functools
import logging
import os
import socket
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import httpx
from sqlalchemy import bindparam, exists, select, text, update
from sqlalchemy.exc import DBAPIError

from app.db import Database, write_session
from app.db import utcnow as _utcnow
from app.events.models import Event
from app.retry import retry_delay
from app.subscribers.services import resume_due
from app.webhooks import transport
from app.webhooks.models import WebhookDelivery, WebhookEndpoint
from app.webhooks.services import DEAD, DELIVERED, PENDING, WebhookSettings
from app.webhooks.services import signing_secrets as _signing_secrets

log = logging.getLogger(__name__)

RECORD_DELAY = 0.05  # seconds a finished delivery may wait to be recorded with others
PAUSE_SWEEP = 60.0  # seconds between two looks for pauses that have ended


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


@functools.cache
def _claim_statements(*, postgresql: bool):
    """The claim, built once: ``(pick, lease, fetch)`` for SQLite (select the ids,
    mark them, read them) or ``(None, None, fetch)`` for PostgreSQL, where fetch
    is a single ``WITH claimed AS (UPDATE ... RETURNING) SELECT``.

    A delivery is due when pending, its time has come, its lease (if any) has
    expired, its endpoint is enabled, and no earlier event of the same subscriber
    is still pending for the same endpoint (per-subscriber order; dead ones do
    not block).
    """
    t, e, ev = WebhookDelivery.__table__, WebhookEndpoint.__table__, Event.__table__
    due, earlier = t.alias("due"), t.alias("earlier")
    blocked = exists().where(
        earlier.c.endpoint_id == due.c.endpoint_id,
        earlier.c.subscriber_id == due.c.subscriber_id,
        earlier.c.event_id < due.c.event_id,
        earlier.c.status == PENDING,
    )
    pick = (
        select(due.c.id)
        .join(e, e.c.id == due.c.endpoint_id)
        .where(
            due.c.status == PENDING,
            due.c.next_attempt_at <= bindparam("due_before"),
            due.c.claimed_until.is_(None) | (due.c.claimed_until < bindparam("now")),
            e.c.enabled.is_(True),
            ~blocked,
        )
        # next_attempt_at alone: the due index gives that order, so the scan stops
        # after `limit` rows instead of sorting every pending one.
        .order_by(due.c.next_attempt_at)
        .limit(bindparam("limit"))
    )
    lease = t.update().values(claimed_by=bindparam("worker"), claimed_until=bindparam("until"))
    fields = (t.c.id, t.c.endpoint_id, t.c.event_id, t.c.attempts, t.c.next_attempt_at)
    if postgresql:
        claimed = (lease.where(t.c.id.in_(pick.with_for_update(of=due, skip_locked=True)))
                   .returning(*fields).cte("claimed"))
        pick = lease = None
    else:
        ids = bindparam("ids", expanding=True)
        lease = lease.where(t.c.id.in_(ids))
        claimed = select(*fields).where(t.c.id.in_(ids)).subquery("claimed")
    fetch = (
        select(claimed.c.id, claimed.c.endpoint_id, claimed.c.event_id, claimed.c.attempts,
               e.c.url, e.c.secret, e.c.previous_secret, e.c.previous_secret_expires_at,
               ev.c.type, ev.c.created_at, ev.c.payload)
        .join(e, e.c.id == claimed.c.endpoint_id)
        .join(ev, ev.c.id == claimed.c.event_id)
        .order_by(claimed.c.next_attempt_at, claimed.c.id)
    )
    return pick, lease, fetch


@functools.cache
def _record_statements():
    """Outcome updates, built once: delivered, failed (rescheduled or dead, only
    while this worker holds the claim), and the end of endpoints' failure streaks."""
    t, e = WebhookDelivery.__table__, WebhookEndpoint.__table__
    delivered = (
        t.update()
        .where(t.c.id == bindparam("b_id"), t.c.status == PENDING)
        .values(status=DELIVERED, delivered_at=bindparam("b_at"), attempts=t.c.attempts + 1,
                last_attempt_at=bindparam("b_at"), last_status_code=bindparam("b_code"),
                last_error=None, claimed_by=None, claimed_until=None)
    )
    failed = (
        t.update()
        .where(t.c.id == bindparam("b_id"), t.c.status == PENDING,
               t.c.claimed_by == bindparam("b_worker"))
        .values(status=bindparam("b_status"), attempts=bindparam("b_attempts"),
                next_attempt_at=bindparam("b_next"), last_attempt_at=bindparam("b_at"),
                last_status_code=bindparam("b_code"), last_error=bindparam("b_error"),
                claimed_by=None, claimed_until=None)
    )
    streak_over = (
        e.update()
        .where(e.c.id.in_(bindparam("ids", expanding=True)), e.c.failing_since.is_not(None))
        .values(failing_since=None)
    )
    return delivered, failed, streak_over


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
        self.client = client or transport.make_client(
            settings.timeout, self.concurrency, allow_private=settings.allow_private)

    def close(self) -> None:
        if self._own_client:
            self.client.close()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def _session(self):
        """A short write transaction. On PostgreSQL its commit does not wait for the
        WAL flush (``synchronous_commit = off``): a server crash may forget the last
        claims or results, which only means sending those deliveries again (at
        least once); the outbox rows themselves were committed durably with their
        change."""
        session = write_session(self.db)
        if not self.db.is_sqlite:
            session.execute(text("SET LOCAL synchronous_commit TO OFF"))
        return session

    # Claiming --------------------------------------------------------------------------

    def claim(self, limit: int, *, due_before: dt.datetime | None = None) -> list[Job]:
        """Lease up to ``limit`` due deliveries to this worker (committed) and return them.

        PostgreSQL: one statement, ``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE
        SKIP LOCKED) RETURNING``; SQLite: select then mark, inside ``BEGIN
        IMMEDIATE`` so no other writer runs in between.
        """
        now = _utcnow()
        params = {"now": now, "due_before": due_before or now, "limit": limit,
                  "worker": self.worker_id,
                  "until": now + dt.timedelta(seconds=self.settings.lease)}
        pick, lease, fetch = _claim_statements(postgresql=not self.db.is_sqlite)
        session = self._session()
        try:
            connection = session.connection()
            if pick is not None:
                params["ids"] = list(connection.execute(pick, params).scalars())
                if params["ids"]:
                    connection.execute(lease, params)
            rows = connection.execute(fetch, params).all() if params.get("ids", True) else []
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
        session = self._session()
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
        delivered, failed, streak_over = _record_statements()
        session = self._session()
        try:
            connection = session.connection()
            if successes:
                connection.execute(delivered, successes)
            if failures:
                for row in failures:
                    row["b_worker"] = self.worker_id
                connection.execute(failed, failures)
            if ok_endpoints:
                connection.execute(streak_over, {"ids": sorted(ok_endpoints)})
            self._track_endpoints(session, failed_endpoints, stats)
            session.commit()
        finally:
            session.close()
        return stats

    def _track_endpoints(self, session, failed: dict[str, tuple[dt.datetime, str]],
                         stats: Stats) -> None:
        """Start (or continue) the failure streak of endpoints that failed; disable
        those failing for longer than ``disable_after``."""
        e = WebhookEndpoint
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

    def window(self) -> tuple[int, int]:
        """How many claimed deliveries may be queued at once, and the smallest claim.

        Several rounds of work are queued so the pool never waits for the database,
        but no more than the lease covers if every POST took the full timeout.
        """
        c = self.concurrency
        rounds = max(1, int(self.settings.lease // max(self.settings.timeout, 0.001)) - 1)
        window = max(c, min(max(4 * c, 64), rounds * c))
        return window, max(1, min(window // 2, max(c, 32)))

    def end_pauses(self) -> int:
        """Record the end of the pauses whose date has come (``resumed`` events, whose
        webhooks this worker then delivers). Exports honour the date without this."""
        try:
            with self._session() as session:
                events = resume_due(session, _utcnow())
                session.commit()
        except DBAPIError:
            log.exception("webhook worker could not end due pauses")
            return 0
        return len(events)

    def run_once(self) -> Stats:
        """Drain what is due now, then return."""
        return self.run(threading.Event(), once=True)

    def run(self, stop: threading.Event, *, once: bool = False) -> Stats:
        """Deliver until ``stop`` is set (or, with ``once``, until nothing due is left).

        On stop: POSTs already under way finish and are recorded; claimed rows not
        yet started are released at once for other workers.
        """
        stats = Stats()
        self.end_pauses()
        next_sweep = time.monotonic() + PAUSE_SWEEP
        started = _utcnow()
        # Up to four rounds of work queued on the pool, claimed (and recorded) in
        # batches of at least `concurrency` rows: few, short transactions.
        window, batch = self.window()
        inflight: dict[Future, Job] = {}
        next_claim = last_record = 0.0
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="webhook")
        try:
            while not stop.is_set():
                if time.monotonic() >= next_sweep:
                    self.end_pauses()
                    next_sweep = time.monotonic() + PAUSE_SWEEP
                done = sum(f.done() for f in inflight)
                if done and (done >= batch or done == len(inflight)
                             or time.monotonic() - last_record > RECORD_DELAY):
                    self._collect(inflight, stats)
                    last_record = time.monotonic()
                    next_claim = 0.0  # a recorded result may unblock a subscriber's next event
                room = window - len(inflight)
                if room >= batch and time.monotonic() >= next_claim:
                    try:
                        claimed = self.claim(room, due_before=started if once else None)
                    except DBAPIError:
                        log.exception("webhook worker could not claim deliveries")
                        stop.wait(self.settings.poll_interval)
                        continue
                    for job in claimed:
                        inflight[pool.submit(self.send, job)] = job
                    if len(claimed) < room:  # nothing more is due: look again later
                        next_claim = time.monotonic() + self.settings.poll_interval
                if not inflight:
                    if once:
                        break
                    stop.wait(max(0.0, min(self.settings.poll_interval,
                                           next_claim - time.monotonic())))
                    continue
                running = [f for f in inflight if not f.done()]
                if running:
                    wait(running, timeout=RECORD_DELAY, return_when=FIRST_COMPLETED)
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
