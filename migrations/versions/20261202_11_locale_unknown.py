"""A subscriber's locale may be unknown (NULL)

Revision ID: 20261202_11_locale
Revises: 20261202_13_one_rule
Create Date: 2026-12-02 16:00:00

A subscriber whose language nobody told us has no stored locale: the preference page
follows the browser's Accept-Language (then the default locale) until the subscriber
picks a language there. Rows stored so far keep the locale they have: whether it was told
or defaulted was not recorded.
"""

import sqlalchemy as sa
from alembic import op

revision = '20261202_11_locale'
down_revision = '20261202_13_one_rule'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('subscribers', schema=None) as batch_op:
        batch_op.alter_column('locale', existing_type=sa.String(length=16), nullable=True)


def downgrade():
    op.execute("UPDATE subscribers SET locale = 'en' WHERE locale IS NULL")
    with op.batch_alter_table('subscribers', schema=None) as batch_op:
        batch_op.alter_column('locale', existing_type=sa.String(length=16), nullable=False)
