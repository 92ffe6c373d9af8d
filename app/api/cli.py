"""``prefcenter api-keys``."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from app.api.auth import create_api_key
from app.db import get_db, write_session


@click.group("api-keys")
def api_keys_group() -> None:
    """API keys for /api/v1."""


@api_keys_group.command("create")
@click.argument("name")
@with_appcontext
def create(name: str) -> None:
    """Create an API key called NAME and print it (it is shown only once)."""
    session = write_session(get_db())
    try:
        key, plain = create_api_key(session, name)
        session.commit()
    finally:
        session.close()
    click.echo(plain)
    click.echo(f"Created API key {key.name!r} (prefix {key.prefix}); store it now, "
               "it cannot be shown again.", err=True)
