"""The rules behind /api/v1: validate integrator input, upsert, mint, list, export.

Plain functions over a session; they never read the request. Invalid input
raises :class:`ApiProblem`, which the blueprint answers as an RFC 9457 problem.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlalchemy import BigInteger, Text, func, literal, select, tuple_, union_all
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, defaultload, joinedload, lazyload

from app.api.errors import ApiProblem
from app.db import iso_z, utcnow
from app.events.models import Event, EventCommit
from app.links.minting import LinkRequest, LinkTooLong, link_error, link_targets, link_topics
from app.links.services import links_for
from app.subscribers.drafts import Draft
from app.subscribers.drafts import load as load_drafts
from app.subscribers.drafts import write as write_drafts
from app.subscribers.models import Subscriber, Subscription, Suppression, address_key
from app.subscribers.recipients import (
    BATCH,
    eligible,
    ndjson,
    suppressed_hashes,
    without_suppressed,
)
from app.subscribers.services import (
    KEEP,
    Context,
    InvalidEmail,
    InvalidPhone,
    NoChannel,
    PhoneRequired,
    Suppressed,
    TopicChoice,
    UnknownChannel,
    UnknownFrequency,
    UnknownTopic,
    change,
    email_hash,
    marketing_topics,
    new_draft,
    normalise_email,
    normalise_phone,
    snapshot,
    suppression,
    validate_choices,
)
from app.topics.models import FREQUENCIES, Role, Topic

RECIPIENTS_BATCH = BATCH


def invalid(pointer: str, detail: str) -> ApiProblem:
    """422 naming the offending member by JSON pointer."""
    return ApiProblem(422, "Unprocessable Content", detail,
                      errors=[{"pointer": pointer, "detail": detail}])


def pointer_token(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


# --- subscribers -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SubscriberInput:
    email: str | None = None
    locale: str | None = None
    role: str | None = None
    topics: dict[str, TopicChoice] = field(default_factory=dict)
    unsubscribed_all: bool | None = None
    phone: object = KEEP  # E.164 string, None (remove) or KEEP
    paused_until: object = KEEP  # aware datetime, None (resume) or KEEP


def input_of(body) -> SubscriberInput:
    """A request's validated body (:class:`app.api.schemas.SubscriberInput` or a batch item)
    as the upsert's input: a phone or pause left out is kept (``KEEP``), a phone is put in
    E.164 (a 422 at ``/phone`` if the phonenumbers library refuses it)."""
    given = body.model_fields_set
    phone = KEEP
    if "phone" in given:
        phone = body.phone
        if phone is not None:
            try:
                phone = normalise_phone(phone)
            except InvalidPhone as exc:
                raise invalid("/phone", "phone is not a valid number in international format "
                                        f"(+ and the country code): {exc}") from exc
    paused_until = KEEP
    if "paused_until" in given:
        paused_until = body.paused_until
        if paused_until is not None:
            paused_until = paused_until.astimezone(dt.UTC).replace(microsecond=0)
    topics = {slug: TopicChoice(subscribed=choice.subscribed, frequency=choice.frequency,
                                channels=tuple(choice.channels)
                                if choice.channels is not None else None)
              for slug, choice in (body.topics or {}).items()}
    return SubscriberInput(email=body.email, locale=body.locale, role=body.role, topics=topics,
                           unsubscribed_all=body.unsubscribed_all, phone=phone,
                           paused_until=paused_until)


def _check_topics(choices: dict[str, TopicChoice], allowed: dict[str, Topic], *,
                  has_phone: bool) -> None:
    """The subscribers' rule (:func:`validate_choices`), its refusals as pointed 422s."""
    for slug, choice in choices.items():
        where = f"/topics/{pointer_token(slug)}"
        try:
            validate_choices({slug: choice}, allowed, has_phone=has_phone)
        except UnknownTopic as exc:
            raise invalid(where, f"Unknown topic {slug!r}; marketing topics: "
                                 f"{', '.join(sorted(allowed)) or 'none'}.") from exc
        except UnknownFrequency as exc:
            raise invalid(f"{where}/frequency",
                          f"Unknown frequency {choice.frequency!r} for topic {slug!r}; "
                          f"it offers: {', '.join(allowed[slug].frequencies)}.") from exc
        except UnknownChannel as exc:
            raise invalid(f"{where}/channels",
                          f"Topic {slug!r} is not offered on {exc}; it offers: "
                          f"{', '.join(allowed[slug].channels)}.") from exc
        except NoChannel as exc:
            raise invalid(f"{where}/channels",
                          f"Subscribing to topic {slug!r} needs at least one channel.") from exc
        except PhoneRequired as exc:
            raise invalid(f"{where}/channels",
                          f"Topic {slug!r} by sms needs a phone number: set phone (in this "
                          "request or before).") from exc


