"""gunicorn's settings for Prefcenter: ``gunicorn -c gunicorn.conf.py`` (gunicorn also reads this
file by itself when started from the checkout). Command-line options still win.

Before a worker starts, the master reads every ``PREFCENTER_*`` setting and connects once to
the database and the rate-limit storage: a setting that cannot work is one line on stderr
naming the variable, and exit status 2 (not a worker that fails to boot, again and again).
See docs/deploying.md.
"""

import sys

from app.config import ConfigError, check_services, load

wsgi_app = "wsgi:app"

try:
    settings = load()
    check_services(settings, rate_limits=settings["RATELIMIT_ENABLED"])
except ConfigError as exc:
    print(f"prefcenter: {exc}", file=sys.stderr)
    sys.exit(2)


def on_starting(server):
    """Rate limits kept in each worker's memory are not limits for the whole server."""
    storage = settings["RATELIMIT_STORAGE_URI"]
    workers = server.cfg.workers
    if settings["RATELIMIT_ENABLED"] and storage.startswith("memory://") and workers > 1:
        server.log.warning(
            "PREFCENTER_RATELIMIT_STORAGE_URI is memory:// with %d workers: each worker "
            "counts on its own, so every rate limit lets up to %d times its number through. "
            "Set PREFCENTER_RATELIMIT_STORAGE_URI=redis://host:6379/0 (docs/deploying.md).",
            workers, workers)
