"""Configuration from ``PREFCENTER_*`` environment variables.

Every setting has one name in the environment and one key in ``app.config``;
``create_app(config)`` overrides both. See the README's configuration table.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
INSTANCE = ROOT / "instance"

DEFAULT_RETRY_SCHEDULE = "5,300,1800,7200,18000,36000,50400,72000,86400"
DAY = 24 * 60 * 60


class ConfigError(RuntimeError):
    """The environment does not describe a runnable server."""


def _int(environ, name: str, default: int) -> int:
    raw = environ.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc


def _float(environ, name: str, default: float) -> float:
    raw = environ.get(name)
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc


def _ints(environ, name: str, default: str) -> list[int]:
    raw = environ.get(name) or default
    try:
        return [int(part) for part in _list(raw)]
    except ValueError as exc:
        raise ConfigError(
            f"{name} must be comma-separated integers, got {raw!r}") from exc


def _list(raw: str | None) -> list[str]:
    return [part.strip() for part in (raw or "").split(",") if part.strip()]


def from_environ(environ=None) -> dict:
    """Read every ``PREFCENTER_*`` setting into a dict of Flask config keys."""
    env = os.environ if environ is None else environ
    return {
        "PREFCENTER_ENV": env.get("PREFCENTER_ENV", "production"),
        "SECRET_KEYS": _list(env.get("PREFCENTER_SECRET_KEY")),
        "DATABASE_URL": env.get("PREFCENTER_DATABASE_URL")
        or f"sqlite:///{INSTANCE / 'prefcenter.sqlite3'}",
        "BASE_URL": env.get("PREFCENTER_BASE_URL", "http://127.0.0.1:5000").rstrip("/"),
        "DEFAULT_LOCALE": env.get("PREFCENTER_DEFAULT_LOCALE", "en"),
        "SUPPORTED_LOCALES": _list(env.get("PREFCENTER_LOCALES", "en,ar,ru,ms")),
        "RTL_LOCALES": _list(env.get("PREFCENTER_RTL_LOCALES", "ar,fa,he,ur")),
        "DEFAULT_ROLE": env.get("PREFCENTER_DEFAULT_ROLE", "shopper"),
        "PRIVACY_URL": env.get("PREFCENTER_PRIVACY_URL", "https://example.com/privacy"),
        # The privacy notice in force, recorded on every event (docs/consent.md).
        "PRIVACY_POLICY_VERSION": env.get("PREFCENTER_PRIVACY_POLICY_VERSION") or None,
        "BRAND_NAME": env.get("PREFCENTER_BRAND_NAME", "Prefcenter"),
        "PREFERENCE_LINK_MAX_AGE": _int(env, "PREFCENTER_PREFERENCE_LINK_MAX_AGE", 90 * DAY),
        "UNSUBSCRIBE_LINK_MAX_AGE": _int(env, "PREFCENTER_UNSUBSCRIBE_LINK_MAX_AGE", 400 * DAY),
        "WEBHOOK_RETRY_SCHEDULE": _ints(env, "PREFCENTER_WEBHOOK_RETRY_SCHEDULE",
                                        DEFAULT_RETRY_SCHEDULE),
        "WEBHOOK_TIMEOUT": _float(env, "PREFCENTER_WEBHOOK_TIMEOUT", 10.0),
        "WEBHOOK_DISABLE_AFTER": _int(env, "PREFCENTER_WEBHOOK_DISABLE_AFTER", 5 * DAY),
        "WEBHOOK_SECRET_OVERLAP": _int(env, "PREFCENTER_WEBHOOK_SECRET_OVERLAP", DAY),
        "WEBHOOK_LEASE": _int(env, "PREFCENTER_WEBHOOK_LEASE", 300),
        "WEBHOOK_CONCURRENCY": _int(env, "PREFCENTER_WEBHOOK_CONCURRENCY", 16),
        "WEBHOOK_POLL_INTERVAL": _float(env, "PREFCENTER_WEBHOOK_POLL_INTERVAL", 1.0),
        "WEBHOOK_ALLOW_PRIVATE": env.get("PREFCENTER_WEBHOOK_ALLOW_PRIVATE", "0") in ("1", "true"),
        "WEBHOOK_TEST_TIMEOUT": _float(env, "PREFCENTER_WEBHOOK_TEST_TIMEOUT", 3.0),
        "SMTP_HOST": env.get("PREFCENTER_SMTP_HOST", "127.0.0.1"),
        "SMTP_PORT": _int(env, "PREFCENTER_SMTP_PORT", 25),
        "MAIL_FROM": env.get("PREFCENTER_MAIL_FROM", "preferences@example.com"),
        # The mail outbox and its worker (docs/mail.md).
        "SMTP_TIMEOUT": _float(env, "PREFCENTER_SMTP_TIMEOUT", 10.0),
        "MAIL_RETRY_SCHEDULE": env.get("PREFCENTER_MAIL_RETRY_SCHEDULE",
                                       "10,60,300,900,3600,10800"),
        "MAIL_LEASE": _int(env, "PREFCENTER_MAIL_LEASE", 120),
        "MAIL_POLL_INTERVAL": _float(env, "PREFCENTER_MAIL_POLL_INTERVAL", 1.0),
        "MAIL_RECIPIENT_LIMIT": _int(env, "PREFCENTER_MAIL_RECIPIENT_LIMIT", 5),
        "MAIL_RECIPIENT_WINDOW": _int(env, "PREFCENTER_MAIL_RECIPIENT_WINDOW", 3600),
        "ADDRESS_CHANGE_MAX_AGE": _int(env, "PREFCENTER_ADDRESS_CHANGE_MAX_AGE", DAY),
        "RATELIMIT_ENABLED": env.get("PREFCENTER_RATELIMIT_ENABLED", "1") not in ("0", "false"),
        "RATELIMIT_PUBLIC": env.get("PREFCENTER_RATELIMIT_PUBLIC", "120 per minute"),
        "RATELIMIT_ONE_CLICK": env.get("PREFCENTER_RATELIMIT_ONE_CLICK", "600 per minute"),
        "RATELIMIT_API": env.get("PREFCENTER_RATELIMIT_API", "6000 per minute"),
        "RATELIMIT_LOGIN": env.get("PREFCENTER_RATELIMIT_LOGIN", "10 per minute"),
        "RATELIMIT_MAIL": env.get("PREFCENTER_RATELIMIT_MAIL", "5 per hour"),
        "RATELIMIT_STORAGE_URI": env.get("PREFCENTER_RATELIMIT_STORAGE_URI") or "memory://",
        "TRUSTED_PROXIES": _int(env, "PREFCENTER_TRUSTED_PROXIES", 0),
        "ADMIN_IDLE_TIMEOUT": _int(env, "PREFCENTER_ADMIN_IDLE_TIMEOUT", 30 * 60),
        "ADMIN_SESSION_LIFETIME": _int(env, "PREFCENTER_ADMIN_SESSION_LIFETIME", 12 * 60 * 60),
        "MAX_CONTENT_LENGTH": _int(env, "PREFCENTER_MAX_CONTENT_LENGTH", 1024 * 1024),
        "SEND_GRACE": _int(env, "PREFCENTER_SEND_GRACE", 3600),
        # ESP intake (docs/esp.md): a provider without its setting is not accepted.
        "ESP_SOFT_BOUNCE_LIMIT": _int(env, "PREFCENTER_ESP_SOFT_BOUNCE_LIMIT", 3),
        "ESP_MAX_AGE": _int(env, "PREFCENTER_ESP_MAX_AGE", 15 * 60),
        "SES_TOPIC_ARNS": _list(env.get("PREFCENTER_SES_TOPIC_ARNS")),
        "SNS_CERT_DIR": env.get("PREFCENTER_SNS_CERT_DIR") or None,
        "SENDGRID_PUBLIC_KEY": env.get("PREFCENTER_SENDGRID_PUBLIC_KEY") or None,
        "POSTMARK_WEBHOOK_USER": env.get("PREFCENTER_POSTMARK_WEBHOOK_USER") or None,
        "POSTMARK_WEBHOOK_PASSWORD": env.get("PREFCENTER_POSTMARK_WEBHOOK_PASSWORD") or None,
        "MAILGUN_SIGNING_KEY": env.get("PREFCENTER_MAILGUN_SIGNING_KEY") or None,
    }


def finalise(config: dict) -> None:
    """Check the merged configuration and fill in what derives from it."""
    mode = config["PREFCENTER_ENV"]
    keys = config.get("SECRET_KEYS") or []
    if isinstance(keys, str):
        keys = _list(keys)
    if config.get("SECRET_KEY") and config["SECRET_KEY"] not in keys:
        keys = [config["SECRET_KEY"], *keys]
    if not keys:
        # Only the demo may run without a key (it keeps its own, random, under instance/);
        # every other environment, ``test`` included, is refused: a fixed fallback key would
        # let anyone forge links for a server started that way. The test suite passes its
        # own key (tests/conftest.py).
        if mode != "demo":
            raise ConfigError(
                "PREFCENTER_SECRET_KEY is required (set PREFCENTER_ENV=demo to run the demo)"
            )
        keys = [_demo_secret()]
    config["SECRET_KEYS"] = keys
    config["SECRET_KEY"] = keys[0]
    if config["DEFAULT_LOCALE"] not in config["SUPPORTED_LOCALES"]:
        config["SUPPORTED_LOCALES"].insert(0, config["DEFAULT_LOCALE"])
    _check(config)


def _check(config) -> None:
    """The settings whose mistakes would otherwise surface later as a traceback."""
    from limits import parse_many
    from limits.storage import SCHEMES
    from sqlalchemy import create_engine
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    url = config["DATABASE_URL"]
    try:
        create_engine(url).dispose()  # parses the URL, finds the dialect and driver; no connection
    except (ArgumentError, NoSuchModuleError, ImportError) as exc:
        raise ConfigError(
            f"PREFCENTER_DATABASE_URL is not a database URL this server can use: {url!r} "
            "(e.g. postgresql+psycopg://user@host/db or sqlite:///path.sqlite3)") from exc
    base = urlsplit(config["BASE_URL"])
    if base.scheme not in ("http", "https") or not base.hostname:
        raise ConfigError(f"PREFCENTER_BASE_URL must be an http(s) origin, "
                          f"got {config['BASE_URL']!r}")
    storage = config.get("RATELIMIT_STORAGE_URI") or "memory://"
    if storage.split("://", 1)[0] not in SCHEMES or "://" not in storage:
        raise ConfigError(f"PREFCENTER_RATELIMIT_STORAGE_URI is not a storage URI: {storage!r} "
                          "(memory:// or redis://host:port/db)")
    for key in ("RATELIMIT_PUBLIC", "RATELIMIT_ONE_CLICK", "RATELIMIT_API", "RATELIMIT_LOGIN"):
        try:
            parse_many(config[key])
        except ValueError as exc:
            raise ConfigError(f"PREFCENTER_{key} is not a rate limit: {config[key]!r} "
                              "(e.g. '120 per minute')") from exc
    proxies = config.get("TRUSTED_PROXIES", 0)
    if not isinstance(proxies, int) or proxies < 0:
        raise ConfigError(f"PREFCENTER_TRUSTED_PROXIES must be 0 or more, got {proxies!r}")


def check_services(config, rate_limits: bool = True) -> None:
    """Connect once to the database (and the rate-limit storage): a server or worker that
    cannot reach them is refused at start-up, naming the setting, instead of failing later."""
    from app.db import connect_problem
    from app.limits import storage_problem

    problem = connect_problem(config["DATABASE_URL"])
    if problem:
        raise ConfigError(f"PREFCENTER_DATABASE_URL: cannot connect to the database: {problem}")
    if not rate_limits:
        return
    problem = storage_problem(config.get("RATELIMIT_STORAGE_URI") or "memory://")
    if problem:
        raise ConfigError(
            f"PREFCENTER_RATELIMIT_STORAGE_URI: cannot reach the rate-limit storage: {problem}")


def load(environ=None) -> dict:
    """The environment's settings, checked, as ``create_app`` would use them."""
    config = from_environ(environ)
    finalise(config)
    return config


def _demo_secret() -> str:
    """A per-checkout demo key, kept so demo links survive a restart."""
    path = INSTANCE / "demo-secret-key"
    if path.exists():
        return path.read_text().strip()
    INSTANCE.mkdir(exist_ok=True)
    key = secrets.token_urlsafe(32)
    path.write_text(key)
    path.chmod(0o600)
    return key
