"""The console's store: one SQLite file with calls, alerts, audit log and users.

Every method here is blocking; the console calls them from its single
``store`` thread (never from the event loop), so one connection serves the
whole console and writes never race each other. The CLI and tests call them
directly.

Durability: WAL journal with ``synchronous=FULL``. An agent drops an event
from its resend buffer as soon as the console acknowledges it, so an
acknowledged event must survive a power cut, not only a crash of the console
process; FULL syncs the WAL at every commit, NORMAL would not. The cost is one
fsync per committed batch, which the event rates of a call center easily
afford (see ``bench/alert_latency.py``).

Schema: ``schema_version`` holds the version; :data:`MIGRATIONS` are applied
in order from whatever version the file has. Later issues add migrations at
the end of the list and never edit old ones.

Agent events are written idempotently: the ``events`` table keys every durable
message by its ``event_id``, so a resend after a reconnect is stored once and
reported as a duplicate (not shown to browsers again).
"""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from console.auth import ROLES, hash_password, new_password, new_token, same_token, token_hash, verify_password
from console.errors import BadRequest, Forbidden, StoreError
from kernel import protocol as p
from kernel.clock import Clock, iso, parse_iso, utc_now
from kernel.levels import asks_check_in, level_rank, raises_alert


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")

MIGRATIONS: tuple[str, ...] = (
    # 1: the first schema (issue 4).
    """
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
    """,
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
)


@dataclass(frozen=True)
class Recorded:
    """What storing one agent event changed, for the console to fan out.

    ``new``: False when the event was already stored (a resend). ``call``: the
    call's summary after the event (None for notices without a call).
    ``record``: the stored row of the event itself (utterance, finding, level
    change, notice) as a dict. ``alert``/``checkin``: rows created by the event.
    """

    new: bool
    call: dict[str, Any] | None = None
    record: dict[str, Any] | None = None
    alert: dict[str, Any] | None = None
    checkin: dict[str, Any] | None = None


@dataclass(frozen=True)
class Session:
    """A logged-in browser: ``user`` and ``role``, valid until ``expires_at``."""

    user: str
    role: str
    expires_at: datetime


