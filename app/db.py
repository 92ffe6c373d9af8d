"""SQLAlchemy: one declarative base, one engine per app, one session per request."""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from collections.abc import Callable
from contextlib import suppress
from typing import Annotated, TypeVar

from flask import Flask, current_app, g
from sqlalchemy import (
    ARRAY,
    JSON,
    DateTime,
    MetaData,
    String,
    TypeDecorator,
    any_,
    bindparam,
    create_engine,
    event,
    func,
    literal_column,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Session, mapped_column, sessionmaker

T = TypeVar("T")

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
        self.own_connections = OwnConnections(self.engine)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"


class OwnConnections:
    """One DBAPI connection per thread, outside the pool, in autocommit: for a hot path
    that sends its own BEGIN and COMMIT (RFC 8058 one-click).

    The pool pre-pings every checkout, a round trip as dear on PostgreSQL as the query
    itself. Here a connection is pinged once, when it is opened; later, a connection that
    died meanwhile (the server restarted) is found by its first statement: :meth:`run`
    discards it and runs the work once more on a fresh one. A connection that saw any
    error is discarded, never reused half-done.
    """

    def __init__(self, engine: Engine):
        self.engine = engine
        self._local = threading.local()

    def _connection(self):
        kept = self.kept()  # never one inherited across a fork
        if kept is not None:
            return kept, True
        dbapi_error = self.engine.dialect.loaded_dbapi.Error
        try:
            pooled = self.engine.raw_connection()  # pre-pinged, with the pool's connect hooks
        except dbapi_error as exc:  # the pool does not wrap a failed connect
            raise DBAPIError(None, None, exc) from exc
        connection = pooled.driver_connection
        pooled.detach()  # ours from now on: closed by discard(), never returned
        if self.engine.dialect.name == "postgresql":
            connection.autocommit = True
        self._local.connection = (os.getpid(), connection)
        return connection, False

    def run(self, work: Callable[[object], T]) -> T:
        """``work(connection)`` on this thread's connection; DBAPI errors come out as
        SQLAlchemy's DBAPIError.

        If a kept connection fails, it may have died since its last use: ``work`` runs once
        more on a fresh one, so it must be safe to repeat (read, or decide under a lock).
        """
        while True:
            connection, reused = self._connection()
            try:
                return work(connection)
            except self.engine.dialect.loaded_dbapi.Error as exc:
                self.discard()
                if not reused:
                    raise DBAPIError(None, None, exc) from exc
            except BaseException:
                if not _idle(connection):
                    self.discard()
                raise

    def kept(self):
        """This thread's connection, if one is kept."""
        found = getattr(self._local, "connection", None)
        return found[1] if found is not None and found[0] == os.getpid() else None

    def discard(self) -> None:
        found = getattr(self._local, "connection", None)
        self._local.connection = None
        if found is not None:
            with suppress(Exception):  # it is being thrown away already
                found[1].close()


def _idle(connection) -> bool:
    """Whether no transaction is open on a DBAPI connection (sqlite3 or psycopg)."""
    in_transaction = getattr(connection, "in_transaction", None)
    if in_transaction is not None:
        return not in_transaction
    from psycopg.pq import TransactionStatus

    return connection.info.transaction_status == TransactionStatus.IDLE


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
            conn.exec_driver_sql(f"BEGIN {mode}")

        return engine
    options.setdefault("pool_pre_ping", True)
    options.setdefault("pool_size", 10)
    options.setdefault("max_overflow", 20)
    return create_engine(url, **options)


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


# --- writing many rows -----------------------------------------------------------------


class JsonText(str):
    """A value already serialised as JSON, for a JSON column of :func:`insert_rows`."""

    __slots__ = ()


def _writer(connection, table, columns):
    """``(placeholders, convert)`` for ``columns`` of ``table`` on this connection: the
    driver's placeholder for each column (a JSON column on PostgreSQL is cast) and a
    function turning a row of Python values into the driver's values, through each
    column type's own bind processor (what SQLAlchemy does per statement, done once)."""
    dialect = connection.dialect
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    placeholders, processors = [], []
    for name in columns:
        column = table.c[name]
        is_json = isinstance(column.type, JSON)
        placeholders.append(f"CAST({mark} AS JSON)" if is_json and dialect.name ==
                            "postgresql" else mark)
        # Booleans, numbers and strings go to both drivers as they are.
        process = (column.type._cached_bind_processor(dialect)
                   if is_json or isinstance(column.type, TypeDecorator) else None)
        if is_json:
            process = _json_processor(process)
        elif process is not None:
            process = _skip_none(process)
            if isinstance(column.type, UTCDateTime):
                process = _remembered(process)
        processors.append(process)
    pairs = [(i, p) for i, p in enumerate(processors) if p is not None]

    def convert(row):
        if not pairs:
            return tuple(row)
        row = list(row)
        for i, process in pairs:
            row[i] = process(row[i])
        return tuple(row)

    return placeholders, convert


def _json_processor(process):
    """The JSON type's processor (None becomes JSON null, as the ORM writes it), except for
    :class:`JsonText`, sent as it is."""
    if process is None:
        return None

    def json_value(value):
        if isinstance(value, JsonText):
            return value
        return process(value)

    return json_value


def _remembered(process):
    """A timestamp processor that converts each distinct time once (a chunk's rows share
    a few)."""
    done = {}

    def converted(value):
        found = done.get(value)
        if found is None:
            found = done[value] = process(value)
        return found

    return converted


def _skip_none(process):
    def value_or_none(value):
        return None if value is None else process(value)

    return value_or_none


def insert_rows(connection, table, columns: list[str], rows: list, *, ids: bool = False,
                piece: int = 500) -> list[int]:
    """INSERT ``rows`` (sequences in ``columns`` order) into ``table``: one ``executemany``
    (no statement compiled per row), a ``COPY`` on PostgreSQL. With ``ids``, multi-row
    ``VALUES … RETURNING id`` of ``piece`` rows at a time instead, and the new ids in the
    rows' order: the table's id
    is an autoincrementing integer, and the ids one statement takes follow its rows (the
    order SQLAlchemy's own bulk insert relies on for both databases)."""
    if not rows:
        return []
    placeholders, convert = _writer(connection, table, columns)
    names = ", ".join(columns)
    if not ids and connection.dialect.name == "postgresql":
        # COPY: one stream, where an executemany is still a message per row.
        sql = f"COPY {table.name} ({names}) FROM STDIN"
        driver = connection.dialect.loaded_dbapi
        try:
            with connection.connection.driver_connection.cursor() as cursor:  # noqa: SIM117
                with cursor.copy(sql) as copy:
                    for row in rows:
                        copy.write_row(convert(row))
        except driver.Error as exc:  # as SQLAlchemy raises it (an IntegrityError...)
            raise DBAPIError.instance(sql, None, exc, driver.Error) from exc
        return []
    if not ids:
        connection.exec_driver_sql(
            f"INSERT INTO {table.name} ({names}) VALUES ({', '.join(placeholders)})",
            [convert(row) for row in rows])
        return []
    one = f"({', '.join(placeholders)})"
    found = []
    for start in range(0, len(rows), piece):
        part = rows[start:start + piece]
        found += sorted(connection.exec_driver_sql(
            f"INSERT INTO {table.name} ({names}) VALUES {', '.join([one] * len(part))} "
            "RETURNING id", tuple(value for row in part for value in convert(row))).scalars())
    return found


def update_rows(connection, table, keys: list[str], columns: list[str], rows: list) -> None:
    """UPDATE ``table`` SET ``columns`` WHERE ``keys``, one ``executemany``: each row holds
    the values of ``columns`` then of ``keys``."""
    if not rows:
        return
    placeholders, convert = _writer(connection, table, [*columns, *keys])
    sets = ", ".join(f"{c} = {p}" for c, p in zip(columns, placeholders, strict=False))
    where = " AND ".join(f"{k} = {p}" for k, p in
                         zip(keys, placeholders[len(columns):], strict=True))
    connection.exec_driver_sql(f"UPDATE {table.name} SET {sets} WHERE {where}",
                               [convert(row) for row in rows])


def one_of(dialect_name: str, column, values: list):
    """``column IN values`` as one parameter, whatever the number of values: an array on
    PostgreSQL, a JSON list on SQLite (thousands of placeholders cost more to send and
    parse than the lookup)."""
    if dialect_name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
    if dialect_name == "sqlite":
        return column.in_(select(literal_column("value")).select_from(
            func.json_each(json.dumps(list(values)))))
    return column.in_(list(values))
