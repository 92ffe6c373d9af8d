"""What the admin pages do: plain functions over a session, audited, never committing.

Catalogue and endpoint writes add an :class:`AuditEntry`; subscriber changes go
through :func:`app.subscribers.services.change` and are recorded as events.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from email_validator import EmailNotValidError, validate_email
from flask_babel import lazy_gettext as _l
from sqlalchemy import exists, func, or_, select
from sqlalchemy.orm import Session

from app.admin.auth import end_all_sessions, hash_password, normalise_admin_email
from app.admin.models import Admin, AuditEntry
from app.db import utcnow
from app.events.models import Event
from app.subscribers.models import EspEvent, Subscriber, Subscription, address_key
from app.subscribers.services import (
    InvalidEmail,
    default_channels,
    email_hash,
    normalise_email,
    role_topics,
)
from app.topics.models import (
    CHANNELS,
    FREQUENCIES,
    KINDS,
    FollowLink,
    FollowLinkTranslation,
    Role,
    RoleTopic,
    RoleTopicTranslation,
    RoleTranslation,
    Topic,
    TopicTranslation,
)
from app.webhooks import services as webhooks
from app.webhooks.models import WebhookDelivery

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class AdminError(ValueError):
    """A write the rules refuse; ``field`` names the form field at fault, if any."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class DuplicateAdmin(AdminError):
    pass


class InUse(AdminError):
    """A topic that subscribers or events refer to cannot be deleted."""


# Admins -----------------------------------------------------------------------------------


def create_admin(session: Session, email: str, password: str, app=None) -> Admin:
    try:
        validate_email(email, check_deliverability=False)
    except EmailNotValidError as exc:
        raise AdminError(str(exc), "email") from exc
    email = normalise_admin_email(email)
    if session.scalar(select(Admin.id).where(Admin.email == email)) is not None:
        raise DuplicateAdmin(f"an admin {email} already exists", "email")
    admin = Admin(email=email, password_hash=hash_password(password, app), created_at=utcnow())
    session.add(admin)
    session.flush()
    return admin


def set_password(session: Session, email: str, password: str, app=None) -> Admin:
    admin = session.scalars(
        select(Admin).where(Admin.email == normalise_admin_email(email))
    ).one_or_none()
    if admin is None:
        raise AdminError(f"no admin {email}", "email")
    admin.password_hash = hash_password(password, app)
    end_all_sessions(session, admin, now=utcnow())
    session.flush()
    return admin


def audit(session: Session, actor: str, action: str, entity: str, entity_id, details=None):
    entry = AuditEntry(admin_email=actor, action=action, entity=entity,
                       entity_id=str(entity_id), details=details or {}, created_at=utcnow())
    session.add(entry)
    return entry


def audit_page(session: Session, page: int, per_page: int = 50):
    total = session.scalar(select(func.count(AuditEntry.id))) or 0
    entries = session.scalars(
        select(AuditEntry).order_by(AuditEntry.id.desc())
        .offset((page - 1) * per_page).limit(per_page)
    ).all()
    return entries, total


# Dashboard ---------------------------------------------------------------------------------


def dashboard_counts(session: Session, now: dt.datetime | None = None) -> dict:
    now = now or utcnow()
    live = Subscriber.erased_at.is_(None)
    deliveries = webhooks.count_deliveries(session)
    return {
        "subscribers": session.scalar(select(func.count(Subscriber.id)).where(live)) or 0,
        "unsubscribed_all": session.scalar(
            select(func.count(Subscriber.id)).where(live, Subscriber.unsubscribed_all)) or 0,
        "events_24h": session.scalar(select(func.count(Event.id)).where(
            Event.created_at >= now - dt.timedelta(hours=24))) or 0,
        "deliveries_pending": deliveries[webhooks.PENDING],
        "deliveries_dead": deliveries[webhooks.DEAD],
    }


# Topics ------------------------------------------------------------------------------------


@dataclass
class TopicData:
    kind: str
    frequencies: list[str]
    default_frequency: str
    names: dict[str, str] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)
    channels: list[str] = field(default_factory=lambda: ["email"])


def ordered_topics(session: Session) -> list[Topic]:
    return list(session.scalars(select(Topic).order_by(Topic.position, Topic.slug)))


def missing_locales(translations, locales: list[str], attr: str = "name") -> list[str]:
    present = {t.locale for t in translations if (getattr(t, attr) or "").strip()}
    return [loc for loc in locales if loc not in present]


