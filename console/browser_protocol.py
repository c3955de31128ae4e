"""The browser <-> console messages, typed like ``kernel/protocol.py``.

Same envelope as the agent protocol: one JSON object per websocket message,
with ``"v"`` (:data:`VERSION`) and ``"type"``. Messages from a browser are
frozen dataclasses validated field by field in :func:`decode` (a wrong message
is a :class:`~kernel.protocol.ProtocolError`, answered with an error and never
acted on). Every browser request may carry ``ref`` (a string the page picks),
echoed in the ``ok`` or ``error`` that answers it.

Messages to browsers are frozen dataclasses too; the records they carry
(a call, an alert, a finding...) are the store's typed records
(``console/store/records.py``, ``console/replay.py``), turned into JSON
objects here, in :func:`encode`, and nowhere else; their fields are listed
in ``docs/console.md``. Times: ``start``/``end``/``at`` are
seconds of audio time from the start of the call; ``*_at`` fields ending in
``_at`` that hold text are ISO 8601 UTC wall time.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, ClassVar

from console.replay import QaReplay
from console.store.records import (
    Account, Alert, Authorization, Call, CallHistory, CheckIn, Finding, FlagCounts, FlaggedCall, HelpRequest, LevelChange, Notice, Utterance,
    json_ready,
)
from console.store.records import QaMark as StoredQaMark  # the name QaMark is the qa_mark request below
from kernel.protocol import ProtocolError, build, message_class, parse_object

VERSION = 1
MAX_TEXT = 2000
"""Longest accepted free text (reasons, notes), in characters."""

# --------------------------------------------------------------------------- browser -> console


@dataclass(frozen=True)
class Login:
    """Log in with a user name and password; answered by ``session`` or ``error``."""

    TYPE: ClassVar[str] = "login"
    user: str
    password: str
    ref: str = ""


@dataclass(frozen=True)
class Resume:
    """Take up a session again (after a page load) with its ``token``."""

    TYPE: ClassVar[str] = "resume"
    token: str
    ref: str = ""


@dataclass(frozen=True)
class Logout:
    """End this session (the token stops working everywhere)."""

    TYPE: ClassVar[str] = "logout"
    ref: str = ""


@dataclass(frozen=True)
class CallDetailRequest:
    """Everything stored about one call (supervisor, qa; a partner only for their current call)."""

    TYPE: ClassVar[str] = "call_detail"
    call_id: str
    ref: str = ""


@dataclass(frozen=True)
class ListCalls:
    """The latest ``limit`` calls, newest first (supervisor, qa)."""

    TYPE: ClassVar[str] = "list_calls"
    limit: int = 50
    ref: str = ""


@dataclass(frozen=True)
class AckAlert:
    """Acknowledge an alert (supervisor)."""

    TYPE: ClassVar[str] = "ack_alert"
    alert_id: int
    ref: str = ""


@dataclass(frozen=True)
class AuthorizeEnd:
    """Authorize the partner to end a live call (supervisor); ``reason`` is required."""

    TYPE: ClassVar[str] = "authorize_end"
    call_id: str
    reason: str
    ref: str = ""


@dataclass(frozen=True)
class NeedHelp:
    """A partner asks supervisors for help with their current call."""

    TYPE: ClassVar[str] = "need_help"
    note: str = ""
    ref: str = ""


@dataclass(frozen=True)
class AckHelp:
    """A supervisor takes a help request."""

    TYPE: ClassVar[str] = "ack_help"
    help_id: int
    ref: str = ""


@dataclass(frozen=True)
class CheckinDone:
    """A supervisor has checked in with the partner after a grave call."""

    TYPE: ClassVar[str] = "checkin_done"
    checkin_id: int
    note: str = ""
    ref: str = ""


@dataclass(frozen=True)
class ListUsers:
    """People and agents known to the console (admin)."""

    TYPE: ClassVar[str] = "list_users"
    ref: str = ""


@dataclass(frozen=True)
class AddUser:
    """Create a user or an agent (admin); the answer carries its secret once."""

    TYPE: ClassVar[str] = "add_user"
    name: str
    role: str
    ref: str = ""


@dataclass(frozen=True)
class QaCalls:
    """Flagged calls for the QA page (qa, supervisor, admin), newest first.
    ``since``/``until``: ``YYYY-MM-DD`` (UTC, inclusive) or empty; ``category``:
    a finding category; ``level``: the call's peak level; ``partner``: a user
    name; empty means any. Answered by ``qa_calls``."""

    TYPE: ClassVar[str] = "qa_calls"
    since: str = ""
    until: str = ""
    category: str = ""
    level: str = ""
    partner: str = ""
    limit: int = 200
    ref: str = ""


@dataclass(frozen=True)
class QaCall:
    """One stored call for the QA player (qa, supervisor, admin); answered by ``qa_call``."""

    TYPE: ClassVar[str] = "qa_call"
    call_id: str
    ref: str = ""


@dataclass(frozen=True)
class QaMark:
    """QA's verdict on a finding: ``verdict`` is ``confirmed`` or ``false_alarm``;
    ``note`` optional. Answered by ``qa_marked``; recorded in the audit log."""

    TYPE: ClassVar[str] = "qa_mark"
    finding_id: int
    verdict: str
    note: str = ""
    ref: str = ""


@dataclass(frozen=True)
class QaExport:
    """Ask for a short-lived link to download the call's evidence zip; answered by ``qa_link``."""

    TYPE: ClassVar[str] = "qa_export"
    call_id: str
    ref: str = ""