def _with_state():
    """Subscribers with their role and subscriptions (and topics) in one statement."""
    role = defaultload(Subscriber.role)
    topic = defaultload(Subscriber.subscriptions).defaultload(Subscription.topic)
    return select(Subscriber).options(
        joinedload(Subscriber.subscriptions), role.lazyload(Role.translations),
        role.lazyload(Role.role_topics), topic.lazyload(Topic.translations))


# The rules read the catalogue's slugs, kinds, frequencies and channels: its translations
# (and a role's topics, needed only to create) load if used, not each a statement more.
TOPICS_ONLY = (lazyload(Topic.translations),)
ROLES_ONLY = (lazyload(Role.translations), lazyload(Role.role_topics))


def unchanged(subscriber: Subscriber | None, data: SubscriberInput, *,
              suppressed: bool | None) -> bool:
    """Whether upserting ``data`` would change nothing and refuse nothing.

    Decided on the loaded subscriber alone (its role and subscriptions, and whether its
    address is suppressed, when that matters; ``None``: not known), so an unchanged
    upsert costs one read; anything else, or anything it cannot tell, goes to
    :func:`upsert_chunk`, which applies the rules.
    """
    if subscriber is None or data.phone is not KEEP or data.paused_until is not KEEP:
        return False
    if data.email is not None:
        try:
            if normalise_email(data.email) != subscriber.email:
                return False
        except InvalidEmail:
            return False
    if data.locale is not None and data.locale != subscriber.locale:
        return False
    if data.role is not None and (subscriber.role is None or subscriber.role.slug != data.role):
        return False
    if data.unsubscribed_all is not None:
        if data.unsubscribed_all != subscriber.unsubscribed_all:
            return False
        if data.unsubscribed_all is False and suppressed is not False:
            return False  # a suppressed address is refused a resubscription (409)
    by_slug = {s.topic.slug: s for s in subscriber.subscriptions}
    for slug, choice in (data.topics or {}).items():
        sub = by_slug.get(slug)
        if (sub is None or sub.topic.kind != "marketing" or sub.topic.archived
                or choice.subscribed != sub.subscribed or choice.channels is not None):
            return False
        if choice.frequency is not None and (choice.frequency != sub.frequency
                                             or choice.frequency not in sub.topic.frequencies):
            return False
    return True


def unchanged_snapshot(session: Session, external_id: str, data: SubscriberInput,
                       ) -> dict | None:
    """The subscriber's snapshot if upserting ``data`` changes nothing, else None: one
    read (the suppression of the address rides along when it matters). Ends the read."""
    query = _with_state().where(Subscriber.external_id == external_id)
    check = data.unsubscribed_all is False and data.email is not None
    if check:
        query = query.add_columns(
            select(Suppression.id).where(Suppression.email_hash == email_hash(
                data.email)).exists().label("suppressed"))
    row = session.execute(query).unique().first()
    found = None
    if row is not None and unchanged(row[0], data,
                                     suppressed=bool(row[1]) if check else None):
        found = snapshot(row[0])
    session.rollback()
    return found


