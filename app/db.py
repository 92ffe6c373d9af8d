"""SQLAlchemy: one declarative base, one engine per app, one session per request."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Annotated, TypeVar

from flask import Flask, current_app, g
from sqlalchemy import JSON, DateTime, MetaData, String, TypeDecorator, create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Session, mapped_column, sessionmaker

T = TypeVar("T")
U = TypeVar("U")

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def iso_z(moment: dt.datetime) -> str:
    """ISO 8601 in UTC with a ``Z``: every timestamp in snapshots, the API and webhooks."""
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes on every backend (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


intpk = Annotated[int, mapped_column(primary_key=True)]
str16 = Annotated[str, mapped_column(String(16))]
str64 = Annotated[str, mapped_column(String(64))]
str255 = Annotated[str, mapped_column(String(255))]
timestamp = Annotated[dt.datetime, mapped_column(UTCDateTime(), default=utcnow)]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict: JSON, list: JSON, dt.datetime: UTCDateTime()}


class Database:
    """The engine and session factory of one app."""

    def __init__(self, url: str, **engine_options):
        self.url = url
        self.engine = make_engine(url, **engine_options)
        self.sessionmaker = sessionmaker(bind=self.engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def read(self, statement, parameters: dict | None = None) -> list:
        """The rows of one read-only statement, run outside any transaction.

        One statement sees one consistent state by itself, so a page that reads in one
        statement needs no BEGIN and ROLLBACK around it (round trips on PostgreSQL) and no
        session: a pooled connection in autocommit. A sessionmaker bound to a connection
        (the test suite's one transaction) reads on that connection instead.
        """
        bind = self.sessionmaker.kw.get("bind")
        if isinstance(bind, Connection):
            return bind.execute(statement, parameters).all()
        with self.engine.connect() as connection:
            if self.is_sqlite:  # pysqlite's AUTOCOMMIT would reset the connection's mode
                connection = connection.execution_options(sqlite_begin=None)
            else:
                connection = connection.execution_options(isolation_level="AUTOCOMMIT")
            return connection.execute(statement, parameters).all()


def run_once_more_if_dropped(open_unit: Callable[[], U], work: Callable[[U], T]) -> T:
    """``work(unit)`` on a unit of work of its own (``open_unit()``: a Session or a
    Connection), closed afterwards.

    If the database connection turns out to be dead (the server restarted or closed it
    while it was idle in the pool: SQLAlchemy invalidates it), ``work`` runs once more on
    a fresh unit and connection, so it must be safe to repeat (read, then decide under a
    lock). Any other error, or a second dead connection, goes to the caller.
    """
    for attempt in (1, 2):
        unit = open_unit()
        try:
            return work(unit)
        except DBAPIError as exc:
            if attempt == 2 or not exc.connection_invalidated:
                raise
        finally:
            try:
                unit.close()
            except SQLAlchemyError:
                unit.invalidate()
    raise AssertionError("unreachable")


def make_engine(url: str, **options) -> Engine:
    if url.startswith("sqlite"):
        options.setdefault("connect_args", {"timeout": 30, "check_same_thread": False})
        engine = create_engine(url, **options)

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_connection, _record):
            # Let SQLAlchemy, not pysqlite, decide when transactions begin.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
            if mode is not None:  # None: statements run in autocommit (Database.read)
                conn.exec_driver_sql(f"BEGIN {mode}")

        return engine
    options.setdefault("pool_pre_ping", True)
    options.setdefault("pool_size", 10)
    options.setdefault("max_overflow", 20)
    return create_engine(url, **options)


def connect_problem(url: str) -> str | None:
    """Why a connection to ``url`` cannot be made now (one line, no password), or None."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    connect_args = {"connect_timeout": 5} if url.startswith("postgresql") else {}
    engine = create_engine(url, poolclass=NullPool, connect_args=connect_args)
    try:
        with engine.connect():
            return None
    except DBAPIError as exc:
        shown = make_url(url).render_as_string(hide_password=True)
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        return f"{shown}: {reason}"
    finally:
        engine.dispose()


def schema_problem(url: str) -> str | None:
    """Why the database at ``url`` (which answers) has no schema to work with, or None."""
    from sqlalchemy import inspect
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool)
    try:
        if inspect(engine).has_table("alembic_version"):
            return None
    except DBAPIError:
        return None  # not a question of schema
    finally:
        engine.dispose()
    shown = make_url(url).render_as_string(hide_password=True)
    return f"{shown} has no tables yet: run 'prefcenter db upgrade' first"


def init_app(app: Flask) -> None:
    app.extensions["prefcenter.db"] = Database(app.config["DATABASE_URL"])

    @app.teardown_appcontext
    def _close_session(_exc):
        session = g.pop("db_session", None)
        if session is not None:
            session.close()


def get_db(app: Flask | None = None) -> Database:
    return (app or current_app).extensions["prefcenter.db"]


def get_session(*, write: bool = False) -> Session:
    """The request's session; ``write=True`` takes SQLite's write lock up front.

    A deferred SQLite transaction that reads and then writes can fail with
    SQLITE_BUSY when another writer got there first; starting write requests
    with BEGIN IMMEDIATE makes them wait their turn (busy_timeout) instead.
    """
    session = g.get("db_session")
    if session is None:
        session = g.db_session = get_db().sessionmaker()
    if write and get_db().is_sqlite and not session.in_transaction():
        session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
    return session


def write_session(db: Database) -> Session:
    """A fresh session outside a request (CLI, worker) that writes."""
    session = db.sessionmaker()
    if db.is_sqlite:
        session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
    return session