REQUESTS = (Login, Resume, Logout, CallDetailRequest, ListCalls, AckAlert, AuthorizeEnd, NeedHelp, AckHelp, CheckinDone, ListUsers, AddUser,
            QaCalls, QaCall, QaMark, QaExport)
_BY_TYPE: dict[str, type] = {cls.TYPE: cls for cls in REQUESTS}
BrowserRequest = (Login | Resume | Logout | CallDetailRequest | ListCalls | AckAlert | AuthorizeEnd | NeedHelp | AckHelp | CheckinDone | ListUsers
                  | AddUser | QaCalls | QaCall | QaMark | QaExport)
"""Any one of :data:`REQUESTS`."""

# --------------------------------------------------------------------------- console -> browser


@dataclass(frozen=True)
class SessionOpened:
    """Logged in. ``token``: keep it (sessionStorage) to ``resume``; ``expires_at``: ISO 8601 UTC."""

    TYPE: ClassVar[str] = "session"
    user: str
    role: str
    token: str
    expires_at: str
    ref: str = ""


@dataclass(frozen=True)
class BrowserError:
    """A request was refused or malformed; ``code`` is stable snake_case."""

    TYPE: ClassVar[str] = "error"
    code: str
    message: str
    ref: str = ""


@dataclass(frozen=True)
class Done:
    """A request was carried out (``of``: its type). Its effects arrive as events."""

    TYPE: ClassVar[str] = "ok"
    of: str
    ref: str = ""


@dataclass(frozen=True)
class Snapshot:
    """The state a freshly authenticated page starts from (per role, see docs/console.md).

    ``calls``: call records (supervisor: live calls; partner: their current
    call or none); ``alerts``, ``checkins``, ``help``: supervisor feeds;
    ``levels``/``authorizations``: for a partner, their current call's
    warnings and authorizations."""

    TYPE: ClassVar[str] = "snapshot"
    user: str
    role: str
    calls: tuple[Call, ...] = ()
    alerts: tuple[Alert, ...] = ()
    checkins: tuple[CheckIn, ...] = ()
    help: tuple[HelpRequest, ...] = ()
    levels: tuple[LevelChange, ...] = ()
    authorizations: tuple[Authorization, ...] = ()


@dataclass(frozen=True)
class CallShown:
    """A call started, changed level, or ended: its whole record."""

    TYPE: ClassVar[str] = "call"
    call: Call


@dataclass(frozen=True)
class PartialShown:
    """A live hypothesis for a call (never stored). ``start``: seconds of audio."""

    TYPE: ClassVar[str] = "partial"
    call_id: str
    speaker: str
    start: float
    text: str


@dataclass(frozen=True)
class LoadShown:
    """What the floor did not see live because of load, counted since start
    (:mod:`console.load`): ``partials_shed``, partials this console did not queue
    for a browser that was behind; ``browsers_dropped``, browsers disconnected
    for being too slow (each reconnected with a fresh snapshot);
    ``agents``, per agent, ``{"agent", "partials_dropped"}`` from its
    heartbeats. Final lines, findings and alerts are never shed."""

    TYPE: ClassVar[str] = "load"
    partials_shed: int
    browsers_dropped: int
    agents: tuple[dict, ...] = ()


@dataclass(frozen=True)
class UtteranceShown:
    TYPE: ClassVar[str] = "utterance"
    utterance: Utterance


@dataclass(frozen=True)
class FindingShown:
    TYPE: ClassVar[str] = "finding"
    finding: Finding


@dataclass(frozen=True)
class LevelShown:
    """The call's level moved; ``level`` holds ``suggestion``, the sentence to say."""

    TYPE: ClassVar[str] = "level"
    level: LevelChange


