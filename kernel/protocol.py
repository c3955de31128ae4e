"""The agent <-> console wire protocol: versioned JSON messages, typed here.

This is the one module that ``agent`` and ``console`` share. Every message is
a frozen dataclass; raw dicts exist only at the websocket edge, in
:func:`encode` and :func:`decode`, and :func:`decode` validates every field
(a wrong message is a :class:`ProtocolError`, never a crash). The human
description, with every field and its unit, is ``docs/protocol.md``; keep the
two in step.

Envelope: every message is one JSON object with ``"v"`` (protocol version,
:data:`VERSION`) and ``"type"`` (the message's ``TYPE``), plus its fields.

Delivery: messages the agent must not lose (:data:`DURABLE`) carry ``seq``, a
number the agent assigns per link, rising by one, and ``event_id``, a string
unique forever (the console deduplicates on it, so a resend after a reconnect
is never shown twice). The console answers with :class:`Ack` (cumulative:
everything up to ``seq`` is stored). Partials are ephemeral: no ``seq``, never
resent.

Times: ``start``, ``end``, ``at`` are seconds of audio time from the start of
the call. Wall-clock instants (``started_at``, ``authorized_at``) are ISO 8601
UTC strings taken from a clock passed in by the caller.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from dataclasses import dataclass
from typing import Any, ClassVar

from kernel.errors import CallshieldError

VERSION = 1

class ProtocolError(CallshieldError):
    """A message that is not valid JSON, not this protocol, or has wrong fields."""

    code = "bad_message"


# --------------------------------------------------------------------------- agent -> console


@dataclass(frozen=True)
class AgentHello:
    """First message of an agent link: who it is and its secret token.

    Fields: ``agent_id`` (str, stable name of the agent), ``token`` (str, the
    agent's secret, issued by ``callshield users add NAME --role agent``),
    ``site`` (str, free text, e.g. a building or seat range).
    """

    TYPE: ClassVar[str] = "agent_hello"
    agent_id: str
    token: str
    site: str = ""


@dataclass(frozen=True)
class CallStarted:
    """A call began. ``partner``: the partner's user name; ``seat``: the desk or
    extension; ``source``: ``audiosocket``, ``audiohook``, ``twilio``, ``device``, ``wav`` or ``transcript``;
    ``started_at``: ISO 8601 UTC wall time; ``sample_rate``: Hz (0 for a transcript)."""

    TYPE: ClassVar[str] = "call_started"
    seq: int
    event_id: str
    call_id: str
    partner: str
    seat: str
    source: str
    started_at: str
    sample_rate: int = 0


@dataclass(frozen=True)
class PartialTranscript:
    """A live hypothesis (ephemeral: no seq, never stored, never resent).
    ``start``: seconds of audio time."""

    TYPE: ClassVar[str] = "partial"
    call_id: str
    speaker: str
    start: float
    text: str


@dataclass(frozen=True)
class Heartbeat:
    """The agent is alive and monitoring ``calls`` (list of call ids, maybe
    empty), having dropped ``partials_dropped`` partials so far. Ephemeral, sent
    every :data:`HEARTBEAT_S` seconds while linked; the console closes as lost
    the calls it stops hearing about."""

    TYPE: ClassVar[str] = "heartbeat"
    calls: tuple = ()
    partials_dropped: int = 0
    """Partial transcripts the agent dropped since it started (link down or its
    queue full): shown to supervisors, so a screen missing live text says why."""


HEARTBEAT_S = 10.0
"""Seconds between two heartbeats of a linked agent (wall time)."""


@dataclass(frozen=True)
class UtteranceFinal:
    """A final utterance. ``start``/``end``: seconds of audio time; ``words``:
    list of ``{"word": str, "start": s, "end": s, "conf": 0..1}``."""

    TYPE: ClassVar[str] = "utterance"
    seq: int
    event_id: str
    call_id: str
    speaker: str
    start: float
    end: float
    text: str
    words: tuple = ()


@dataclass(frozen=True)
class FindingRaised:
    """A detector finding on the customer's words or voice.

    ``category``/``subtype``/``severity``/``score`` (0..1)/``rule``/``evidence``
    as in ``callshield detect``; ``span``: ``[first, last)`` character offsets
    into ``text`` or null; ``text``: the utterance it was found in (empty for
    acoustic findings); ``start``/``end``: seconds of audio time of that
    utterance or loud stretch; ``why``: whom the words are aimed at and the
    words that decided it (threats, personal attacks, sexual remarks,
    privacy), "" otherwise."""

    TYPE: ClassVar[str] = "finding"
    seq: int
    event_id: str
    call_id: str
    category: str
    severity: str
    score: float
    rule: str
    evidence: str
    start: float
    end: float
    text: str = ""
    subtype: str | None = None
    span: tuple | None = None
    why: str = ""


@dataclass(frozen=True)
class LevelChanged:
    """The call's escalation level moved. ``level``/``previous``: ``none``,
    ``caution``, ``alert``, ``end_call_recommended``; ``reason``: why, in words;
    ``suggestion``: a sentence the partner may say (may be empty); ``at``:
    seconds of audio time."""

    TYPE: ClassVar[str] = "level"
    seq: int
    event_id: str
    call_id: str
    level: str
    previous: str
    reason: str
    at: float
    suggestion: str = ""
    category: str | None = None


@dataclass(frozen=True)
class CallEnded:
    """A call ended. ``at``: seconds of audio time (the call's length);
    ``reason``: ``hangup``, ``end_of_file``, ``authorized_end``, ``error``, ``shutdown``."""

    TYPE: ClassVar[str] = "call_ended"
    seq: int
    event_id: str
    call_id: str
    at: float
    reason: str


@dataclass(frozen=True)
class AgentNotice:
    """Something the console should show but that is not a finding: a call
    error, dropped audio (``dropped``: count of frames dropped from a full
    queue), a closing message played. ``code`` is a stable snake_case name."""

    TYPE: ClassVar[str] = "notice"
    seq: int
    event_id: str
    code: str
    message: str
    call_id: str | None = None
    dropped: int = 0


@dataclass(frozen=True)
class EndCallWebhookOutcome:
    """What became of the end-call webhook of an authorization, for a call the
    agent cannot hang up itself (``docs/end-call-webhook.md``).

    ``authorization_id``: the authorization it carries; ``outcome``:
    ``delivered`` (the receiver answered 2xx), ``retrying`` (an attempt failed
    and another follows), ``failed`` (no more attempts: a 4xx, or the last
    attempt failed, or it was dropped), ``not_configured`` (the call has no
    control of its own and no webhook is configured: the partner ends the
    call); ``attempt``: attempts made so far (0 for ``not_configured``);
    ``max_attempts``: attempts allowed; ``status``: the HTTP status of the
    attempt (0: no answer: refused, timed out, not HTTP); ``error``: what went
    wrong, for people ("" when delivered); ``retry_in``: seconds of wall time
    before the next attempt (``retrying`` only); ``webhook_id``: the webhook's
    ``event_id``, the receiver's idempotency key ("" when none was sent)."""

    TYPE: ClassVar[str] = "end_call_webhook"
    seq: int
    event_id: str
    call_id: str
    authorization_id: str
    outcome: str
    attempt: int
    max_attempts: int
    status: int = 0
    error: str = ""
    retry_in: float = 0.0
    webhook_id: str = ""


WEBHOOK_OUTCOMES = ("delivered", "retrying", "failed", "not_configured")
"""The values of :attr:`EndCallWebhookOutcome.outcome`."""


# --------------------------------------------------------------------------- console -> agent


@dataclass(frozen=True)
class Welcome:
    """The console accepted the agent. ``last_seq``: the highest ``seq`` of this
    agent it has stored (the agent resends everything after it)."""

    TYPE: ClassVar[str] = "welcome"
    agent_id: str
    last_seq: int


@dataclass(frozen=True)
class Ack:
    """Everything up to and including ``seq`` is stored."""

    TYPE: ClassVar[str] = "ack"
    seq: int


@dataclass(frozen=True)
class EndCallAuthorized:
    """A supervisor authorized ending the call. ``by``: the supervisor's user
    name; ``reason``: their required reason; ``authorized_at``: ISO 8601 UTC;
    ``authorization_id``: the audit log's id for it."""

    TYPE: ClassVar[str] = "end_call_authorized"
    call_id: str
    authorization_id: str
    by: str
    reason: str
    authorized_at: str


@dataclass(frozen=True)
class Refused:
    """The console refused a message (bad form, bad token, not allowed).
    ``code``: stable snake_case; ``message``: for humans; ``seq``: the durable
    event refused (it is not stored and not acknowledged), null otherwise."""

    TYPE: ClassVar[str] = "error"
    code: str
    message: str
    seq: int | None = None


CALL_ID_TAKEN = "call_id_taken"
"""The ``Refused.code`` of a ``call_started`` for a call id its agent already
started under another event id (a new call under a used id: the PBX sent it
again after the agent restarted), and of that call's later events on the same
link. The agent renames the call (``<id>.2``...) and sends its events again;
the stored call is unchanged."""

AGENT_MESSAGES = (AgentHello, CallStarted, PartialTranscript, Heartbeat, UtteranceFinal, FindingRaised, LevelChanged, CallEnded, AgentNotice,
                  EndCallWebhookOutcome)
CONSOLE_MESSAGES = (Welcome, Ack, EndCallAuthorized, Refused)
DURABLE = (CallStarted, UtteranceFinal, FindingRaised, LevelChanged, CallEnded, AgentNotice, EndCallWebhookOutcome)
"""Messages that carry ``seq`` and ``event_id`` and are resent until acknowledged."""

Message = typing.Union[AgentHello, CallStarted, PartialTranscript, Heartbeat, UtteranceFinal, FindingRaised, LevelChanged, CallEnded, AgentNotice,
                       EndCallWebhookOutcome, Welcome, Ack, EndCallAuthorized, Refused]

_BY_TYPE: dict[str, type] = {cls.TYPE: cls for cls in AGENT_MESSAGES + CONSOLE_MESSAGES}
MAX_MESSAGE_BYTES = 1 << 20


def encode(message: Any) -> str:
    """The JSON text of ``message`` (a dataclass of this module)."""
    if type(message) not in _BY_TYPE.values():
        raise TypeError(f"not a protocol message: {type(message).__name__}")
    body = {"v": VERSION, "type": message.TYPE}
    body.update(dataclasses.asdict(message))
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def decode(text: str | bytes, *, allowed: tuple[type, ...] | None = None) -> Message:
    """Parse and validate one message; ``allowed`` limits which types are accepted.

    Raises :class:`ProtocolError` (code ``bad_message``, ``bad_version`` or
    ``unexpected_message``) for anything that is not exactly a valid message.
    """
    return from_dict(parse_object(text), allowed=allowed)


def from_dict(raw: Any, *, allowed: tuple[type, ...] | None = None) -> Message:
    """Validate an already parsed JSON object (see :func:`decode`)."""
    if not isinstance(raw, dict):
        raise ProtocolError("message must be a JSON object")
    cls = message_class(raw, _BY_TYPE, VERSION)
    if allowed is not None and cls not in allowed:
        raise ProtocolError(f"message type {cls.TYPE!r} is not accepted here", code="unexpected_message")
    return build(cls, raw)


# --------------------------------------------------------------------------- validation, shared with console/browser_protocol.py


def parse_object(text: str | bytes) -> dict:
    """One JSON object from a websocket frame, at most :data:`MAX_MESSAGE_BYTES`.

    Everything JSON allows but the protocol cannot carry is a
    :class:`ProtocolError`, never another exception: nesting deeper than
    :data:`MAX_DEPTH`, ``NaN`` and ``Infinity`` (and numbers that overflow to
    them), integers outside 64 bits, and lone UTF-16 surrogates (``"\\ud800"``),
    which no UTF-8 socket or database could pass on.
    """
    if len(text) > MAX_MESSAGE_BYTES:
        raise ProtocolError("message too large")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError("message is not UTF-8") from exc
    if text.count("[") + text.count("{") > MAX_DEPTH and _too_deep(text):
        raise ProtocolError(f"message nests deeper than {MAX_DEPTH} levels")
    try:
        raw = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float, parse_int=_bounded_int)
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"message is not JSON: {exc.msg}") from exc
    except RecursionError as exc:  # pragma: no cover  (_too_deep stops it first)
        raise ProtocolError("message nests too deep") from exc
    if not isinstance(raw, dict):
        raise ProtocolError("message must be a JSON object")
    _check_text(raw)
    return raw


