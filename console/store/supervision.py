"""Supervision: alerts, check-ins, help requests and end-call authorizations.

What supervisors and partners do about a call, each action stored with its
audit entry in one transaction. Alerts and check-ins are raised by the calls
room when an event asks for one (the decision is the ladder's,
``kernel.levels``); this room only keeps and answers them.
"""

from __future__ import annotations

import json
import secrets

from console.errors import BadRequest
from console.store import rows
from console.store.audit import write_audit
from console.store.records import Alert, Authorization, CheckIn, HelpRequest
from console.store.connection import Connection
from console.store.schema import Room, retried


def raise_alert(c: Connection, call_id: str, change_id: int, level: str, reason: str, at: float, now: str) -> Alert:
    """Store the alert a level change raised (inside the event's transaction)."""
    row = c.execute(
        f"INSERT INTO alerts (call_id, level_change, level, reason, at, raised_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING {rows.ALERT}",
        (call_id, change_id, level, reason, at, now),
    ).fetchone()
    call = c.execute("SELECT partner, seat FROM calls WHERE id = ?", (call_id,)).fetchone()
    return rows.alert_of(row, call["partner"], call["seat"])


def queue_checkin(c: Connection, call_id: str, reason: str, now: str) -> CheckIn | None:
    """Queue the call's partner for a check-in; None when the call already has one."""
    partner = c.execute("SELECT partner FROM calls WHERE id = ?", (call_id,)).fetchone()[0]
    made = c.execute(
        f"INSERT INTO checkins (call_id, partner, reason, created_at) VALUES (?, ?, ?, ?) ON CONFLICT (call_id) DO NOTHING RETURNING {rows.CHECKIN}",
        (call_id, partner, reason, now),
    ).fetchone()
    return rows.checkin_of(made) if made else None


class Supervision(Room):
    """The supervisors' feeds and the actions on them."""

    def open_alerts(self, limit: int = 200) -> list[Alert]:
        """Alerts not yet acknowledged, plus the latest acknowledged ones, newest first."""
        return rows.many(self._conn, rows.alert, "SELECT id FROM alerts ORDER BY (acknowledged_at IS NULL) DESC, id DESC LIMIT ?", (limit,))

    def open_checkins(self) -> list[CheckIn]:
        return rows.many(self._conn, rows.checkin, "SELECT id FROM checkins WHERE done_at IS NULL ORDER BY id")

    def open_help(self) -> list[HelpRequest]:
        return rows.many(self._conn, rows.help_request, "SELECT id FROM help_requests WHERE acknowledged_at IS NULL ORDER BY id")

    def authorizations(self, call_id: str) -> list[Authorization]:
        return rows.many(self._conn, rows.authorization, rows.AUTHORIZATIONS_OF_CALL, (call_id,))

    def pending_authorizations(self, agent: str) -> list[Authorization]:
        """Authorizations for this agent's calls that are still live (to (re)send
        after the agent reconnects; the agent dedupes on the id)."""
        return rows.many(
            self._conn, rows.authorization,
            "SELECT z.id FROM authorizations z JOIN calls c ON c.id = z.call_id WHERE c.agent = ? AND c.ended_at IS NULL ORDER BY z.authorized_at",
            (agent,),
        )

    @retried
    def acknowledge_alert(self, alert_id: int, by: str) -> tuple[Alert, bool]:
        """Mark an alert acknowledged; returns ``(alert, changed)`` (False if it already was)."""
        with self._tx() as c:
            row = c.execute("SELECT acknowledged_at, call_id FROM alerts WHERE id = ?", (alert_id,)).fetchone()
            if row is None:
                raise BadRequest(f"no alert {alert_id}", code="unknown_alert")
            if row["acknowledged_at"] is not None:
                return rows.alert(c, alert_id), False
            now = self._now()
            c.execute("UPDATE alerts SET acknowledged_by = ?, acknowledged_at = ? WHERE id = ?", (by, now, alert_id))
            write_audit(c, by, "ack_alert", row["call_id"], f"alert {alert_id}", now)
            return rows.alert(c, alert_id), True

    @retried
    def authorize_end(self, call_id: str, by: str, reason: str) -> tuple[Authorization, str]:
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
            write_audit(c, by, "authorize_end", call_id, json.dumps({"authorization_id": auth_id, "reason": reason}, ensure_ascii=False), now)
            return rows.authorization(c, auth_id), row["agent"]

    @retried
    def request_help(self, partner: str, call_id: str | None, note: str) -> HelpRequest:
        with self._tx() as c:
            now = self._now()
            help_id = c.execute(
                "INSERT INTO help_requests (call_id, partner, note, created_at) VALUES (?, ?, ?, ?) RETURNING id", (call_id, partner, note, now)
            ).fetchone()[0]
            write_audit(c, partner, "need_help", call_id, note, now)
            return rows.help_request(c, help_id)

    @retried
    def acknowledge_help(self, help_id: int, by: str) -> HelpRequest:
        with self._tx() as c:
            row = c.execute("SELECT call_id FROM help_requests WHERE id = ?", (help_id,)).fetchone()
            if row is None:
                raise BadRequest(f"no help request {help_id}", code="unknown_help")
            now = self._now()
            c.execute("UPDATE help_requests SET acknowledged_by = coalesce(acknowledged_by, ?), acknowledged_at = coalesce(acknowledged_at, ?) WHERE id = ?", (by, now, help_id))
            write_audit(c, by, "ack_help", row["call_id"], f"help {help_id}", now)
            return rows.help_request(c, help_id)

    @retried
    def checkin_done(self, checkin_id: int, by: str, note: str = "") -> CheckIn:
        with self._tx() as c:
            row = c.execute("SELECT call_id FROM checkins WHERE id = ?", (checkin_id,)).fetchone()
            if row is None:
                raise BadRequest(f"no check-in {checkin_id}", code="unknown_checkin")
            now = self._now()
            c.execute("UPDATE checkins SET done_by = coalesce(done_by, ?), done_at = coalesce(done_at, ?), note = ? WHERE id = ?", (by, now, note, checkin_id))
            write_audit(c, by, "checkin_done", row["call_id"], note, now)
            return rows.checkin(c, checkin_id)
