"""Reading the catalogue: the follow-us links a page shows."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.topics.catalogue import FollowRow, get_catalogue

__all__ = ["FollowRow", "follow_rows"]


def follow_rows(session: Session, role_id: int | None, locale: str,
                default_locale: str) -> list[FollowRow]:
    """The links for every role and those for ``role_id``, in their order, named in
    ``locale`` (else the default locale, else any): from the cached catalogue."""
    return list(get_catalogue(session).follow_rows(role_id, locale, default_locale))
