"""The console's store: calls, alerts, audit log and users, arranged in rooms,
in one SQLite file (the default) or a PostgreSQL database (``[console] store``).

- ``schema``: the migrations and opening a store;
- ``connection``: what differs between SQLite and PostgreSQL (placeholders,
  rows, transactions, DDL, errors), and ``postgresql``: the psycopg side;
- ``accounts``: people, agents and sessions;
- ``calls``: agent events stored once by ``event_id``, and calls read back;
- ``supervision``: alerts, check-ins, help requests, end-call authorizations;
- ``audit``: the audit log every room writes to;
- ``quality``: recordings, retention facts, flagged calls and QA marks;
- ``records`` and ``rows``: the typed records the store hands out, and the
  SELECTs that read them.

:class:`Store` is the one entry: it opens the store and answers every room's
methods. The rooms' SQL is written once, for both databases. Every method is
blocking; the console calls them from its single ``store`` thread (never from
the event loop), so one connection serves the whole console. Writes from
several consoles on one PostgreSQL database are serialized by the database
(``console/store/postgresql.py``). The CLI and tests call them directly.
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
from console.store.connection import StoreConflict, StoreUnavailable, is_postgresql, shown
from console.store.schema import MIGRATIONS, connect
from console.store.supervision import Supervision
from kernel.clock import Clock, utc_now

__all__ = [
    "MIGRATIONS", "Store", "StoreConflict", "StoreUnavailable", "is_postgresql", "shown", "Recorded", "Session", "json_ready", "Record",
    "Account", "Alert", "AuditEntry", "Authorization", "Call", "CallHistory", "CheckIn", "Finding", "FlagCounts", "FlaggedCall",
    "FlaggedCalls", "HelpRequest", "LevelChange", "MarkedFinding", "Notice", "QaMark", "Recording", "Utterance",
]


class Store(Accounts, CallLog, Supervision, Quality, AuditLog):
    """The console's store, every room on one connection. Open with :meth:`open`; blocking methods."""

    @classmethod
    def open(cls, where: Path | str, *, clock: Clock = utc_now) -> "Store":
        """Open (creating a SQLite file if needed) and migrate the store at
        ``where``: a ``postgresql://`` URL, else a SQLite file's path."""
        return cls(connect(where), clock)