@dataclass(slots=True)
class Outcome:
    """One item's answer: its status, the refusal (a 409 or 422 problem) or the subscriber."""

    external_id: str
    status: int
    problem: ApiProblem | None = None
    subscriber: Draft | None = None

    def answer(self) -> dict:
        """The batch's item: ``{external_id, status, detail?, errors?}``."""
        if self.problem is None:
            return {"external_id": self.external_id, "status": self.status}
        return _refused(self.external_id, self.problem)


CONCURRENT = ("A concurrent request changed this subscriber or its address; retry the "
              "request.")


def upsert_chunk(session: Session, items: list[tuple[str, SubscriberInput | ApiProblem]], *,
                 context: Context, default_role: str | None,
                 now: dt.datetime) -> list[Outcome]:
    """Create or update the subscribers ``(external_id, input)``: one :class:`Outcome`
    each, in order. The rule of ``PUT`` and of the batch (a ``PUT`` is a chunk of one).

    ``input`` passed its schema (:func:`input_of`; an :class:`ApiProblem` there is
    answered as it is); the rules that need the database are checked here, each item's
    before anything of it changes: a refused item (422, 409) changes nothing and leaves
    the others be; an update that changes nothing writes nothing. Items apply in order
    (a later item sees an earlier one's subscriber). A chunk costs a few reads and one
    statement per table written, whatever its size.

    A concurrent writer that got in first (a unique address or external id taken
    between the read and the write) makes the chunk run again, reading what it wrote; if
    that fails too, each item runs alone, and an item that still fails is a 409.
    """
    settings = {"context": context, "default_role": default_role, "now": now}
    for _attempt in range(2):
        try:
            with session.begin_nested():
                return _upsert_chunk(session, items, **settings)
        except IntegrityError:
            continue
    if len(items) == 1:
        return [Outcome(items[0][0], 409, ApiProblem(409, "Conflict", CONCURRENT))]
    return [outcome for item in items for outcome in upsert_chunk(session, [item], **settings)]


def _upsert_chunk(session: Session, items, *, context: Context, default_role: str | None,
                  now: dt.datetime) -> list[Outcome]:
    topics = {t.id: t for t in session.scalars(select(Topic).options(*TOPICS_ONLY))}
    allowed = marketing_topics(session)
    roles = {r.id: r for r in session.scalars(select(Role).options(*ROLES_ONLY)
                                                .order_by(Role.position))}
    roles_by_slug = {r.slug: r for r in roles.values()}
    parsed = []
    for external_id, data in items:
        email = problem = None
        if isinstance(data, ApiProblem):
            problem = data
        elif data.email is not None:
            try:
                email = normalise_email(data.email)
            except InvalidEmail as exc:
                problem = invalid("/email", f"email is not a valid address: {exc}")
        parsed.append((external_id, data, email, problem))
    found = load_drafts(session, external_ids=[p[0] for p in parsed if p[3] is None],
                        emails=[p[2] for p in parsed if p[2] is not None],
                        topics=topics, roles=roles, for_update=True)
    by_external_id = {d.external_id: d for d in found}
    owners = {address_key(d.email): d for d in found if d.email}
    addresses = {email for _e, _d, email, _p in parsed if email} | set(owners)
    suppressed = set(suppressed_hashes(session, [email_hash(a) for a in addresses])
                     ) if addresses else set()
    rules = Rules(session, allowed=allowed, roles=roles_by_slug, suppressed=suppressed,
                  owners=owners, context=context, default_role=default_role, now=now)
    outcomes, written = [], {}
    for external_id, data, email, problem in parsed:
        if problem is None:
            try:
                subscriber, status = rules.upsert(by_external_id.get(external_id), external_id,
                                                  data, email)
            except ApiProblem as exc:
                problem = exc
            else:
                by_external_id[external_id] = subscriber
                if subscriber.events:
                    written[id(subscriber)] = subscriber
                outcomes.append(Outcome(external_id, status, subscriber=subscriber))
                continue
        outcomes.append(Outcome(external_id, problem.status, problem))
    write_drafts(session, list(written.values()))
    return outcomes


