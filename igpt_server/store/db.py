"""Engines and migrations of the store's metadata database (SQLite or PostgreSQL).

* :func:`sqlite_engine`: one connection (``StaticPool``) shared by the threads of the
  process under the store's lock, in WAL mode with foreign keys on. The driver runs in
  autocommit mode and the ``begin`` hook emits the transaction itself: ``BEGIN IMMEDIATE``
  for writes (:func:`immediate`), a deferred ``BEGIN`` for reads (the documented pysqlite
  recipe of SQLAlchemy: it makes DDL transactional too).
* :func:`postgres_engine`: a connection pool (``pool_pre_ping``, so a restarted server is
  picked up again) with a short connect timeout, so an unreachable database is a quick 503.
* :func:`upgrade`: brings a database to the newest Alembic revision when a store opens.
  Fast paths, so that opening a store stays cheap (the tests open hundreds): a database at
  the head revision costs one query; an empty one gets ``metadata.create_all`` plus the head
  stamp (Alembic's documented "create_all then stamp" recipe; a test checks that the
  revisions build the same schema). A database made before Alembic (tables, no
  ``alembic_version``) is stamped ``0001`` and upgraded, which adds whatever it lacks. On
  PostgreSQL the whole upgrade runs under a transaction-level advisory lock, so replicas
  starting together migrate once.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Connection, Engine, MetaData, String, Table, create_engine, event, inspect, select, text
from sqlalchemy.pool import StaticPool

from igpt_server.store.schema import metadata

MIGRATIONS = Path(__file__).parent / "migrations"
#: an arbitrary constant: the advisory lock key that serialises migrations on PostgreSQL
_MIGRATION_LOCK_KEY = 0x16_9E_57_0E
_IMMEDIATE = "igpt_begin_immediate"

_version_table = Table("alembic_version", MetaData(), Column("version_num", String(32), primary_key=True))


def sqlite_engine(path: Path) -> Engine:
    """The engine of the SQLite file at ``path`` (created when missing)."""
    engine = create_engine(
        f"sqlite:///{path}", poolclass=StaticPool, connect_args={"check_same_thread": False, "isolation_level": None}
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        immediate = connection.info.pop(_IMMEDIATE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def immediate(connection: Connection) -> None:
    """Make the next transaction of this SQLite connection a ``BEGIN IMMEDIATE`` (a writer)."""
    connection.info[_IMMEDIATE] = True


def postgres_engine(url: str, *, pool_size: int = 5, max_overflow: int = 35, connect_timeout_s: int = 5) -> Engine:
    """A pooled engine of the PostgreSQL database at ``url`` (``postgresql+psycopg://...``).

    ``pool_size + max_overflow`` bounds the connections of one replica (the default 40 is the
    size of the ASGI server's thread pool, so requests never wait for a connection).
    """
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=30,
        connect_args={"connect_timeout": connect_timeout_s},
    )


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


@functools.cache
def head_revision() -> str:
    """The newest revision of the migration scripts."""
    head = ScriptDirectory.from_config(_config()).get_current_head()  # reads the scripts once per process
    assert head is not None, f"no Alembic revisions under {MIGRATIONS}"
    return head


def _tables(connection: Connection) -> set[str]:
    if connection.dialect.name == "sqlite":  # one cheap query instead of one PRAGMA per table
        return set(connection.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'table'").scalars())
    return set(inspect(connection).get_table_names())


def current_revision(connection: Connection, tables: set[str] | None = None) -> str | None:
    """The revision the database is stamped with (``None``: not under Alembic)."""
    if "alembic_version" not in (_tables(connection) if tables is None else tables):
        return None
    return connection.execute(select(_version_table.c.version_num)).scalar()


_compiled: dict[str, list[str]] = {}


def _create_statements(dialect: Any) -> list[str]:
    """``CREATE TABLE`` of every table and the version table, compiled once per dialect."""
    from sqlalchemy.schema import CreateTable

    if dialect.name not in _compiled:
        tables = [*metadata.sorted_tables, _version_table]
        _compiled[dialect.name] = [str(CreateTable(table).compile(dialect=dialect)) for table in tables]
    return _compiled[dialect.name]


def upgrade(engine: Engine) -> None:
    """Bring the database of ``engine`` to :func:`head_revision` (see the module docstring)."""
    head = head_revision()
    postgres = engine.dialect.name == "postgresql"
    if not postgres:
        with engine.connect() as connection:
            if current_revision(connection) == head:
                connection.rollback()
                return
            connection.rollback()
    with engine.connect() as connection:
        if not postgres:
            immediate(connection)
        with connection.begin():
            if postgres:
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
            _upgrade_locked(connection, head)


def _upgrade_locked(connection: Connection, head: str) -> None:
    tables = _tables(connection)
    revision = current_revision(connection, tables)
    if revision == head:
        return
    if revision is None:
        if "sessions" not in tables:  # empty: what metadata.create_all makes, precompiled
            for statement in _create_statements(connection.dialect):
                connection.exec_driver_sql(statement)
            connection.execute(_version_table.insert().values(version_num=head))
            return
        _version_table.create(connection)
        connection.execute(_version_table.insert().values(version_num="0001"))
    config = _config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def run_revisions(engine: Engine) -> None:
    """Build the schema from the revisions alone (no create_all fast path): for tests."""
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            immediate(connection)
        with connection.begin():
            config = _config()
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
