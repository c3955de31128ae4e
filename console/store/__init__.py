"""The console's store: one SQLite file with calls, alerts, audit log and users,
arranged in rooms.

- ``schema``: the migrations and opening a file (WAL, ``synchronous=FULL``);
- ``accounts``: people, agents and sessions;
- ``calls``: agent events stored once by ``event_id``, and calls read back;
- ``supervision``: alerts, check-ins, help requests, end-call authorizations;
- ``audit``: the audit log every room writes to;
- ``quality``: recordings, retention facts, flagged calls and QA marks;
- ``records`` and ``rows``: the typed records the store hands out, and the
  SELECTs that read them.

:class:`Store` is the one entry: it opens the file and answers every room's
methods. Every method is blocking; the console calls them from its single
``store`` thread (never from the event loop), so one connection serves the
whole console and writes never race each other. The CLI and tests call them
directly.
"""

from __future__ import annotations

from pathlib import Path

from console.store.accounts import Accounts, Session
from console.store.audit import AuditLog
from console.store.calls import CallLog, Recorded
from console.store.quality import Quality
from console.store.records import (
    Account, Alert, AuditEntry, Authorization, Call, CallHistory, CheckIn, Finding, FlagCounts, FlaggedCall, FlaggedCalls, HelpRequest,
    LevelChange, MarkedFinding, Notice, QaMark, Recording, Record, Utterance, json_ready,
)
from console.store.schema import MIGRATIONS, connect
from console.store.supervision import Supervision
from kernel.clock import Clock, utc_now

__all__ = [
    "MIGRATIONS", "Store", "Recorded", "Session", "json_ready", "Record",
    "Account", "Alert", "AuditEntry", "Authorization", "Call", "CallHistory", "CheckIn", "Finding", "FlagCounts", "FlaggedCall",
    "FlaggedCalls", "HelpRequest", "LevelChange", "MarkedFinding", "Notice", "QaMark", "Recording", "Utterance",
]


class Store(Accounts, CallLog, Supervision, Quality, AuditLog):
    """The console's SQLite store, every room on one connection. Open with :meth:`open`; blocking methods."""

    @classmethod
    def open(cls, path: Path, *, clock: Clock = utc_now) -> "Store":
        """Open (creating if needed) and migrate the store at ``path``."""
        path = Path(path)
        return cls(connect(path), path, clock)
