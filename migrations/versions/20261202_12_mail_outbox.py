"""Mail outbox: messages queued with the change that asks for them, sent by a worker

Revision ID: 20261202_12_mail_outbox
Revises: 20261202_12_security
Create Date: 2026-12-02 16:00:00

``mail_messages`` (app/mail, docs/mail.md): one row per message owed (or dropped: an
unknown recipient, or past the per-recipient limit), delivered by ``prefcenter mail work``
with leases and retries.
"""

import sqlalchemy as sa
from alembic import op

import app.db

revision = '20261202_12_mail_outbox'
down_revision = '20261202_12_security'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('mail_messages',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('recipient', sa.String(length=320), nullable=True),
    sa.Column('recipient_key', sa.String(length=64), nullable=True),
    sa.Column('subscriber_id', sa.Integer(), nullable=True),
    sa.Column('locale', sa.String(length=16), nullable=False),
    sa.Column('context', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('claimed_by', sa.String(length=64), nullable=True),
    sa.Column('claimed_until', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('sent_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mail_messages'))
    )
    with op.batch_alter_table('mail_messages', schema=None) as batch_op:
        batch_op.create_index('ix_mail_messages_due', ['status', 'next_attempt_at'], unique=False)
        batch_op.create_index('ix_mail_messages_recipient', ['recipient_key', 'created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_mail_messages_subscriber_id'), ['subscriber_id'], unique=False)


def downgrade() -> None:
    op.drop_table('mail_messages')
