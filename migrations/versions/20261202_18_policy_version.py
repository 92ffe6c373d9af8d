"""Privacy-policy version on every event

Revision ID: 20261202_18_policy
Revises: 20261202_1300
Create Date: 2026-12-02 16:00:00

``events.policy_version``: the privacy notice in force when the event was recorded
(``PREFCENTER_PRIVACY_POLICY_VERSION``), so a consent receipt says which notice the
subscriber saw. NULL for events recorded before (or with no version configured).

PostgreSQL: the one-click function's event insert records the setting
``prefcenter.policy_version`` that its caller sets for the call's transaction
(app/unsubscribe/services.py ``_CALL``). Patched only where the function exists.
"""

import sqlalchemy as sa
from alembic import op

revision = '20261202_18_policy'
down_revision = '20261202_1300'
branch_labels = None
depends_on = None

SIGNATURE = ("prefcenter_one_click(text, integer, text, text, text, text, text, timestamptz, "
             "text, timestamptz)")
COLUMNS_OLD = "token_id, campaign, version, payload, created_at)"
COLUMNS_NEW = "token_id, campaign, policy_version, version, payload, created_at)"
VALUES_OLD = "p_source, p_actor, p_token_id, p_campaign, v_version, v_payload, p_created_at)"
VALUES_NEW = ("p_source, p_actor, p_token_id, p_campaign,\n"
              "            NULLIF(current_setting('prefcenter.policy_version', true), ''),\n"
              "            v_version, v_payload, p_created_at)")


def _one_click_definition():
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return None
    exists = bind.scalar(sa.text("SELECT to_regprocedure(:sig) IS NOT NULL"), {"sig": SIGNATURE})
    if not exists:  # replaced by a later rule: nothing to patch
        return None
    return bind.scalar(sa.text("SELECT pg_get_functiondef(to_regprocedure(:sig))"),
                       {"sig": SIGNATURE})


def _patch(pairs) -> None:
    definition = _one_click_definition()
    if definition is None:
        return
    for old, new in pairs:
        if definition.count(old) != 1:
            raise RuntimeError(f"prefcenter_one_click(): {old!r} was not found once")
        definition = definition.replace(old, new)
    op.execute(definition)


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("policy_version", sa.String(length=64), nullable=True))
    _patch([(COLUMNS_OLD, COLUMNS_NEW), (VALUES_OLD, VALUES_NEW)])


def downgrade() -> None:
    _patch([(COLUMNS_NEW, COLUMNS_OLD), (VALUES_NEW, VALUES_OLD)])
    with op.batch_alter_table("events") as batch:
        batch.drop_column("policy_version")
