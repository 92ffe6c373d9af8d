"""``prefcenter admins``: create administrators and reset their passwords."""

from __future__ import annotations

import sys

import click
from flask import current_app
from flask.cli import with_appcontext

from app.admin.auth import MIN_PASSWORD_LENGTH, PasswordTooShort
from app.admin.services import AdminError, create_admin, set_password
from app.db import get_db, write_session


@click.group("admins")
def admins_group() -> None:
    """Administrators of the /admin pages."""


password_stdin_option = click.option(
    "--password-stdin", is_flag=True,
    help="Read the password from the first line of standard input.")


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt(f"Password (at least {MIN_PASSWORD_LENGTH} characters)",
                        hide_input=True, confirmation_prompt=True)


def _run(action, email: str, password: str):
    session = write_session(get_db())
    try:
        admin = action(session, email, password, current_app)
        session.commit()
        return admin
    except (AdminError, PasswordTooShort) as exc:
        session.rollback()
        raise click.ClickException(str(exc)) from exc
    finally:
        session.close()


@admins_group.command("create")
@click.argument("email")
@password_stdin_option
@with_appcontext
def create(email: str, password_stdin: bool) -> None:
    """Create an administrator EMAIL; the password is asked for twice."""
    admin = _run(create_admin, email, _read_password(password_stdin))
    click.echo(f"Created admin {admin.email}")


@admins_group.command("set-password")
@click.argument("email")
@password_stdin_option
@with_appcontext
def set_password_command(email: str, password_stdin: bool) -> None:
    """Set a new password for EMAIL; every session of that admin ends."""
    admin = _run(set_password, email, _read_password(password_stdin))
    click.echo(f"New password set for {admin.email}")
