"""``prefcenter api-keys``."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from app.api.auth import UnknownApiKey, create_api_key, list_api_keys, revoke_api_keys
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


def _when(moment) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%SZ") if moment is not None else "-"


@api_keys_group.command("list")
@with_appcontext
def list_keys() -> None:
    """List API keys: name, prefix, created, last used, revoked (never the key)."""
    session = get_db().sessionmaker()
    try:
        keys = list_api_keys(session)
    finally:
        session.close()
    rows = [("NAME", "PREFIX", "CREATED", "LAST USED", "REVOKED")]
    rows += [(k.name, k.prefix, _when(k.created_at), _when(k.last_used_at),
              _when(k.revoked_at)) for k in keys]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths,
                                                                      strict=True)).rstrip())


@api_keys_group.command("revoke")
@click.argument("name_or_prefix")
@with_appcontext
def revoke(name_or_prefix: str) -> None:
    """Revoke the key with this PREFIX, or every key called NAME, at once."""
    session = write_session(get_db())
    try:
        revoked = revoke_api_keys(session, name_or_prefix)
        session.commit()
    except UnknownApiKey as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        session.close()
    if not revoked:
        click.echo(f"{name_or_prefix}: already revoked")
    for key in revoked:
        click.echo(f"revoked {key.name} (prefix {key.prefix})")