def _require_name(names: dict[str, str], default_locale: str) -> None:
    if not (names.get(default_locale) or "").strip():
        raise AdminError(_l("a name in the default locale is required"), f"name_{default_locale}")


def _new_slug(session: Session, model, slug: str, taken) -> str:
    """``slug`` stripped, if well-formed and not used by another ``model`` row."""
    slug = (slug or "").strip()
    if not SLUG_RE.match(slug):
        raise AdminError(_l("use lowercase letters, digits, - and _ (at most 64)"), "slug")
    if session.scalar(select(model.id).where(model.slug == slug)) is not None:
        raise AdminError(taken, "slug")
    return slug


def _check_topic(data: TopicData, default_locale: str) -> None:
    if data.kind not in KINDS:
        raise AdminError(_l("unknown kind"), "kind")
    if not data.frequencies or any(f not in FREQUENCIES for f in data.frequencies):
        raise AdminError(_l("choose at least one frequency"), "frequencies")
    if data.default_frequency not in data.frequencies:
        raise AdminError(_l("the default frequency must be one of the offered ones"),
                         "default_frequency")
    if not data.channels or any(c not in CHANNELS for c in data.channels):
        raise AdminError(_l("choose at least one channel"), "channels")
    _require_name(data.names, default_locale)


def _set_topic_texts(topic: Topic, data: TopicData) -> None:
    existing = {t.locale: t for t in topic.translations}
    for locale in set(data.names) | set(data.descriptions):
        name = (data.names.get(locale) or "").strip()
        description = (data.descriptions.get(locale) or "").strip()
        row = existing.get(locale)
        if not name:
            if row is not None:
                topic.translations.remove(row)
            continue
        if row is None:
            topic.translations.append(TopicTranslation(locale=locale, name=name,
                                                       description=description))
        else:
            row.name, row.description = name, description


def create_topic(session: Session, slug: str, data: TopicData, *, actor: str,
                 default_locale: str) -> Topic:
    slug = _new_slug(session, Topic, slug, _l("a topic with this slug already exists"))
    _check_topic(data, default_locale)
    position = (session.scalar(select(func.max(Topic.position))) or 0) + 1
    topic = Topic(slug=slug, kind=data.kind, frequencies=list(data.frequencies),
                  default_frequency=data.default_frequency, position=position,
                  channels=[c for c in CHANNELS if c in data.channels])
    _set_topic_texts(topic, data)
    session.add(topic)
    session.flush()
    audit(session, actor, "topic.create", "topic", topic.id, {"slug": slug, **_topic_dict(topic)})
    return topic


def _topic_dict(topic: Topic) -> dict:
    return {
        "kind": topic.kind, "frequencies": list(topic.frequencies),
        "default_frequency": topic.default_frequency,
        "channels": list(topic.channels),
        "names": {t.locale: t.name for t in topic.translations},
    }


def update_topic(session: Session, topic: Topic, data: TopicData, *, actor: str,
                 default_locale: str) -> Topic:
    """Everything but the slug, which never changes once created."""
    _check_topic(data, default_locale)
    before = _topic_dict(topic)
    topic.kind = data.kind
    topic.frequencies = list(data.frequencies)
    topic.default_frequency = data.default_frequency
    topic.channels = [c for c in CHANNELS if c in data.channels]
    _set_topic_texts(topic, data)
    session.flush()
    after = _topic_dict(topic)
    changed = {k: {"before": before[k], "after": after[k]} for k in after if before[k] != after[k]}
    audit(session, actor, "topic.update", "topic", topic.id, {"slug": topic.slug, **changed})
    return topic


def move(items: list, item, direction: str) -> bool:
    """Move ``item`` one place up or down in ``items``; renumber ``position`` 0..n."""
    index = items.index(item)
    target = index - 1 if direction == "up" else index + 1
    if direction not in ("up", "down") or not 0 <= target < len(items):
        return False
    items[index], items[target] = items[target], items[index]
    for position, each in enumerate(items):
        each.position = position
    return True


def move_topic(session: Session, topic: Topic, direction: str, *, actor: str) -> bool:
    moved = move(ordered_topics(session), topic, direction)
    if moved:
        audit(session, actor, f"topic.move_{direction}", "topic", topic.id, {"slug": topic.slug})
    session.flush()
    return moved


def set_archived(session: Session, topic: Topic, archived: bool, *, actor: str) -> None:
    if topic.archived != archived:
        topic.archived = archived
        audit(session, actor, "topic.archive" if archived else "topic.unarchive", "topic",
              topic.id, {"slug": topic.slug})
        session.flush()