MAX_DEPTH = 16
"""Deepest nesting of arrays and objects a message may have (the deepest real one has 3)."""
MAX_INT = (1 << 63) - 1
"""Largest integer a message may carry (what a 64-bit store column holds)."""


def _too_deep(text: str) -> bool:
    """Whether brackets outside strings nest deeper than :data:`MAX_DEPTH` (a linear scan)."""
    depth = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif ch in "]}":
            depth -= 1
    return False


def _no_constant(name: str) -> float:
    raise ProtocolError(f"message holds {name}, which is not a number")


def _finite_float(text: str) -> float:
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise ProtocolError(f"number {text[:20]}... is too large" if len(text) > 20 else f"number {text} is too large")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > 19 or abs(value := int(text)) > MAX_INT:
        raise ProtocolError("integer out of range (64 bits)")
    return value


def _check_text(raw: Any) -> None:
    """Every string (keys too) of a parsed message is valid Unicode: no lone surrogates."""
    pending = [raw]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ProtocolError("message holds a lone UTF-16 surrogate, which is not text") from exc


def message_class(raw: dict, by_type: typing.Mapping[str, type], version: int) -> type:
    """The message class ``raw`` claims to be, after checking its protocol version."""
    if raw.get("v") != version:
        raise ProtocolError(f"unsupported protocol version {raw.get('v')!r} (this side speaks {version})", code="bad_version")
    kind = raw.get("type")
    cls = by_type.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ProtocolError(f"unknown message type {kind!r}" if isinstance(kind, str) else "message has no type")
    return cls


