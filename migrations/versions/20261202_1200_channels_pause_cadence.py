"""Channels (email, sms), phone, pause, last sends per topic and channel, follow-us links

Revision ID: a16c4a77e150
Revises: 20261202_1200
Create Date: 2026-12-02 12:00:00

Every existing topic offers email only and every existing subscription keeps email, so
nothing anyone receives changes. On PostgreSQL the one-click function is replaced by the
same function (as FUNCTION_FROM last defined it) whose webhook snapshot also carries phone,
paused_until and each topic's channels, the snapshot of app.subscribers.services.snapshot
(tests/test_unsubscribe_fast.py).
"""

import sqlalchemy as sa
from alembic import op

import app.db

revision = 'a16c4a77e150'
down_revision = '20261202_1200'
branch_labels = None
depends_on = None



# The migration that last (re)defined prefcenter_one_click(): its text is patched below, so
# this migration changes only the snapshot and keeps whatever else that function does.
FUNCTION_FROM = "20261123_1420_one_click_function.py"

# (old, new): each must be found exactly once in the previous function's text.
PATCHES = [
    ("CREATE FUNCTION prefcenter_one_click(", "CREATE OR REPLACE FUNCTION prefcenter_one_click("),
    ("sb.version, r.slug AS role INTO s",
     "sb.version, sb.phone, sb.paused_until, r.slug AS role INTO s"),
    ("'subscribed', sc.subscribed, 'frequency', sc.frequency)",
     "'subscribed', sc.subscribed, 'frequency', sc.frequency,\n"
     "                           'channels', to_json(array_remove(ARRAY[\n"
     "                               CASE WHEN sc.by_email THEN 'email' END,\n"
     "                               CASE WHEN sc.by_sms THEN 'sms' END], NULL)))"),
    ("'version', v_version,",
     "'phone', s.phone,\n"
     "            'paused_until', to_char(s.paused_until AT TIME ZONE 'UTC',\n"
     "                                    'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),\n"
     "            'version', v_version,"),
]


def _previous_function() -> str:
    """The one-click function as FUNCTION_FROM created it (its ``ONE_CLICK``)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).with_name(FUNCTION_FROM)
    spec = importlib.util.spec_from_file_location("previous_one_click", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ONE_CLICK


def one_click() -> str:
    text = _previous_function()
    for old, new in PATCHES:
        if text.count(old) != 1:
            raise RuntimeError(f"prefcenter_one_click() changed: {old!r} not found once")
        text = text.replace(old, new)
    return text


def upgrade() -> None:
    with op.batch_alter_table('topics', schema=None) as batch_op:
        batch_op.add_column(sa.Column('channels', sa.JSON(), nullable=False,
                                      server_default='["email"]'))
    with op.batch_alter_table('subscribers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('phone', sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column('paused_until', app.db.UTCDateTime(timezone=True),
                                      nullable=True))
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('by_email', sa.Boolean(), nullable=False,
                                      server_default=sa.true()))
        batch_op.add_column(sa.Column('by_sms', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
    op.create_table('last_sends',
    sa.Column('subscriber_id', sa.Integer(), nullable=False),
    sa.Column('topic_id', sa.Integer(), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('campaign', sa.String(length=255), nullable=False),
    sa.Column('sent_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['subscriber_id'], ['subscribers.id'], name=op.f('fk_last_sends_subscriber_id_subscribers'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['topic_id'], ['topics.id'], name=op.f('fk_last_sends_topic_id_topics'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('topic_id', 'channel', 'subscriber_id', name=op.f('pk_last_sends'))
    )
    op.create_table('follow_links',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('url', sa.String(length=2000), nullable=False),
    sa.Column('role_id', sa.Integer(), nullable=True),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['role_id'], ['roles.id'], name=op.f('fk_follow_links_role_id_roles'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_follow_links'))
    )
    op.create_table('follow_link_translations',
    sa.Column('follow_link_id', sa.Integer(), nullable=False),
    sa.Column('locale', sa.String(length=16), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.ForeignKeyConstraint(['follow_link_id'], ['follow_links.id'], name=op.f('fk_follow_link_translations_follow_link_id_follow_links'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('follow_link_id', 'locale', name=op.f('pk_follow_link_translations'))
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(one_click())
        # Each send rewrites campaign and sent_at (no index): room in the page keeps the new
        # row version there (a HOT update) instead of a new entry in the primary key.
        op.execute("ALTER TABLE last_sends SET (fillfactor = 70)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_previous_function().replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION"))
    op.drop_table('follow_link_translations')
    op.drop_table('follow_links')
    op.drop_table('last_sends')
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.drop_column('by_sms')
        batch_op.drop_column('by_email')
    with op.batch_alter_table('subscribers', schema=None) as batch_op:
        batch_op.drop_column('paused_until')
        batch_op.drop_column('phone')
    with op.batch_alter_table('topics', schema=None) as batch_op:
        batch_op.drop_column('channels')
