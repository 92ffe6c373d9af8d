"""The last send of a topic to a subscriber on a channel, and the campaign it was."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, str16


class LastSend(Base):
    """One row per subscriber, topic and channel: overwritten by each new campaign.

    ``campaign`` makes a retried send idempotent: a subscriber whose last send
    of the topic on the channel is this very campaign is in it again.
    """

    __tablename__ = "last_sends"

    topic_id: Mapped[int] = mapped_column(
        ForeignKey("topics.id", ondelete="CASCADE"), primary_key=True
    )
    channel: Mapped[str16] = mapped_column(primary_key=True)
    # No index of its own: every read is a range of the primary key, and each index more
    # is one more write per recipient of every send. Subscribers are never deleted (erasure
    # keeps the row), so the cascade has nothing to look up.
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True
    )
    campaign: Mapped[str] = mapped_column(String(255))
    sent_at: Mapped[dt.datetime]
