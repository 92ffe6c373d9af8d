"""PostgreSQL: drop prefcenter_one_click(); the one-click runs the one unsubscribe rule

Revision ID: 20261202_13_one_rule
Revises: 20261202_17_address_changes
Create Date: 2026-12-02 16:00:00

The RFC 8058 one-click no longer has a server-side copy of the unsubscribe rule, its
webhook payload and its endpoint filter: it calls app.subscribers.services.unsubscribe,
as every other path does (issue 13). The fillfactor settings of 0002 stay: they still
help the updates of subscribers and subscriptions. The downgrade puts the function back
as 20261202_1300 left it.
"""

import importlib.util
from pathlib import Path

from alembic import op

revision = '20261202_13_one_rule'
down_revision = '20261202_17_address_changes'
branch_labels = None
depends_on = None

SIGNATURE = ("prefcenter_one_click(text, integer, text, text, text, text, text, timestamptz, "
             "text, timestamptz)")


def _module(filename: str):
    path = Path(__file__).with_name(filename)
    spec = importlib.util.spec_from_file_location(f"previous_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP FUNCTION IF EXISTS {SIGNATURE}")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    channels = _module("20261202_1200_channels_pause_cadence.py")
    sources = _module("20261202_1300_sources_and_commit_order.py")
    text = channels.one_click()
    if text.count(sources.ENDPOINT_FILTER_OLD) != 1:
        raise RuntimeError("prefcenter_one_click(): the endpoint filter was not found")
    op.execute(text.replace(sources.ENDPOINT_FILTER_OLD, sources.ENDPOINT_FILTER_NEW))
