"""Address changes waiting for the new address to confirm

Revision ID: 20261202_17_address_changes
Revises: 20261202_12_mail_outbox
Create Date: 2026-12-02 16:05:00

``address_changes`` (docs/address-change.md): the new address a subscriber asked for and
the sha256 of the single-use code its confirmation link carries.
"""

import sqlalchemy as sa
from alembic import op

import app.db

revision = '20261202_17_address_changes'
down_revision = '20261202_12_mail_outbox'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('address_changes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('subscriber_id', sa.Integer(), nullable=False),
    sa.Column('new_email', sa.String(length=320), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('confirmed_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['subscriber_id'], ['subscribers.id'], name=op.f('fk_address_changes_subscriber_id_subscribers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_address_changes')),
    sa.UniqueConstraint('code_hash', name=op.f('uq_address_changes_code_hash'))
    )
    with op.batch_alter_table('address_changes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_address_changes_subscriber_id'), ['subscriber_id'], unique=False)


def downgrade() -> None:
    op.drop_table('address_changes')
