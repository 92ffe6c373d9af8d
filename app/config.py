"""Configuration from ``PREFCENTER_*`` environment variables.

Every setting has one name in the environment and one key in ``app.config``;
``create_app(config)`` overrides both. See the README's configuration table.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

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
        "WEBHOOK_RETRY_SCHEDULE": [
            int(s)
            for s in _list(env.get("PREFCENTER_WEBHOOK_RETRY_SCHEDULE", DEFAULT_RETRY_SCHEDULE))
        ],
        "WEBHOOK_TIMEOUT": float(env.get("PREFCENTER_WEBHOOK_TIMEOUT", "10")),
        "WEBHOOK_DISABLE_AFTER": _int(env, "PREFCENTER_WEBHOOK_DISABLE_AFTER", 5 * DAY),
        "WEBHOOK_SECRET_OVERLAP": _int(env, "PREFCENTER_WEBHOOK_SECRET_OVERLAP", DAY),
        "WEBHOOK_LEASE": _int(env, "PREFCENTER_WEBHOOK_LEASE", 300),
        "WEBHOOK_CONCURRENCY": _int(env, "PREFCENTER_WEBHOOK_CONCURRENCY", 16),
        "WEBHOOK_POLL_INTERVAL": float(env.get("PREFCENTER_WEBHOOK_POLL_INTERVAL", "1")),
        "SMTP_HOST": env.get("PREFCENTER_SMTP_HOST", "127.0.0.1"),
        "SMTP_PORT": _int(env, "PREFCENTER_SMTP_PORT", 25),
        "MAIL_FROM": env.get("PREFCENTER_MAIL_FROM", "preferences@example.com"),
        "RATELIMIT_ENABLED": env.get("PREFCENTER_RATELIMIT_ENABLED", "1") not in ("0", "false"),
        "RATELIMIT_PUBLIC": env.get("PREFCENTER_RATELIMIT_PUBLIC", "120 per minute"),
        "RATELIMIT_ONE_CLICK": env.get("PREFCENTER_RATELIMIT_ONE_CLICK", "600 per minute"),
        "RATELIMIT_API": env.get("PREFCENTER_RATELIMIT_API", "6000 per minute"),
        "RATELIMIT_LOGIN": env.get("PREFCENTER_RATELIMIT_LOGIN", "10 per minute"),
        "RATELIMIT_STORAGE_URI": env.get("PREFCENTER_RATELIMIT_STORAGE_URI", "memory://"),
        "ADMIN_IDLE_TIMEOUT": _int(env, "PREFCENTER_ADMIN_IDLE_TIMEOUT", 30 * 60),
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
        if config.get("TESTING") or mode == "test":
            keys = ["test-secret-key"]
        elif mode == "demo":
            keys = [_demo_secret()]
        else:
            raise ConfigError(
                "PREFCENTER_SECRET_KEY is required (set PREFCENTER_ENV=demo to run the demo)"
            )
    config["SECRET_KEYS"] = keys
    config["SECRET_KEY"] = keys[0]
    if config["DEFAULT_LOCALE"] not in config["SUPPORTED_LOCALES"]:
        config["SUPPORTED_LOCALES"].insert(0, config["DEFAULT_LOCALE"])


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
