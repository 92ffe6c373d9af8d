"""The ``prefcenter`` command: a Flask CLI group over ``create_app``."""

from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup, with_appcontext

from app.db import get_db, write_session


def _create_app(*_args, **_kwargs) -> Flask:
    from app import create_app

    return create_app()


@click.group(cls=FlaskGroup, create_app=_create_app, add_default_commands=True,
             set_debug_flag=False)
def main() -> None:
    """Prefcenter: preference center and one-click unsubscribe server."""


@click.group("db")
def db_group() -> None:
    """Database schema (Alembic migrations)."""


@db_group.command("upgrade")
@click.argument("revision", default="head")
@with_appcontext
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION (default: head)."""
    from app.migrate import upgrade

    upgrade(current_app.config["DATABASE_URL"], revision)
    click.echo(f"database at {revision}")


@click.command("demo")
@with_appcontext
def demo_command() -> None:
    """Create demo roles, topics and subscribers if absent; print links to open."""
    from app.demo import seed
    from app.links.services import links_for

    session = write_session(get_db())
    try:
        subscribers = seed(session, current_app.config)
        session.commit()
        for subscriber in subscribers[:1]:
            links = links_for(current_app, subscriber)
            click.echo(f"Demo subscriber: {subscriber.email} (role {subscriber.role.slug})")
            click.echo(f"Preference page: {links['preferences_url']}")
            click.echo(f"Unsubscribe page: {links['unsubscribe_url']}")
        for subscriber in subscribers[1:]:
            links = links_for(current_app, subscriber)
            click.echo(f"  {subscriber.email} ({subscriber.role.slug}, {subscriber.locale}): "
                       f"{links['preferences_url']}")
    finally:
        session.close()


def init_app(app: Flask) -> None:
    from app.api.cli import api_keys_group
    from app.api.importing import subscribers_group

    app.cli.add_command(db_group)
    app.cli.add_command(demo_command)
    app.cli.add_command(api_keys_group)
    app.cli.add_command(subscribers_group)
    from app.links.cli import links_group

    app.cli.add_command(links_group)
    from app.webhooks.cli import webhooks_group

    app.cli.add_command(webhooks_group)
    from app.admin.cli import admins_group

    app.cli.add_command(admins_group)
    from app.i18n.cli import translate_group

    app.cli.add_command(translate_group)
    from app.events.cli import receipts_group

    app.cli.add_command(receipts_group)


if __name__ == "__main__":
    main()
