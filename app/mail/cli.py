"""``prefcenter mail``: the worker that sends queued mail."""

from __future__ import annotations

import logging

import click
from flask import current_app
from flask.cli import with_appcontext

from app.mail.worker import MailWorker
from app.retry import stop_on_signals


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
    with stop_on_signals("the message under way") as stop:
        worker = MailWorker(current_app._get_current_object())
        click.echo(f"mail worker {worker.worker_id} started", err=True)
        stats = worker.run(stop, once=once)
    click.echo(f"sent={stats.sent} failed={stats.failed} dead={stats.dead} "
               f"released={stats.released}")
