"""Alembic, driven from the app: ``prefcenter db upgrade`` and the tests use this."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from app.config import ROOT


def alembic_config(url: str, connection=None) -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade(url: str, revision: str = "head", connection=None) -> None:
    command.upgrade(alembic_config(url, connection), revision)


def check(url: str, connection=None) -> None:
    """Raise if the models and the migrations disagree."""
    command.check(alembic_config(url, connection))
