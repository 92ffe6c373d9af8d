"""``prefcenter webhooks``: register endpoints, list them, run the delivery worker."""

from __future__ import annotations

import logging

import click
from flask import current_app
from flask.cli import with_appcontext

from app.config import check_services
from app.db import get_db, write_session
from app.retry import stop_on_signals
from app.webhooks.services import (
    WebhookError,
    WebhookSettings,
    count_deliveries,
    create_endpoint,
    get_endpoint,
    list_endpoints,
    retry_now,
)
from app.webhooks.worker import Worker


@click.group("webhooks")
def webhooks_group() -> None:
    """Webhook endpoints (CRM sync) and the delivery worker."""


@webhooks_group.command("add")
@click.argument("url")
@click.option("--events", default="", metavar="TYPE,TYPE",
              help="Comma-separated event types to send (default: all).")
@click.option("--sources", default="", metavar="SOURCE,SOURCE",
              help="Comma-separated event sources to send (default: all); leave out "
                   "'import' for a CRM that imports its own contacts.")
@click.option("--description", default="", help="A note for operators.")
@with_appcontext
def add(url: str, events: str, sources: str, description: str) -> None:
    """Register an endpoint at URL; print its id and its signing secret."""
    session = write_session(get_db())
    try:
        try:
            types = [t.strip() for t in events.split(",") if t.strip()]
            wanted = [s.strip() for s in sources.split(",") if s.strip()]
            endpoint, secret = create_endpoint(session, url, events=types or None,
                                               sources=wanted or None, description=description)
        except WebhookError as exc:
            raise click.UsageError(str(exc)) from exc
        session.commit()
    finally:
        session.close()
    click.echo(f"id: {endpoint.id}")
    click.echo(f"secret: {secret}")
    click.echo("Keep the secret: the receiver verifies signatures with it "
               "(Standard Webhooks).", err=True)


@webhooks_group.command("list")
@with_appcontext
def list_command() -> None:
    """Every endpoint: id, state, pending and dead deliveries, URL, event types."""
    session = get_db().sessionmaker()
    try:
        endpoints = list_endpoints(session)
        if not endpoints:
            click.echo("no webhook endpoints")
        for endpoint in endpoints:
            counts = count_deliveries(session, endpoint.id)
            state = "enabled" if endpoint.enabled else "disabled"
            types = ",".join(endpoint.event_types or []) or "all events"
            click.echo(f"{endpoint.id}\t{state}\tpending={counts['pending']}\t"
                       f"failing={counts['failing']}\tdead={counts['dead']}\t"
                       f"delivered={counts['delivered']}\t{endpoint.url}\t{types}")
            if endpoint.disabled_reason:
                click.echo(f"  disabled: {endpoint.disabled_reason}")
    finally:
        session.close()


@webhooks_group.command("retry-now")
@click.argument("endpoint_id")
@with_appcontext
def retry_now_command(endpoint_id: str) -> None:
    """Make every pending delivery of ENDPOINT_ID due now (after an outage)."""
    session = write_session(get_db())
    try:
        endpoint = get_endpoint(session, endpoint_id)
        if endpoint is None:
            raise click.UsageError(f"no webhook endpoint {endpoint_id!r}")
        count = retry_now(session, endpoint)
        session.commit()
    finally:
        session.close()
    click.echo(f"{count} deliveries due now")


@webhooks_group.command("work")
@click.option("--once", is_flag=True, help="Deliver what is due now, then exit.")
@click.option("--concurrency", type=int, default=None,
              help="Parallel deliveries (default: PREFCENTER_WEBHOOK_CONCURRENCY).")
@with_appcontext
def work(once: bool, concurrency: int | None) -> None:
    """Deliver due webhooks until SIGTERM/SIGINT (or, with --once, until drained).

    On SIGTERM or SIGINT the worker finishes the deliveries under way, records
    them, hands the rest of its claims back and exits 0.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the worker logs each delivery
    check_services(current_app.config, rate_limits=False)  # a bad URL: one line, exit 2
    settings = WebhookSettings.from_config(current_app.config)
    with stop_on_signals("the deliveries under way") as stop, \
            Worker(get_db(), settings, concurrency=concurrency) as worker:
        click.echo(f"webhook worker {worker.worker_id} started", err=True)
        stats = worker.run(stop, once=once)
    click.echo(f"delivered={stats.delivered} failed={stats.failed} dead={stats.dead} "
               f"released={stats.released}")
