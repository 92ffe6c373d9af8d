"""Prefcenter: the application factory."""

from __future__ import annotations

from flask import Flask
from flask_wtf.csrf import CSRFProtect

from app import config as config_module
from app.config import ROOT

csrf = CSRFProtect()


def create_app(config: dict | None = None) -> Flask:
    app = Flask(__name__, template_folder=str(ROOT / "templates"),
                static_folder=str(ROOT / "static"), instance_path=str(ROOT / "instance"))
    app.config.update(config_module.from_environ())
    if config:
        app.config.update(config)
    config_module.finalise(app.config)
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)

    from app import clock, db, errors, i18n, limits, security

    clock.init_app(app)
    db.init_app(app)
    i18n.init_app(app)
    security.init_app(app)
    errors.init_app(app)
    csrf.init_app(app)
    limits.init_app(app)
    register_blueprints(app)
    from app.unsubscribe import one_click

    one_click.init_app(app)
    trust_proxies(app)

    from app import cli

    cli.init_app(app)
    return app


def trust_proxies(app: Flask) -> None:
    """Behind ``PREFCENTER_TRUSTED_PROXIES`` reverse proxies, take the client address and
    scheme from the last that many ``X-Forwarded-For``/``-Proto`` entries. Outermost, so the
    one-click route below Flask and every rate limit see the client, not the proxy."""
    hops = app.config.get("TRUSTED_PROXIES", 0)
    if hops:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=0, x_port=0,
                                x_prefix=0)


def register_blueprints(app: Flask) -> None:
    """Every blueprint and its URL prefix, in one place."""
    from app.admin.views import bp as admin_bp
    from app.api.views import bp as api_bp
    from app.health import bp as health_bp
    from app.preferences.views import bp as preferences_bp
    from app.unsubscribe.views import bp as unsubscribe_bp
    from app.webhooks.api import bp as webhooks_api_bp

    app.register_blueprint(health_bp)
    app.register_blueprint(preferences_bp, url_prefix="/p")
    app.register_blueprint(unsubscribe_bp, url_prefix="/u")
    app.register_blueprint(api_bp, url_prefix="/api/v1")
    app.register_blueprint(webhooks_api_bp, url_prefix="/api/v1")
    app.register_blueprint(admin_bp, url_prefix="/admin")
