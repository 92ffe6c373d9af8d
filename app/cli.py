"""The ``prefcenter`` command: a Flask CLI group over ``create_app``.

Listing commands and ``--help`` need no configuration: the app is made only when a command
runs. A setting that cannot work (missing, malformed, a database that cannot be reached) is
one line on stderr naming the variable, and exit status 2.
"""

from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup, ScriptInfo, with_appcontext
from sqlalchemy.exc import DBAPIError

from app.config import ConfigError
from app.db import connect_problem, get_db, schema_problem, write_session

SETTINGS_ERROR = 2


def _create_app(*_args, **_kwargs) -> Flask:
    from app import create_app

    return create_app()


class PrefcenterGroup(FlaskGroup):
    """Flask's group, except that our own commands are found without making the app."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load_plugin_commands()
        return sorted(click.Group.list_commands(self, ctx))

    def get_command(self, ctx: click.Context, name: str):
        self._load_plugin_commands()
        found = click.Group.get_command(self, ctx, name)
        return found if found is not None else super().get_command(ctx, name)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            _refuse(ctx, str(exc))
        except DBAPIError:
            app = ctx.ensure_object(ScriptInfo)._loaded_app
            if app is None:
                raise
            url = app.config["DATABASE_URL"]
            problem = connect_problem(url)
            if problem:
                _refuse(ctx, f"PREFCENTER_DATABASE_URL: cannot connect to the database: "
                             f"{problem}")
            problem = schema_problem(url)
            if problem:
                _refuse(ctx, f"PREFCENTER_DATABASE_URL: {problem}")
            raise  # the database answers and has its schema: a real failure, shown whole


def _refuse(ctx: click.Context, message: str) -> None:
    click.echo(f"prefcenter: {message}", err=True)
    ctx.exit(SETTINGS_ERROR)


@click.group(cls=PrefcenterGroup, create_app=_create_app, add_default_commands=True,
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
    """Create demo roles, topics and subscribers if absent; print links to open. Under
    PREFCENTER_ENV=demo, also a demo administrator (its password is printed once)."""
    from app.demo import DEMO_ADMIN_EMAIL, ensure_demo_admin, seed
    from app.links.services import links_for

    config = current_app.config
    session = write_session(get_db())
    try:
        subscribers = seed(session, config)
        password = None
        if config["PREFCENTER_ENV"] == "demo":
            password = ensure_demo_admin(session, current_app)
        session.commit()
        if config["PREFCENTER_ENV"] == "demo":
            click.echo(f"Admin: {config['BASE_URL']}/admin/login")
            click.echo(f"Admin email: {DEMO_ADMIN_EMAIL}")
            if password:
                click.echo(f"Admin password: {password} (made for this demo, shown only now)")
            else:
                click.echo("Admin password: as printed when the demo was first loaded "
                           f"(prefcenter admins set-password {DEMO_ADMIN_EMAIL} to change it)")
        for subscriber in subscribers[:1]:
            links = links_for(current_app, subscriber)
            click.echo(f"Demo subscriber: {subscriber.email} (role {subscriber.role.slug})")
            click.echo(f"Preference page: {links['preferences_url']}")
            click.echo(f"Unsubscribe page: {links['unsubscribe_url']}")
        for subscriber in subscribers[1:]:
            links = links_for(current_app, subscriber)
            click.echo(f"  {subscriber.email} ({subscriber.role.slug}, "
                       f"{subscriber.locale or 'browser language'}): "
                       f"{links['preferences_url']}")
    finally:
        session.close()


def init_app(app: Flask) -> None:
    register_commands(app.cli)


def register_commands(group: click.Group) -> None:
    """Every ``prefcenter`` command, on the app's CLI (test runners) and on ``main``."""
    from app.api.cli import api_keys_group
    from app.api.importing import subscribers_group

    group.add_command(db_group)
    group.add_command(demo_command)
    group.add_command(api_keys_group)
    group.add_command(subscribers_group)
    from app.links.cli import links_group

    group.add_command(links_group)
    from app.webhooks.cli import webhooks_group

    group.add_command(webhooks_group)
    from app.mail.cli import mail_group

    group.add_command(mail_group)
    from app.admin.cli import admins_group

    group.add_command(admins_group)
    from app.i18n.cli import translate_group

    group.add_command(translate_group)
    from app.events.cli import receipts_group

    group.add_command(receipts_group)


register_commands(main)

if __name__ == "__main__":
    main()
