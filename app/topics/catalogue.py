"""The catalogue (topics, roles, their texts, follow-us links), cached in each process.

Every public page needs the catalogue and only an admin changes it, so each app keeps one
immutable :class:`Catalogue`, tagged with the ``catalogue_versions`` version it was read
at. A page reads that version in the statement that reads its subscriber
(:func:`version_column`); when it differs from the snapshot's, the catalogue is read again
(:func:`get_catalogue`). Every flush that adds, changes or deletes a catalogue row bumps
the version in the same transaction (the ``before_flush`` hook below, on every session),
so every process and node sees an admin's change as soon as it is committed.

A reload reads the version before the catalogue, so a snapshot is never older than its
tag: a change committed in between only makes the next page read it again.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from itertools import chain

from flask import Flask, current_app
from sqlalchemy import event, insert, select, update
from sqlalchemy.orm import Session

from app.db import get_session
from app.topics.models import (
    CatalogueVersion,
    FollowLink,
    FollowLinkTranslation,
    Role,
    RoleTopic,
    RoleTopicTranslation,
    RoleTranslation,
    Topic,
    TopicTranslation,
    localised_text,
)

# Rows of these classes are the catalogue: a flush that touches one bumps the version.
CATALOGUE_MODELS = (Topic, TopicTranslation, Role, RoleTranslation, RoleTopic,
                    RoleTopicTranslation, FollowLink, FollowLinkTranslation)

VERSION_ID = 1
_versions = CatalogueVersion.__table__
_VERSION = select(_versions.c.version).where(_versions.c.id == VERSION_ID)


def version_column():
    """The catalogue's version as a column of another statement (``catalogue_version``)."""
    return _VERSION.scalar_subquery().label("catalogue_version")


# --- the snapshot ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, eq=False)
class CatalogueTopic:
    id: int
    slug: str
    kind: str
    frequencies: tuple[str, ...]
    default_frequency: str
    channels: tuple[str, ...]
    position: int
    archived: bool
    names: dict[str, str]
    descriptions: dict[str, str]

    def text(self, locale: str, default_locale: str, field: str = "name") -> str:
        texts = self.names if field == "name" else self.descriptions
        return localised_text(texts, locale, default_locale) or self.slug


@dataclass(frozen=True, slots=True, eq=False)
class CatalogueEntry:
    """A topic as one role shows it (a ``RoleTopic``)."""

    id: int
    topic: CatalogueTopic
    position: int
    default_subscribed: bool
    benefits: dict[str, str]

    def benefit(self, locale: str, default_locale: str) -> str:
        return localised_text(self.benefits, locale, default_locale)


@dataclass(frozen=True, slots=True, eq=False)
class CatalogueRole:
    id: int
    slug: str
    names: dict[str, str]
    entries: tuple[CatalogueEntry, ...]  # in the role's order

    def text(self, locale: str, default_locale: str) -> str:
        return localised_text(self.names, locale, default_locale) or self.slug


@dataclass(frozen=True, slots=True)
class FollowRow:
    name: str
    url: str


@dataclass(frozen=True, slots=True, eq=False)
class CatalogueLink:
    id: int
    url: str
    role_id: int | None
    position: int
    names: dict[str, str]


@dataclass(frozen=True, slots=True)
class PageTopic:
    """A topic of a role's page with its texts in one locale."""

    entry: CatalogueEntry
    name: str
    description: str
    benefit: str


class Catalogue:
    """One read of the whole catalogue, never changed afterwards; what pages derive from it
    (texts in a locale, a role's topics) is computed once per snapshot."""

    __slots__ = ("_memo", "by_slug", "links", "roles", "topics", "version")

    def __init__(self, version: int | None, topics: list[CatalogueTopic],
                 roles: list[CatalogueRole], links: list[CatalogueLink]):
        self.version = version
        self.topics = tuple(sorted(topics, key=lambda t: (t.position, t.slug)))
        self.by_slug = {t.slug: t for t in topics}
        self.roles = {r.id: r for r in roles}
        self.links = tuple(sorted(links, key=lambda link: (link.position, link.id)))
        self._memo: dict = {}

    def _memoised(self, key, compute):
        try:
            return self._memo[key]
        except KeyError:
            return self._memo.setdefault(key, compute())

    def topic(self, slug: str | None) -> CatalogueTopic | None:
        return self.by_slug.get(slug) if slug is not None else None

    def marketing_topic(self, slug: str | None) -> CatalogueTopic | None:
        """The marketing topic ``slug`` names (archived or not), else None: what an
        unsubscribe link's topic unsubscribes from (None: all marketing)."""
        topic = self.topic(slug)
        return topic if topic is not None and topic.kind == "marketing" else None

    def role_entries(self, role_id: int | None) -> tuple[CatalogueEntry, ...]:
        """The marketing, unarchived topics a role shows, in the role's order."""
        role = self.roles.get(role_id) if role_id is not None else None
        if role is None:
            return ()
        return tuple(e for e in role.entries
                     if e.topic.kind == "marketing" and not e.topic.archived)

    def page_topics(self, role_id: int | None, locale: str,
                    default_locale: str) -> tuple[PageTopic, ...]:
        return self._memoised(("page", role_id, locale, default_locale), lambda: tuple(
            PageTopic(entry, entry.topic.text(locale, default_locale),
                      entry.topic.text(locale, default_locale, "description"),
                      entry.benefit(locale, default_locale))
            for entry in self.role_entries(role_id)))

    def transactional_names(self, locale: str, default_locale: str) -> tuple[str, ...]:
        return self._memoised(("transactional", locale, default_locale), lambda: tuple(
            t.text(locale, default_locale) for t in self.topics
            if t.kind == "transactional" and not t.archived))

    def follow_rows(self, role_id: int | None, locale: str,
                    default_locale: str) -> tuple[FollowRow, ...]:
        """The links for every role and those for ``role_id``, in their order."""
        return self._memoised(("follow", role_id, locale, default_locale), lambda: tuple(
            FollowRow(localised_text(link.names, locale, default_locale) or link.url, link.url)
            for link in self.links if link.role_id is None or link.role_id == role_id))