class Store:
    """The console's SQLite store. Open with :meth:`open`; blocking methods."""

    def __init__(self, conn: sqlite3.Connection, path: Path, clock: Clock) -> None:
        self._conn = conn
        self.path = path
        self._clock = clock

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def open(cls, path: Path, *, clock: Clock = utc_now) -> "Store":
        """Open (creating if needed) and migrate the store at ``path``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=5.0)
            conn.row_factory = sqlite3.Row
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StoreError(f"{path}: cannot switch the store to WAL (journal mode {mode})")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=5000")
            store = cls(conn, path, clock)
            store._migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{path}: not a usable store: {exc}") from exc
        return store

    def close(self) -> None:
        self._conn.close()

    def _migrate(self) -> None:
        c = self._conn
        c.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = c.execute("SELECT version FROM schema_version").fetchone()
        version = row[0] if row else 0
        if row is None:
            c.execute("INSERT INTO schema_version VALUES (0)")
        if version > len(MIGRATIONS):
            raise StoreError(f"{self.path}: store schema {version} is newer than this callshield ({len(MIGRATIONS)}); upgrade callshield")
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            # executescript commits first; wrap the script so each migration is atomic
            c.executescript(f"BEGIN IMMEDIATE;\n{script}\nUPDATE schema_version SET version = {number};\nCOMMIT;")

    def schema_version(self) -> int:
        return self._conn.execute("SELECT version FROM schema_version").fetchone()[0]

    def pragma(self, name: str) -> Any:
        """The value of one SQLite pragma (``journal_mode``, ``synchronous``), for checks."""
        if not name.isidentifier():
            raise ValueError(name)
        return self._conn.execute(f"PRAGMA {name}").fetchone()[0]

    def _now(self) -> str:
        return iso(self._clock())

    def _tx(self) -> "_Transaction":
        return _Transaction(self._conn)

    # ------------------------------------------------------------------ users and agents

    def add_user(self, name: str, role: str, password: str | None = None) -> str:
        """Create a user (or, with role ``agent``, an agent) and return its secret.

        For people: the password (generated when None). For agents: a new token
        (``password`` is ignored unless given, then it is the token). The secret
        is stored only as a hash: show it once.
        """
        self._check_name(name)
        with self._tx() as c:
            if self._exists(c, name):
                raise BadRequest(f"user or agent {name!r} already exists", code="user_exists")
            return self._put_user(c, name, role, password)

    def ensure_user(self, name: str, role: str, password: str) -> None:
        """Create the user or agent, or reset its role and secret to these (demo setups)."""
        self._check_name(name)
        with self._tx() as c:
            c.execute("DELETE FROM users WHERE name = ?", (name,))
            c.execute("DELETE FROM agents WHERE name = ? AND ? != 'agent'", (name, role))
            if role == "agent" and c.execute("SELECT 1 FROM agents WHERE name = ?", (name,)).fetchone():
                c.execute("UPDATE agents SET token_hash = ? WHERE name = ?", (token_hash(password), name))
                return
            self._put_user(c, name, role, password)

    def _put_user(self, c: sqlite3.Connection, name: str, role: str, password: str | None) -> str:
        if role == "agent":
            token = password or new_token()
            c.execute("INSERT INTO agents (name, token_hash, created_at) VALUES (?, ?, ?)", (name, token_hash(token), self._now()))
            return token
        if role not in ROLES:
            raise BadRequest(f"unknown role {role!r} (one of: {', '.join(ROLES + ('agent',))})", code="bad_role")
        secret = new_password() if password is None else password
        self._check_password(secret)
        c.execute("INSERT INTO users (name, role, password, created_at) VALUES (?, ?, ?, ?)", (name, role, hash_password(secret), self._now()))
        return secret

    @staticmethod
    def _check_name(name: str) -> None:
        if not _NAME.match(name):
            raise BadRequest(f"bad user name {name!r}: 1-64 letters, digits, '.', '_', '@' or '-'", code="bad_name")

    @staticmethod
    def _check_password(password: str) -> None:
        from console.auth import MIN_PASSWORD

        if len(password) < MIN_PASSWORD:
            raise BadRequest(f"password too short (at least {MIN_PASSWORD} characters)", code="weak_password")

    @staticmethod
    def _exists(c: sqlite3.Connection, name: str) -> bool:
        return bool(c.execute("SELECT 1 FROM users WHERE name = ? UNION SELECT 1 FROM agents WHERE name = ?", (name, name)).fetchone())

    def set_password(self, name: str, password: str | None = None) -> str:
        """Replace a user's password (or an agent's token); returns the new secret
        and ends the user's sessions."""
        with self._tx() as c:
            if c.execute("SELECT 1 FROM agents WHERE name = ?", (name,)).fetchone():
                token = password or new_token()
                c.execute("UPDATE agents SET token_hash = ? WHERE name = ?", (token_hash(token), name))
                return token
            if not c.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise BadRequest(f"no user {name!r}", code="no_user")
            secret = new_password() if password is None else password
            self._check_password(secret)
            c.execute("UPDATE users SET password = ? WHERE name = ?", (hash_password(secret), name))
            c.execute("DELETE FROM sessions WHERE user = ?", (name,))
            return secret

    def remove_user(self, name: str) -> None:
        with self._tx() as c:
            gone = c.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount
            gone += c.execute("DELETE FROM agents WHERE name = ?", (name,)).rowcount
            if not gone:
                raise BadRequest(f"no user or agent {name!r}", code="no_user")

    def list_users(self) -> list[dict[str, Any]]:
        """People and agents: ``name``, ``role`` (``agent`` for agents), ``created_at``."""
        rows = self._conn.execute(
            "SELECT name, role, created_at FROM users UNION ALL SELECT name, 'agent', created_at FROM agents ORDER BY name"
        ).fetchall()
        return [dict(r) for r in rows]

    def user_count(self) -> int:
        return self._conn.execute("SELECT count(*) FROM users").fetchone()[0]

    def credentials(self, name: str) -> tuple[str, str] | None:
        """``(role, password hash)`` of a user, for the console to verify off-thread."""
        row = self._conn.execute("SELECT role, password FROM users WHERE name = ?", (name,)).fetchone()
        return (row["role"], row["password"]) if row else None

    def check_password(self, name: str, password: str) -> str | None:
        """The user's role if the password is right, else None (slow: scrypt)."""
        found = self.credentials(name)
        if found is None:
            verify_password(password, hash_password("x" * 8))  # same cost for unknown names
            return None
        return found[0] if verify_password(password, found[1]) else None

    def create_session(self, user: str, hours: float) -> tuple[str, Session]:
        """A new session token for ``user`` (returned once; stored hashed)."""
        now = self._clock()
        token = new_token()
        with self._tx() as c:
            row = c.execute("SELECT role FROM users WHERE name = ?", (user,)).fetchone()
            if row is None:
                raise BadRequest(f"no user {user!r}", code="no_user")
            expires = now + timedelta(hours=hours)
            c.execute("DELETE FROM sessions WHERE expires_at < ?", (iso(now),))
            c.execute("INSERT INTO sessions VALUES (?, ?, ?, ?)", (token_hash(token), user, iso(now), iso(expires)))
        return token, Session(user, row["role"], expires)

    def session(self, token: str) -> Session | None:
        """The live session of ``token``, or None if unknown or expired."""
        row = self._conn.execute(
            "SELECT s.user, u.role, s.expires_at FROM sessions s JOIN users u ON u.name = s.user WHERE s.token_hash = ?",
            (token_hash(token),),
        ).fetchone()
        if row is None:
            return None
        expires = parse_iso(row["expires_at"])
        if expires <= self._clock():
            return None
        return Session(row["user"], row["role"], expires)

    def end_session(self, token: str) -> None:
        with self._tx() as c:
            c.execute("DELETE FROM sessions WHERE token_hash = ?", (token_hash(token),))

    def check_agent(self, name: str, token: str, site: str = "") -> int | None:
        """The agent's last stored seq if ``token`` is its token, else None."""
        row = self._conn.execute("SELECT token_hash, last_seq FROM agents WHERE name = ?", (name,)).fetchone()
        if row is None:
            same_token(token, token_hash(""))  # same work for unknown agents
            return None
        if not same_token(token, row["token_hash"]):
            return None
        with self._tx() as c:
            c.execute("UPDATE agents SET site = ?, last_seen = ? WHERE name = ?", (site, self._now(), name))
        return row["last_seq"]

    def last_seq(self, agent: str) -> int:
        row = self._conn.execute("SELECT last_seq FROM agents WHERE name = ?", (agent,)).fetchone()
        return row[0] if row else 0

    # ------------------------------------------------------------------ agent events

    def record_event(self, agent: str, message: Any) -> Recorded:
        """Store one durable agent message idempotently (keyed by ``event_id``).

        Raises :class:`Forbidden` (code ``not_your_call``) when the message is
        about a call another agent owns, :class:`BadRequest` (``unknown_call``)
        for a call never started; nothing is stored then.
        """
        if not p.is_durable(message):
            raise BadRequest(f"{message.TYPE} is not a durable event", code="unexpected_message")
        now = self._now()
        call_id = getattr(message, "call_id", None)
        with self._tx() as c:
            seen = c.execute("SELECT agent FROM events WHERE event_id = ?", (message.event_id,)).fetchone()
            if seen is not None:
                if seen["agent"] != agent:
                    raise Forbidden(f"event {message.event_id!r} belongs to another agent", code="not_your_event")
                self._bump_seq(c, agent, message.seq)
                return Recorded(new=False)
            if call_id is not None:
                owner = c.execute("SELECT agent FROM calls WHERE id = ?", (call_id,)).fetchone()
                if owner is not None and owner["agent"] != agent:
                    raise Forbidden(f"call {call_id!r} belongs to another agent", code="not_your_call")
                if owner is None and not isinstance(message, p.CallStarted):
                    raise BadRequest(f"call {call_id!r} was never started", code="unknown_call")
            result = self._apply(c, agent, message, now)
            c.execute(
                "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)",
                (message.event_id, agent, message.seq, message.TYPE, call_id, now),
            )
            self._bump_seq(c, agent, message.seq)
            return result

    @staticmethod
    def _bump_seq(c: sqlite3.Connection, agent: str, seq: int) -> None:
        c.execute("UPDATE agents SET last_seq = max(last_seq, ?) WHERE name = ?", (seq, agent))

    def _apply(self, c: sqlite3.Connection, agent: str, m: Any, now: str) -> Recorded:
        if isinstance(m, p.CallStarted):
            c.execute(
                "INSERT OR IGNORE INTO calls (id, agent, partner, seat, source, sample_rate, started_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (m.call_id, agent, m.partner, m.seat, m.source, m.sample_rate, m.started_at),
            )
            return Recorded(new=True, call=self._call(c, m.call_id))
        if isinstance(m, p.UtteranceFinal):
            cur = c.execute(
                "INSERT INTO utterances (event_id, call_id, speaker, start, end, text, words) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (m.event_id, m.call_id, m.speaker, m.start, m.end, m.text, json.dumps(list(m.words), ensure_ascii=False)),
            )
            return Recorded(new=True, call=self._call(c, m.call_id), record=self._utterance(c, cur.lastrowid))
        if isinstance(m, p.FindingRaised):
            first, last = _span(m.span, len(m.text))
            cur = c.execute(
                "INSERT INTO findings (event_id, call_id, category, subtype, severity, score, rule, evidence, start, end, text, span_first, span_last, why)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (m.event_id, m.call_id, m.category, m.subtype, m.severity, m.score, m.rule, m.evidence, m.start, m.end, m.text, first, last,
                 m.why),
            )
            checkin = None
            if asks_check_in(m.severity):
                checkin = self._queue_checkin(c, m.call_id, f"{m.severity} {m.category} finding", now)
            return Recorded(new=True, call=self._call(c, m.call_id), record=self._finding(c, cur.lastrowid), checkin=checkin)
        if isinstance(m, p.LevelChanged):
            cur = c.execute(
                "INSERT INTO level_changes (event_id, call_id, level, previous, reason, suggestion, category, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (m.event_id, m.call_id, m.level, m.previous, m.reason, m.suggestion, m.category, m.at),
            )
            change_id = cur.lastrowid
            peak = c.execute("SELECT peak_level FROM calls WHERE id = ?", (m.call_id,)).fetchone()[0]
            new_peak = m.level if level_rank(m.level) > level_rank(peak) else peak
            c.execute("UPDATE calls SET level = ?, peak_level = ? WHERE id = ?", (m.level, new_peak, m.call_id))
            alert = checkin = None
            if raises_alert(m.level, m.previous):
                cur = c.execute(
                    "INSERT INTO alerts (call_id, level_change, level, reason, at, raised_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (m.call_id, change_id, m.level, m.reason, m.at, now),
                )
                alert = self._alert(c, cur.lastrowid)
                checkin = self._queue_checkin(c, m.call_id, f"call reached {m.level}", now)
            return Recorded(new=True, call=self._call(c, m.call_id), record=self._level_change(c, change_id), alert=alert, checkin=checkin)
        if isinstance(m, p.CallEnded):
            c.execute(
                "UPDATE calls SET ended_at = coalesce(ended_at, ?), length = ?, end_reason = ? WHERE id = ?",
                (now, m.at, m.reason, m.call_id),
            )
            return Recorded(new=True, call=self._call(c, m.call_id))
        if isinstance(m, p.AgentNotice):
            if m.call_id is not None and not c.execute("SELECT 1 FROM calls WHERE id = ?", (m.call_id,)).fetchone():
                raise BadRequest(f"call {m.call_id!r} was never started", code="unknown_call")
            cur = c.execute(
                "INSERT INTO notices (event_id, agent, call_id, code, message, dropped, received_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (m.event_id, agent, m.call_id, m.code, m.message, m.dropped, now),
            )
            row = dict(c.execute("SELECT id, agent, call_id, code, message, dropped, received_at FROM notices WHERE id = ?", (cur.lastrowid,)).fetchone())
            return Recorded(new=True, call=self._call(c, m.call_id) if m.call_id else None, record=row)
        raise BadRequest(f"{m.TYPE} is not stored", code="unexpected_message")  # pragma: no cover

    def _queue_checkin(self, c: sqlite3.Connection, call_id: str, reason: str, now: str) -> dict[str, Any] | None:
        partner = c.execute("SELECT partner FROM calls WHERE id = ?", (call_id,)).fetchone()[0]
        cur = c.execute(
            "INSERT OR IGNORE INTO checkins (call_id, partner, reason, created_at) VALUES (?, ?, ?, ?)",
            (call_id, partner, reason, now),
        )
        return self._checkin(c, cur.lastrowid) if cur.rowcount else None

    # ------------------------------------------------------------------ rows as dicts

    @staticmethod
    def _call(c: sqlite3.Connection, call_id: str | None) -> dict[str, Any] | None:
        row = c.execute(
            "SELECT id, agent, partner, seat, source, sample_rate, started_at, ended_at, length, level, peak_level, end_reason,"
            " (SELECT count(*) FROM alerts a WHERE a.call_id = calls.id AND a.acknowledged_at IS NULL) AS open_alerts,"
            " (SELECT count(*) FROM authorizations z WHERE z.call_id = calls.id) AS authorizations"
            " FROM calls WHERE id = ?",
            (call_id,),
        ).fetchone()
        return dict(row) if row else None

    @staticmethod
    def _utterance(c: sqlite3.Connection, rowid: int) -> dict[str, Any]:
        row = dict(c.execute("SELECT id, call_id, speaker, start, end, text, words FROM utterances WHERE id = ?", (rowid,)).fetchone())
        row["words"] = json.loads(row["words"])
        return row

    @staticmethod
    def _finding(c: sqlite3.Connection, rowid: int) -> dict[str, Any]:
        row = dict(c.execute(
            "SELECT id, call_id, category, subtype, severity, score, rule, evidence, start, end, text, span_first, span_last, why"
            " FROM findings WHERE id = ?",
            (rowid,),
        ).fetchone())
        first, last = row.pop("span_first"), row.pop("span_last")
        row["span"] = None if first is None else [first, last]
        return row

    @staticmethod
    def _level_change(c: sqlite3.Connection, rowid: int) -> dict[str, Any]:
        return dict(c.execute(
            "SELECT id, call_id, level, previous, reason, suggestion, category, at FROM level_changes WHERE id = ?", (rowid,)
        ).fetchone())

    @staticmethod
    def _alert(c: sqlite3.Connection, rowid: int) -> dict[str, Any]:
        return dict(c.execute(
            "SELECT a.id, a.call_id, c.partner, c.seat, a.level, a.reason, a.at, a.raised_at, a.acknowledged_by, a.acknowledged_at"
            " FROM alerts a JOIN calls c ON c.id = a.call_id WHERE a.id = ?",
            (rowid,),
        ).fetchone())

    @staticmethod
    def _checkin(c: sqlite3.Connection, rowid: int) -> dict[str, Any]:
        return dict(c.execute("SELECT id, call_id, partner, reason, created_at, done_by, done_at, note FROM checkins WHERE id = ?", (rowid,)).fetchone())

    @staticmethod
    def _help(c: sqlite3.Connection, rowid: int) -> dict[str, Any]:
        return dict(c.execute(
            "SELECT h.id, h.call_id, h.partner, c.seat, h.note, h.created_at, h.acknowledged_by, h.acknowledged_at"
            " FROM help_requests h LEFT JOIN calls c ON c.id = h.call_id WHERE h.id = ?",
            (rowid,),
        ).fetchone())

    @staticmethod
    def _authorization(c: sqlite3.Connection, auth_id: str) -> dict[str, Any]:
        row = dict(c.execute("SELECT id, call_id, by_user, reason, authorized_at FROM authorizations WHERE id = ?", (auth_id,)).fetchone())
        row["by"] = row.pop("by_user")
        return row

    # ------------------------------------------------------------------ reading calls

    def call(self, call_id: str) -> dict[str, Any] | None:
        return self._call(self._conn, call_id)

    def call_owner(self, call_id: str) -> str | None:
        """The agent that started the call, or None."""
        row = self._conn.execute("SELECT agent FROM calls WHERE id = ?", (call_id,)).fetchone()
        return row[0] if row else None

    def live_calls(self) -> list[dict[str, Any]]:
        ids = [r[0] for r in self._conn.execute("SELECT id FROM calls WHERE ended_at IS NULL ORDER BY rowid")]
        return [self._call(self._conn, i) for i in ids]

    def recent_calls(self, limit: int = 100) -> list[dict[str, Any]]:
        ids = [r[0] for r in self._conn.execute("SELECT id FROM calls ORDER BY rowid DESC LIMIT ?", (limit,))]
        return [self._call(self._conn, i) for i in ids]

    def current_call_of(self, partner: str) -> dict[str, Any] | None:
        """The partner's latest call: the live one, else the one that ended last."""
        row = self._conn.execute(
            "SELECT id FROM calls WHERE partner = ? ORDER BY (ended_at IS NULL) DESC, rowid DESC LIMIT 1", (partner,)
        ).fetchone()
        return self._call(self._conn, row[0]) if row else None

    def level_changes(self, call_id: str) -> list[dict[str, Any]]:
        ids = [r[0] for r in self._conn.execute("SELECT id FROM level_changes WHERE call_id = ? ORDER BY id", (call_id,))]
        return [self._level_change(self._conn, i) for i in ids]

    def authorizations(self, call_id: str) -> list[dict[str, Any]]:
        ids = [r[0] for r in self._conn.execute("SELECT id FROM authorizations WHERE call_id = ? ORDER BY authorized_at", (call_id,))]
        return [self._authorization(self._conn, i) for i in ids]

    def call_detail(self, call_id: str) -> dict[str, Any] | None:
        """Everything stored about one call: utterances, findings, level changes,
        alerts, authorizations, help requests, its check-in."""
        call = self._call(self._conn, call_id)
        if call is None:
            return None
        c = self._conn
        return {
            "call": call,
            "utterances": [self._utterance(c, r[0]) for r in c.execute("SELECT id FROM utterances WHERE call_id = ? ORDER BY start, id", (call_id,))],
            "findings": [self._finding(c, r[0]) for r in c.execute("SELECT id FROM findings WHERE call_id = ? ORDER BY start, id", (call_id,))],
            "levels": self.level_changes(call_id),
            "alerts": [self._alert(c, r[0]) for r in c.execute("SELECT id FROM alerts WHERE call_id = ? ORDER BY id", (call_id,))],
            "authorizations": self.authorizations(call_id),
            "help": [self._help(c, r[0]) for r in c.execute("SELECT id FROM help_requests WHERE call_id = ? ORDER BY id", (call_id,))],
            "checkins": [self._checkin(c, r[0]) for r in c.execute("SELECT id FROM checkins WHERE call_id = ?", (call_id,))],
        }

    def open_alerts(self, limit: int = 200) -> list[dict[str, Any]]:
        """Alerts not yet acknowledged, plus the latest acknowledged ones, newest first."""
        ids = [r[0] for r in self._conn.execute(
            "SELECT id FROM alerts ORDER BY (acknowledged_at IS NULL) DESC, id DESC LIMIT ?", (limit,)
        )]
        return [self._alert(self._conn, i) for i in ids]

    def open_checkins(self) -> list[dict[str, Any]]:
        return [self._checkin(self._conn, r[0]) for r in self._conn.execute("SELECT id FROM checkins WHERE done_at IS NULL ORDER BY id")]

    def open_help(self) -> list[dict[str, Any]]:
        return [self._help(self._conn, r[0]) for r in self._conn.execute("SELECT id FROM help_requests WHERE acknowledged_at IS NULL ORDER BY id")]

    def pending_authorizations(self, agent: str) -> list[dict[str, Any]]:
        """Authorizations for this agent's calls that are still live (to (re)send
        after the agent reconnects; the agent dedupes on the id)."""
        ids = [r[0] for r in self._conn.execute(
            "SELECT z.id FROM authorizations z JOIN calls c ON c.id = z.call_id WHERE c.agent = ? AND c.ended_at IS NULL ORDER BY z.authorized_at",
            (agent,),
        )]
        return [self._authorization(self._conn, i) for i in ids]

    # ------------------------------------------------------------------ supervisor and partner actions

    def acknowledge_alert(self, alert_id: int, by: str) -> tuple[dict[str, Any], bool]:
        """Mark an alert acknowledged; returns ``(alert, changed)`` (False if it already was)."""
        with self._tx() as c:
            row = c.execute("SELECT acknowledged_at, call_id FROM alerts WHERE id = ?", (alert_id,)).fetchone()
            if row is None:
                raise BadRequest(f"no alert {alert_id}", code="unknown_alert")
            if row["acknowledged_at"] is not None:
                return self._alert(c, alert_id), False
            now = self._now()
            c.execute("UPDATE alerts SET acknowledged_by = ?, acknowledged_at = ? WHERE id = ?", (by, now, alert_id))
            self._audit(c, by, "ack_alert", row["call_id"], f"alert {alert_id}", now)
            return self._alert(c, alert_id), True

    def authorize_end(self, call_id: str, by: str, reason: str) -> tuple[dict[str, Any], str]:
        """Record a supervisor's authorization to end a live call, with its audit
        entry, in one transaction. Returns ``(authorization, owning agent)``."""
        reason = reason.strip()
        if not reason:
            raise BadRequest("a reason is required to authorize ending a call", code="reason_required")
        with self._tx() as c:
            row = c.execute("SELECT agent, ended_at FROM calls WHERE id = ?", (call_id,)).fetchone()
            if row is None:
                raise BadRequest(f"no call {call_id!r}", code="unknown_call")
            if row["ended_at"] is not None:
                raise BadRequest(f"call {call_id!r} has already ended", code="call_ended")
            if c.execute("SELECT 1 FROM authorizations WHERE call_id = ?", (call_id,)).fetchone():
                raise BadRequest(f"ending call {call_id!r} is already authorized", code="already_authorized")
            now = self._now()
            auth_id = "auth-" + secrets.token_hex(8)
            c.execute("INSERT INTO authorizations VALUES (?, ?, ?, ?, ?)", (auth_id, call_id, by, reason, now))
            self._audit(c, by, "authorize_end", call_id, json.dumps({"authorization_id": auth_id, "reason": reason}, ensure_ascii=False), now)
            return self._authorization(c, auth_id), row["agent"]

    def request_help(self, partner: str, call_id: str | None, note: str) -> dict[str, Any]:
        with self._tx() as c:
            now = self._now()
            cur = c.execute("INSERT INTO help_requests (call_id, partner, note, created_at) VALUES (?, ?, ?, ?)", (call_id, partner, note, now))
            self._audit(c, partner, "need_help", call_id, note, now)
            return self._help(c, cur.lastrowid)

    def acknowledge_help(self, help_id: int, by: str) -> dict[str, Any]:
        with self._tx() as c:
            row = c.execute("SELECT call_id FROM help_requests WHERE id = ?", (help_id,)).fetchone()
            if row is None:
                raise BadRequest(f"no help request {help_id}", code="unknown_help")
            now = self._now()
            c.execute("UPDATE help_requests SET acknowledged_by = coalesce(acknowledged_by, ?), acknowledged_at = coalesce(acknowledged_at, ?) WHERE id = ?", (by, now, help_id))
            self._audit(c, by, "ack_help", row["call_id"], f"help {help_id}", now)
            return self._help(c, help_id)

    def checkin_done(self, checkin_id: int, by: str, note: str = "") -> dict[str, Any]:
        with self._tx() as c:
            row = c.execute("SELECT call_id FROM checkins WHERE id = ?", (checkin_id,)).fetchone()
            if row is None:
                raise BadRequest(f"no check-in {checkin_id}", code="unknown_checkin")
            now = self._now()
            c.execute("UPDATE checkins SET done_by = coalesce(done_by, ?), done_at = coalesce(done_at, ?), note = ? WHERE id = ?", (by, now, note, checkin_id))
            self._audit(c, by, "checkin_done", row["call_id"], note, now)
            return self._checkin(c, checkin_id)

    # ------------------------------------------------------------------ audit log

    def audit(self, who: str, action: str, call_id: str | None = None, detail: str = "") -> int:
        """Append one entry (wall time from the store's clock); returns its id."""
        with self._tx() as c:
            return self._audit(c, who, action, call_id, detail, self._now())

    @staticmethod
    def _audit(c: sqlite3.Connection, who: str, action: str, call_id: str | None, detail: str, now: str) -> int:
        return c.execute(
            "INSERT INTO audit_log (at, who, action, call_id, detail) VALUES (?, ?, ?, ?, ?)", (now, who, action, call_id, detail[:2000])
        ).lastrowid

    def audit_entries(self, *, action: str | None = None, call_id: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        sql, args = "SELECT id, at, who, action, call_id, detail FROM audit_log WHERE 1", []
        if action is not None:
            sql += " AND action = ?"
            args.append(action)
        if call_id is not None:
            sql += " AND call_id = ?"
            args.append(call_id)
        sql += " ORDER BY id LIMIT ?"
        args.append(limit)
        return [dict(r) for r in self._conn.execute(sql, args)]

    # ------------------------------------------------------------------ recordings and QA (issue 6)

    def add_recording(self, call_id: str, *, path: str, sha256: str, bytes: int, duration: float, sample_rate: int,
                      finalized_at: str, recovered: bool = False) -> dict[str, Any]:
        """Store a finished recording once (the first-stored hash is never replaced); returns its row."""
        with self._tx() as c:
            cur = c.execute(
                "INSERT OR IGNORE INTO recordings (call_id, path, sha256, bytes, duration, sample_rate, finalized_at, recovered, stored_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (call_id, path, sha256, bytes, duration, sample_rate, finalized_at, int(recovered), self._now()),
            )
            if cur.rowcount:
                self._audit(c, "console", "recording_stored", call_id, f"{path}: {bytes} bytes, {duration:.1f} s, sha256 {sha256}", self._now())
        return self.recording(call_id)

    def recording(self, call_id: str) -> dict[str, Any] | None:
        """The call's recording row (``removed_at`` set once retention removed the file), or None."""
        row = self._conn.execute(
            "SELECT call_id, path, sha256, bytes, duration, sample_rate, finalized_at, recovered, stored_at, removed_at FROM recordings WHERE call_id = ?",
            (call_id,),
        ).fetchone()
        if row is None:
            return None
        out = dict(row)
        out["recovered"] = bool(out["recovered"])
        return out

    def recording_removed(self, call_id: str) -> None:
        with self._tx() as c:
            c.execute("UPDATE recordings SET removed_at = ? WHERE call_id = ? AND removed_at IS NULL", (self._now(), call_id))

    def remove_transcript(self, call_id: str) -> int:
        """Delete a call's utterances (retention); returns how many."""
        with self._tx() as c:
            return c.execute("DELETE FROM utterances WHERE call_id = ?", (call_id,)).rowcount

    def retention_calls(self, call_id: str | None = None) -> list[dict[str, Any]]:
        """What retention needs per call: ``id``, ``started_at``, ``ended_at``,
        ``flagged`` (any finding), ``recording`` (path, None if none or removed),
        ``has_transcript``."""
        sql = (
            "SELECT c.id, c.started_at, c.ended_at,"
            " EXISTS (SELECT 1 FROM findings f WHERE f.call_id = c.id) AS flagged,"
            " (SELECT r.path FROM recordings r WHERE r.call_id = c.id AND r.removed_at IS NULL) AS recording,"
            " EXISTS (SELECT 1 FROM utterances u WHERE u.call_id = c.id) AS has_transcript"
            " FROM calls c"
        )
        args: tuple = ()
        if call_id is not None:
            sql += " WHERE c.id = ?"
            args = (call_id,)
        return [dict(r) for r in self._conn.execute(sql + " ORDER BY c.rowid", args)]

    def qa_calls(self, *, since: str | None = None, until: str | None = None, category: str = "", level: str = "",
                 partner: str = "", limit: int = 200) -> dict[str, Any]:
        """Flagged calls (at least one finding), newest first, filtered by start
        (``since`` <= started_at < ``until``, ISO prefixes), a finding category,
        the call's peak level and partner; with counts and the filter choices."""
        filters = (
            (since, "c.started_at >= ?"),
            (until, "c.started_at < ?"),
            (category, "EXISTS (SELECT 1 FROM findings f WHERE f.call_id = c.id AND f.category = ?)"),
            (level, "c.peak_level = ?"),
            (partner, "c.partner = ?"),
        )
        where = ["EXISTS (SELECT 1 FROM findings f WHERE f.call_id = c.id)"] + [clause for value, clause in filters if value]
        args = [value for value, _ in filters if value]
        c = self._conn
        rows = c.execute(f"SELECT c.id, c.peak_level FROM calls c WHERE {' AND '.join(where)} ORDER BY c.started_at DESC, c.rowid DESC", args).fetchall()
        calls = []
        by_category: dict[str, int] = {}
        by_level: dict[str, int] = {}
        findings_total = 0
        for n, (call_id, peak) in enumerate(rows):
            cats = [r[0] for r in c.execute("SELECT category FROM findings WHERE call_id = ? ORDER BY start, id", (call_id,))]
            findings_total += len(cats)
            for cat in cats:
                by_category[cat] = by_category.get(cat, 0) + 1
            by_level[peak] = by_level.get(peak, 0) + 1
            if n < limit:
                marked = c.execute("SELECT count(*) FROM qa_marks WHERE call_id = ?", (call_id,)).fetchone()[0]
                call = self._call(c, call_id)
                call.update(findings=len(cats), categories=sorted(set(cats)), marked=marked)
                calls.append(call)
        return {
            "calls": calls,
            "counts": {"calls": len(rows), "findings": findings_total, "by_category": by_category, "by_level": by_level},
            "partners": [r[0] for r in c.execute("SELECT DISTINCT c.partner FROM calls c JOIN findings f ON f.call_id = c.id ORDER BY 1")],
            "categories": [r[0] for r in c.execute("SELECT DISTINCT category FROM findings ORDER BY 1")],
        }

    def qa_mark(self, finding_id: int, verdict: str, note: str, by: str) -> dict[str, Any]:
        """QA's verdict on a finding (the latest replaces the previous; every one is audited)."""
        if verdict not in ("confirmed", "false_alarm"):
            raise BadRequest(f"verdict must be 'confirmed' or 'false_alarm', not {verdict!r}", code="bad_verdict")
        now = self._now()
        with self._tx() as c:
            row = c.execute("SELECT call_id FROM findings WHERE id = ?", (finding_id,)).fetchone()
            if row is None:
                raise BadRequest(f"no finding {finding_id}", code="no_finding")
            c.execute(
                "INSERT INTO qa_marks (finding_id, call_id, verdict, note, by_user, at) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(finding_id) DO UPDATE SET verdict = excluded.verdict, note = excluded.note, by_user = excluded.by_user, at = excluded.at",
                (finding_id, row["call_id"], verdict, note, by, now),
            )
            self._audit(c, by, "qa_mark", row["call_id"], f"finding {finding_id}: {verdict}{': ' + note if note else ''}", now)
        return self._qa_mark(self._conn, finding_id)

    @staticmethod
    def _qa_mark(c: sqlite3.Connection, finding_id: int) -> dict[str, Any]:
        row = dict(c.execute("SELECT id, finding_id, call_id, verdict, note, by_user, at FROM qa_marks WHERE finding_id = ?", (finding_id,)).fetchone())
        row["by"] = row.pop("by_user")
        return row

    def qa_marks(self, call_id: str) -> list[dict[str, Any]]:
        ids = [r[0] for r in self._conn.execute("SELECT finding_id FROM qa_marks WHERE call_id = ? ORDER BY id", (call_id,))]
        return [self._qa_mark(self._conn, i) for i in ids]

    def qa_marks_for_training(self) -> list[dict[str, Any]]:
        """Every marked finding with what the detector saw (for tuning lexicons and rules)."""
        rows = self._conn.execute(
            "SELECT m.verdict, m.note, m.by_user AS by, m.at, f.id AS finding_id, f.call_id, f.category, f.subtype, f.severity,"
            " f.score, f.rule, f.evidence, f.text, f.span_first, f.span_last, f.start, f.end"
            " FROM qa_marks m JOIN findings f ON f.id = m.finding_id ORDER BY m.id"
        ).fetchall()
        out = []
        for r in rows:
            d = dict(r)
            first, last = d.pop("span_first"), d.pop("span_last")
            d["span"] = None if first is None else [first, last]
            out.append(d)
        return out

    def counts(self) -> dict[str, int]:
        """Row counts of the main tables (tests check that refusals change nothing)."""
        tables = ("calls", "utterances", "findings", "level_changes", "alerts", "authorizations", "checkins", "help_requests", "notices", "events", "users", "agents")
        return {t: self._conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}


def _span(span: tuple | None, length: int) -> tuple[int | None, int | None]:
    """A valid ``[first, last)`` inside the text, or ``(None, None)``."""
    if span is None or len(span) != 2:
        return None, None
    first, last = span
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (first, last)):
        return None, None
    if 0 <= first < last <= length:
        return first, last
    return None, None


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (or ``ROLLBACK`` on any error)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self._conn.execute("BEGIN IMMEDIATE")
        return self._conn

    def __exit__(self, kind, value, tb) -> None:
        if kind is None:
            self._conn.execute("COMMIT")
        else:
            self._conn.execute("ROLLBACK")
