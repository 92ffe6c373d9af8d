"""Endpoint ``sources`` filter; a commit-ordered events feed on PostgreSQL

Revision ID: 20261202_1300
Revises: a16c4a77e150
Create Date: 2026-12-02 13:00:00

``webhook_endpoints.sources``: the event sources an endpoint receives (NULL or empty:
all), so a CRM that imports its own contacts is not sent them back.

PostgreSQL hands out ``events.id`` when a row is inserted, not when its transaction
commits: a transaction that commits late can make an id appear below a cursor a reader
already passed. Each event now records its transaction (``txid``) and, at commit, a
deferred trigger gives the transaction the next ``position`` in ``event_commits`` while it
holds a transaction-level advisory lock: positions are handed out in commit order, and a
position becomes visible only after every smaller one has. The feed reads by
``(position, id)``. SQLite runs one writer at a time, so its ids already follow commits.

The one-click function learns the ``sources`` filter: its outbox insert gains the
condition WebhookEndpoint.wants() applies.
"""

import sqlalchemy as sa
from alembic import op

revision = '20261202_1300'
down_revision = 'a16c4a77e150'
branch_labels = None
depends_on = None

# Any constant: the advisory lock that orders event-writing commits.
COMMIT_ORDER_LOCK = 0x70726566  # "pref"

COMMIT_ORDER = f"""
CREATE FUNCTION prefcenter_event_commit_order() RETURNS trigger
LANGUAGE plpgsql AS $$
-- Deferred to COMMIT: the first event row of a transaction takes the lock (held until
-- the commit is visible) and appends the transaction to event_commits; the others return.
DECLARE
    v_txid bigint := pg_current_xact_id()::text::bigint;
BEGIN
    IF current_setting('prefcenter.ordered_txid', true) = v_txid::text THEN
        RETURN NULL;
    END IF;
    PERFORM pg_advisory_xact_lock({COMMIT_ORDER_LOCK});
    INSERT INTO event_commits (txid) VALUES (v_txid);
    PERFORM set_config('prefcenter.ordered_txid', v_txid::text, true);
    RETURN NULL;
END;
$$;
CREATE CONSTRAINT TRIGGER events_commit_order AFTER INSERT ON events
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    EXECUTE FUNCTION prefcenter_event_commit_order();
"""

ENDPOINT_FILTER_OLD = "     WHERE e.enabled\n"
ENDPOINT_FILTER_NEW = (
    "     WHERE e.enabled\n"
    "       AND (e.sources IS NULL OR json_typeof(e.sources) = 'null'\n"
    "            OR json_array_length(e.sources) = 0 OR e.sources::jsonb ? p_source)\n"
)


def _replace_one_click(old: str, new: str) -> None:
    """Redefine prefcenter_one_click() with one clause changed, whatever else it holds."""
    bind = op.get_bind()
    definition = bind.scalar(sa.text(
        "SELECT pg_get_functiondef('prefcenter_one_click(text, integer, text, text, text, "
        "text, text, timestamptz, text, timestamptz)'::regprocedure)"))
    if old not in definition:
        raise RuntimeError("prefcenter_one_click(): the endpoint filter was not found")
    op.execute(definition.replace(old, new, 1))


def upgrade() -> None:
    with op.batch_alter_table("webhook_endpoints") as batch:
        batch.add_column(sa.Column("sources", sa.JSON(), nullable=True))
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("txid", sa.BigInteger(), nullable=True))
    op.create_index("ix_events_txid_id", "events", ["txid", "id"])
    op.create_table(
        "event_commits",
        sa.Column("position", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("txid", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("position", name=op.f("pk_event_commits")),
        sa.UniqueConstraint("txid", name=op.f("uq_event_commits_txid")),
    )
    if op.get_bind().dialect.name != "postgresql":
        return
    # Events written before this revision: one transaction, first in commit order.
    op.execute("UPDATE events SET txid = 0")
    op.execute("INSERT INTO event_commits (txid) SELECT 0 WHERE EXISTS (SELECT 1 FROM events)")
    op.execute("ALTER TABLE events ALTER COLUMN txid SET DEFAULT pg_current_xact_id()::text::bigint")
    op.execute(COMMIT_ORDER)
    _replace_one_click(ENDPOINT_FILTER_OLD, ENDPOINT_FILTER_NEW)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _replace_one_click(ENDPOINT_FILTER_NEW, ENDPOINT_FILTER_OLD)
        op.execute("DROP TRIGGER events_commit_order ON events")
        op.execute("DROP FUNCTION prefcenter_event_commit_order()")
    op.drop_table("event_commits")
    op.drop_index("ix_events_txid_id", table_name="events")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("txid")
    with op.batch_alter_table("webhook_endpoints") as batch:
        batch.drop_column("sources")
