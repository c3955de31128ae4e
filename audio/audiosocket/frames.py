"""The AudioSocket wire format: frame types, encoders, and the one frame decoder.

AudioSocket (https://docs.asterisk.org/Configuration/Channel-Drivers/AudioSocket/)
is a stream of frames: 1 byte type, 2 bytes big-endian payload length, the
payload. :class:`FrameDecoder` is sans-I/O: bytes in (as they come off the
socket, split anywhere), whole validated frames out. The server
(:mod:`audio.audiosocket.server`) reads with it and nothing else.
"""

from __future__ import annotations

import enum
import struct
import uuid as uuidlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from audio.errors import AudioSocketError
from audio.resample import VAD_RATES


class Kind(enum.IntEnum):
    """AudioSocket frame types (``enum ast_audiosocket_msg_kind``)."""

    HANGUP = 0x00
    UUID = 0x01
    DTMF = 0x03
    AUDIO = 0x10  # slin, 8 kHz
    AUDIO_SLIN12 = 0x11
    AUDIO_SLIN16 = 0x12
    AUDIO_SLIN24 = 0x13
    AUDIO_SLIN32 = 0x14
    AUDIO_SLIN44 = 0x15
    AUDIO_SLIN48 = 0x16
    AUDIO_SLIN96 = 0x17
    AUDIO_SLIN192 = 0x18
    ERROR = 0xFF


AUDIO_RATES: Mapping[int, int] = {
    Kind.AUDIO: 8000,
    Kind.AUDIO_SLIN12: 12000,
    Kind.AUDIO_SLIN16: 16000,
    Kind.AUDIO_SLIN24: 24000,
    Kind.AUDIO_SLIN32: 32000,
    Kind.AUDIO_SLIN44: 44100,
    Kind.AUDIO_SLIN48: 48000,
    Kind.AUDIO_SLIN96: 96000,
    Kind.AUDIO_SLIN192: 192000,
}
"""Sample rate (Hz) of each audio frame type: signed 16-bit little-endian mono PCM."""

KIND_FOR_RATE: Mapping[int, int] = {rate: kind for kind, rate in AUDIO_RATES.items()}
ACCEPTED_RATES: tuple[int, ...] = VAD_RATES
"""Rates (Hz) a leg may send: those webrtcvad takes (slin, slin16, slin32, slin48).
Others (12, 24, 44.1, 96, 192 kHz) end the leg with ``unsupported_rate``: a
20 ms frame is too short to convert cleanly, and the PBX converts for free."""

HEADER = struct.Struct("!BH")
MAX_PAYLOAD = 0xFFFF
"""The longest payload the 2-byte length can announce (bytes)."""
FRAME_MS = 20
"""Duration of one frame callshield sends back (ms): 320 bytes at 8 kHz."""

ASTERISK_ERRORS: Mapping[int, str] = {
    0x01: "hangup of calling party",
    0x02: "frame forwarding error",
    0x04: "memory (allocation) error",
}


@dataclass(frozen=True)
class Frame:
    """One AudioSocket frame. ``kind``: the type byte; ``payload``: raw bytes (at most 65535)."""

    kind: int
    payload: bytes = b""

    @property
    def sample_rate(self) -> int | None:
        """Hz for an audio frame, None for any other type."""
        return AUDIO_RATES.get(self.kind)

    def encode(self) -> bytes:
        return encode_frame(self.kind, self.payload)


def encode_frame(kind: int, payload: bytes = b"") -> bytes:
    """The bytes of one frame. Raises ``ValueError`` for a payload over 65535 bytes."""
    if not 0 <= kind <= 0xFF:
        raise ValueError(f"frame type out of range: {kind}")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes does not fit one frame")
    return HEADER.pack(kind, len(payload)) + bytes(payload)


def encode_uuid(value: uuidlib.UUID | bytes | str) -> bytes:
    """A UUID frame (16 raw bytes), from a UUID, its 16 bytes or its string form."""
    if isinstance(value, str):
        value = uuidlib.UUID(value)
    raw = value.bytes if isinstance(value, uuidlib.UUID) else bytes(value)
    if len(raw) != 16:
        raise ValueError("a UUID is 16 bytes")
    return encode_frame(Kind.UUID, raw)


def encode_audio(samples: np.ndarray | bytes, sample_rate: int = 8000) -> bytes:
    """An audio frame of int16 mono samples (or their little-endian bytes) at ``sample_rate`` Hz."""
    kind = KIND_FOR_RATE.get(sample_rate)
    if kind is None:
        raise ValueError(f"AudioSocket has no frame type for {sample_rate} Hz")
    data = samples if isinstance(samples, (bytes, bytearray)) else np.asarray(samples, dtype="<i2").tobytes()
    return encode_frame(kind, data)


