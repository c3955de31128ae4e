"""The store's schema: the migrations, opening a store, and the base every room stands on.

Schema: ``schema_version`` holds the version; :data:`MIGRATIONS` are applied
in order from whatever version the store has, each in its own transaction,
on SQLite and PostgreSQL alike. Later issues add migrations at the end of the
list and never edit old ones (an existing store opens unchanged). A
migration is one script written for SQLite, which
``console.store.connection.postgresql_ddl`` translates for PostgreSQL, or a
:class:`~console.store.connection.PerDialect` pair where the two must differ.

Durability on SQLite: WAL journal with ``synchronous=FULL``. An agent drops an event
from its resend buffer as soon as the console acknowledges it, so an
acknowledged event must survive a power cut, not only a crash of the console
process; FULL syncs the WAL at every commit, NORMAL would not. The cost is one
fsync per committed batch, which the event rates of a call center easily
afford (see ``bench/alert_latency.py``). On PostgreSQL:
``synchronous_commit = on`` (``console/store/postgresql.py``).
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ContextManager, TypeVar

from console.errors import StoreError
from console.store.connection import Connection, PerDialect, SqliteConnection, StoreConflict, is_postgresql, migration_sql, postgresql_ddl
from kernel.backoff import Backoff
from kernel.clock import Clock, iso

T = TypeVar("T")

log = logging.getLogger("callshield.console.store")

_FIRST_SCHEMA = """
    CREATE TABLE users (
        name        TEXT PRIMARY KEY,
        role        TEXT NOT NULL CHECK (role IN ('partner','supervisor','qa','admin')),
        password    TEXT NOT NULL,            -- scrypt$n$r$p$salt$hash
        created_at  TEXT NOT NULL
    );
    CREATE TABLE sessions (
        token_hash  TEXT PRIMARY KEY,         -- sha256 of the token
        user        TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        created_at  TEXT NOT NULL,
        expires_at  TEXT NOT NULL
    );
    CREATE TABLE agents (
        name        TEXT PRIMARY KEY,
        token_hash  TEXT NOT NULL,
        created_at  TEXT NOT NULL,
        last_seq    INTEGER NOT NULL DEFAULT 0,  -- highest durable seq stored
        site        TEXT NOT NULL DEFAULT '',
        last_seen   TEXT
    );
    CREATE TABLE events (
        event_id    TEXT PRIMARY KEY,
        agent       TEXT NOT NULL,
        seq         INTEGER NOT NULL,
        type        TEXT NOT NULL,
        call_id     TEXT,
        received_at TEXT NOT NULL
    );
    CREATE TABLE calls (
        id          TEXT PRIMARY KEY,
        agent       TEXT NOT NULL,
        partner     TEXT NOT NULL,
        seat        TEXT NOT NULL,
        source      TEXT NOT NULL,
        sample_rate INTEGER NOT NULL,         -- Hz, 0 for a transcript
        started_at  TEXT NOT NULL,            -- ISO 8601 UTC, from the agent
        ended_at    TEXT,                     -- ISO 8601 UTC, console clock
        length      REAL,                     -- seconds of audio
        level       TEXT NOT NULL DEFAULT 'none',
        peak_level  TEXT NOT NULL DEFAULT 'none',
        end_reason  TEXT
    );
    CREATE INDEX calls_partner ON calls(partner);
    CREATE TABLE utterances (
        id          INTEGER PRIMARY KEY,
        event_id    TEXT NOT NULL UNIQUE,
        call_id     TEXT NOT NULL REFERENCES calls(id),
        speaker     TEXT NOT NULL,
        start       REAL NOT NULL,            -- seconds of audio
        end         REAL NOT NULL,
        text        TEXT NOT NULL,
        words       TEXT NOT NULL             -- JSON list of {word,start,end,conf}
    );
    CREATE INDEX utterances_call ON utterances(call_id);
    CREATE TABLE findings (
        id          INTEGER PRIMARY KEY,
        event_id    TEXT NOT NULL UNIQUE,
        call_id     TEXT NOT NULL REFERENCES calls(id),
        category    TEXT NOT NULL,
        subtype     TEXT,
        severity    TEXT NOT NULL,
        score       REAL NOT NULL,
        rule        TEXT NOT NULL,
        evidence    TEXT NOT NULL,
        start       REAL NOT NULL,
        end         REAL NOT NULL,
        text        TEXT NOT NULL,
        span_first  INTEGER,                  -- [first, last) characters of text
        span_last   INTEGER
    );
    CREATE INDEX findings_call ON findings(call_id);
    CREATE TABLE level_changes (
        id          INTEGER PRIMARY KEY,
        event_id    TEXT NOT NULL UNIQUE,
        call_id     TEXT NOT NULL REFERENCES calls(id),
        level       TEXT NOT NULL,
        previous    TEXT NOT NULL,
        reason      TEXT NOT NULL,
        suggestion  TEXT NOT NULL,
        category    TEXT,
        at          REAL NOT NULL             -- seconds of audio
    );
    CREATE INDEX level_changes_call ON level_changes(call_id);
    CREATE TABLE alerts (
        id              INTEGER PRIMARY KEY,
        call_id         TEXT NOT NULL REFERENCES calls(id),
        level_change    INTEGER NOT NULL REFERENCES level_changes(id),
        level           TEXT NOT NULL,
        reason          TEXT NOT NULL,
        at              REAL NOT NULL,        -- seconds of audio
        raised_at       TEXT NOT NULL,        -- ISO 8601 UTC, console clock
        acknowledged_by TEXT,
        acknowledged_at TEXT
    );
    CREATE TABLE notices (
        id          INTEGER PRIMARY KEY,
        event_id    TEXT NOT NULL UNIQUE,
        agent       TEXT NOT NULL,
        call_id     TEXT,
        code        TEXT NOT NULL,
        message     TEXT NOT NULL,
        dropped     INTEGER NOT NULL,
        received_at TEXT NOT NULL
    );
    CREATE TABLE authorizations (
        id            TEXT PRIMARY KEY,
        call_id       TEXT NOT NULL REFERENCES calls(id),
        by_user       TEXT NOT NULL,
        reason        TEXT NOT NULL,
        authorized_at TEXT NOT NULL
    );
    CREATE TABLE audit_log (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,
        at        TEXT NOT NULL,              -- ISO 8601 UTC, console clock
        who       TEXT NOT NULL,              -- user, 'agent:NAME', or '-' (anonymous)
        action    TEXT NOT NULL,
        call_id   TEXT,
        detail    TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX audit_call ON audit_log(call_id);
    CREATE TABLE checkins (
        id          INTEGER PRIMARY KEY,
        call_id     TEXT NOT NULL UNIQUE REFERENCES calls(id),
        partner     TEXT NOT NULL,
        reason      TEXT NOT NULL,
        created_at  TEXT NOT NULL,
        done_by     TEXT,
        done_at     TEXT,
        note        TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE help_requests (
        id              INTEGER PRIMARY KEY,
        call_id         TEXT REFERENCES calls(id),
        partner         TEXT NOT NULL,
        note            TEXT NOT NULL,
        created_at      TEXT NOT NULL,
        acknowledged_by TEXT,
        acknowledged_at TEXT
    );
"""

_CALLS_ROWID = """
ALTER TABLE calls ADD COLUMN rowid BIGINT GENERATED BY DEFAULT AS IDENTITY;
CREATE UNIQUE INDEX calls_rowid ON calls(rowid);
"""
"""PostgreSQL has no ``rowid``: its calls get one, an identity column of that
name, so the rooms' ``ORDER BY rowid`` (the order calls were stored in) reads
the same on both databases."""

MIGRATIONS: tuple[str | PerDialect, ...] = (
    # 1: the first schema (issue 4).
    PerDialect(sqlite=_FIRST_SCHEMA, postgresql=postgresql_ddl(_FIRST_SCHEMA) + _CALLS_ROWID),
    # 2: recordings and QA marks (issue 6).
    """
    CREATE TABLE recordings (
        call_id      TEXT PRIMARY KEY REFERENCES calls(id),
        path         TEXT NOT NULL,           -- relative to the recordings directory
        sha256       TEXT NOT NULL,           -- hex SHA-256 of the file as first stored (finalized)
        bytes        INTEGER NOT NULL,        -- file size, header included
        duration     REAL NOT NULL,           -- seconds of audio
        sample_rate  INTEGER NOT NULL,        -- Hz
        finalized_at TEXT NOT NULL,           -- ISO 8601 UTC, agent clock
        recovered    INTEGER NOT NULL DEFAULT 0,  -- 1: repaired after a crash, hashed then
        stored_at    TEXT NOT NULL,           -- ISO 8601 UTC, console clock
        removed_at   TEXT                     -- ISO 8601 UTC: retention removed the file
    );
    CREATE TABLE qa_marks (
        id          INTEGER PRIMARY KEY,
        finding_id  INTEGER NOT NULL UNIQUE REFERENCES findings(id),
        call_id     TEXT NOT NULL REFERENCES calls(id),
        verdict     TEXT NOT NULL CHECK (verdict IN ('confirmed','false_alarm')),
        note        TEXT NOT NULL DEFAULT '',
        by_user     TEXT NOT NULL,
        at          TEXT NOT NULL             -- ISO 8601 UTC, console clock
    );
    CREATE INDEX qa_marks_call ON qa_marks(call_id);
    """,
    # 3: whom a finding's words are aimed at, and why (issue 11).
    """
    ALTER TABLE findings ADD COLUMN why TEXT NOT NULL DEFAULT '';
    """,
    # 4: notices found without a scan (issue 13): a refused event looks up whether
    # its refusal was already told, and a call's page lists its notices.
    """
    CREATE INDEX notices_told ON notices(code, agent, call_id);
    CREATE INDEX notices_call ON notices(call_id);
    """,
    # 5: a call's alerts and authorizations found without a scan (issue 15): a call's
    # summary counts them, and ``authorize_end`` checks for one; on PostgreSQL a
    # scan of the whole table inside a SERIALIZABLE transaction conflicts with
    # every other call's alert or authorization written meanwhile.
    """
    CREATE INDEX alerts_call ON alerts(call_id);
    CREATE INDEX authorizations_call ON authorizations(call_id);
    """,
)


def open_connection(where: Path | str) -> Connection:
    """A connection to the store at ``where`` (not migrated): a ``postgresql://`` URL, else a SQLite file's path."""
    if is_postgresql(where):
        from console.store.postgresql import PostgresConnection  # psycopg only where PostgreSQL is used

        return PostgresConnection(str(where))
    return SqliteConnection(Path(where))


def connect(where: Path | str) -> Connection:
    """Open (creating a SQLite file if needed) and migrate the store at
    ``where``: a SQLite file's path, or a ``postgresql://`` URL.

    Raises :class:`StoreError` for a store that is not usable (not a
    database, foreign tables in the way), one written by a newer callshield
    (code ``store_newer``), or a database that cannot be reached."""
    conn = open_connection(where)
    try:
        migrate(conn)
    except StoreError as exc:
        conn.close()
        if exc.code in ("store_newer", "store_unavailable"):
            raise
        raise StoreError(f"{conn.where}: not a usable store: {exc.message.removeprefix(conn.where + ': ')}") from exc
    return conn


def migrate(conn: Connection, upto: int = len(MIGRATIONS)) -> None:
    """Bring the store's schema to version ``upto``, one migration per transaction.

    Each transaction reads the version under a lock, so two consoles
    starting at once on one database migrate it once: SQLite's
    ``BEGIN IMMEDIATE``; on PostgreSQL a session advisory lock taken before
    the transactions begin (a serializable transaction's snapshot is taken at
    its first statement, so a lock taken inside it would come too late)."""
    postgresql = conn.dialect == "postgresql"
    if postgresql:
        conn.execute("SELECT pg_advisory_lock(?)", (_MIGRATION_LOCK,))
    try:
        _migrate(conn, upto)
    finally:
        if postgresql:
            conn.execute("SELECT pg_advisory_unlock(?)", (_MIGRATION_LOCK,))


def _migrate(conn: Connection, upto: int) -> None:
    while True:
        with conn.transaction() as c:
            c.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = c.execute("SELECT version FROM schema_version").fetchone()
            version = row[0] if row else 0
            if row is None:
                c.execute("INSERT INTO schema_version VALUES (0)")
            if version > len(MIGRATIONS):
                raise StoreError(f"{conn.where}: store schema {version} is newer than this callshield ({len(MIGRATIONS)}); upgrade callshield",
                                 code="store_newer")
            if version >= upto:
                return
            c.script(migration_sql(MIGRATIONS[version], c.dialect))
            c.execute("UPDATE schema_version SET version = ?", (version + 1,))


_MIGRATION_LOCK = 0x63616C6C  # "call": the advisory lock key of migrations on PostgreSQL

CONFLICT_TRIES = 8
"""Times a write method runs when it keeps racing other writers (PostgreSQL)."""
CONFLICT_BACKOFF = Backoff(initial=0.01, maximum=0.25, factor=2.0, jitter=0.75)
"""Waits between those runs: 2.5 to 10 ms after the first, doubling up to 250 ms, randomly shortened by up to three
quarters (so two writers that raced do not meet again at once); at most 0.81 s in all over the 7 waits."""
_RNG = random.Random()


class Conflicts:
    """Write transactions that raced another writer, per room method and cause
    (``serialization``, ``deadlock``, ``unique``): ``retried`` runs that were
    rolled back and run again, ``exhausted`` methods that lost every try (the
    caller got the :class:`StoreConflict`). Counted on the store thread, read
    anywhere (``/healthz``: ``store_conflicts``)."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str, str], int] = {}

    def count(self, method: str, cause: str, outcome: str) -> None:
        key = (method, cause, outcome)
        self._counts[key] = self._counts.get(key, 0) + 1

    def total(self, outcome: str = "retried") -> int:
        return sum(n for (_, _, o), n in dict(self._counts).items() if o == outcome)

    def health(self) -> dict[str, dict[str, int]]:
        """``{method: {"serialization": n, ..., "exhausted": n}}``: every conflict by cause, and the methods that gave up."""
        shown: dict[str, dict[str, int]] = {}
        for (method, cause, outcome), n in sorted(dict(self._counts).items()):
            of_method = shown.setdefault(method, {})
            name = cause if outcome == "retried" else "exhausted"
            of_method[name] = of_method.get(name, 0) + n
        return shown


def retried(method: Callable[..., T]) -> Callable[..., T]:
    """A room's write method, run again from the start when its transaction
    raced another writer and was rolled back (:class:`StoreConflict`: on
    PostgreSQL with several console replicas; SQLite's one writer never
    races). At most :data:`CONFLICT_TRIES` runs, :data:`CONFLICT_BACKOFF`
    apart (under a second in all); every conflict is counted in the room's
    :class:`Conflicts`."""

    name = method.__name__.lstrip("_")  # counted under the method's name without its underscore (``_record_batch``: ``record_batch``)

    @functools.wraps(method)
    def run(self: "Room", *args: Any, **kwargs: Any) -> T:
        for attempt in range(1, CONFLICT_TRIES + 1):
            try:
                return method(self, *args, **kwargs)
            except StoreConflict as exc:
                if attempt == CONFLICT_TRIES:
                    self.conflicts.count(name, exc.cause, "exhausted")
                    log.warning("%s lost all its %d tries to other writers: %s", name, CONFLICT_TRIES, exc)
                    raise
                self.conflicts.count(name, exc.cause, "retried")
                log.debug("%s raced another writer (try %d): %s", name, attempt, exc)
                time.sleep(CONFLICT_BACKOFF.delay(attempt - 1, _RNG))
        raise AssertionError("unreachable")  # pragma: no cover

    return run


class Room:
    """What every room of the store shares: the one connection, where the
    store is, the clock for wall times, and transactions. Blocking."""

    def __init__(self, conn: Connection, clock: Clock) -> None:
        self._conn = conn
        self.where = conn.where
        self._clock = clock
        self.conflicts = Conflicts()

    def _now(self) -> str:
        return iso(self._clock())

    def _tx(self) -> ContextManager[Connection]:
        """One write transaction (the method that opens it is :func:`retried`)."""
        return self._conn.transaction()

    def exclusively(self, name: str) -> ContextManager[bool]:
        """Whether this store alone, of the consoles sharing its database,
        runs the block named ``name`` (:meth:`Connection.exclusive`: False
        while another replica holds it; always True on SQLite)."""
        return self._conn.exclusive(name)

    def close(self) -> None:
        self._conn.close()

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._conn.dialect

    def schema_version(self) -> int:
        return self._conn.execute("SELECT version FROM schema_version").fetchone()[0]

    def setting(self, name: str) -> Any:
        """One database setting, for checks: a SQLite pragma (``journal_mode``,
        ``synchronous``), a PostgreSQL parameter (``synchronous_commit``)."""
        return self._conn.setting(name)

    def counts(self) -> dict[str, int]:
        """Row counts of the main tables (tests check that refusals change nothing)."""
        tables = ("calls", "utterances", "findings", "level_changes", "alerts", "authorizations", "checkins", "help_requests", "notices", "events", "users", "agents")
        return {t: self._conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}