@dataclass(frozen=True)
class AlertShown:
    """A new alert, or an alert acknowledged (same ``id``, ``acknowledged_by`` set)."""

    TYPE: ClassVar[str] = "alert"
    alert: Alert


@dataclass(frozen=True)
class AuthorizationShown:
    """A supervisor authorized ending a call."""

    TYPE: ClassVar[str] = "authorization"
    authorization: Authorization


@dataclass(frozen=True)
class HelpShown:
    """A partner asked for help, or a supervisor took the request."""

    TYPE: ClassVar[str] = "help"
    help: HelpRequest


@dataclass(frozen=True)
class CheckinShown:
    """A partner was queued for a check-in, or the check-in was done."""

    TYPE: ClassVar[str] = "checkin"
    checkin: CheckIn


@dataclass(frozen=True)
class NoticeShown:
    """Something an agent reported that is not a finding (dropped audio, a call error)."""

    TYPE: ClassVar[str] = "notice"
    notice: Notice


@dataclass(frozen=True)
class CallDetail:
    """Answer to ``call_detail``: ``detail`` has call, utterances, findings, levels,
    alerts, authorizations, help, checkins, notices (the latest 200)."""

    TYPE: ClassVar[str] = "call_detail"
    detail: CallHistory
    ref: str = ""


@dataclass(frozen=True)
class CallList:
    TYPE: ClassVar[str] = "calls"
    calls: tuple[Call, ...]
    ref: str = ""


@dataclass(frozen=True)
class UserList:
    TYPE: ClassVar[str] = "users"
    users: tuple[Account, ...]
    ref: str = ""


@dataclass(frozen=True)
class UserAdded:
    """A new user's password (or agent's token), shown once."""

    TYPE: ClassVar[str] = "user_added"
    name: str
    role: str
    secret: str
    ref: str = ""


@dataclass(frozen=True)
class QaCallList:
    """Answer to ``qa_calls``: ``calls`` (call records plus ``findings`` count,
    ``categories``, ``marked`` count), ``counts`` (``calls``, ``findings``,
    ``by_category``, ``by_level`` over every match), and the filter choices
    ``partners`` and ``categories``."""

    TYPE: ClassVar[str] = "qa_calls"
    calls: tuple[FlaggedCall, ...]
    counts: FlagCounts
    partners: tuple[str, ...]
    categories: tuple[str, ...]
    ref: str = ""


@dataclass(frozen=True)
class QaCallShown:
    """Answer to ``qa_call``: ``detail`` has ``call``, ``utterances``, ``findings``
    (each with ``mark`` or null), ``levels``, ``authorizations``, ``recording``
    (``url`` signed for this user, ``duration`` s, ``bytes``, ``sha256``,
    ``finalized_at``; null when none is kept) and ``loudness`` (``step`` s,
    ``customer``/``partner`` dBFS lists; null without a recording)."""

    TYPE: ClassVar[str] = "qa_call"
    detail: QaReplay
    ref: str = ""


@dataclass(frozen=True)
class QaMarked:
    """A QA mark was stored: ``mark`` (``finding_id``, ``call_id``, ``verdict``, ``note``, ``by``, ``at``)."""

    TYPE: ClassVar[str] = "qa_marked"
    mark: StoredQaMark
    ref: str = ""


@dataclass(frozen=True)
class QaLink:
    """Answer to ``qa_export``: ``url`` downloads the evidence zip of ``call_id`` for a few minutes."""

    TYPE: ClassVar[str] = "qa_link"
    call_id: str
    url: str
    ref: str = ""


def encode(message: Any) -> str:
    """The JSON text of a console -> browser message (records become JSON objects here)."""
    body = {"v": VERSION, "type": message.TYPE}
    for f in dataclasses.fields(message):
        body[f.name] = json_ready(getattr(message, f.name))
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def decode(text: str | bytes) -> BrowserRequest:
    """Parse and validate one browser request.

    Raises :class:`ProtocolError` (``bad_message``, ``bad_version``) for
    anything that is not exactly one of :data:`REQUESTS`.
    """
    if isinstance(text, bytes):
        raise ProtocolError("browser messages are text, not binary")
    raw = parse_object(text)
    return build(message_class(raw, _BY_TYPE, VERSION), raw, max_text=MAX_TEXT)


def ref_of(text: str | bytes) -> str:
    """The ``ref`` of a message that failed validation, if one can be read (for
    the error): never from a message the edge refuses to parse (too deep, a
    lone surrogate...), which could not be answered with it."""
    try:
        raw = parse_object(text)
    except ProtocolError:
        return ""
    ref = raw.get("ref", "")
    return ref[:100] if isinstance(ref, str) else ""
