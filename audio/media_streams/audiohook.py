"""Genesys Cloud AudioHook, the server side, sans I/O.

The protocol (AudioHook Protocol Specification, developer.genesys.cloud,
version "2"; the reference implementation is purecloudlabs/
audiohook-reference-implementation) in what callshield uses of it:

- Every text message is a JSON object with ``version`` ("2"), ``id`` (the
  session id, as in the ``Audiohook-Session-Id`` header), ``type``, ``seq``
  (1, 2, 3... per sender) and ``parameters``. The client (Genesys) adds
  ``serverseq`` (the last server seq it saw) and ``position`` (ISO 8601
  duration: audio sent so far); the server adds ``clientseq``.
- ``open`` (organizationId, conversationId, participant {id, ani, aniName,
  dnis}, media [{type: audio, format: PCMU|L16, channels: [external,
  internal], rate: 8000}], language, customConfig) is answered by
  ``opened`` with the one medium chosen: PCMU 8000 with both channels if
  offered, else PCMU 8000 with one. No PCMU offered: ``opened`` with no
  media (the client then closes). An ``organizationId`` other than the
  ``Audiohook-Organization-Id`` header is answered by ``disconnect``
  (reason ``unauthorized``).
- Binary messages are audio: PCMU bytes, one per sample, interleaved per
  negotiated channel (``external`` = the customer, ``internal`` = the
  partner).
- ``ping`` -> ``pong``; ``paused`` / ``resumed`` (start, discarded): the
  client stopped and restarted sending; the discarded duration is a gap of
  silence on the call's time line (not loss). ``discarded`` (start,
  discarded): audio the client dropped: a gap too, counted as loss.
  ``update`` (language), ``error`` (code, message) and ``event`` are logged.
  ``close`` (reason) -> ``closed``: the call ends (hang-up).
- Audio time: a call sample index is the audio received plus every
  paused and discarded duration before it. Each message's ``position`` is
  checked against the audio received: audio missing by it is counted lost
  and skipped over, so later audio stays where the client put it.

Bad input never ends the call: malformed JSON, an unknown type, a wrong
``seq`` or ``id``, missing fields, audio that is not whole samples or comes
before ``opened``: counted as a problem (code), logged, dropped (a message
with the wrong seq is still acted on, the count re-synchronized). The
reference server answers these with ``disconnect`` (reason ``error``);
callshield keeps monitoring instead, because a monitor that drops a call on
a glitch loses the harassment that follows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from audio.frames import Speaker
from audio.g711 import decode_ulaw
from audio.media_streams.call import Step

VERSION = "2"
RATE = 8000
CHANNEL_SPEAKERS: Mapping[str, Speaker] = {"external": "customer", "internal": "partner"}
"""AudioHook channel -> speaker: ``external`` is the customer's side, ``internal`` the Genesys agent's."""

POSITION_TOLERANCE = RATE // 1000
"""Samples a message's ``position`` may differ from the audio received (positions written to the millisecond)."""

MAX_MEDIA_OFFERS = 16
MAX_NAME_CHARS = 128

