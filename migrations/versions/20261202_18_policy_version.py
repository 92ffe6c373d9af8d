"""Privacy-policy version on every event

Revision ID: 20261202_18_policy
Revises: 20261202_13_catalogue
Create Date: 2026-12-02 16:00:00

``events.policy_version``: the privacy notice in force when the event was recorded
(``PREFCENTER_PRIVACY_POLICY_VERSION``), so a consent receipt says which notice the
subscriber saw. NULL for events recorded before (or with no version configured).
"""

import sqlalchemy as sa
from alembic import op

revision = '20261202_18_policy'
down_revision = '20261202_13_catalogue'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("policy_version", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_column("policy_version")
