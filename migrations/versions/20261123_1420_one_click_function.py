"""PostgreSQL: prefcenter_one_click(), the RFC 8058 one-click in one call; fillfactor

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 14:20:00

On PostgreSQL a one-click costs one statement: the repeat check, the row lock, the
write, the event and its outbox rows run server-side, so the app sends one call (the
statement is its own transaction and has committed when it returns) instead of about ten
statements in two pipelines. SQLite has no functions: app.unsubscribe.services.OneClick
runs the same rule there as Core statements. tests/test_unsubscribe_fast.py holds both to
the rows the ORM rule (app.subscribers.services.unsubscribe) writes.
"""

from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

ONE_CLICK = r"""
CREATE FUNCTION prefcenter_one_click(
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
           sb.version, r.slug AS role INTO s
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
                           'subscribed', sc.subscribed, 'frequency', sc.frequency)
                           ORDER BY t.slug COLLATE "C")
                  FROM subscriptions sc JOIN topics t ON t.id = sc.topic_id
                 WHERE sc.subscriber_id = v_id), '{}'::json),
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


# Subscribers and subscriptions are updated in place all the time (one-click, the
# preference page, the API) and those updates touch no indexed column: leaving room in each
# page lets PostgreSQL keep the new row version on the same page (a HOT update) instead of
# writing a new entry in every index of the table.
FILLFACTOR = {"subscribers": 80, "subscriptions": 80}


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(ONE_CLICK)
        for table, percent in FILLFACTOR.items():
            op.execute(f"ALTER TABLE {table} SET (fillfactor = {percent})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in FILLFACTOR:
            op.execute(f"ALTER TABLE {table} RESET (fillfactor)")
        op.execute("DROP FUNCTION prefcenter_one_click(text, integer, text, text, text, text, "
                   "text, timestamptz, text, timestamptz)")
