"""The store on PostgreSQL: one psycopg 3 connection, used from one thread.

Why one synchronous connection and no pool: every store call runs on the
console's single ``store`` thread (``Console.db``), one at a time, so a pool
would hold connections nobody can use at once; and the rooms' methods are
blocking by design, so an async driver would need a second event loop.
Several console replicas each hold their own connection; PostgreSQL orders
their writes (see :meth:`PostgresConnection.transaction`).

- Writes run in ``SERIALIZABLE`` transactions: each behaves as if it ran
  alone, as on SQLite's single writer, so the rooms' read-then-write checks
  (an event id already stored, a call another agent owns, an end already
  authorized) hold across replicas. A transaction that raced another is
  rolled back by PostgreSQL (serialization failure, deadlock, or a unique
  key a concurrent writer took first) and raised as
  :class:`~console.store.connection.StoreConflict`; the room's method runs
  again from the start (``console.store.schema.retried``).
- Reads outside a transaction run alone (autocommit), each statement seeing
  what was committed before it.
- Durability: ``synchronous_commit`` is ``on`` for this connection (a site
  setting of ``off`` is overridden; ``remote_write``/``remote_apply`` are
  kept), so an event the console acknowledged survives a crash of the
  database server. A server running with ``fsync = off`` is logged as a
  warning: it cannot keep that promise.
- One at a time across replicas (:meth:`PostgresConnection.exclusive`): a
  session advisory lock, tried without waiting, held on this connection for
  the block and released after it (or by the server when the connection is
  lost: the block then fails at its next store call, so it never goes on
  unlocked).
- A lost connection raises :class:`~console.store.connection.StoreUnavailable`
  (one line, logged once); the next call connects again. A commit whose answer
  was lost may or may not have happened: the agent, not acknowledged,
  resends, and the event id makes the resend a duplicate if it had.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict

from console.errors import StoreError
from console.store.connection import Connection, StoreConflict, StoreUnavailable, one_line, shown

log = logging.getLogger("callshield.console.store")

CONNECT_TIMEOUT_S = 10
"""Seconds to wait for the server when connecting (unless the URL sets ``connect_timeout``)."""

_CAUSES = {pg_errors.SerializationFailure: "serialization", pg_errors.DeadlockDetected: "deadlock", pg_errors.UniqueViolation: "unique"}
"""The errors of a transaction that raced another writer, and what each is counted as (``StoreConflict.cause``)."""
_CONFLICTS = tuple(_CAUSES)


def lock_key(name: str) -> int:
    """The advisory lock key of ``name`` (a signed 64-bit number from its
    SHA-256, prefixed so another application's keys on the database are unlikely to meet it)."""
    return int.from_bytes(hashlib.sha256(f"callshield:{name}".encode()).digest()[:8], "big", signed=True)


class Row(tuple):
    """A row read by index (``row[0]``) and by column name (``row["id"]``), like ``sqlite3.Row``."""

    def __new__(cls, values: Sequence[Any], index: dict[str, int]) -> "Row":
        row = super().__new__(cls, values)
        row._index = index
        return row

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)


def _rows(cursor: Any) -> Any:
    """psycopg row factory: :class:`Row` for every row of the cursor's result."""
    if cursor.description is None:
        return tuple
    index = {column.name: n for n, column in enumerate(cursor.description)}
    return lambda values: Row(values, index)


@lru_cache(maxsize=512)
def _sql(sql: str) -> str:
    """The rooms' ``?`` placeholders as psycopg's ``%s`` (a literal ``%`` doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


class PostgresConnection(Connection):
    """The store in a PostgreSQL database named by a libpq URL."""

    dialect = "postgresql"
    _begin = "BEGIN ISOLATION LEVEL SERIALIZABLE"

    def __init__(self, url: str) -> None:
        self.url = url
        self.where = shown(url)
        self._conn: psycopg.Connection | None = None
        self._live()

    def _live(self) -> psycopg.Connection:
        conn = self._conn
        if conn is not None and not (conn.broken or conn.closed):
            return conn
        self._conn = conn = None
        try:
            options = {} if "connect_timeout" in conninfo_to_dict(self.url) else {"connect_timeout": CONNECT_TIMEOUT_S}
            conn = psycopg.connect(self.url, autocommit=True, row_factory=_rows, **options)
            if conn.execute("SHOW synchronous_commit").fetchone()[0] == "off":
                conn.execute("SET synchronous_commit = on")
            if conn.execute("SHOW fsync").fetchone()[0] != "on":
                log.warning("%s: the PostgreSQL server runs with fsync off: acknowledged events may not survive a power cut", self.where)
        except psycopg.Error as exc:
            if conn is not None:
                conn.close()
            raise StoreUnavailable(f"cannot reach the store at {self.where}: {one_line(exc)}") from exc
        self._conn = conn
        return conn

    def execute(self, sql: str, args: Sequence[Any] | None = ()) -> psycopg.Cursor:
        conn = self._live()
        try:
            return conn.execute(_sql(sql) if args is not None else sql, args)
        except _CONFLICTS as exc:
            cause = next(name for kind, name in _CAUSES.items() if isinstance(exc, kind))
            raise StoreConflict(f"{self.where}: {one_line(exc)}", cause=cause) from exc
        except psycopg.Error as exc:
            if conn.broken or conn.closed:
                log.error("lost the connection to the store at %s: %s; connecting again at the next call", self.where, one_line(exc))
                raise StoreUnavailable(f"lost the connection to the store at {self.where}: {one_line(exc)}") from exc
            raise StoreError(f"{self.where}: {one_line(exc)}") from exc

    def _rollback(self) -> None:
        conn = self._conn
        if conn is not None and not (conn.broken or conn.closed):
            super()._rollback()

    @contextmanager
    def exclusive(self, name: str) -> Iterator[bool]:
        key = lock_key(name)
        if not self.execute("SELECT pg_try_advisory_lock(?)", (key,)).fetchone()[0]:
            yield False
            return
        held_on = self._conn
        try:
            yield True
        finally:
            if held_on is self._conn and held_on is not None and not (held_on.broken or held_on.closed):
                try:
                    self.execute("SELECT pg_advisory_unlock(?)", (key,))
                except StoreError as exc:  # gone with its connection: the server released it
                    log.debug("releasing the %s lock: %s", name, exc)

    def setting(self, name: str) -> Any:
        if not name.isidentifier():
            raise ValueError(name)
        return self.execute(f"SHOW {name}", None).fetchone()[0]

    def plan(self, sql: str, args: Sequence[Any]) -> str:
        return " ".join(row[0] for row in self.execute(f"EXPLAIN {sql}", args))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