@dataclass
class Rules:
    """The upsert's rules over one chunk's reads (the catalogue, the subscribers holding
    its external ids and addresses, the suppressed addresses among them)."""

    session: Session
    allowed: dict[str, Topic]
    roles: dict[str, Role]
    suppressed: set[str]  # email_hash of the suppressed addresses among the chunk's
    owners: dict[str, Draft]  # by address_key
    context: Context
    default_role: str | None
    now: dt.datetime

    def upsert(self, subscriber: Draft | None, external_id: str, data: SubscriberInput,
               email: str | None) -> tuple[Draft, int]:
        """``(subscriber, 201 or 200)``, or raises the refusal before changing anything."""
        current = subscriber.email if subscriber is not None else None
        if subscriber is not None and unchanged(subscriber, data, suppressed=bool(
                current and email_hash(current) in self.suppressed)):
            return subscriber, 200
        topics = data.topics or {}
        role = None
        if data.role is not None:
            role = self.roles.get(data.role)
            if role is None:
                raise invalid("/role", f"Unknown role {data.role!r}; roles: "
                                       f"{', '.join(self.roles) or 'none'}.")
        current_phone = subscriber.phone if subscriber is not None else None
        _check_topics(topics, self.allowed,
                      has_phone=(current_phone if data.phone is KEEP else data.phone)
                      is not None)
        if isinstance(data.paused_until, dt.datetime) and data.paused_until <= self.now and (
            subscriber is None or data.paused_until != subscriber.paused_until
        ):
            raise invalid("/paused_until",
                          "paused_until must be in the future; null resumes now.")
        if email is not None:
            other = self.owners.get(address_key(email))
            if other is not None and other is not subscriber:
                raise ApiProblem(409, "Conflict",
                                 f"The address {email} already belongs to the subscriber "
                                 f"with external_id {other.external_id!r}.",
                                 conflicting_external_id=other.external_id)
        try:
            unsubscribed_all = suppression(
                self.session, email or current, unsubscribed_all=data.unsubscribed_all,
                arriving=email != current, suppressed=self.suppressed)
        except Suppressed as exc:
            raise ApiProblem(409, "Conflict", str(exc)) from exc
        changes = {"context": self.context, "topics": topics, "allowed": self.allowed,
                   "unsubscribed_all": unsubscribed_all, "phone": data.phone,
                   "paused_until": data.paused_until, "suppressed": self.suppressed}
        if subscriber is None:
            if email is None:
                raise invalid("/email", "email is required to create a subscriber.")
            if role is None and self.default_role:
                role = self.roles.get(self.default_role)
            subscriber = new_draft(self.session, email=email, external_id=external_id,
                                   locale=data.locale, role=role, context=self.context,
                                   suppressed=self.suppressed)
            change(self.session, subscriber, **changes)
            self.owners[address_key(email)] = subscriber
            return subscriber, 201
        change(self.session, subscriber, **changes, locale=data.locale, role=role,
               email=email)
        if current is not None and subscriber.email != current:
            self.owners.pop(address_key(current), None)
            self.owners[address_key(subscriber.email)] = subscriber
        return subscriber, 200


# --- links -----------------------------------------------------------------------


def mint_links(session: Session, app, requests: list[LinkRequest]) -> list[dict]:
    """Links for each request, or ``{"error": {...}}`` for the ones that cannot have any."""
    targets = link_targets(session, [r.external_id for r in requests])
    topics = link_topics(session)
    results = []
    for req in requests:
        error = link_error(req, targets, topics)
        if error is not None:
            status, detail = error
            results.append({"external_id": req.external_id,
                            "error": {"status": status, "detail": detail}})
            continue
        try:
            links = links_for(app, targets[req.external_id], topic=req.topic,
                              campaign=req.campaign, locale=req.locale)
        except LinkTooLong as exc:
            results.append({"external_id": req.external_id,
                            "error": {"status": 422, "detail": str(exc)}})
            continue
        results.append({"external_id": req.external_id, **links})
    return results


# --- catalogue -------------------------------------------------------------------


