"""Engines for the two back ends, configured for durability, and what counts as "try again".

SQLite: WAL with ``synchronous=FULL``, so a commit is on disk (fsync of the WAL) before the
gateway answers; write transactions start ``BEGIN IMMEDIATE``, so a decision's reads and writes
hold the one write lock from the start and no other process interleaves. PostgreSQL (psycopg 3):
``synchronous_commit`` is left at its default, on; decisions run at READ COMMITTED and guard
their writes with compare-and-set, retrying when another process got there first.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Table, create_engine, event, or_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from ..core.records import Raced
from ..settings import normalise_db_url

# Execution option naming the BEGIN a SQLite transaction starts with ("IMMEDIATE" for writes).
SQLITE_BEGIN = "bandlink_sqlite_begin"
# PostgreSQL: serialization failure, deadlock detected.
_RETRYABLE_SQLSTATES = {"40001", "40P01"}


class Conflict(Raced):
    """A compare-and-set found the row changed by another transaction: decide again."""


def make_engine(url: str) -> Engine:
    engine = create_engine(normalise_db_url(url))
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)
    return engine


def is_retryable(error: BaseException) -> bool:
    """A transaction that lost a race (and nothing worse): run it again from the start."""
    if isinstance(error, Raced):
        return True
    if isinstance(error, DBAPIError):
        sqlstate = getattr(error.orig, "sqlstate", None)
        return sqlstate in _RETRYABLE_SQLSTATES
    return False


def insert(dialect: str, table: Table) -> Any:
    """An INSERT that supports ON CONFLICT, in the given dialect."""
    if dialect == "sqlite":
        return sqlite.insert(table)
    if dialect == "postgresql":
        return postgresql.insert(table)
    raise NotImplementedError(f"no INSERT .. ON CONFLICT for dialect {dialect!r}")


def upsert(dialect: str, table: Table, columns: list[str], *, only_changes: bool = False) -> Any:
    """INSERT the given columns, or UPDATE those outside the primary key if the row exists;
    with ``only_changes``, leave a row that already holds these values untouched (no UPDATE,
    so no trigger fires: reloading an unchanged venue writes nothing to the catalog log)."""
    ins = insert(dialect, table)
    key = [c.name for c in table.primary_key]
    changes = {name: ins.excluded[name] for name in columns if name not in key}
    differs = or_(*(table.c[name].is_distinct_from(value) for name, value in changes.items()))
    where = differs if only_changes and changes else None
    return ins.on_conflict_do_update(index_elements=key, set_=changes, where=where)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take BEGIN away from the sqlite3 module, whose legacy mode would not begin before a
        # SELECT or DDL (no repeatable reads, no transactional migrations): see _on_begin.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        # WAL: readers never block the writer. FULL: the WAL is synced at every commit, so an
        # answered tap survives a power cut (group commit pays for it: one sync per batch).
        # busy_timeout: wait for another writer (thread or process) rather than fail at once.
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(SQLITE_BEGIN, "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")