def topic_in_use(session: Session, topic: Topic) -> bool:
    """Any subscription or event names the topic: it may only be archived."""
    return bool(session.scalar(select(
        exists().where(Subscription.topic_id == topic.id)
        | exists().where(Event.topic == topic.slug)
    )))


def topics_in_use(session: Session) -> set[int]:
    used = set(session.scalars(select(Subscription.topic_id).distinct()))
    slugs = set(session.scalars(select(Event.topic).where(Event.topic.is_not(None)).distinct()))
    if slugs:
        used |= set(session.scalars(select(Topic.id).where(Topic.slug.in_(slugs))))
    return used


def delete_topic(session: Session, topic: Topic, *, actor: str) -> None:
    if topic_in_use(session, topic):
        raise InUse("this topic has subscribers or history: archive it instead")
    entries = session.scalars(select(RoleTopic).where(RoleTopic.topic_id == topic.id)).all()
    roles = sorted(rt.role.slug for rt in entries)
    for rt in entries:
        rt.role.role_topics.remove(rt)
    audit(session, actor, "topic.delete", "topic", topic.id,
          {"slug": topic.slug, "removed_from_roles": roles, **_topic_dict(topic)})
    session.delete(topic)
    session.flush()


# Roles -------------------------------------------------------------------------------------


@dataclass
class RoleTopicData:
    default_subscribed: bool
    benefits: dict[str, str] = field(default_factory=dict)


def ordered_roles(session: Session) -> list[Role]:
    return list(session.scalars(select(Role).order_by(Role.position, Role.slug)))


def _sync_texts(rows: list, texts: dict[str, str], attr: str, make) -> None:
    """Set ``attr`` on each locale's row of ``rows``: add missing rows, drop emptied ones."""
    existing = {t.locale: t for t in rows}
    for locale, raw in texts.items():
        text = (raw or "").strip()
        row = existing.get(locale)
        if not text:
            if row is not None:
                rows.remove(row)
        elif row is None:
            rows.append(make(locale=locale, **{attr: text}))
        else:
            setattr(row, attr, text)


def create_role(session: Session, slug: str, names: dict[str, str], *, actor: str,
                default_locale: str) -> Role:
    slug = _new_slug(session, Role, slug, _l("a role with this slug already exists"))
    _require_name(names, default_locale)
    position = (session.scalar(select(func.max(Role.position))) or 0) + 1
    role = Role(slug=slug, position=position)
    _sync_texts(role.translations, names, "name", RoleTranslation)
    session.add(role)
    session.flush()
    audit(session, actor, "role.create", "role", role.id,
          {"slug": slug, "names": {t.locale: t.name for t in role.translations}})
    return role


def update_role(session: Session, role: Role, names: dict[str, str],
                topics: dict[int, RoleTopicData], *, actor: str, default_locale: str) -> Role:
    """Names, and each role topic's default and benefit texts, in one go."""
    _require_name(names, default_locale)
    by_id = {rt.id: rt for rt in role.role_topics}
    unknown = set(topics) - set(by_id)
    if unknown:
        raise AdminError(_l("a topic of this form is no longer on the role; reload the page"))
    _sync_texts(role.translations, names, "name", RoleTranslation)
    for rt_id, data in topics.items():
        rt = by_id[rt_id]
        rt.default_subscribed = data.default_subscribed
        _sync_texts(rt.translations, data.benefits, "benefit", RoleTopicTranslation)
    session.flush()
    audit(session, actor, "role.update", "role", role.id, {
        "slug": role.slug,
        "names": {t.locale: t.name for t in role.translations},
        "topics": {rt.topic.slug: {"default_subscribed": rt.default_subscribed,
                                   "benefits": {t.locale: t.benefit for t in rt.translations}}
                   for rt in role.role_topics},
    })
    return role


def addable_topics(session: Session, role: Role) -> list[Topic]:
    """Marketing topics, not archived, not already on the role."""
    present = {rt.topic_id for rt in role.role_topics}
    return [t for t in ordered_topics(session)
            if t.kind == "marketing" and not t.archived and t.id not in present]


def add_role_topic(session: Session, role: Role, topic: Topic, *, actor: str) -> RoleTopic:
    if topic.kind != "marketing" or topic.archived:
        raise AdminError(_l("only marketing topics that are not archived can be added"), "topic")
    if any(rt.topic_id == topic.id for rt in role.role_topics):
        raise AdminError(_l("this topic is already on the role"), "topic")
    rt = RoleTopic(topic=topic, position=len(role.role_topics), default_subscribed=False)
    role.role_topics.append(rt)
    session.flush()
    audit(session, actor, "role.topic_add", "role", role.id,
          {"slug": role.slug, "topic": topic.slug})
    return rt