@dataclass(frozen=True)
class _Shape:
    """A message class's fields as :func:`build` checks them: ``(name, resolved
    annotation, required)``, and the keys a message of it may carry."""

    fields: tuple[tuple[str, Any, bool], ...]
    names: frozenset[str]


@functools.cache
def _shape(cls: type) -> _Shape:
    """Resolved once per class: ``typing.get_type_hints`` evaluates every string
    annotation anew, and every message from an agent or a browser is built
    (it was a tenth of a busy console's CPU)."""
    hints = typing.get_type_hints(cls)
    fields = tuple((f.name, hints[f.name], f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
                   for f in dataclasses.fields(cls))
    return _Shape(fields, frozenset(name for name, _, _ in fields) | {"v", "type"})


def build(cls: type, raw: dict, *, max_text: int | None = None) -> Any:
    """An instance of the message dataclass ``cls`` from ``raw``, every field checked
    against its annotation; no missing, extra or wrongly typed field is let through.
    ``max_text`` caps the length of string fields."""
    shape = _shape(cls)
    values: dict[str, Any] = {}
    for name, hint, required in shape.fields:
        if name in raw:
            values[name] = _check(name, raw[name], hint, max_text)
        elif required:
            raise ProtocolError(f"{cls.TYPE}: missing field {name!r}")
    extra = raw.keys() - shape.names
    if extra:
        raise ProtocolError(f"{cls.TYPE}: unknown field(s) {', '.join(sorted(extra))}")
    return cls(**values)


def _check(name: str, value: Any, hint: Any, max_text: int | None = None) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _check(name, value, option, max_text)
            except ProtocolError:
                pass
        raise ProtocolError(f"field {name!r} has the wrong type")
    if hint is tuple:
        if not isinstance(value, list):
            raise ProtocolError(f"field {name!r} must be a list")
        return tuple(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value in (float("inf"), float("-inf")):
            raise ProtocolError(f"field {name!r} must be a finite number")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ProtocolError(f"field {name!r} must be an integer")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ProtocolError(f"field {name!r} must be a string")
        if max_text is not None and len(value) > max_text:
            raise ProtocolError(f"field {name!r} is longer than {max_text} characters")
        return value
    if hint is type(None):
        if value is not None:
            raise ProtocolError(f"field {name!r} must be null")
        return None
    raise ProtocolError(f"field {name!r} has an unsupported type")  # pragma: no cover


def is_durable(message: Any) -> bool:
    return isinstance(message, DURABLE)
