"""The mail worker: claim due messages, send them over SMTP, record what happened.

Several workers may run at once, on SQLite or PostgreSQL. A claim is a short
transaction that leases due rows to one worker (``claimed_by``, ``claimed_until``):
PostgreSQL picks them ``FOR UPDATE SKIP LOCKED`` in one ``UPDATE ... RETURNING``; SQLite
selects and marks them under ``BEGIN IMMEDIATE`` (one writer at a time). A leased row is
invisible to other workers until its lease ends, and a worker sends a message only while
its own lease has at least one SMTP timeout left, so two workers never send one message.
Each outcome is recorded as soon as the server answers (only while this worker still
holds the claim): sent, or due again after the shared backoff (:mod:`app.retry`), or dead
once the schedule is spent. A worker that dies leaves its leases to expire.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import smtplib
import socket
import threading
from dataclasses import dataclass

from flask import Flask
from sqlalchemy import bindparam, delete, select, update

from app.db import get_db, utcnow, write_session
from app.mail.models import DEAD, PENDING, SENT, MailMessage
from app.mail.services import MailSettings, connect, render
from app.retry import retry_delay

log = logging.getLogger(__name__)

PURGE_EVERY = 3600.0  # seconds between two purges of finished messages


@dataclass(slots=True)
class Job:
    id: int
    kind: str
    recipient: str
    locale: str
    context: dict
    attempts: int
    claimed_until: dt.datetime


@dataclass(slots=True)
class Stats:
    sent: int = 0
    failed: int = 0
    dead: int = 0
    released: int = 0


@functools.cache
def _claim_statements(*, postgresql: bool):
    t = MailMessage.__table__
    pick = (
        select(t.c.id)
        .where(t.c.status == PENDING, t.c.next_attempt_at <= bindparam("due_before"),
               t.c.claimed_until.is_(None) | (t.c.claimed_until < bindparam("now")))
        .order_by(t.c.next_attempt_at)
        .limit(bindparam("limit"))
    )
    lease = t.update().values(claimed_by=bindparam("worker"), claimed_until=bindparam("until"))
    fields = (t.c.id, t.c.kind, t.c.recipient, t.c.locale, t.c.context, t.c.attempts,
              t.c.claimed_until)
    if postgresql:
        return None, (lease.where(t.c.id.in_(pick.with_for_update(skip_locked=True)))
                      .returning(*fields))
    ids = bindparam("ids", expanding=True)
    return pick, (lease.where(t.c.id.in_(ids)).returning(*fields))


def default_worker_id() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{threading.get_ident() % 100000}"


class MailWorker:
    """Sends due mail from one app's database; ``run_once()`` drains what is due now."""

    def __init__(self, app: Flask, settings: MailSettings | None = None, *,
                 worker_id: str | None = None):
        self.app = app
        self.db = get_db(app)
        self.settings = settings or MailSettings.from_config(app.config)
        self.worker_id = (worker_id or default_worker_id())[:64]
        self._next_purge = 0.0

    # Claiming ------------------------------------------------------------------------

    def claim(self, limit: int | None = None, *,
              due_before: dt.datetime | None = None) -> list[Job]:
        """Lease up to ``limit`` due messages to this worker (committed) and return them."""
        now = utcnow()
        params = {"now": now, "due_before": due_before or now,
                  "limit": limit or self.settings.batch, "worker": self.worker_id,
                  "until": now + dt.timedelta(seconds=self.settings.lease)}
        pick, lease = _claim_statements(postgresql=not self.db.is_sqlite)
        session = write_session(self.db)
        try:
            connection = session.connection()
            rows = []
            if pick is not None:
                params["ids"] = list(connection.execute(pick, params).scalars())
                if params["ids"]:
                    rows = connection.execute(lease, params).all()
            else:
                rows = connection.execute(lease, params).all()
            session.commit()
        finally:
            session.close()
        return sorted((Job(*row) for row in rows), key=lambda job: job.id)

    # Recording -----------------------------------------------------------------------

    def _record(self, job: Job, error: str | None, stats: Stats) -> None:
        m = MailMessage
        now = utcnow()
        values: dict = {"attempts": job.attempts + 1, "claimed_by": None, "claimed_until": None}
        if error is None:
            values.update(status=SENT, sent_at=now, context={}, last_error=None)
            stats.sent += 1
        else:
            delay = retry_delay(self.settings.retry_schedule, job.attempts + 1)
            values.update(last_error=error[:2000])
            if delay is None:
                values.update(status=DEAD)
                stats.dead += 1
            else:
                values.update(next_attempt_at=now + dt.timedelta(seconds=delay))
            stats.failed += 1
        session = write_session(self.db)
        try:
            session.execute(
                update(m).where(m.id == job.id, m.status == PENDING,
                                m.claimed_by == self.worker_id)
                .values(**values).execution_options(synchronize_session=False)
            )
            session.commit()
        finally:
            session.close()

    def release(self, jobs: list[Job]) -> None:
        """Give claimed but unsent messages back (shutdown, or a lease running out)."""
        if not jobs:
            return
        m = MailMessage
        session = write_session(self.db)
        try:
            session.execute(
                update(m).where(m.id.in_([j.id for j in jobs]), m.claimed_by == self.worker_id)
                .values(claimed_by=None, claimed_until=None)
                .execution_options(synchronize_session=False)
            )
            session.commit()
        finally:
            session.close()

    def purge(self) -> int:
        """Delete finished (sent, dead, dropped) messages older than ``settings.keep``."""
        m = MailMessage
        before = utcnow() - dt.timedelta(seconds=self.settings.keep)
        session = write_session(self.db)
        try:
            done = session.execute(
                delete(m).where(m.status != PENDING, m.created_at < before)
                .execution_options(synchronize_session=False)
            )
            session.commit()
        finally:
            session.close()
        return done.rowcount or 0

    # Sending -------------------------------------------------------------------------

    def send_batch(self, jobs: list[Job], stats: Stats) -> None:
        """Send ``jobs`` over one SMTP connection, recording each outcome at once."""
        smtp = None
        margin = dt.timedelta(seconds=self.settings.smtp_timeout * 2)
        for index, job in enumerate(jobs):
            if utcnow() + margin >= job.claimed_until:
                # Too little of the lease left: another worker may soon take these.
                self.release(jobs[index:])
                stats.released += len(jobs) - index
                break
            try:
                with self.app.app_context():
                    message = render(self.app, self.settings, kind=job.kind, to=job.recipient,
                                     locale=job.locale, context=job.context)
                if smtp is None:
                    smtp = connect(self.settings)
                smtp.send_message(message)
            except (smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError,
                    smtplib.SMTPSenderRefused) as exc:
                log.warning("mail %s (%s) refused: %s", job.id, job.kind, exc)
                self._record(job, f"refused: {exc}", stats)
            except (OSError, smtplib.SMTPException) as exc:
                # The server is unreachable or hung up: this and the rest wait their turn.
                log.warning("mail %s (%s) not sent: %r", job.id, job.kind, exc)
                for rest in jobs[index:]:
                    self._record(rest, f"smtp: {exc!r}", stats)
                smtp = None
                break
            else:
                log.info("mail %s (%s) sent", job.id, job.kind)
                self._record(job, None, stats)
        if smtp is not None:
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                smtp.close()

    # Loops ---------------------------------------------------------------------------

    def run_once(self) -> Stats:
        """Send what is due now (each message gets one attempt), then return."""
        return self.run(threading.Event(), once=True)

    def run(self, stop: threading.Event, *, once: bool = False) -> Stats:
        stats = Stats()
        started = utcnow()
        while not stop.is_set():
            if not once and (now := utcnow().timestamp()) >= self._next_purge:
                self.purge()
                self._next_purge = now + PURGE_EVERY
            # With ``once``, a message that failed meanwhile is due again only later.
            jobs = self.claim(due_before=started if once else None)
            if jobs:
                self.send_batch(jobs, stats)
                continue
            if once:
                break
            stop.wait(self.settings.poll_interval)
        return stats