def list_topics(session: Session) -> list[dict]:
    topics = session.scalars(select(Topic).order_by(Topic.position, Topic.slug)).all()
    return [{
        "slug": t.slug,
        "kind": t.kind,
        "frequencies": list(t.frequencies),
        "default_frequency": t.default_frequency,
        "channels": list(t.channels),
        "names": {tr.locale: tr.name for tr in sorted(t.translations, key=lambda x: x.locale)},
        "archived": t.archived,
    } for t in topics]


def list_roles(session: Session) -> list[dict]:
    roles = session.scalars(select(Role).order_by(Role.position, Role.slug)).all()
    return [{
        "slug": r.slug,
        "names": {tr.locale: tr.name for tr in sorted(r.translations, key=lambda x: x.locale)},
        "topics": [rt.topic.slug for rt in r.role_topics],
    } for r in roles]


# --- recipients ------------------------------------------------------------------


def recipients_topic(session: Session, slug: str, frequency: str | None,
                     channel: str = "email") -> Topic:
    """The topic to export, or a problem (404 unknown or transactional, 400 bad frequency
    or channel)."""
    topic = session.scalar(select(Topic).where(Topic.slug == slug))
    if topic is None:
        raise ApiProblem(404, "Not Found", f"No topic {slug!r}.")
    if topic.kind != "marketing":
        raise ApiProblem(404, "Not Found",
                         f"Topic {slug!r} is transactional: it goes to every subscriber "
                         "regardless of preferences, so it has no recipient list.")
    if channel not in topic.channels:
        raise ApiProblem(404, "Not Found",
                         f"Topic {slug!r} is not offered on {channel!r}; it offers: "
                         f"{', '.join(topic.channels)}.")
    if frequency is not None and frequency not in FREQUENCIES:
        raise ApiProblem(400, "Bad Request",
                         f"Unknown frequency {frequency!r}; one of: {', '.join(FREQUENCIES)}.")
    return topic


def recipient_lines(session: Session, topic_id: int, frequency: str | None, *,
                    channel: str = "email", now: dt.datetime | None = None,
                    batch: int = RECIPIENTS_BATCH) -> Iterator[str]:
    """NDJSON chunks (one per batch) of who may be sent ``topic_id`` on ``channel`` at
    ``now`` (default: the real time; the API passes the app's clock).

    Keyset pagination over the subscriber id: each batch is one bounded query,
    so memory stays constant whatever the list's size; the read transaction is
    ended between batches so a long export holds no snapshot.
    """
    query = eligible(channel, batch=batch)
    if frequency is not None:
        query = query.where(Subscription.frequency == frequency)
    now = now or utcnow()
    after = 0
    while True:
        rows = session.execute(query, {"topic_id": topic_id, "now": now, "after": after}).all()
        if not rows:
            session.rollback()
            return
        kept = without_suppressed(session, rows)
        session.rollback()
        yield ndjson(kept, channel)
        if len(rows) < batch:
            return
        after = rows[-1].id