def role_topic(role: Role, role_topic_id: int) -> RoleTopic | None:
    return next((rt for rt in role.role_topics if rt.id == role_topic_id), None)


def remove_role_topic(session: Session, role: Role, rt: RoleTopic, *, actor: str) -> None:
    role.role_topics.remove(rt)
    for position, each in enumerate(role.role_topics):
        each.position = position
    session.flush()
    audit(session, actor, "role.topic_remove", "role", role.id,
          {"slug": role.slug, "topic": rt.topic.slug})


def move_role_topic(session: Session, role: Role, rt: RoleTopic, direction: str, *,
                    actor: str) -> bool:
    items = sorted(role.role_topics, key=lambda each: (each.position, each.id))
    moved = move(items, rt, direction)
    if moved:
        role.role_topics.sort(key=lambda each: each.position)
        audit(session, actor, f"role.topic_move_{direction}", "role", role.id,
              {"slug": role.slug, "topic": rt.topic.slug})
    session.flush()
    return moved


def preview_subscriber(role: Role, locale: str) -> Subscriber:
    """A subscriber of ``role`` with its defaults, never added to any session."""
    subscriber = Subscriber(email="preview@example.com", locale=locale, role=role,
                            unsubscribed_all=False, version=1)
    subscriber.subscriptions = [
        Subscription(topic_id=rt.topic_id, topic=rt.topic, subscribed=rt.default_subscribed,
                     frequency=rt.topic.default_frequency,
                     by_email="email" in default_channels(rt.topic), by_sms=False)
        for rt in role_topics(role)
    ]
    return subscriber


# Subscribers -------------------------------------------------------------------------------


def find_subscribers(session: Session, query: str, limit: int = 50) -> list[Subscriber]:
    """Exact normalised email, exact external id, or external ids starting with ``query``."""
    query = (query or "").strip()
    if not query:
        return []
    conditions = [Subscriber.external_id == query]
    if "@" in query:
        with contextlib.suppress(InvalidEmail):
            conditions.append(Subscriber.email_key == address_key(normalise_email(query)))
    escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    conditions.append(Subscriber.external_id.like(f"{escaped}%", escape="\\"))
    return list(session.scalars(
        select(Subscriber).where(or_(*conditions)).order_by(Subscriber.external_id)
        .limit(limit)
    ).unique())


def history_page(session: Session, subscriber: Subscriber, page: int, per_page: int = 50):
    """The subscriber's events, newest first, one page at a time; and the total."""
    where = Event.subscriber_id == subscriber.id
    total = session.scalar(select(func.count(Event.id)).where(where)) or 0
    events = session.scalars(
        select(Event).where(where).order_by(Event.id.desc())
        .offset((page - 1) * per_page).limit(per_page)
    ).all()
    return events, total


def admin_topics_for(session: Session, subscriber: Subscriber) -> dict[str, Topic]:
    """What an admin may set for a subscriber: the role's topics and any held before."""
    topics = {rt.topic.slug: rt.topic for rt in role_topics(subscriber.role)}
    for sub in subscriber.subscriptions:
        if sub.topic.kind == "marketing" and not sub.topic.archived:
            topics.setdefault(sub.topic.slug, sub.topic)
    return topics


# Webhook endpoints (the rules live in app.webhooks.services; here: the audit trail) ---------


def endpoint_counts(session: Session) -> dict[str, dict[str, int]]:
    """Deliveries per endpoint and status: ``{endpoint_id: {status: n}}``."""
    counts: dict[str, dict[str, int]] = {}
    for endpoint_id, status, count in session.execute(
        select(WebhookDelivery.endpoint_id, WebhookDelivery.status, func.count())
        .group_by(WebhookDelivery.endpoint_id, WebhookDelivery.status)
    ):
        counts.setdefault(endpoint_id, {})[status] = count
    return counts


def add_endpoint(session: Session, url: str, events: list[str], description: str, *,
                 actor: str):
    endpoint, secret = webhooks.create_endpoint(session, url, events=events or None,
                                                description=description)
    audit(session, actor, "endpoint.create", "webhook_endpoint", endpoint.id,
          {"url": endpoint.url, "events": list(endpoint.event_types)})
    return endpoint, secret


