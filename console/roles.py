"""Who may do what: the console's role table, checked on the server for every
browser message (the pages only hide buttons; they decide nothing).

``partner``: their own current call only; may ask for help.
``supervisor``: watches every live call, acknowledges alerts, authorizes
ending a call, takes help requests, works the check-in queue.
``qa``: reads stored calls; on the QA replay page (``/qa``, also open to
supervisors and admins) hears recordings, marks findings, exports evidence.
``admin``: manages users and agents.
"""

from __future__ import annotations

from types import MappingProxyType

from console.auth import ROLES

ALLOWED = MappingProxyType({
    "logout": frozenset(ROLES),
    "call_detail": frozenset({"supervisor", "qa", "partner"}),  # partner: own current call only
    "list_calls": frozenset({"supervisor", "qa"}),
    "ack_alert": frozenset({"supervisor"}),
    "authorize_end": frozenset({"supervisor"}),
    "need_help": frozenset({"partner"}),
    "ack_help": frozenset({"supervisor"}),
    "checkin_done": frozenset({"supervisor"}),
    "list_users": frozenset({"admin"}),
    "add_user": frozenset({"admin"}),
    # QA replay (issue 6): stored calls, recordings, marks, evidence
    "qa_calls": frozenset({"qa", "supervisor", "admin"}),
    "qa_call": frozenset({"qa", "supervisor", "admin"}),
    "qa_mark": frozenset({"qa", "supervisor", "admin"}),
    "qa_export": frozenset({"qa", "supervisor", "admin"}),
})
"""Message type -> roles allowed to send it (after logging in)."""

WATCHES_ALL_CALLS = frozenset({"supervisor"})
"""Roles that receive every live call's events (transcripts, findings, alerts)."""

HOME = MappingProxyType({"partner": "/partner", "supervisor": "/supervisor", "qa": "/supervisor", "admin": "/supervisor"})
"""The page each role lands on after logging in."""


def may(role: str | None, action: str) -> bool:
    return role is not None and role in ALLOWED.get(action, frozenset())
