"""The audit log: who did what, when, to which call; append-only.

Every room writes its entries with :func:`write_audit` inside its own
transaction, so an action and its audit entry are stored together or not at
all. Wall time comes from the store's clock.
"""

from __future__ import annotations

from console.store.records import AuditEntry
from console.store.connection import Connection
from console.store.schema import Room, retried

DETAIL_LIMIT = 2000
"""Characters of ``detail`` kept per entry."""


def write_audit(c: Connection, who: str, action: str, call_id: str | None, detail: str, now: str) -> int:
    """Append one entry inside the caller's transaction; returns its id."""
    return c.execute(
        "INSERT INTO audit_log (at, who, action, call_id, detail) VALUES (?, ?, ?, ?, ?) RETURNING id",
        (now, who, action, call_id, detail[:DETAIL_LIMIT]),
    ).fetchone()[0]


class AuditLog(Room):
    """Writing and reading the audit log on its own."""

    @retried
    def audit(self, who: str, action: str, call_id: str | None = None, detail: str = "") -> int:
        """Append one entry (wall time from the store's clock); returns its id."""
        with self._tx() as c:
            return write_audit(c, who, action, call_id, detail, self._now())

    def audit_entries(self, *, action: str | None = None, call_id: str | None = None, limit: int = 1000) -> list[AuditEntry]:
        """Entries oldest first, optionally only one ``action`` or one call's."""
        sql, args = "SELECT id, at, who, action, call_id, detail FROM audit_log WHERE TRUE", []
        if action is not None:
            sql += " AND action = ?"
            args.append(action)
        if call_id is not None:
            sql += " AND call_id = ?"
            args.append(call_id)
        sql += " ORDER BY id LIMIT ?"
        args.append(limit)
        return [AuditEntry(**r) for r in self._conn.execute(sql, args)]