def set_endpoint_enabled(session: Session, endpoint, enabled: bool, *, actor: str) -> None:
    if enabled == endpoint.enabled:
        return
    if enabled:
        webhooks.enable_endpoint(session, endpoint)
    else:
        webhooks.disable_endpoint(session, endpoint, f"Disabled by {actor}.")
    audit(session, actor, "endpoint.enable" if enabled else "endpoint.disable",
          "webhook_endpoint", endpoint.id, {"url": endpoint.url})


def rotate_endpoint_secret(session: Session, endpoint, *, actor: str) -> str:
    secret = webhooks.rotate_secret(session, endpoint)
    expires = endpoint.previous_secret_expires_at
    audit(session, actor, "endpoint.rotate_secret", "webhook_endpoint", endpoint.id,
          {"url": endpoint.url,
           "previous_secret_expires_at": expires.isoformat() if expires else None})
    return secret


def send_test(session: Session, endpoint, *, actor: str):
    result = webhooks.send_test_event(session, endpoint)
    audit(session, actor, "endpoint.test", "webhook_endpoint", endpoint.id,
          {"url": endpoint.url, "ok": result.ok, "status_code": result.status_code,
           "error": result.error})
    return result


def replay(session: Session, endpoint, delivery_id: int, *, actor: str):
    delivery = webhooks.get_delivery(session, delivery_id, endpoint.id)
    if delivery is None:
        return None
    queued = webhooks.replay_delivery(session, delivery)
    audit(session, actor, "endpoint.replay", "webhook_endpoint", endpoint.id,
          {"delivery": delivery.id, "event": delivery.event_id, "queued": queued.id})
    return queued


# Deliverability: what the ESPs reported ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReportFilter:
    kind: str | None = None
    provider: str | None = None
    outcome: str | None = None
    address: str = ""

    def as_args(self) -> dict:
        return {k: v for k, v in (("kind", self.kind), ("provider", self.provider),
                                  ("outcome", self.outcome), ("q", self.address)) if v}


def esp_reports_page(session: Session, where: ReportFilter, page: int, per_page: int = 50):
    """ESP reports, newest first, filtered; and the total."""
    query = select(EspEvent)
    if where.kind:
        query = query.where(EspEvent.kind == where.kind)
    if where.provider:
        query = query.where(EspEvent.provider == where.provider)
    if where.outcome:
        query = query.where(EspEvent.outcome == where.outcome)
    if where.address:
        query = query.where(EspEvent.email_hash == email_hash(where.address))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(EspEvent.id.desc())
                           .offset((page - 1) * per_page).limit(per_page)).all()
    return rows, total


def undeliverable_page(session: Session, address: str, page: int, per_page: int = 50):
    """Subscribers whose address is marked undeliverable, most recent first; and the total."""
    query = select(Subscriber).where(Subscriber.undeliverable_at.is_not(None),
                                     Subscriber.erased_at.is_(None))
    if address:
        query = query.where(Subscriber.email_key == address_key(address))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Subscriber.undeliverable_at.desc(), Subscriber.id)
                           .offset((page - 1) * per_page).limit(per_page)).all()
    return rows, total


# Follow-us links ---------------------------------------------------------------------------


def ordered_follow_links(session: Session) -> list[FollowLink]:
    return list(session.scalars(
        select(FollowLink).order_by(FollowLink.position, FollowLink.id)).unique())


def _check_follow_url(url: str) -> str:
    """An absolute http(s) URL with a host: the page shows it as a plain link."""
    url = (url or "").strip()
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname or any(
            c.isspace() for c in url):
        raise AdminError(_l("enter an absolute https:// address"), "url")
    return url


def save_follow_link(session: Session, link: FollowLink | None, url: str,
                     role: Role | None, names: dict[str, str], *, actor: str,
                     default_locale: str) -> FollowLink:
    """Create (``link`` None) or update a follow-us link."""
    url = _check_follow_url(url)
    _require_name(names, default_locale)
    if link is None:
        position = (session.scalar(select(func.max(FollowLink.position))) or 0) + 1
        link = FollowLink(url=url, role=role, position=position)
        session.add(link)
        action = "follow_link.create"
    else:
        link.url, link.role = url, role
        action = "follow_link.update"
    _sync_texts(link.translations, names, "name", FollowLinkTranslation)
    session.flush()
    audit(session, actor, action, "follow_link", link.id,
          {"url": url, "role": role.slug if role else None,
           "names": {t.locale: t.name for t in link.translations}})
    return link


def delete_follow_link(session: Session, link: FollowLink, *, actor: str) -> None:
    audit(session, actor, "follow_link.delete", "follow_link", link.id, {"url": link.url})
    session.delete(link)
    session.flush()