def encode_hangup() -> bytes:
    return encode_frame(Kind.HANGUP)


def _length_fits(kind: int, length: int) -> bool:
    """Whether a frame of type ``kind`` may carry ``length`` payload bytes; ``bad_frame`` for an unknown type."""
    if kind == Kind.HANGUP:
        return length == 0
    if kind == Kind.UUID:
        return length == 16
    if kind == Kind.DTMF:
        return length == 1
    if kind == Kind.ERROR:
        return length <= 1
    if kind in AUDIO_RATES:
        return length % 2 == 0
    raise AudioSocketError(f"unknown AudioSocket frame type 0x{kind:02x}", code="bad_frame")


class FrameDecoder:
    """The AudioSocket frame decoder, sans-I/O: :meth:`receive` bytes as they
    come (split anywhere), take whole, validated frames out by iterating.

    Bounded: a header is checked as soon as its 3 bytes are in, so a frame of
    an unknown type, of a length its type cannot have, or announcing more than
    ``max_payload`` bytes is refused before its payload is waited for; the
    decoder holds at most one partial frame beside the bytes of one
    :meth:`receive`. A malformed frame raises :class:`AudioSocketError`
    (``bad_frame``), is counted in :attr:`malformed`, and the decoder stays
    broken (framing is lost: every later call raises the same error); the
    frames before it were already handed out. :meth:`close` at the end of the
    stream raises ``truncated_frame`` if it stopped inside a frame.

    ``frames``: frames decoded; ``malformed``: malformed frames met (0 or 1).
    """

    def __init__(self, max_payload: int = MAX_PAYLOAD) -> None:
        if not 0 <= max_payload <= MAX_PAYLOAD:
            raise ValueError(f"max_payload must be 0..{MAX_PAYLOAD}")
        self.max_payload = max_payload
        self.frames = 0
        self.malformed = 0
        self._buffer = bytearray()
        self._pos = 0  # start of the first frame not handed out yet
        self._error: tuple[str, str] | None = None  # (message, code) of the malformed frame that broke the framing

    @property
    def buffered(self) -> int:
        """Bytes received and not yet handed out as a frame."""
        return len(self._buffer) - self._pos

    def receive(self, data: bytes) -> None:
        """Take bytes off the wire (any split)."""
        if self._pos:
            del self._buffer[:self._pos]
            self._pos = 0
        self._buffer += data

    def _broken(self) -> None:
        """Raise the error that broke the framing again, as a new exception: a
        stored one would keep, through its traceback, every frame it passed
        through (and the call they held) alive for the garbage collector."""
        if self._error is not None:
            message, code = self._error
            raise AudioSocketError(message, code=code)

    def next_frame(self) -> Frame | None:
        """The next whole frame, or None until more bytes are received."""
        self._broken()
        if self.buffered < HEADER.size:
            return None
        kind, length = HEADER.unpack_from(self._buffer, self._pos)
        self._check_header(kind, length)
        start = self._pos + HEADER.size
        if len(self._buffer) < start + length:
            return None
        payload = bytes(self._buffer[start:start + length])
        self._pos = start + length
        self.frames += 1
        return Frame(kind, payload)

    def __iter__(self) -> Iterator[Frame]:
        """Every whole frame received so far."""
        while (frame := self.next_frame()) is not None:
            yield frame

    def feed(self, data: bytes) -> list[Frame]:
        """:meth:`receive` ``data`` and return every whole frame now available."""
        self.receive(data)
        return list(self)

    def close(self) -> None:
        """The stream ended: ``truncated_frame`` if it ended inside a frame."""
        self._broken()
        left = self.buffered
        if not left:
            return
        if left < HEADER.size:
            raise AudioSocketError("connection dropped inside a frame header", code="truncated_frame")
        _, length = HEADER.unpack_from(self._buffer, self._pos)
        raise AudioSocketError(f"connection dropped inside a frame ({left - HEADER.size} of {length} payload bytes)", code="truncated_frame")

    def _check_header(self, kind: int, length: int) -> None:
        try:
            if not _length_fits(kind, length):
                raise AudioSocketError(f"AudioSocket frame type 0x{kind:02x} cannot be {length} bytes long", code="bad_frame")
            if length > self.max_payload:
                raise AudioSocketError(f"AudioSocket frame of {length} bytes is over the limit of {self.max_payload}", code="bad_frame")
        except AudioSocketError as exc:
            self.malformed += 1
            self._error = (exc.message, exc.code)
            raise
