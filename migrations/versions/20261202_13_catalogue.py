"""The catalogue's version: one row that every change to the catalogue bumps

Revision ID: 20261202_13_catalogue
Revises: 20261202_11_locale
Create Date: 2026-12-02 16:00:00

Topics, roles, their texts and the follow-us links change only when an admin edits them,
so each process caches them (app/topics/catalogue.py) and every page read also reads this
row's ``version``; a change bumps it in its own transaction (a ``before_flush`` hook), so
every node sees the change with the commit.
"""

import sqlalchemy as sa
from alembic import op

revision = '20261202_13_catalogue'
down_revision = '20261202_11_locale'
branch_labels = None
depends_on = None


def upgrade() -> None:
    versions = op.create_table('catalogue_versions',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('version', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_catalogue_versions'))
    )
    op.bulk_insert(versions, [{'id': 1, 'version': 1}])


def downgrade() -> None:
    op.drop_table('catalogue_versions')