# --- reading and caching -----------------------------------------------------------------------

def _texts(rows, key: str, field: str) -> dict:
    """``{owner id: {locale: text}}``, empty texts left out, locales in a stable order."""
    texts: dict = {}
    for row in sorted(rows, key=lambda r: r.locale):
        value = getattr(row, field)
        if value:
            texts.setdefault(getattr(row, key), {})[row.locale] = value
    return texts


def read_version(session: Session) -> int | None:
    return session.connection().execute(_VERSION).scalar()


def load(session: Session, version: int | None) -> Catalogue:
    """Read the whole catalogue (Core, in the session's transaction)."""
    execute = session.connection().execute
    topic_names = execute(select(TopicTranslation.__table__)).all()
    names = _texts(topic_names, "topic_id", "name")
    descriptions = _texts(topic_names, "topic_id", "description")
    topics = {
        row.id: CatalogueTopic(
            row.id, row.slug, row.kind, tuple(row.frequencies or ()), row.default_frequency,
            tuple(row.channels or ()), row.position, row.archived, names.get(row.id, {}),
            descriptions.get(row.id, {}))
        for row in execute(select(Topic.__table__))
    }
    benefits = _texts(execute(select(RoleTopicTranslation.__table__)).all(), "role_topic_id",
                      "benefit")
    entries: dict[int, list] = {}
    for row in execute(select(RoleTopic.__table__)
                       .order_by(RoleTopic.role_id, RoleTopic.position, RoleTopic.id)):
        entries.setdefault(row.role_id, []).append(CatalogueEntry(
            row.id, topics[row.topic_id], row.position, row.default_subscribed,
            benefits.get(row.id, {})))
    role_names = _texts(execute(select(RoleTranslation.__table__)).all(), "role_id", "name")
    roles = [CatalogueRole(row.id, row.slug, role_names.get(row.id, {}),
                           tuple(entries.get(row.id, ())))
             for row in execute(select(Role.__table__))]
    link_names = _texts(execute(select(FollowLinkTranslation.__table__)).all(),
                        "follow_link_id", "name")
    links = [CatalogueLink(row.id, row.url, row.role_id, row.position,
                           link_names.get(row.id, {}))
             for row in execute(select(FollowLink.__table__))]
    return Catalogue(version, list(topics.values()), roles, links)


class CatalogueCache:
    """One app's snapshot; replaced whole (readers keep the one they took)."""

    def __init__(self) -> None:
        self.current: Catalogue | None = None
        self._loading = threading.Lock()

    def get(self, session: Session, version: int | None) -> Catalogue:
        current = self.current
        if current is not None and version is not None and current.version == version:
            return current
        with self._loading:  # one thread reloads; the others then find its snapshot
            current = self.current
            if current is not None and version is not None and current.version == version:
                return current
            loaded = load(session, version)
            if version is not None:  # no version row (an emptied table): never cached
                self.current = loaded
            return loaded


def _cache(app: Flask) -> CatalogueCache:
    cache = app.extensions.get("prefcenter.catalogue")
    if cache is None:
        cache = app.extensions.setdefault("prefcenter.catalogue", CatalogueCache())
    return cache


def get_catalogue(session: Session, version: int | None = None, *,
                  app: Flask | None = None) -> Catalogue:
    """The catalogue as of ``version`` (read from the database when not given)."""
    if version is None:
        version = read_version(session)
    return _cache(app or current_app).get(session, version)


def catalogue_at(version: int | None) -> Catalogue:
    """The catalogue as of ``version``, which the request read with its own statement: the
    cached snapshot, else read again with the request's session."""
    cache = _cache(current_app)
    current = cache.current
    if current is not None and version is not None and current.version == version:
        return current
    return cache.get(get_session(), version)


# --- the version bump --------------------------------------------------------------------------

def bump(session: Session) -> None:
    """Make every process's cached catalogue stale, in the session's transaction."""
    connection = session.connection()
    changed = connection.execute(update(_versions).where(_versions.c.id == VERSION_ID)
                                 .values(version=_versions.c.version + 1)).rowcount
    if not changed:  # the row was deleted (an emptied database): start again
        connection.execute(insert(_versions).values(id=VERSION_ID, version=1))


def changes_catalogue(session: Session) -> bool:
    if any(isinstance(obj, CATALOGUE_MODELS) for obj in chain(session.new, session.deleted)):
        return True
    return any(isinstance(obj, CATALOGUE_MODELS) and session.is_modified(obj)
               for obj in session.dirty)


@event.listens_for(Session, "before_flush")
def _bump_on_catalogue_change(session: Session, _flush_context, _instances) -> None:
    if changes_catalogue(session):
        bump(session)