_DURATION = re.compile(r"^PT(\d{0,12}(?:\.\d{1,9})?)S$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def parse_duration(text: Any) -> float:
    """Seconds of an AudioHook duration (``PT1.25S``); ``ValueError`` otherwise."""
    found = _DURATION.match(text) if isinstance(text, str) else None
    if not found or found.group(1) in ("", "."):
        raise ValueError(f"not an ISO 8601 duration in seconds: {str(text)[:40]!r}")
    return float(found.group(1))


def format_duration(seconds: float) -> str:
    """An AudioHook duration (``PT1.25S``)."""
    return f"PT{seconds:.3f}".rstrip("0").rstrip(".") + "S"


class BadMessage(ValueError):
    """A text message that cannot be used; ``code`` says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Media:
    """One audio format: ``format`` (PCMU or L16), ``rate`` (Hz), ``channels`` in interleaving order."""

    format: str
    rate: int
    channels: tuple[str, ...]

    def wire(self) -> dict[str, Any]:
        return {"type": "audio", "format": self.format, "channels": list(self.channels), "rate": self.rate}


@dataclass(frozen=True)
class OpenRequest:
    """The ``open`` message's parameters, validated. ``participant``: the
    customer's id, ani, aniName and dnis (strings, as sent)."""

    organization_id: str
    conversation_id: str
    participant: Mapping[str, str]
    media: tuple[Media, ...]
    language: str | None = None
    custom_config: Mapping[str, Any] = field(default_factory=dict)

    def name(self, key: str) -> str | None:
        """A string of ``customConfig`` (``partner``, ``seat``), bounded; None if absent or not a short string."""
        value = self.custom_config.get(key)
        return value if isinstance(value, str) and 0 < len(value) <= MAX_NAME_CHARS else None


@dataclass(frozen=True)
class ClientMessage:
    """A text message from the client, validated for the common fields."""

    type: str
    id: str
    seq: int
    serverseq: int
    position: float  # seconds
    parameters: Mapping[str, Any]


def _seq(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**53


def parse_client_message(text: str) -> ClientMessage:
    """A client message from its JSON text; :class:`BadMessage` (``bad_json`` or ``bad_message``)."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise BadMessage("bad_json", "a text message that is not JSON") from None
    if not isinstance(data, dict):
        raise BadMessage("bad_json", "a text message that is not a JSON object")
    kind = data.get("type")
    if not isinstance(kind, str) or not kind or len(kind) > 32:
        raise BadMessage("bad_message", "a message without a type")
    if data.get("version") != VERSION:
        raise BadMessage("bad_message", f"{kind}: version {str(data.get('version'))[:10]!r}, expected \"2\"")
    if not isinstance(data.get("id"), str) or not _seq(data.get("seq")) or not _seq(data.get("serverseq")):
        raise BadMessage("bad_message", f"{kind}: id, seq or serverseq missing or wrong")
    if not isinstance(data.get("parameters"), dict):
        raise BadMessage("bad_message", f"{kind}: no parameters object")
    try:
        position = parse_duration(data.get("position"))
    except ValueError as exc:
        raise BadMessage("bad_message", f"{kind}: position: {exc}") from None
    return ClientMessage(kind, data["id"], data["seq"], data["serverseq"], position, data["parameters"])


def parse_open(parameters: Mapping[str, Any]) -> OpenRequest:
    """The ``open`` parameters; :class:`BadMessage` (``bad_message``) if a required one is wrong."""
    org, conversation, participant = parameters.get("organizationId"), parameters.get("conversationId"), parameters.get("participant")
    if not isinstance(org, str) or not _UUID.match(org) or not isinstance(conversation, str) or not _UUID.match(conversation):
        raise BadMessage("bad_message", "open: organizationId and conversationId must be UUIDs")
    if not isinstance(participant, dict):
        raise BadMessage("bad_message", "open: no participant object")
    offers = parameters.get("media")
    if not isinstance(offers, list) or len(offers) > MAX_MEDIA_OFFERS:
        raise BadMessage("bad_message", "open: media must be a list (of at most 16 offers)")
    media = []
    for offer in offers:
        if not isinstance(offer, dict) or offer.get("type") != "audio":
            continue
        channels = offer.get("channels")
        if (isinstance(offer.get("format"), str) and isinstance(offer.get("rate"), int) and isinstance(channels, list)
                and 1 <= len(channels) <= 2 and all(c in CHANNEL_SPEAKERS for c in channels) and len(set(channels)) == len(channels)):
            media.append(Media(offer["format"], offer["rate"], tuple(channels)))
    custom = parameters.get("customConfig")
    language = parameters.get("language")
    return OpenRequest(
        organization_id=org, conversation_id=conversation,
        participant={k: v[:MAX_NAME_CHARS] for k, v in participant.items() if k in ("id", "ani", "aniName", "dnis") and isinstance(v, str)},
        media=tuple(media), language=language if isinstance(language, str) and len(language) <= 16 else None,
        custom_config=custom if isinstance(custom, dict) else {},
    )


def choose_media(offers: tuple[Media, ...]) -> Media | None:
    """PCMU 8000 with both channels if offered, else PCMU 8000 with one; None if no PCMU 8000."""
    pcmu = [m for m in offers if m.format == "PCMU" and m.rate == RATE]
    return max(pcmu, key=lambda m: len(m.channels), default=None)


class AudioHookSession:
    """One AudioHook session (one websocket connection), the server's side.

    ``session_id``: the ``Audiohook-Session-Id`` header; ``organization_id``:
    the ``Audiohook-Organization-Id`` header (None: not checked).
    ``state``: ``preparing`` (before ``open``), ``active``, ``paused``,
    ``unauthorized`` (disconnect sent), ``closed``.
    """

    def __init__(self, session_id: str, organization_id: str | None = None) -> None:
        self.session_id = session_id
        self.organization_id = organization_id
        self.state = "preparing"
        self.seq = 0  # last server seq sent
        self.clientseq = 0  # last client seq seen
        self.media: Media | None = None
        self.received = 0  # samples per channel received (the client's position)
        self.skipped = 0  # samples of time line skipped (pauses, discarded audio)
        self.open: OpenRequest | None = None

    # ---- sending

    def message(self, kind: str, parameters: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """A server message with the next ``seq`` (call in sending order)."""
        self.seq += 1
        return {"version": VERSION, "type": kind, "seq": self.seq, "clientseq": self.clientseq, "id": self.session_id,
                "parameters": dict(parameters or {})}

    # ---- receiving

    def receive_text(self, text: str) -> Step:
        step = Step()
        try:
            message = parse_client_message(text)
        except BadMessage as exc:
            step.problems.append((exc.code, str(exc)))
            return step
        if message.id != self.session_id:
            step.problems.append(("bad_message", f"{message.type}: id {message.id[:40]!r} is not this session's"))
            return step
        if message.seq != self.clientseq + 1:
            step.problems.append(("bad_seq", f"{message.type}: seq {message.seq} after {self.clientseq}"))
        self.clientseq = message.seq
        if message.serverseq > self.seq:
            step.problems.append(("bad_seq", f"{message.type}: serverseq {message.serverseq} but the server sent {self.seq}"))
        if self.state in ("active", "paused"):
            self._check_position(message, step)
        handler = getattr(self, f"_on_{message.type}", None)
        if handler is None:
            step.problems.append(("unknown_message", f"unknown message type {message.type[:32]!r}"))
            return step
        try:
            handler(message, step)
        except BadMessage as exc:
            step.problems.append((exc.code, str(exc)))
        return step

    def _check_position(self, message: ClientMessage, step: Step) -> None:
        position = round(message.position * RATE)
        if abs(position - self.received) <= POSITION_TOLERANCE:
            return
        if position > self.received:
            step.problems.append(("bad_position", f"{message.type}: position {message.position:.3f} s but {self.received / RATE:.3f} s of audio arrived"))
            step.lost_samples += position - self.received
            self.received = position
        elif position < self.received:
            step.problems.append(("bad_position", f"{message.type}: position {message.position:.3f} s behind the {self.received / RATE:.3f} s of audio that arrived"))

    def receive_audio(self, data: bytes) -> Step:
        step = Step()
        media = self.media
        if media is None or self.state not in ("active", "paused"):
            step.problems.append(("bad_frame", f"{len(data)} bytes of audio {'before the media were agreed' if media is None else 'in state ' + self.state}"))
            return step
        width = len(media.channels)
        whole = len(data) - len(data) % width
        if whole != len(data):
            step.problems.append(("bad_frame", f"{len(data)} bytes of audio is not whole {width}-channel samples; the last byte dropped"))
        if not whole:
            return step
        samples = decode_ulaw(np.frombuffer(data, dtype=np.uint8, count=whole)).reshape(-1, width)
        start = self.skipped + self.received
        for i, channel in enumerate(media.channels):
            step.chunks.append((CHANNEL_SPEAKERS[channel], np.ascontiguousarray(samples[:, i]), start))
        self.received += len(samples)
        return step

    # ---- message handlers

    def _on_open(self, message: ClientMessage, step: Step) -> None:
        if self.state != "preparing":
            step.problems.append(("bad_message", f"open in state {self.state}: ignored"))
            return
        request = parse_open(message.parameters)
        if self.organization_id is not None and request.organization_id != self.organization_id:
            self.state = "unauthorized"
            step.replies.append(self.message("disconnect", {"reason": "unauthorized", "info": "organizationId does not match the Audiohook-Organization-Id header"}))
            step.problems.append(("unauthorized", "open: organizationId differs from the Audiohook-Organization-Id header"))
            return
        self.open = request
        self.media = choose_media(request.media)
        self.state = "active"
        step.replies.append(self.message("opened", {"startPaused": False, "media": [self.media.wire()] if self.media else []}))
        if self.media is None:
            step.problems.append(("bad_message", "open: no PCMU 8000 Hz audio offered; answered with no media"))
            return
        self.received = round(message.position * RATE)  # a session opened at a position > 0 starts there
        step.opened = request

    def _on_ping(self, message: ClientMessage, step: Step) -> None:
        step.replies.append(self.message("pong"))

    def _on_paused(self, message: ClientMessage, step: Step) -> None:
        if self.state == "active":
            self.state = "paused"

    def _gap(self, message: ClientMessage) -> int:
        try:
            parse_duration(message.parameters.get("start"))
            return round(parse_duration(message.parameters.get("discarded")) * RATE)
        except ValueError as exc:
            raise BadMessage("bad_message", f"{message.type}: {exc}") from None

    def _on_resumed(self, message: ClientMessage, step: Step) -> None:
        gap = self._gap(message)
        if self.state == "paused":
            self.state = "active"
        self.skipped += gap
        step.paused_samples += gap

    def _on_discarded(self, message: ClientMessage, step: Step) -> None:
        gap = self._gap(message)
        self.skipped += gap
        step.lost_samples += gap

    def _on_update(self, message: ClientMessage, step: Step) -> None:
        pass  # a language change: the agent transcribes with its own model

    def _on_event(self, message: ClientMessage, step: Step) -> None:
        pass  # events are the server's to send; one from the client is harmless

    def _on_error(self, message: ClientMessage, step: Step) -> None:
        code, text = message.parameters.get("code"), message.parameters.get("message")
        step.problems.append(("client_error", f"Genesys reported error {str(code)[:8]}: {str(text)[:200]}"))

    def _on_close(self, message: ClientMessage, step: Step) -> None:
        if self.state == "closed":
            return
        self.state = "closed"
        step.replies.append(self.message("closed"))
        step.closed = True
