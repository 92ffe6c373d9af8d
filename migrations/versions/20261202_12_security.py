"""Server-side admin sessions; one subscriber per address whatever its letter case

Revision ID: 20261202_12_security
Revises: 20261202_1300
Create Date: 2026-12-02 16:00:00

``admin_sessions``: one row per admin login (the SHA-256 of the cookie's token), ended at
logout, after the idle timeout or at its absolute lifetime.

``subscribers.email_key``: the address lower-cased, unique. Addresses that differ only
in letter case were separate subscribers until now; this migration finds them and
resolves each group (docs/security.md, "Addresses"):

- the oldest live subscriber of the group (lowest id) keeps the address (``email_key``);
- if any member of the group was unsubscribed from all marketing, every member is: an
  opt-out given under one spelling holds for the address;
- the other members keep their data and their address as written, but no key, and are
  unsubscribed from all marketing, so the address is mailed once, as its owner chose;
- each member changed gets an ``admin_audit`` entry (actor ``migration``, action
  ``address.duplicate``, the keeper's external id), and the log names them, so the CRM can
  merge or erase the duplicates.
"""

import datetime as dt
import logging
from collections import defaultdict

import sqlalchemy as sa
from alembic import op

import app.db

revision = '20261202_12_security'
down_revision = '20261202_1300'
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")


def upgrade() -> None:
    op.create_table(
        'admin_sessions',
        sa.Column('id', sa.String(length=64), nullable=False),
        sa.Column('admin_id', sa.Integer(), nullable=False),
        sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('last_seen_at', app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('expires_at', app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('ended_at', app.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['admin_id'], ['admins.id'],
                                name=op.f('fk_admin_sessions_admin_id_admins'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_admin_sessions')),
    )
    op.create_index(op.f('ix_admin_sessions_admin_id'), 'admin_sessions', ['admin_id'])

    with op.batch_alter_table('subscribers') as batch:
        batch.add_column(sa.Column('email_key', sa.String(length=320), nullable=True))
    _fill_email_keys()
    with op.batch_alter_table('subscribers') as batch:
        batch.create_unique_constraint(op.f('uq_subscribers_email_key'), ['email_key'])


def _fill_email_keys() -> None:
    bind = op.get_bind()
    subscribers = sa.table(
        'subscribers', sa.column('id', sa.Integer), sa.column('email', sa.String),
        sa.column('email_key', sa.String), sa.column('external_id', sa.String),
        sa.column('erased_at', sa.DateTime), sa.column('unsubscribed_all', sa.Boolean))
    audit = sa.table(
        'admin_audit', sa.column('admin_email', sa.String), sa.column('action', sa.String),
        sa.column('entity', sa.String), sa.column('entity_id', sa.String),
        sa.column('details', sa.JSON), sa.column('created_at', app.db.UTCDateTime))
    groups = defaultdict(list)
    rows = bind.execute(sa.select(subscribers.c.id, subscribers.c.email,
                                  subscribers.c.external_id, subscribers.c.erased_at,
                                  subscribers.c.unsubscribed_all)
                        .where(subscribers.c.email.is_not(None))
                        .order_by(subscribers.c.id))
    for row in rows:
        groups[row.email.strip().lower()].append(row)
    keys, duplicates = [], []
    for key, members in groups.items():
        live = [m for m in members if m.erased_at is None] or members
        keeper = live[0]
        keys.append({"row_id": keeper.id, "key": key})
        if len(members) > 1:
            duplicates.append((keeper, members))
    update_key = (sa.update(subscribers).where(subscribers.c.id == sa.bindparam('row_id'))
                  .values(email_key=sa.bindparam('key')))
    for start in range(0, len(keys), 5000):
        bind.execute(update_key, keys[start:start + 5000])
    now = dt.datetime.now(dt.UTC)
    for keeper, members in duplicates:
        opted_out = any(m.unsubscribed_all for m in members)
        for member in members:
            stop = member.id != keeper.id or opted_out
            if stop and not member.unsubscribed_all:
                bind.execute(sa.update(subscribers).where(subscribers.c.id == member.id)
                             .values(unsubscribed_all=True))
            bind.execute(sa.insert(audit).values(
                admin_email="migration", action="address.duplicate", entity="subscriber",
                entity_id=str(member.id), created_at=now,
                details={"external_id": member.external_id,
                         "keeps_address": member.id == keeper.id,
                         "owner_external_id": keeper.external_id,
                         "unsubscribed_all_before": bool(member.unsubscribed_all),
                         "unsubscribed_all_after": bool(member.unsubscribed_all or stop)}))
        log.warning("address held by %d subscribers in different letter case: %s keeps it; "
                    "%s unsubscribed from all", len(members), keeper.external_id,
                    ", ".join(str(m.external_id) for m in members if m.id != keeper.id))


def downgrade() -> None:
    with op.batch_alter_table('subscribers') as batch:
        batch.drop_constraint(op.f('uq_subscribers_email_key'), type_='unique')
        batch.drop_column('email_key')
    op.drop_index(op.f('ix_admin_sessions_admin_id'), table_name='admin_sessions')
    op.drop_table('admin_sessions')
