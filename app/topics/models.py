"""Topics (what a subscriber can receive) and roles (who sees which topics)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base, intpk, str16, str64, timestamp, utcnow

FREQUENCIES = ("daily", "weekly", "biweekly", "monthly", "quarterly")
KINDS = ("marketing", "transactional")
# How a topic can reach a subscriber. A subscription holds one flag per channel
# (``Subscription.by_email``, ``by_sms``); SMS also needs the subscriber's phone.
CHANNELS = ("email", "sms")


class Topic(Base):
    __tablename__ = "topics"

    id: Mapped[intpk]
    slug: Mapped[str64] = mapped_column(unique=True)
    kind: Mapped[str16] = mapped_column(default="marketing")
    frequencies: Mapped[list] = mapped_column(default=lambda: ["weekly"])
    default_frequency: Mapped[str16] = mapped_column(default="weekly")
    channels: Mapped[list] = mapped_column(default=lambda: ["email"])
    position: Mapped[int] = mapped_column(default=0)
    archived: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[timestamp]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    translations: Mapped[list[TopicTranslation]] = relationship(
        back_populates="topic", cascade="all, delete-orphan", lazy="selectin"
    )

    def text(self, locale: str, default_locale: str, field: str = "name") -> str:
        return localised(self.translations, locale, default_locale, field) or self.slug


class TopicTranslation(Base):
    __tablename__ = "topic_translations"

    topic_id: Mapped[int] = mapped_column(ForeignKey("topics.id", ondelete="CASCADE"),
                                          primary_key=True)
    locale: Mapped[str16] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")

    topic: Mapped[Topic] = relationship(back_populates="translations")


class Role(Base):
    __tablename__ = "roles"

    id: Mapped[intpk]
    slug: Mapped[str64] = mapped_column(unique=True)
    position: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[timestamp]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    translations: Mapped[list[RoleTranslation]] = relationship(
        back_populates="role", cascade="all, delete-orphan", lazy="selectin"
    )
    role_topics: Mapped[list[RoleTopic]] = relationship(
        back_populates="role", cascade="all, delete-orphan", order_by="RoleTopic.position",
        lazy="selectin",
    )

    def text(self, locale: str, default_locale: str) -> str:
        return localised(self.translations, locale, default_locale, "name") or self.slug


class RoleTranslation(Base):
    __tablename__ = "role_translations"

    role_id: Mapped[int] = mapped_column(ForeignKey("roles.id", ondelete="CASCADE"),
                                         primary_key=True)
    locale: Mapped[str16] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))

    role: Mapped[Role] = relationship(back_populates="translations")


class RoleTopic(Base):
    """A topic as one role sees it: its place, its default and its benefit text."""

    __tablename__ = "role_topics"
    __table_args__ = (UniqueConstraint("role_id", "topic_id"),)

    id: Mapped[intpk]
    role_id: Mapped[int] = mapped_column(ForeignKey("roles.id", ondelete="CASCADE"), index=True)
    topic_id: Mapped[int] = mapped_column(ForeignKey("topics.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(default=0)
    default_subscribed: Mapped[bool] = mapped_column(default=False)

    role: Mapped[Role] = relationship(back_populates="role_topics")
    topic: Mapped[Topic] = relationship(lazy="joined")
    translations: Mapped[list[RoleTopicTranslation]] = relationship(
        back_populates="role_topic", cascade="all, delete-orphan", lazy="selectin"
    )

    def benefit(self, locale: str, default_locale: str) -> str:
        return localised(self.translations, locale, default_locale, "benefit")


class RoleTopicTranslation(Base):
    __tablename__ = "role_topic_translations"

    role_topic_id: Mapped[int] = mapped_column(
        ForeignKey("role_topics.id", ondelete="CASCADE"), primary_key=True
    )
    locale: Mapped[str16] = mapped_column(primary_key=True)
    benefit: Mapped[str] = mapped_column(Text, default="")

    role_topic: Mapped[RoleTopic] = relationship(back_populates="translations")


class FollowLink(Base):
    """A community forum or social page to follow: a plain link on the preference page,
    for every role or for one."""

    __tablename__ = "follow_links"

    id: Mapped[intpk]
    url: Mapped[str] = mapped_column(String(2000))
    role_id: Mapped[int | None] = mapped_column(ForeignKey("roles.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[timestamp]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    role: Mapped[Role | None] = relationship(lazy="joined")
    translations: Mapped[list[FollowLinkTranslation]] = relationship(
        back_populates="follow_link", cascade="all, delete-orphan", lazy="selectin"
    )

    def text(self, locale: str, default_locale: str) -> str:
        return localised(self.translations, locale, default_locale, "name") or self.url


class FollowLinkTranslation(Base):
    __tablename__ = "follow_link_translations"

    follow_link_id: Mapped[int] = mapped_column(
        ForeignKey("follow_links.id", ondelete="CASCADE"), primary_key=True
    )
    locale: Mapped[str16] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))

    follow_link: Mapped[FollowLink] = relationship(back_populates="translations")


class CatalogueVersion(Base):
    """One row: the catalogue's version. Every change to topics, roles, their texts or the
    follow-us links bumps it in the same transaction (:mod:`app.topics.catalogue`), so
    every process sees at once that its cached catalogue is stale."""

    __tablename__ = "catalogue_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))


def localised(translations, locale: str, default_locale: str, field: str) -> str:
    """The text in ``locale``, else in the default locale, else in any locale."""
    by_locale = {t.locale: getattr(t, field) for t in translations if getattr(t, field)}
    return localised_text(by_locale, locale, default_locale)


def localised_text(by_locale: dict[str, str], locale: str, default_locale: str) -> str:
    """:func:`localised` over ``{locale: text}`` (no empty texts)."""
    for candidate in (locale, locale.split("_")[0], default_locale):
        if by_locale.get(candidate):
            return by_locale[candidate]
    return next(iter(by_locale.values()), "")
