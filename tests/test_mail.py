"""The mail outbox: "Email me a fresh link" through HTTP, the worker against a real SMTP
server (aiosmtpd), retries with backoff, leases between two workers, limits."""

from __future__ import annotations

import datetime as dt
import re
import socket
import threading
import time

import pytest
from sqlalchemy import event, select, update

from app.db import get_db, utcnow, write_session
from app.links.services import PREFERENCES, get_signer
from app.mail.models import DEAD, DROPPED, PENDING, SENT, MailMessage
from app.mail.services import MailSettings, queue
from app.mail.worker import MailWorker, Stats
from app.subscribers.models import Subscriber
from app.subscribers.services import Context, erase
from tests.conftest import csrf_from


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def messages(session) -> list[MailMessage]:
    """The outbox as committed; the read ends at once (the test's savepoint must not
    outlive it, or the worker's later writes would be rolled back with it)."""
    session.rollback()
    session.expire_all()
    rows = session.scalars(select(MailMessage).order_by(MailMessage.id)).all()
    session.commit()
    return rows


class Renewer:
    """Expired preference links for subscribers, and the renew request as a browser sends it."""

    def __init__(self, app, client):
        self.app, self.client = app, client
        self.signer = get_signer(app)
        self.csrf = None

    def expired(self, subscriber) -> str:
        self.signer.max_ages[PREFERENCES] = 3600
        token = self.signer.mint(PREFERENCES, subscriber.public_id, epoch=subscriber.link_epoch)
        self.signer.max_ages[PREFERENCES] = -1
        if self.csrf is None:
            self.csrf = csrf_from(self.client.get(f"/p/{token}").get_data(as_text=True))
        return token

    def renew(self, token: str, **kwargs):
        return self.client.post(f"/p/{token}/renew", data={"csrf_token": self.csrf}, **kwargs)


@pytest.fixture
def app_config():
    return {"MAIL_RETRY_SCHEDULE": [60, 600], "SMTP_TIMEOUT": 2, "MAIL_LEASE": 60}


def _answer(response) -> tuple:
    headers = {k: v for k, v in response.headers.items() if k not in ("Date", "Set-Cookie")}
    return response.status_code, response.get_data(as_text=True), headers


def test_fresh_link_answers_the_same_for_known_unknown_erased_and_smtp_down(
        app, client, session, catalogue, smtp_server):
    app.config.update(SMTP_HOST="127.0.0.1", SMTP_PORT=closed_port())  # SMTP is down
    known = catalogue.subscriber(email="known@example.com")
    gone = catalogue.subscriber(email="gone@example.com")
    renewer = Renewer(app, client)
    tokens = {"known": renewer.expired(known), "erased": renewer.expired(gone)}
    erase(session, session.get(Subscriber, gone.id), context=Context(source="api"))
    session.commit()
    tokens["forged"] = "forged.token.here"

    answers = {name: _answer(renewer.renew(token)) for name, token in tokens.items()}
    assert answers["known"][0] == 200
    assert "Check your inbox" in answers["known"][1]
    assert answers["known"] == answers["erased"] == answers["forged"]

    # Every request wrote one row; only the known subscriber's will go.
    rows = messages(session)
    assert [(m.status, m.recipient) for m in rows] == [
        (PENDING, "known@example.com"), (DROPPED, None), (DROPPED, None)]

    # SMTP down: the worker fails, the message waits its backoff (60 s +-20%).
    stats = MailWorker(app).run_once()
    assert (stats.sent, stats.failed) == (0, 1)
    pending = messages(session)[0]
    assert pending.status == PENDING and pending.attempts == 1
    assert "smtp" in pending.last_error
    wait = (pending.next_attempt_at - utcnow()).total_seconds()
    assert 40 < wait <= 72
    assert MailWorker(app).run_once().failed == 0  # not due yet

    # SMTP back; the retry is due: it goes, once, with a working fresh link.
    app.config.update(SMTP_PORT=smtp_server.port)
    session.execute(update(MailMessage).values(next_attempt_at=utcnow()))
    session.commit()
    assert MailWorker(app).run_once().sent == 1
    assert MailWorker(app).run_once().sent == 0
    assert len(smtp_server.messages) == 1
    message = smtp_server.messages[0]
    assert message["To"] == "known@example.com"
    fresh = re.search(r"http://localhost(/p/\S+)", message.get_content()).group(1)
    renewer.signer.max_ages[PREFERENCES] = 3600
    assert client.get(fresh).status_code == 200
    sent = messages(session)[0]
    assert sent.status == SENT and sent.attempts == 2 and sent.context == {}


