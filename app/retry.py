"""What every worker that tries again later shares (webhook deliveries, queued mail):
retry schedules with jitter, and stopping cleanly on SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import random
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def stop_on_signals(doing: str) -> Iterator[threading.Event]:
    """An event that SIGTERM or SIGINT sets while the block runs (the worker's cue to finish
    ``doing``, the work under way, and exit 0); the previous handlers come back after."""
    stop = threading.Event()

    def _stop(signum, _frame):
        logging.getLogger(__name__).info("signal %s: finishing %s", signum, doing)
        stop.set()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


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
