"""Test harness: a real database (SQLite or PostgreSQL), schema built by Alembic.

``PREFCENTER_TEST_DATABASE_URL`` picks the database (default: a fresh SQLite
file). Each test runs inside a connection-level transaction that is rolled
back; tests that need real commits (threads, live servers) use ``live_app``,
which cleans every table afterwards.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import sessionmaker
from werkzeug.serving import make_server

import app.models
from app import create_app
from app.db import Base, Database
from app.demo import seed_catalogue
from app.links.services import PREFERENCES, UNSUBSCRIBE, get_signer
from app.migrate import upgrade
from app.subscribers.services import Context, create_subscriber
from app.topics.models import Role

pytest_plugins = ["tests.smtp", "tests.browser"]

TEST_SECRET = "test-secret-key-0123456789"


def pytest_configure(config):
    """Compiled catalogues (.mo) are build output, not committed: build stale ones."""
    from app.i18n.cli import compile_catalogues

    compile_catalogues(force=False)


def _database_url(tmp_path_factory) -> str:
    url = os.environ.get("PREFCENTER_TEST_DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.sqlite3'}"


def reset_database(url: str) -> None:
    """An empty database: drop everything, then let Alembic build the schema."""
    if url.startswith("postgresql"):
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
    upgrade(url)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory) -> str:
    url = _database_url(tmp_path_factory)
    reset_database(url)
    return url


@pytest.fixture(scope="session")
def database(database_url) -> Iterator[Database]:
    db = Database(database_url)
    yield db
    db.engine.dispose()


def make_config(database_url: str, **overrides) -> dict:
    config = {
        "TESTING": True,
        "PREFCENTER_ENV": "test",
        "SECRET_KEYS": [TEST_SECRET],
        "DATABASE_URL": database_url,
        "BASE_URL": "http://localhost",
        "RATELIMIT_ENABLED": False,
        "SERVER_NAME": None,
        # The suite's webhook receivers listen on 127.0.0.1 (tests/test_security.py
        # proves the default refuses them).
        "WEBHOOK_ALLOW_PRIVATE": True,
    }
    config.update(overrides)
    return config


@pytest.fixture
def app_config() -> dict:
    """Override in a test module (or parametrize) to change the app's config."""
    return {}


@pytest.fixture
def app(database, database_url, app_config):
    """An app whose every session joins one rolled-back transaction."""
    application = create_app(make_config(database_url, **app_config))
    connection = database.engine.connect()
    transaction = connection.begin()
    db = application.extensions["prefcenter.db"]
    db.engine.dispose()
    db.engine = database.engine
    db.sessionmaker = sessionmaker(bind=connection, expire_on_commit=False,
                                   join_transaction_mode="create_savepoint")
    yield application
    transaction.rollback()
    connection.close()


def clean_tables(database: Database) -> None:
    with database.engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())


@pytest.fixture
def live_app(database, database_url, app_config):
    """An app that really commits (threads, servers); every table is emptied after."""
    clean_tables(database)
    application = create_app(make_config(database_url, **app_config))
    yield application
    application.extensions["prefcenter.db"].engine.dispose()
    clean_tables(database)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def session(app):
    """A session on the test's transaction, for arranging and asserting."""
    s = app.extensions["prefcenter.db"].sessionmaker()
    yield s
    s.close()


@pytest.fixture
def live_session(live_app):
    s = live_app.extensions["prefcenter.db"].sessionmaker()
    yield s
    s.close()


class Catalogue:
    """The demo topics and roles, plus a factory of subscribers."""

    def __init__(self, session):
        self.session = session
        seed_catalogue(session)
        session.commit()
        self._count = 0

    def role(self, slug: str) -> Role:
        return self.session.query(Role).filter_by(slug=slug).one()

    def subscriber(self, *, email: str | None = None, role: str = "shopper", locale: str = "en",
                   external_id: str | None = None):
        self._count += 1
        email = email or f"person{self._count}-{os.urandom(3).hex()}@example.com"
        subscriber, _ = create_subscriber(
            self.session, email=email, external_id=external_id or f"ext-{email}",
            locale=locale, role=self.role(role), context=Context(source="system"))
        self.session.commit()
        return subscriber


@pytest.fixture
def catalogue(session) -> Catalogue:
    return Catalogue(session)


@pytest.fixture
def live_catalogue(live_session) -> Catalogue:
    return Catalogue(live_session)


class Links:
    """Mints signed paths the way emails carry them."""

    def __init__(self, application):
        self.app = application
        self.signer = get_signer(application)

    def preferences(self, subscriber, **claims) -> str:
        claims.setdefault("epoch", subscriber.link_epoch)
        return "/p/" + self.signer.mint(PREFERENCES, subscriber.public_id, **claims)

    def unsubscribe(self, subscriber, **claims) -> str:
        claims.setdefault("epoch", subscriber.link_epoch)
        return "/u/" + self.signer.mint(UNSUBSCRIBE, subscriber.public_id, **claims)


@pytest.fixture
def links(app) -> Links:
    return Links(app)


@pytest.fixture
def live_links(live_app) -> Links:
    return Links(live_app)


# Cheap argon2 parameters keep the suite fast; the rules do not depend on the cost.
FAST_HASH = {"ADMIN_ARGON2_TIME_COST": 1, "ADMIN_ARGON2_MEMORY_COST": 64,
             "ADMIN_ARGON2_PARALLELISM": 1}

CSRF_RE = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


class ApiClient:
    """A test client speaking to ``/api/v1<prefix>`` with a Bearer key; extra headers of a
    call are added to the key's."""

    def __init__(self, client, key: str, prefix: str = ""):
        self.client, self.prefix = client, prefix
        self.headers = {"Authorization": f"Bearer {key}"}

    def __getattr__(self, method):
        def call(path, **kwargs):
            headers = {**self.headers, **kwargs.pop("headers", {})}
            return getattr(self.client, method)(f"/api/v1{self.prefix}{path}",
                                                headers=headers, **kwargs)
        return call


def csrf_from(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "page has no CSRF token"
    return match.group(1)


@contextmanager
def serve(application) -> Iterator[str]:
    """Run ``application`` on a real HTTP server on 127.0.0.1; yield its base URL."""
    server = make_server("127.0.0.1", 0, application, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)


@pytest.fixture
def live_server(live_app):
    with serve(live_app) as base_url:
        live_app.config["BASE_URL"] = base_url
        yield base_url
