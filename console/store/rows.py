"""Reading one stored row into its record: the SELECTs every room shares.

Each function takes the connection (inside a transaction or not) and a key and
returns the record (``console/store/records.py``); the row must exist unless
the function says it may return None. Blocking, on the store thread.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from console.store.connection import Connection
from console.store.records import Alert, Authorization, Call, CheckIn, Finding, HelpRequest, LevelChange, Notice, QaMark, Recording, Utterance


R = TypeVar("R")
Row = Any
"""A row read by index and by column name (``sqlite3.Row``, ``console.store.postgresql.Row``)."""

AUTHORIZATIONS_OF_CALL = "SELECT id FROM authorizations WHERE call_id = ? ORDER BY authorized_at"
"""The ids of one call's authorizations, oldest first."""


def call(c: Connection, call_id: str | None) -> Call | None:
    """The call's summary, or None for an unknown call."""
    row = c.execute(
        "SELECT id, agent, partner, seat, source, sample_rate, started_at, ended_at, length, level, peak_level, end_reason,"
        " (SELECT count(*) FROM alerts a WHERE a.call_id = calls.id AND a.acknowledged_at IS NULL) AS open_alerts,"
        " (SELECT count(*) FROM authorizations z WHERE z.call_id = calls.id) AS authorizations"
        " FROM calls WHERE id = ?",
        (call_id,),
    ).fetchone()
    return Call(**row) if row else None


def span(first: int | None, last: int | None) -> tuple[int, int] | None:
    """A stored ``[first, last)`` pair as a record's span (None when not stored)."""
    return None if first is None else (first, last)


UTTERANCE = 'id, call_id, speaker, start, "end", text, words'
FINDING = 'id, call_id, category, subtype, severity, score, rule, evidence, start, "end", text, span_first, span_last, why'
LEVEL_CHANGE = "id, call_id, level, previous, reason, suggestion, category, at"
NOTICE = "id, agent, call_id, code, message, dropped, received_at"
CHECKIN = "id, call_id, partner, reason, created_at, done_by, done_at, note"
ALERT = "id, call_id, level, reason, at, raised_at, acknowledged_by, acknowledged_at"
"""The columns each record is read from: a SELECT's, or an ``INSERT ... RETURNING``'s (a row just written is
built from what the INSERT returns, not read again by its id: on PostgreSQL that read would lock the index page
every concurrent writer of the table inserts into, see ``docs/console.md``, "Writers at once")."""


def utterance_of(row: Row) -> Utterance:
    return Utterance(**{**dict(row), "words": tuple(json.loads(row["words"]))})


def finding_of(row: Row) -> Finding:
    fields = dict(row)
    fields["span"] = span(fields.pop("span_first"), fields.pop("span_last"))
    return Finding(**fields)


def level_change_of(row: Row) -> LevelChange:
    return LevelChange(**row)


def notice_of(row: Row) -> Notice:
    return Notice(**row)


def checkin_of(row: Row) -> CheckIn:
    return CheckIn(**row)


def alert_of(row: Row, partner: str, seat: str) -> Alert:
    """An alert from its :data:`ALERT` columns and its call's partner and seat."""
    return Alert(**row, partner=partner, seat=seat)


def utterance(c: Connection, rowid: int) -> Utterance:
    return utterance_of(c.execute(f"SELECT {UTTERANCE} FROM utterances WHERE id = ?", (rowid,)).fetchone())


def finding(c: Connection, rowid: int) -> Finding:
    return finding_of(c.execute(f"SELECT {FINDING} FROM findings WHERE id = ?", (rowid,)).fetchone())


def _one(c: Connection, record: type[R], sql: str, key: int | str) -> R:
    """The record of the one row ``sql`` selects for ``key`` (its columns are the record's fields)."""
    return record(**c.execute(sql, (key,)).fetchone())


def level_change(c: Connection, rowid: int) -> LevelChange:
    return level_change_of(c.execute(f"SELECT {LEVEL_CHANGE} FROM level_changes WHERE id = ?", (rowid,)).fetchone())


def notice(c: Connection, rowid: int) -> Notice:
    return notice_of(c.execute(f"SELECT {NOTICE} FROM notices WHERE id = ?", (rowid,)).fetchone())


def alert(c: Connection, rowid: int) -> Alert:
    return _one(c, Alert, "SELECT a.id, a.call_id, c.partner, c.seat, a.level, a.reason, a.at, a.raised_at, a.acknowledged_by, a.acknowledged_at"
                " FROM alerts a JOIN calls c ON c.id = a.call_id WHERE a.id = ?", rowid)


def checkin(c: Connection, rowid: int) -> CheckIn:
    return checkin_of(c.execute(f"SELECT {CHECKIN} FROM checkins WHERE id = ?", (rowid,)).fetchone())


def help_request(c: Connection, rowid: int) -> HelpRequest:
    return _one(c, HelpRequest, "SELECT h.id, h.call_id, h.partner, c.seat, h.note, h.created_at, h.acknowledged_by, h.acknowledged_at"
                " FROM help_requests h LEFT JOIN calls c ON c.id = h.call_id WHERE h.id = ?", rowid)


def authorization(c: Connection, auth_id: str) -> Authorization:
    return _one(c, Authorization, "SELECT id, call_id, by_user AS by, reason, authorized_at FROM authorizations WHERE id = ?", auth_id)


def qa_mark(c: Connection, finding_id: int) -> QaMark:
    return _one(c, QaMark, "SELECT id, finding_id, call_id, verdict, note, by_user AS by, at FROM qa_marks WHERE finding_id = ?", finding_id)


def recording(c: Connection, call_id: str) -> Recording | None:
    """The call's recording (``removed_at`` set once retention removed the file), or None."""
    row = c.execute(
        "SELECT call_id, path, sha256, bytes, duration, sample_rate, finalized_at, recovered, stored_at, removed_at FROM recordings WHERE call_id = ?",
        (call_id,),
    ).fetchone()
    if row is None:
        return None
    return Recording(**{**dict(row), "recovered": bool(row["recovered"])})


def many(c: Connection, read: Callable[[Connection, object], R], sql: str, args: tuple = ()) -> list[R]:
    """``read(c, key)`` for every key the query's first column lists, in order."""
    return [read(c, r[0]) for r in c.execute(sql, args).fetchall()]