def test_a_message_is_dead_when_its_schedule_is_spent(app, client, session, catalogue):
    app.config.update(SMTP_HOST="127.0.0.1", SMTP_PORT=closed_port())
    renewer = Renewer(app, client)
    renewer.renew(renewer.expired(catalogue.subscriber()))
    for _attempt in range(3):  # the schedule has two retries
        session.execute(update(MailMessage).values(next_attempt_at=utcnow()))
        session.commit()
        MailWorker(app).run_once()
    row = messages(session)[0]
    assert (row.status, row.attempts) == (DEAD, 3)


def test_the_answer_takes_the_same_time_in_every_case(live_app, live_session, live_catalogue,
                                                      smtp_server):
    # Every request for the known subscriber queues a real message (no per-recipient limit).
    live_app.config.update(SMTP_HOST="127.0.0.1", SMTP_PORT=smtp_server.port,
                           MAIL_RECIPIENT_LIMIT=10**6)
    client = live_app.test_client()
    renewer = Renewer(live_app, client)
    known = live_catalogue.subscriber(email="timing@example.com")
    gone = live_catalogue.subscriber(email="timing-gone@example.com")
    tokens = {"known": renewer.expired(known), "erased": renewer.expired(gone),
              "forged": "forged.token.here"}
    erase(live_session, live_session.get(Subscriber, gone.id), context=Context(source="api"))
    live_session.commit()
    for token in tokens.values():  # warm up
        renewer.renew(token)
    # The three cases back to back (each goes first in turn); each case's fastest answer is
    # its own cost, free of the preemptions a shared machine deals out at random.
    order = list(tokens.items())
    times: dict[str, list[float]] = {name: [] for name in tokens}
    for round_ in range(80):
        for name, token in order[round_ % 3:] + order[:round_ % 3]:
            started = time.perf_counter()
            assert renewer.renew(token).status_code == 200
            times[name].append((time.perf_counter() - started) * 1000)
    fastest = {name: min(values) for name, values in times.items()}
    # Before the outbox a known subscriber took 51 ms against 3.5 ms for an erased one; with
    # SMTP put back on the request path this test measures 24 ms against 2.6 ms. The bound
    # leaves room for a PostgreSQL server sharing two loaded cores with the test.
    assert max(fastest.values()) - min(fastest.values()) < 10.0, fastest

    # The same work, statement for statement, in every case (the deterministic half).
    statements: list[str] = []
    engine = get_db(live_app).engine

    def seen(_conn, _cursor, statement, _params, _context, _many):
        statements.append(statement)

    work = {}
    event.listen(engine, "before_cursor_execute", seen)
    try:
        for name, token in tokens.items():
            statements.clear()
            renewer.renew(token)
            work[name] = list(statements)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert work["known"] == work["erased"] == work["forged"], work
    assert any(s.startswith("INSERT INTO mail_messages") for s in work["known"])
    assert smtp_server.messages == []  # nothing is sent on the request path


def test_fresh_links_are_limited_per_recipient(app, client, session, catalogue,
                                                             smtp_server):
    app.config.update(SMTP_HOST="127.0.0.1", SMTP_PORT=smtp_server.port,
                      MAIL_RECIPIENT_LIMIT=3)
    subscriber = catalogue.subscriber(email="Often@Example.com")
    renewer = Renewer(app, client)
    token = renewer.expired(subscriber)
    # Five clients ask for the same recipient: all get the same answer, three mails go.
    answers = [_answer(renewer.renew(token, environ_base={"REMOTE_ADDR": f"192.0.2.{i}"}))
               for i in range(5)]
    assert all(answer == answers[0] for answer in answers)
    assert [m.status for m in messages(session)] == [PENDING] * 3 + [DROPPED] * 2
    assert MailWorker(app).run_once().sent == 3
    assert len(smtp_server.messages) == 3


