"""The application's clock: real time, which tests can move forward.

Rules that depend on the date (a pause that ends by itself, a subscriber due
again after their frequency) take ``now`` from the caller; views and the CLI
read it here, so a test moves one app's clock and sees those rules move with
it, through HTTP, without patching anything.
"""

from __future__ import annotations

import datetime as dt

from flask import Flask, current_app, has_app_context

from app.db import utcnow


class Clock:
    """``utcnow()`` plus an offset that only tests change."""

    def __init__(self) -> None:
        self.offset = dt.timedelta(0)

    def now(self) -> dt.datetime:
        return utcnow() + self.offset

    def advance(self, delta: dt.timedelta) -> None:
        self.offset += delta


def init_app(app: Flask) -> None:
    app.extensions["prefcenter.clock"] = Clock()


def get_clock(app: Flask | None = None) -> Clock:
    return (app or current_app).extensions["prefcenter.clock"]


def now() -> dt.datetime:
    """The app's time in an app context, else the real time."""
    return get_clock().now() if has_app_context() else utcnow()
