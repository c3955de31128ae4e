"""Twilio Media Streams, the receiving side, sans I/O.

The messages Twilio sends (twilio.com/docs/voice/media-streams/websocket-messages),
each a JSON text message with an ``event``:

- ``connected`` {protocol: "Call", version}: first, once.
- ``start`` {sequenceNumber, streamSid, start: {accountSid, streamSid,
  callSid, tracks: ["inbound", "outbound"], customParameters: {...},
  mediaFormat: {encoding: "audio/x-mulaw", sampleRate: 8000, channels: 1}}}:
  the call starts; ``customParameters`` ``partner`` and ``seat`` (TwiML
  ``<Parameter>``) name the console user and seat.
- ``media`` {sequenceNumber, streamSid, media: {track: inbound|outbound,
  chunk: "1", "2"..., timestamp: ms since the stream started, payload:
  base64 mu-law}}: audio of one track. ``timestamp`` places it on the call's
  time line (audio time); a chunk number that skips is counted as lost audio.
- ``dtmf`` {dtmf: {track: "inbound_track", digit}}: counted, never logged (a
  digit may be part of a PIN).
- ``mark`` {mark: {name}}: Twilio's answer to a mark the server sent. callshield
  sends no audio and no marks; a mark received is counted and logged.
- ``stop`` {stop: {accountSid, callSid}}: the stream ended: the call ends.

Which track is the customer is configured (``[media_streams]
twilio_customer_track``): on an inbound call whose TwiML runs
``<Start><Stream track="both_tracks">``, ``inbound`` is the caller (the
customer) and ``outbound`` is what Twilio plays to the caller (the partner,
once ``<Dial>`` connects them).

``sequenceNumber`` (a string counting every message from "1") is checked; a
gap or repeat is counted (``bad_seq``) and the count re-synchronized. Bad
input (not JSON, unknown event, missing fields, base64 garbage) is counted,
logged and dropped; the call goes on.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from audio.frames import Speaker
from audio.g711 import decode_ulaw
from audio.media_streams.call import Step

RATE = 8000
TRACKS = ("inbound", "outbound")
MAX_NAME_CHARS = 128
MAX_PARAMETERS = 64


class BadEvent(ValueError):
    """A message that cannot be used; ``code`` says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class StartRequest:
    """The ``start`` message, validated."""

    stream_sid: str
    call_sid: str
    account_sid: str
    tracks: tuple[str, ...]
    custom_parameters: Mapping[str, str] = field(default_factory=dict)

    def name(self, key: str) -> str | None:
        value = self.custom_parameters.get(key)
        return value if value and len(value) <= MAX_NAME_CHARS else None


def _text(value: Any, what: str, limit: int = 64) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise BadEvent("bad_message", f"{what} missing or not a short string")
    return value


