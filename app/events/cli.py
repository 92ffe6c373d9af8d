"""``prefcenter receipts``: check signed consent receipts (docs/consent.md)."""

from __future__ import annotations

import json

import click
from flask import current_app
from flask.cli import with_appcontext

from app.events.receipts import verify_all


@click.group("receipts")
def receipts_group() -> None:
    """Signed consent receipts."""


@receipts_group.command("verify")
@click.argument("file", type=click.File("r", encoding="utf-8"))
@with_appcontext
def verify(file) -> None:
    """Verify the signature of every consent receipt in FILE (- for stdin): one receipt,
    a JSON list of them, or a subscriber's data export. Prints one line per receipt;
    exits 1 if any fails, 2 if FILE holds no receipt or is not JSON."""
    try:
        document = json.load(file)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        click.echo(f"{file.name}: not JSON ({exc})", err=True)
        raise SystemExit(2) from exc
    results = verify_all(document, current_app.config["SECRET_KEYS"])
    if not results:
        click.echo(f"{file.name}: no consent receipt found", err=True)
        raise SystemExit(2)
    failed = 0
    for receipt_id, problem in results:
        if problem is None:
            click.echo(f"valid    {receipt_id}")
        else:
            failed += 1
            click.echo(f"INVALID  {receipt_id}: {problem}")
    click.echo(f"{len(results) - failed} valid, {failed} invalid", err=True)
    if failed:
        raise SystemExit(1)
