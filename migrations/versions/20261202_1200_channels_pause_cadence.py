"""Channels (email, sms), phone, pause, last sends per topic and channel, follow-us links

Revision ID: a16c4a77e150
Revises: 20261202_1200 (ESP intake)
Create Date: 2026-12-02 12:00:00

Every existing topic offers email only and every existing subscription keeps email, so
nothing anyone receives changes. On PostgreSQL the one-click function (0002) is replaced by
one whose webhook snapshot carries the new fields (phone, paused_until, channels), the same
snapshot as app.subscribers.services.snapshot (tests/test_unsubscribe_fast.py).
"""

import sqlalchemy as sa
from alembic import op

import app.db

revision = 'a16c4a77e150'
down_revision = '20261202_1200'
branch_labels = None
depends_on = None

SIGNATURE = ("prefcenter_one_click(text, integer, text, text, text, text, text, timestamptz, "
             "text, timestamptz)")


ONE_CLICK = r"""
CREATE OR REPLACE FUNCTION prefcenter_one_click(
    p_public_id text, p_epoch integer, p_topic text, p_source text, p_actor text,
    p_token_id text, p_campaign text, p_now timestamptz, p_now_text text,
    p_created_at timestamptz
) RETURNS integer
LANGUAGE plpgsql AS $$
-- RFC 8058 one-click in one call: 0 unsubscribed now, 1 already in force,
-- 2 no such subscriber (or erased), 3 link revoked. The rule and the rows written are
-- those of app.subscribers.services.unsubscribe (tests/test_unsubscribe_fast.py).
DECLARE
    s record;
    v_id integer;
    v_epoch integer;
    v_kind text;
    v_topic_id integer;
    v_subscribed boolean;
    v_topic text;
    v_action text;
    v_all_off boolean;
    v_version integer;
    v_before boolean;
    v_after boolean;
    v_event_id bigint;
    v_payload json;
BEGIN
    -- Unlocked first, in one read: a repeat takes no lock and writes nothing.
    SELECT sb.id, sb.link_epoch, sb.unsubscribed_all, t.id, t.kind, sc.subscribed
      INTO v_id, v_epoch, v_all_off, v_topic_id, v_kind, v_subscribed
      FROM subscribers sb
      LEFT JOIN topics t ON t.slug = p_topic
      LEFT JOIN subscriptions sc ON sc.subscriber_id = sb.id AND sc.topic_id = t.id
     WHERE sb.public_id = p_public_id AND sb.erased_at IS NULL;
    IF v_id IS NULL THEN RETURN 2; END IF;
    IF p_epoch < v_epoch THEN RETURN 3; END IF;
    IF (v_kind = 'marketing' AND v_subscribed IS NOT TRUE)
       OR (v_kind IS DISTINCT FROM 'marketing' AND v_all_off) THEN
        RETURN 1;
    END IF;

    -- Locked, and decided again: of two racing clicks the second finds the first's change.
    SELECT sb.external_id, sb.email, sb.locale, sb.unsubscribed_all, sb.link_epoch,
           sb.version, sb.phone, sb.paused_until, r.slug AS role INTO s
      FROM subscribers sb LEFT JOIN roles r ON r.id = sb.role_id
     WHERE sb.id = v_id AND sb.erased_at IS NULL
       FOR UPDATE OF sb;
    IF NOT FOUND THEN RETURN 2; END IF;
    IF p_epoch < s.link_epoch THEN RETURN 3; END IF;
    IF v_kind = 'marketing' THEN
        UPDATE subscriptions SET subscribed = false, updated_at = p_now
         WHERE subscriber_id = v_id AND topic_id = v_topic_id AND subscribed;
        IF NOT FOUND THEN RETURN 1; END IF;
        v_topic := p_topic;
        v_action := 'topic.unsubscribed';
        v_all_off := s.unsubscribed_all;
        v_before := true;
        v_after := false;
    ELSE
        IF s.unsubscribed_all THEN RETURN 1; END IF;
        v_topic := NULL;
        v_action := 'unsubscribed_all';
        v_all_off := true;
        v_before := false;
        v_after := true;
    END IF;
    v_version := s.version + 1;
    UPDATE subscribers SET version = v_version, updated_at = p_now, unsubscribed_all = v_all_off
     WHERE id = v_id;

    v_payload := json_build_object(
        'subscriber', json_build_object(
            'external_id', s.external_id,
            'email', s.email,
            'locale', s.locale,
            'role', s.role,
            'unsubscribed_all', v_all_off,
            'topics', COALESCE((
                SELECT json_object_agg(t.slug, json_build_object(
                           'subscribed', sc.subscribed, 'frequency', sc.frequency,
                           'channels', to_json(array_remove(ARRAY[
                               CASE WHEN sc.by_email THEN 'email' END,
                               CASE WHEN sc.by_sms THEN 'sms' END], NULL)))
                           ORDER BY t.slug COLLATE "C")
                  FROM subscriptions sc JOIN topics t ON t.id = sc.topic_id
                 WHERE sc.subscriber_id = v_id), '{}'::json),
            'phone', s.phone,
            'paused_until', to_char(s.paused_until AT TIME ZONE 'UTC',
                                    'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
            'version', v_version,
            'updated_at', p_now_text),
        'changes', json_build_array(json_build_object(
            'action', v_action, 'topic', v_topic, 'before', v_before, 'after', v_after)),
        'source', p_source);
    INSERT INTO events (subscriber_id, type, action, topic, before, after, source, actor,
                        token_id, campaign, version, payload, created_at)
    VALUES (v_id, 'subscriber.unsubscribed', v_action, v_topic,
            json_build_object('value', v_before), json_build_object('value', v_after),
            p_source, p_actor, p_token_id, p_campaign, v_version, v_payload, p_created_at)
    RETURNING id INTO v_event_id;
    -- One outbox row per enabled endpoint that wants the event (WebhookEndpoint.wants).
    INSERT INTO webhook_deliveries (endpoint_id, event_id, subscriber_id, status, attempts,
                                    next_attempt_at, created_at)
    SELECT e.id, v_event_id, v_id, 'pending', 0, p_created_at, p_created_at
      FROM webhook_endpoints e
     WHERE e.enabled
       AND (e.event_types IS NULL OR json_typeof(e.event_types) = 'null'
            OR json_array_length(e.event_types) = 0
            OR e.event_types::jsonb ? 'subscriber.unsubscribed');
    RETURN 0;
END;
$$;
"""


def _previous_function() -> str:
    """0002's function text, read from that migration (downgrade puts it back)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).with_name("20261123_1420_one_click_function.py")
    spec = importlib.util.spec_from_file_location("one_click_0002", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ONE_CLICK


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
        op.execute(ONE_CLICK)
        # Each send rewrites campaign and sent_at (no index): room in the page keeps the new
        # row version there (a HOT update) instead of a new entry in the primary key.
        op.execute("ALTER TABLE last_sends SET (fillfactor = 70)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP FUNCTION {SIGNATURE}")
        op.execute(_previous_function())
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