@pytest.mark.parametrize("app_config", [{"RATELIMIT_ENABLED": True,
                                         "RATELIMIT_MAIL": "2 per hour"}])
def test_fresh_links_are_limited_per_client(app, client, catalogue):
    # Past the limit a client gets 429, whoever it asks about; other clients do not.
    renewer = Renewer(app, client)
    other = renewer.expired(catalogue.subscriber())
    statuses = [renewer.renew(t, environ_base={"REMOTE_ADDR": "198.51.100.7"}).status_code
                for t in (other, "forged.token.here", other)]
    assert statuses == [200, 200, 429]
    assert renewer.renew(other, environ_base={"REMOTE_ADDR": "198.51.100.8"}).status_code == 200


def test_two_workers_never_send_one_message_twice(live_app, live_session, smtp_server):
    live_app.config.update(SMTP_HOST="127.0.0.1", SMTP_PORT=smtp_server.port)
    settings = MailSettings.from_config(live_app.config)
    with live_app.app_context():
        session = write_session(get_db(live_app))
        for i in range(40):
            queue(session, settings, kind="fresh_link", to=f"lease{i}@example.com",
                  locale="en", context={"url": f"http://localhost/p/{i}"})
        session.commit()
        session.close()
    workers = [MailWorker(live_app, worker_id=f"worker-{n}") for n in range(2)]
    # A claim is a lease: the other worker sees none of the claimed rows.
    first = workers[0].claim(10)
    second = workers[1].claim(10)
    assert len(first) == len(second) == 10
    assert not {j.id for j in first} & {j.id for j in second}
    workers[0].release(first)
    workers[1].release(second)

    results = []
    threads = [threading.Thread(target=lambda w=w: results.append(w.run_once()))
               for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sum(r.sent for r in results) == 40
    recipients = [m["To"] for m in smtp_server.messages]
    assert sorted(recipients) == sorted(f"lease{i}@example.com" for i in range(40))
    assert all(m.status == SENT and m.attempts == 1 for m in messages(live_session))


def test_a_worker_does_not_send_once_its_lease_is_nearly_over(app, session, smtp_server):
    app.config.update(SMTP_HOST="127.0.0.1", SMTP_PORT=smtp_server.port)
    worker = MailWorker(app, worker_id="slow")
    with app.app_context():
        queue(session, worker.settings, kind="fresh_link", to="late@example.com", locale="en",
              context={"url": "http://localhost/p/x"})
        session.commit()
    jobs = worker.claim()
    for job in jobs:
        job.claimed_until = utcnow() + dt.timedelta(seconds=1)
    stats = Stats()
    worker.send_batch(jobs, stats)
    assert stats.released == 1 and stats.sent == 0 and smtp_server.messages == []
    row = messages(session)[0]
    assert row.status == PENDING and row.claimed_by is None  # handed back at once


def test_mail_work_command_sends_what_is_due(live_app, live_catalogue, smtp_server):
    live_app.config.update(SMTP_HOST="127.0.0.1", SMTP_PORT=smtp_server.port)
    client = live_app.test_client()
    renewer = Renewer(live_app, client)
    renewer.renew(renewer.expired(live_catalogue.subscriber(email="cli@example.com",
                                                             locale="ms")))
    result = live_app.test_cli_runner().invoke(args=["mail", "work", "--once"])
    assert result.exit_code == 0, result.output
    assert "sent=1 failed=0" in result.output
    message = smtp_server.wait_for_message()
    assert message["To"] == "cli@example.com"
    assert message["Subject"] == "Pautan anda untuk mengurus pilihan e-mel"


def test_erasure_forgets_queued_mail(app, client, session, catalogue, smtp_server):
    app.config.update(SMTP_HOST="127.0.0.1", SMTP_PORT=smtp_server.port)
    subscriber = catalogue.subscriber(email="forget@example.com")
    renewer = Renewer(app, client)
    renewer.renew(renewer.expired(subscriber))
    assert messages(session)[0].recipient == "forget@example.com"
    erase(session, session.get(Subscriber, subscriber.id), context=Context(source="api"))
    session.commit()
    assert messages(session) == []
    assert MailWorker(app).run_once().sent == 0
    assert smtp_server.messages == []
