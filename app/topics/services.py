"""Reading the catalogue: the follow-us links a page shows."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from app.topics.models import FollowLink


@dataclass(frozen=True, slots=True)
class FollowRow:
    name: str
    url: str


def follow_rows(session: Session, role_id: int | None, locale: str,
                default_locale: str) -> list[FollowRow]:
    """The links for every role and those for ``role_id``, in their order, named in
    ``locale`` (else the default locale, else any)."""
    links = session.scalars(
        select(FollowLink)
        .where(or_(FollowLink.role_id.is_(None), FollowLink.role_id == role_id))
        .order_by(FollowLink.position, FollowLink.id)
    ).unique().all()
    return [FollowRow(link.text(locale, default_locale), link.url) for link in links]