def _count(value: Any, what: str) -> int:
    """Twilio sends counters as decimal strings ("1"); numbers are accepted too."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.isdigit() and len(value) <= 15:
        return int(value)
    raise BadEvent("bad_message", f"{what} is not a count")


def parse_event(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise BadEvent("bad_json", "a text message that is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("event"), str):
        raise BadEvent("bad_json", "a message that is not a JSON object with an event")
    return data


def parse_start(data: Mapping[str, Any]) -> StartRequest:
    start = data.get("start")
    if not isinstance(start, dict):
        raise BadEvent("bad_message", "start: no start object")
    fmt = start.get("mediaFormat")
    if not isinstance(fmt, dict) or fmt.get("encoding") != "audio/x-mulaw" or fmt.get("sampleRate") != RATE or fmt.get("channels", 1) != 1:
        raise BadEvent("bad_message", f"start: mediaFormat {str(fmt)[:100]} is not audio/x-mulaw 8000 Hz mono")
    tracks = start.get("tracks", ["inbound"])
    if not isinstance(tracks, list) or not tracks or not set(tracks) <= set(TRACKS):
        raise BadEvent("bad_message", f"start: tracks {str(tracks)[:60]} (expected inbound and/or outbound)")
    custom = start.get("customParameters") or {}
    if not isinstance(custom, dict):
        raise BadEvent("bad_message", "start: customParameters is not an object")
    params = {str(k)[:MAX_NAME_CHARS]: v[:1024] for k, v in list(custom.items())[:MAX_PARAMETERS] if isinstance(v, str)}
    return StartRequest(
        stream_sid=_text(start.get("streamSid") or data.get("streamSid"), "start.streamSid"),
        call_sid=_text(start.get("callSid"), "start.callSid"),
        account_sid=_text(start.get("accountSid"), "start.accountSid"),
        tracks=tuple(dict.fromkeys(tracks)), custom_parameters=params,
    )


class TwilioStream:
    """One Twilio Media Stream (one websocket connection).

    ``customer_track``: the track carrying the customer (``inbound`` or
    ``outbound``); the other is the partner. ``state``: ``waiting`` (before
    ``start``), ``started``, ``stopped``."""

    def __init__(self, customer_track: str = "inbound") -> None:
        if customer_track not in TRACKS:
            raise ValueError(f"customer_track must be inbound or outbound, not {customer_track!r}")
        self.speakers: dict[str, Speaker] = {customer_track: "customer", TRACKS[1 - TRACKS.index(customer_track)]: "partner"}
        self.state = "waiting"
        self.sequence = 0  # last sequenceNumber seen
        self.start: StartRequest | None = None
        self.next_sample: dict[str, int] = {}  # per track: call sample after its last chunk
        self.last_chunk: dict[str, int] = {}
        self.marks = 0
        self.dtmf = 0

    def receive_text(self, text: str) -> Step:
        step = Step()
        try:
            data = parse_event(text)
            event = data["event"]
            if "sequenceNumber" in data:
                number = _count(data["sequenceNumber"], f"{event}: sequenceNumber")
                if number != self.sequence + 1:
                    step.problems.append(("bad_seq", f"{event}: sequenceNumber {number} after {self.sequence}"))
                self.sequence = number
            if self.start is not None and event != "connected" and data.get("streamSid") not in (None, self.start.stream_sid):
                raise BadEvent("bad_message", f"{event}: streamSid is not this stream's")
            handler = getattr(self, f"_on_{event}", None) if event.isidentifier() else None
            if handler is None:
                raise BadEvent("unknown_message", f"unknown event {event[:32]!r}")
            handler(data, step)
        except BadEvent as exc:
            step.problems.append((exc.code, str(exc)))
        return step

    def _on_connected(self, data: Mapping[str, Any], step: Step) -> None:
        if data.get("protocol") not in (None, "Call"):
            step.problems.append(("bad_message", f"connected: protocol {str(data.get('protocol'))[:20]!r}, expected \"Call\""))

    def _on_start(self, data: Mapping[str, Any], step: Step) -> None:
        if self.state != "waiting":
            raise BadEvent("bad_message", f"start in state {self.state}: ignored")
        self.start = parse_start(data)
        self.state = "started"
        step.opened = self.start

    def _on_media(self, data: Mapping[str, Any], step: Step) -> None:
        if self.state != "started":
            raise BadEvent("bad_frame", f"media in state {self.state}: dropped")
        media = data.get("media")
        if not isinstance(media, dict):
            raise BadEvent("bad_message", "media: no media object")
        track = media.get("track", "inbound")
        if track not in self.speakers:
            raise BadEvent("bad_message", f"media: unknown track {str(track)[:20]!r}")
        timestamp = _count(media.get("timestamp"), "media.timestamp")
        chunk = _count(media.get("chunk"), "media.chunk") if "chunk" in media else None
        payload = media.get("payload")
        if not isinstance(payload, str):
            raise BadEvent("bad_message", "media: no payload")
        try:
            raw = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise BadEvent("bad_payload", f"media: payload of {len(payload)} characters is not base64") from None
        if not raw:
            return
        samples = decode_ulaw(raw)
        start = timestamp * RATE // 1000
        expected = self.next_sample.get(track)
        if chunk is not None and track in self.last_chunk and chunk != self.last_chunk[track] + 1:
            step.problems.append(("bad_seq", f"media: {track} chunk {chunk} after {self.last_chunk[track]}"))
            if chunk > self.last_chunk[track] + 1 and expected is not None and start > expected:
                step.lost_samples += start - expected
        if chunk is not None:
            self.last_chunk[track] = chunk
        if expected is not None and start < expected:
            start = expected  # timestamps are whole ms: never overlap the track's own audio
        self.next_sample[track] = start + len(samples)
        step.chunks.append((self.speakers[track], samples, start))

    def _on_dtmf(self, data: Mapping[str, Any], step: Step) -> None:
        self.dtmf += 1  # counted, never logged: a digit may be part of a PIN

    def _on_mark(self, data: Mapping[str, Any], step: Step) -> None:
        self.marks += 1
        mark = data.get("mark")
        name = mark.get("name") if isinstance(mark, dict) else None
        step.problems.append(("unexpected_mark", f"mark {str(name)[:40]!r} received, but callshield sends no marks"))

    def _on_stop(self, data: Mapping[str, Any], step: Step) -> None:
        if self.state == "stopped":
            return
        self.state = "stopped"
        step.closed = True

