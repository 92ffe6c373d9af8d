"""``prefcenter mail``: the worker that sends queued mail."""

from __future__ import annotations

import logging
import signal
import threading

import click
from flask import current_app
from flask.cli import with_appcontext

from app.mail.worker import MailWorker


@click.group("mail")
def mail_group() -> None:
    """Queued mail (fresh links, address confirmations) and its worker."""


@mail_group.command("work")
@click.option("--once", is_flag=True, help="Send what is due now, then exit.")
@with_appcontext
def work(once: bool) -> None:
    """Send due mail until SIGTERM/SIGINT (or, with --once, until drained).

    On SIGTERM or SIGINT the worker finishes the message under way and exits 0;
    messages it claimed but did not send go back after their lease.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    stop = threading.Event()

    def _stop(signum, _frame):
        logging.getLogger(__name__).info("signal %s: stopping after the message under way",
                                         signum)
        stop.set()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        worker = MailWorker(current_app._get_current_object())
        click.echo(f"mail worker {worker.worker_id} started", err=True)
        stats = worker.run(stop, once=once)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo(f"sent={stats.sent} failed={stats.failed} dead={stats.dead} "
               f"released={stats.released}")
