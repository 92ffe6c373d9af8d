"""Retry schedules with jitter: one rule for every worker that tries again later
(webhook deliveries, queued mail)."""

from __future__ import annotations

import random


def parse_schedule(raw) -> tuple[float, ...]:
    """``"5,300,1800"`` or ``[5, 300, 1800]`` -> ``(5.0, 300.0, 1800.0)``: seconds to wait
    after the first, second, third... failure."""
    if isinstance(raw, str):
        raw = [part for part in raw.split(",") if part.strip()]
    return tuple(float(s) for s in raw or ())


def retry_delay(schedule: tuple[float, ...], failed_attempts: int,
                rng: random.Random | None = None) -> float | None:
    """Seconds to wait after the ``failed_attempts``-th failure (+-20% jitter, so retries
    of many items failed at once spread out), or ``None`` when the schedule is exhausted
    and the item is dead."""
    if failed_attempts > len(schedule):
        return None
    base = schedule[failed_attempts - 1]
    return base * (rng or random).uniform(0.8, 1.2)
