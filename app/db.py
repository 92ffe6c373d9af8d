"""SQLAlchemy: one declarative base, one engine per app, one session per request."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
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
