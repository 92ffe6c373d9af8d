"""Daily event counts for the admin insights, kept by a trigger

Revision ID: 20261202_18_insights
Revises: 20261202_18_policy
Create Date: 2026-12-02 16:30:00

``event_counts``: counted events (unsubscribes, resubscribes, reasons given, frequency and
pause choices) per UTC day, kind, topic, campaign, source, reason and value. A trigger on
``events`` adds each counted event as it is inserted, in the same transaction, whatever
inserts it; existing events are counted once here. See app/events/rollup.py.
"""

import sqlalchemy as sa
from alembic import op

from app.events.rollup import backfill_sql, create_trigger_sql, drop_trigger_sql

revision = '20261202_18_insights'
down_revision = '20261202_18_policy'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "event_counts",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("topic", sa.String(length=64), nullable=False),
        sa.Column("campaign", sa.String(length=255), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("value", sa.String(length=16), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day", "kind", "topic", "campaign", "source", "reason", "value",
                                name=op.f("pk_event_counts")),
    )
    dialect = op.get_bind().dialect.name
    op.execute(backfill_sql(dialect))
    for statement in create_trigger_sql(dialect):
        op.execute(statement)


def downgrade() -> None:
    for statement in drop_trigger_sql(op.get_bind().dialect.name):
        op.execute(statement)
    op.drop_table("event_counts")
