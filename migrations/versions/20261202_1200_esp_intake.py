"""ESP intake: esp_events, esp_nonces, undeliverable addresses, event reasons

Revision ID: 20261202_1200
Revises: 0002
Create Date: 2026-12-02 12:00:00

ESP reports (app/esp): every provider event as received, stored once per provider event id;
Mailgun's one-time tokens; on subscribers, the address's undeliverable mark and its run of
soft bounces; on events, the reason a source gives (an ESP's "complaint").
"""

import sqlalchemy as sa
from alembic import op

import app.db

revision = '20261202_1200'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('esp_nonces',
    sa.Column('provider', sa.String(length=16), nullable=False),
    sa.Column('nonce', sa.String(length=128), nullable=False),
    sa.Column('seen_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('provider', 'nonce', name=op.f('pk_esp_nonces'))
    )
    with op.batch_alter_table('esp_nonces', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_esp_nonces_seen_at'), ['seen_at'], unique=False)

    op.create_table('esp_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('provider', sa.String(length=16), nullable=False),
    sa.Column('provider_event_id', sa.String(length=255), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=True),
    sa.Column('email_hash', sa.String(length=64), nullable=False),
    sa.Column('subscriber_id', sa.Integer(), nullable=True),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('detail', sa.String(length=255), nullable=False),
    sa.Column('raw', sa.JSON(), nullable=False),
    sa.Column('occurred_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['subscriber_id'], ['subscribers.id'], name=op.f('fk_esp_events_subscriber_id_subscribers'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_esp_events')),
    sa.UniqueConstraint('provider', 'provider_event_id', name=op.f('uq_esp_events_provider'))
    )
    with op.batch_alter_table('esp_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_esp_events_email_hash'), ['email_hash'], unique=False)
        batch_op.create_index('ix_esp_events_kind_id', ['kind', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_esp_events_subscriber_id'), ['subscriber_id'], unique=False)

    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reason', sa.String(length=32), nullable=True))

    with op.batch_alter_table('subscribers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('undeliverable_at', app.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('soft_bounces', sa.Integer(), nullable=False,
                                      server_default='0'))
    # The default only filled the existing rows; new ones get the model's.
    with op.batch_alter_table('subscribers', schema=None) as batch_op:
        batch_op.alter_column('soft_bounces', server_default=None)



def downgrade() -> None:
    with op.batch_alter_table('subscribers', schema=None) as batch_op:
        batch_op.drop_column('soft_bounces')
        batch_op.drop_column('undeliverable_at')

    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_column('reason')

    with op.batch_alter_table('esp_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_esp_events_subscriber_id'))
        batch_op.drop_index('ix_esp_events_kind_id')
        batch_op.drop_index(batch_op.f('ix_esp_events_email_hash'))

    op.drop_table('esp_events')
    with op.batch_alter_table('esp_nonces', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_esp_nonces_seen_at'))

    op.drop_table('esp_nonces')