# --- events feed -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a feed reader stands: after event ``event_id`` (SQLite), or after it within
    the commit ``position`` of its transaction (PostgreSQL)."""

    position: int | None
    event_id: int

    def __str__(self) -> str:
        if self.position is None:
            return str(self.event_id)
        return f"{self.position}.{self.event_id}"


def parse_cursor(raw: str | None) -> Cursor:
    """A ``next_cursor`` back: ``ID`` or ``POSITION.ID``; empty starts at the beginning."""
    if raw is None or raw == "":
        return Cursor(None, 0)
    position, dot, event_id = raw.partition(".")
    parts = (position, event_id) if dot else (event_id or position,)
    if not all(p.isascii() and p.isdigit() and len(p) <= 18 for p in parts):
        raise ApiProblem(400, "Bad Request",
                         f"Bad cursor {raw!r}: pass the next_cursor of an earlier answer.")
    return Cursor(int(position), int(event_id)) if dot else Cursor(None, int(position))


def event_view(event: Event, external_id: str | None) -> dict:
    if external_id is None:
        # Erased subscribers: the erasure event still names the CRM's id.
        external_id = ((event.payload or {}).get("subscriber") or {}).get("external_id")
    return {
        "id": event.id,
        "type": event.type,
        "action": event.action,
        "topic": event.topic,
        "before": (event.before or {}).get("value"),
        "after": (event.after or {}).get("value"),
        "source": event.source,
        "campaign": event.campaign,
        "version": event.version,
        "created_at": iso_z(event.created_at),
        "subscriber": external_id,
    }


# PostgreSQL: the position of events the reading transaction wrote itself (it sees them,
# uncommitted, after every committed one; a production reader never writes).
OWN_POSITION = 10**18 - 1


def events_page(session: Session, after: Cursor, limit: int) -> dict:
    """Events after the cursor, in commit order; ``next_cursor`` resumes after them.

    SQLite commits one writer at a time, so event ids already follow commits. On
    PostgreSQL an id is taken at insert: a transaction that commits late can hold an id
    below events already read. There each transaction's commit position (``EventCommit``,
    given under a lock at commit, migration 20261202_1300) orders the feed, so a position, once
    visible, never has a smaller one appear after it: a reader never misses an event.
    """
    if session.get_bind().dialect.name == "postgresql":
        position = after.position
        if position is None:  # an event id alone: its transaction's position
            position = session.scalar(
                select(EventCommit.position).join(Event, Event.txid == EventCommit.txid)
                .where(Event.id == after.event_id)) or 0
        committed = (select(EventCommit.position.label("position"), Event.id.label("id"))
                     .join_from(EventCommit, Event, Event.txid == EventCommit.txid))
        own_txid = func.pg_current_xact_id_if_assigned().cast(Text).cast(BigInteger)
        own = (select(literal(OWN_POSITION, BigInteger).label("position"), Event.id)
               .where(Event.txid == own_txid))
        order = union_all(committed, own).subquery()
        page = session.execute(
            select(order.c.position, order.c.id)
            .where(tuple_(order.c.position, order.c.id) > tuple_(position, after.event_id))
            .order_by(order.c.position, order.c.id).limit(limit + 1)
        ).all()
    else:
        page = session.execute(
            select(literal(None).label("position"), Event.id)
            .where(Event.id > after.event_id).order_by(Event.id).limit(limit + 1)
        ).all()
    has_more = len(page) > limit
    page = page[:limit]
    found = {
        event.id: event_view(event, external_id)
        for event, external_id in session.execute(
            select(Event, Subscriber.external_id)
            .outerjoin(Subscriber, Subscriber.id == Event.subscriber_id)
            .where(Event.id.in_([row.id for row in page]))
        )
    } if page else {}
    last = Cursor(page[-1].position, page[-1].id) if page else after
    return {"events": [found[row.id] for row in page], "next_cursor": str(last),
            "has_more": has_more}


# --- batch upsert ----------------------------------------------------------------


CHUNK = 1000


def upsert_batch(session: Session, items, *, context: Context, default_role: str | None,
                 now: dt.datetime) -> list[dict]:
    """Upsert each batch item by :func:`upsert_chunk`, ``CHUNK`` at a time; one answer per
    item, in order. The whole batch commits once at the end (a failure of the database
    itself rolls everything back and raises)."""
    results = []
    try:
        for start in range(0, len(items), CHUNK):
            chunk = []
            for item in items[start:start + CHUNK]:
                try:
                    chunk.append((item.external_id, input_of(item)))
                except ApiProblem as exc:
                    chunk.append((item.external_id, exc))
            results += [outcome.answer() for outcome in upsert_chunk(
                session, chunk, context=context, default_role=default_role, now=now)]
    except Exception:
        session.rollback()
        raise
    session.commit()
    return results


def _refused(external_id: str, exc: ApiProblem) -> dict:
    result = {"external_id": external_id, "status": exc.status, "detail": exc.detail}
    if exc.status == 422:
        result["errors"] = exc.extra.get("errors") or [{"pointer": "", "detail": exc.detail}]
    return result
