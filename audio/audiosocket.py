"""Asterisk AudioSocket: the wire format, and a TCP server that pairs the two legs of a call.

AudioSocket (https://docs.asterisk.org/Configuration/Channel-Drivers/AudioSocket/)
is a stream of frames: 1 byte type, 2 bytes big-endian payload length, the
payload. Each TCP connection carries one direction of one call (a *leg*); the
first frame names the leg with a 16-byte UUID. callshield pairs the customer
leg and the partner leg of the same call into one :class:`IncomingCall` (the
UUID convention is in ``docs/asterisk.md`` and :class:`LegPairing`).

Audio flows in from Asterisk; only the end of a call flows back: when a
supervisor authorizes ending the call, :meth:`IncomingCall.end_call` may play a
closing message to the customer (paced slin frames, 20 ms each) and then sends
the hang-up frame on every leg.

A broken leg (unknown frame type, wrong length, a connection dropped mid-frame,
an Asterisk error frame) ends that leg only, with a notice; what it delivered
so far stays delivered, the call's audio iterator ends normally when no leg is
left, and the server goes on serving other calls.

This module imports nothing from ``agent`` or ``console``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import struct
import uuid as uuidlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from audio.errors import AudioError, WavError
from audio.frames import AudioChunk, Speaker
from audio.resample import VAD_RATES, resample

# --------------------------------------------------------------------------- errors


class AudioSocketError(AudioError):
    """A leg broke the AudioSocket protocol or could not be served.

    Codes: ``bad_frame`` (unknown type or a length that type cannot have),
    ``truncated_frame`` (connection dropped mid-frame), ``no_uuid`` (first
    frame was not a UUID), ``bad_uuid`` (UUID does not follow the pairing
    convention), ``unsupported_rate`` (slin above 48 kHz), ``rate_mismatch``
    (a leg changed rate, or its rate differs from the other leg's),
    ``asterisk_error`` (Asterisk sent an error frame), ``idle`` (no frame for
    ``idle_timeout_s``), ``duplicate_leg`` (a second customer or partner leg),
    ``bad_closing_message`` (the closing WAV cannot be played).
    """

    code = "audiosocket_error"


# --------------------------------------------------------------------------- framing


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


def check_frame(frame: Frame) -> Frame:
    """Validate type and length; raise :class:`AudioSocketError` (``bad_frame``) otherwise."""
    kind, n = frame.kind, len(frame.payload)
    if kind == Kind.HANGUP:
        ok = n == 0
    elif kind == Kind.UUID:
        ok = n == 16
    elif kind == Kind.DTMF:
        ok = n == 1
    elif kind == Kind.ERROR:
        ok = n <= 1
    elif kind in AUDIO_RATES:
        ok = n % 2 == 0
    else:
        raise AudioSocketError(f"unknown AudioSocket frame type 0x{kind:02x}", code="bad_frame")
    if not ok:
        raise AudioSocketError(f"AudioSocket frame type 0x{kind:02x} cannot be {n} bytes long", code="bad_frame")
    return frame


class FrameDecoder:
    """Incremental decoder: feed bytes as they come, get whole, validated frames out.

    Holds at most one partial frame (under 65538 bytes). :meth:`close` raises
    ``truncated_frame`` if the stream stopped inside a frame.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames: list[Frame] = []
        while len(self._buffer) >= HEADER.size:
            kind, length = HEADER.unpack_from(self._buffer)
            if len(self._buffer) < HEADER.size + length:
                break
            payload = bytes(self._buffer[HEADER.size:HEADER.size + length])
            del self._buffer[:HEADER.size + length]
            frames.append(check_frame(Frame(kind, payload)))
        return frames

    def close(self) -> None:
        if self._buffer:
            raise AudioSocketError(f"stream ended inside a frame ({len(self._buffer)} bytes left over)", code="truncated_frame")


async def read_frame(reader: asyncio.StreamReader) -> Frame | None:
    """The next validated frame, or None at a clean end of stream (between frames).

    Reads are bounded: 3 header bytes, then at most 65535 payload bytes.
    """
    try:
        header = await reader.readexactly(HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise AudioSocketError("connection dropped inside a frame header", code="truncated_frame") from None
    kind, length = HEADER.unpack(header)
    if kind not in AUDIO_RATES and kind not in (Kind.HANGUP, Kind.UUID, Kind.DTMF, Kind.ERROR):
        raise AudioSocketError(f"unknown AudioSocket frame type 0x{kind:02x}", code="bad_frame")
    try:
        payload = await reader.readexactly(length) if length else b""
    except asyncio.IncompleteReadError as exc:
        raise AudioSocketError(f"connection dropped inside a frame ({len(exc.partial)} of {length} payload bytes)", code="truncated_frame") from None
    return check_frame(Frame(kind, payload))


# --------------------------------------------------------------------------- pairing


@dataclass(frozen=True)
class LegPairing:
    """How a leg's UUID names its call and its speaker.

    ``mode``:
      - ``"suffix"`` (default): the first 15 bytes of the UUID are the call key;
        the last byte is ``0x00`` for the customer leg, ``0x01`` for the partner
        leg (in the string form: the last two hex digits ``00`` / ``01``).
      - ``"customer_only"``: every connection is the customer leg of its own call
        (for a dialplan that sends only what the customer says).
    """

    mode: str = "suffix"

    CUSTOMER_SUFFIX = 0x00
    PARTNER_SUFFIX = 0x01

    def __post_init__(self) -> None:
        if self.mode not in ("suffix", "customer_only"):
            raise AudioSocketError(f"unknown AudioSocket pairing mode {self.mode!r} (use 'suffix' or 'customer_only')", code="bad_config")

    def leg_of(self, raw: bytes) -> tuple[bytes, Speaker]:
        """(call key, speaker) of a 16-byte leg UUID; ``bad_uuid`` if it follows no convention."""
        if self.mode == "customer_only":
            return raw, "customer"
        suffix = raw[15]
        if suffix == self.CUSTOMER_SUFFIX:
            return raw[:15], "customer"
        if suffix == self.PARTNER_SUFFIX:
            return raw[:15], "partner"
        raise AudioSocketError(
            f"leg UUID {uuidlib.UUID(bytes=raw)} ends in {suffix:02x}: expected 00 (customer leg) or 01 (partner leg), see docs/asterisk.md",
            code="bad_uuid",
        )

    def call_id(self, key: bytes) -> str:
        """The call's id: the customer leg's UUID in string form."""
        return str(uuidlib.UUID(bytes=key + bytes([self.CUSTOMER_SUFFIX]))) if len(key) == 15 else str(uuidlib.UUID(bytes=key))

    @staticmethod
    def leg_uuid(call_key: bytes | uuidlib.UUID, speaker: Speaker) -> uuidlib.UUID:
        """The UUID a leg should send (helper for fake Asterisks and dialplan generators)."""
        key = call_key.bytes[:15] if isinstance(call_key, uuidlib.UUID) else bytes(call_key)[:15]
        return uuidlib.UUID(bytes=key + bytes([LegPairing.CUSTOMER_SUFFIX if speaker == "customer" else LegPairing.PARTNER_SUFFIX]))


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class AudioSocketConfig:
    """The ``[audiosocket]`` section of the config file.

    Fields:
        host: address to listen on (default ``127.0.0.1``; the PBX must reach it).
        port: TCP port (default 9092; 0 picks a free one).
        pairing: ``suffix`` or ``customer_only`` (see :class:`LegPairing`).
        pair_timeout_s: seconds a leg waits for the other leg of its call before
            the call starts with one speaker (the customer leg alone is enough
            for detection).
        uuid_timeout_s: seconds a new connection has to send its UUID frame.
        idle_timeout_s: seconds without any frame after which a leg is ended.
        queue_frames: bound of a call's audio queue, in received frames
            (typically 20 ms each); when full the oldest is dropped and counted.

    Whether an authorized end of call hangs up, and the closing message, are
    the agent's settings (``[agent] hangup_on_authorization``,
    ``closing_message``), as are the partner and seat a call is reported with.
    """

    host: str = "127.0.0.1"
    port: int = 9092
    pairing: str = "suffix"
    pair_timeout_s: float = 2.0
    uuid_timeout_s: float = 5.0
    idle_timeout_s: float = 10.0
    queue_frames: int = 1000

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> "AudioSocketConfig":
        known = {f for f in cls.__dataclass_fields__}
        extra = set(section) - known
        if extra:
            raise AudioSocketError(f"[audiosocket]: unknown setting(s) {', '.join(sorted(extra))}", code="bad_config")
        values: dict[str, Any] = {}
        for name, value in section.items():
            default = getattr(cls, name)
            if isinstance(default, (int, float)) and not isinstance(default, bool):
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                    raise AudioSocketError(f"[audiosocket] {name} must be a non-negative number", code="bad_config")
                values[name] = type(default)(value)
            else:
                if not isinstance(value, str):
                    raise AudioSocketError(f"[audiosocket] {name} must be a string", code="bad_config")
                values[name] = value
        config = cls(**values)
        LegPairing(config.pairing)
        if config.port > 65535 or config.queue_frames < 1:
            raise AudioSocketError("[audiosocket] port must be 0..65535 and queue_frames at least 1", code="bad_config")
        return config


# --------------------------------------------------------------------------- calls


@dataclass(frozen=True)
class IngressNotice:
    """Something about a call's ingress worth showing: a leg that broke, a leg
    that never got its partner, dropped audio. ``code``: stable snake_case;
    ``call_id``: None for a connection that never named a call; ``dropped``:
    frames dropped from a full queue (for ``audio_dropped``)."""

    code: str
    message: str
    call_id: str | None = None
    speaker: str | None = None
    dropped: int = 0


NoticeSink = Callable[[IngressNotice], None]


@dataclass
class LegStats:
    """Counters of one leg. ``samples_received``: audio samples parsed from the
    socket; ``samples_delivered``: samples handed to the consumer;
    ``frames_dropped``: frames dropped from the full call queue; ``dtmf``:
    (digit, sample index) pairs; ``end_reason``: ``hangup``, ``closed``,
    ``error``, ``authorized_end`` or None while live."""

    samples_received: int = 0
    samples_delivered: int = 0
    frames_dropped: int = 0
    dtmf: list = field(default_factory=list)
    end_reason: str | None = None
    error_code: str | None = None


class Leg:
    """One AudioSocket connection: one direction of one call."""

    def __init__(self, uuid: uuidlib.UUID, speaker: Speaker, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.uuid = uuid
        self.speaker: Speaker = speaker
        self.reader = reader
        self.writer = writer
        self.stats = LegStats()
        self.offset: int | None = None  # call sample index of this leg's first sample
        self.done = asyncio.Event()
        self.task: asyncio.Task | None = None
        self._send_lock = asyncio.Lock()

    @property
    def live(self) -> bool:
        return not self.done.is_set()

    async def send(self, data: bytes) -> bool:
        """Write bytes to Asterisk; False if the connection is gone."""
        async with self._send_lock:
            if self.writer.is_closing():
                return False
            try:
                self.writer.write(data)
                await self.writer.drain()
                return True
            except (ConnectionError, OSError):
                return False

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class IncomingCall:
    """A call arriving over AudioSocket: one or two legs sharing a call key.

    Iterate :meth:`audio` for the call's :class:`AudioChunk` s (both speakers,
    in arrival order, start samples on one call-wide time line). It ends
    normally when no leg is left. Implements the agent's ``CallControl``:
    :meth:`end_call` plays a closing message and hangs up.
    """

    def __init__(self, *, key: bytes, call_id: str, queue_frames: int, notify: NoticeSink, io_executor: Executor) -> None:
        self.key = key
        self.call_id = call_id
        self.sample_rate: int | None = None
        self.legs: dict[str, Leg] = {}
        self.end_reason: str | None = None
        """``hangup`` (Asterisk ended it), ``authorized_end``, ``error`` (every leg broke) or ``closed``."""
        self._notify = notify
        self._io = io_executor
        self._queue: collections.deque[AudioChunk] = collections.deque()
        self._queue_frames = queue_frames
        self._wake = asyncio.Event()
        self._handed_out = False
        self._closed_to_legs = False
        self._rate_known = asyncio.Event()
        self._paired = asyncio.Event()
        self._ending = False
        self.closing_frames_sent = 0

    # ---- facts

    @property
    def speakers(self) -> tuple[str, ...]:
        return tuple(self.legs)

    @property
    def finished(self) -> bool:
        return self._closed_to_legs

    def stats(self) -> dict[str, LegStats]:
        return {speaker: leg.stats for speaker, leg in self.legs.items()}

    @property
    def dropped_frames(self) -> int:
        return sum(leg.stats.frames_dropped for leg in self.legs.values())

    # ---- feeding (server side)

    def _attach(self, leg: Leg) -> None:
        if leg.speaker in self.legs:
            raise AudioSocketError(f"call {self.call_id} already has a {leg.speaker} leg", code="duplicate_leg")
        self.legs[leg.speaker] = leg
        if len(self.legs) == 2:
            self._paired.set()

    def _accept_audio(self, leg: Leg, frame: Frame) -> None:
        rate = frame.sample_rate
        assert rate is not None
        if rate not in ACCEPTED_RATES:
            raise AudioSocketError(f"{rate} Hz audio is not supported: set the AudioSocket channel to slin (8 kHz), slin16, slin32 or slin48", code="unsupported_rate")
        if self.sample_rate is None:
            self.sample_rate = rate
            self._rate_known.set()
        elif rate != self.sample_rate:
            raise AudioSocketError(f"{leg.speaker} leg sends {rate} Hz but the call runs at {self.sample_rate} Hz", code="rate_mismatch")
        if leg.offset is None:
            # Align a later leg on the audio the first one has already delivered.
            leg.offset = max((other.offset + other.stats.samples_received for other in self.legs.values() if other is not leg and other.offset is not None), default=0)
        samples = np.frombuffer(frame.payload, dtype="<i2").astype(np.int16, copy=False)
        if not len(samples):
            return
        chunk = AudioChunk(leg.speaker, samples, rate, leg.offset + leg.stats.samples_received)
        leg.stats.samples_received += len(samples)
        if len(self._queue) >= self._queue_frames:
            dropped = self._queue.popleft()
            self.legs[dropped.speaker].stats.frames_dropped += 1
            if self.dropped_frames in (1, 10, 100) or self.dropped_frames % 1000 == 0:
                self._notify(IngressNotice("audio_dropped", f"call {self.call_id}: consumer too slow, {self.dropped_frames} audio frame(s) dropped", self.call_id, dropped.speaker, self.dropped_frames))
        self._queue.append(chunk)
        self._wake.set()

    def _leg_ended(self, leg: Leg, reason: str, error: AudioSocketError | None = None) -> None:
        if leg.stats.end_reason is None:
            leg.stats.end_reason = reason
            leg.stats.error_code = error.code if error else None
        leg.done.set()
        leg.close()
        if error is not None:
            self._notify(IngressNotice(error.code, f"call {self.call_id}, {leg.speaker} leg ended: {error.message}", self.call_id, leg.speaker))
        if all(not other.live for other in self.legs.values()):
            self._closed_to_legs = True
            self._paired.set()  # nobody is left to wait for
            if self.end_reason is None:
                reasons = {other.stats.end_reason for other in self.legs.values()}
                self.end_reason = "authorized_end" if self._ending else ("hangup" if "hangup" in reasons else ("error" if reasons == {"error"} else "closed"))
            self._rate_known.set()
        self._wake.set()

    # ---- consuming

    async def audio(self) -> AsyncIterator[AudioChunk]:
        """Every chunk of every leg, as received (one per audio frame, in arrival
        order), until the last leg ends; then the iterator ends normally."""
        while True:
            if self._queue:
                chunk = self._queue.popleft()
                self.legs[chunk.speaker].stats.samples_delivered += len(chunk.samples)
                yield chunk
                continue
            if self._closed_to_legs:
                return
            self._wake.clear()
            await self._wake.wait()

    def __aiter__(self) -> AsyncIterator[AudioChunk]:
        return self.audio()

    # ---- control (the agent's CallControl protocol)

    async def end_call(self, closing_message: Path | None = None) -> None:
        """Play ``closing_message`` (a WAV) to the customer, then hang up every leg.

        The message is converted to the call's rate and mono, and sent as 20 ms
        slin frames at real-time pace (a frame per 20 ms of the event loop's
        clock, on an absolute schedule so lateness does not accumulate). Then
        the hang-up frame goes to every live leg and the connections close.
        Raises ``bad_closing_message`` (before anything is sent) for a WAV that
        cannot be read; the call is then still hung up by the caller's choice.
        """
        rate = self.sample_rate or 8000
        customer = self.legs.get("customer")
        samples = None
        if closing_message is not None and customer is not None and customer.live:
            loop = asyncio.get_running_loop()
            samples = await loop.run_in_executor(self._io, load_closing_message, Path(closing_message), rate)
        self._ending = True
        if samples is not None and customer is not None:
            await self._play(customer, samples, rate)
        for leg in list(self.legs.values()):
            if leg.live:
                leg.stats.end_reason = leg.stats.end_reason or "authorized_end"
                await leg.send(encode_hangup())
                leg.close()  # Asterisk hangs up on the frame; the reader then sees the end

    async def _play(self, leg: Leg, samples: np.ndarray, rate: int) -> None:
        loop = asyncio.get_running_loop()
        step = rate * FRAME_MS // 1000
        if len(samples) % step:  # whole frames only: pad the last one with silence
            samples = np.concatenate([samples, np.zeros(step - len(samples) % step, dtype=np.int16)])
        start = loop.time()
        for i, first in enumerate(range(0, len(samples), step)):
            delay = start + i * FRAME_MS / 1000 - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if not await leg.send(encode_audio(samples[first:first + step], rate)):
                return
            self.closing_frames_sent += 1


def load_closing_message(path: Path, rate: int) -> np.ndarray:
    """The closing WAV as int16 mono samples at ``rate`` Hz (blocking: run it in an executor).

    Any WAV :func:`audio.wav.read_wav` reads (PCM16, mu-law, A-law, 8..48 kHz);
    stereo is mixed down.
    """
    from audio.wav import read_wav

    try:
        info, data = read_wav(path)
    except WavError as exc:
        raise AudioSocketError(f"closing message: {exc.message}", code="bad_closing_message") from exc
    if data.ndim == 2 and data.shape[1] > 1:
        data = np.round(data.astype(np.float64).mean(axis=1)).astype(np.int16)
    else:
        data = np.ascontiguousarray(data.reshape(-1))
    return resample(data, info.sample_rate, rate) if info.sample_rate != rate else data


# --------------------------------------------------------------------------- server

CallHandler = Callable[[IncomingCall], Awaitable[None]]


class AudioSocketServer:
    """TCP server for Asterisk AudioSocket legs; hands each paired call to ``on_call``.

    A call is handed out once both legs are connected (or ``pair_timeout_s``
    after the first, with a ``leg_unpaired`` notice) and its first audio frame
    has arrived (the sample rate is then known). A leg that arrives after its
    call was handed out joins the live call (``late_leg`` notice). ``on_call``
    runs as its own task per call; an exception in it is reported as a
    notice and never reaches other calls.

    Use as ``async with AudioSocketServer(...) as server:``; ``server.port`` is
    the bound port (useful with port 0).
    """

    def __init__(
        self,
        on_call: CallHandler,
        config: AudioSocketConfig = AudioSocketConfig(),
        *,
        on_notice: NoticeSink | None = None,
        io_executor: Executor | None = None,
    ) -> None:
        self.config = config
        self.pairing = LegPairing(config.pairing)
        self._on_call = on_call
        self._on_notice = on_notice
        self._owns_io = io_executor is None
        self._io = io_executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="audiosocket-io")
        self._server: asyncio.base_events.Server | None = None
        self._port: int | None = None
        self._pending: dict[bytes, IncomingCall] = {}
        self._tasks: set[asyncio.Task] = set()
        self._calls: set[IncomingCall] = set()
        self.notices: collections.deque[IngressNotice] = collections.deque(maxlen=1000)
        """The latest notices (bounded), also passed to ``on_notice``."""
        self.calls_started = 0

    # ---- lifecycle

    async def start(self) -> "AudioSocketServer":
        self._server = await asyncio.start_server(self._connection, self.config.host, self.config.port, limit=MAX_PAYLOAD + HEADER.size)
        self._port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def port(self) -> int:
        """The bound TCP port (the real one when the config asked for port 0)."""
        assert self._port is not None, "server not started"
        return self._port

    async def close(self) -> None:
        """Stop accepting, end every leg, wait for call handlers, release the executor."""
        if self._server is not None:
            self._server.close()
        for call in list(self._calls) + list(self._pending.values()):
            for leg in call.legs.values():
                leg.close()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=10)
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
        if self._owns_io:
            self._io.shutdown(wait=False)

    async def __aenter__(self) -> "AudioSocketServer":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def serve_forever(self) -> None:
        assert self._server is not None
        await self._server.serve_forever()

    # ---- internals

    def _notify(self, notice: IngressNotice) -> None:
        self.notices.append(notice)
        if self._on_notice is not None:
            try:
                self._on_notice(notice)
            except Exception:  # a notice sink must never break ingress
                pass

    def _spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        try:
            first = await asyncio.wait_for(read_frame(reader), self.config.uuid_timeout_s or None)
            if first is None:
                raise AudioSocketError(f"connection from {peer} closed before sending a UUID", code="no_uuid")
            if first.kind != Kind.UUID:
                raise AudioSocketError(f"connection from {peer} began with frame type 0x{first.kind:02x}, not a UUID", code="no_uuid")
            key, speaker = self.pairing.leg_of(first.payload)
        except (AudioSocketError, asyncio.TimeoutError, ConnectionError, OSError) as exc:
            if isinstance(exc, asyncio.TimeoutError):
                exc = AudioSocketError(f"connection from {peer} sent no UUID within {self.config.uuid_timeout_s} s", code="no_uuid")
            elif not isinstance(exc, AudioSocketError):
                exc = AudioSocketError(f"connection from {peer} failed: {exc}", code="truncated_frame")
            self._notify(IngressNotice(exc.code, exc.message))
            with contextlib.suppress(Exception):
                writer.close()
            return
        leg = Leg(uuidlib.UUID(bytes=first.payload), speaker, reader, writer)
        call = self._pending.get(key)
        if call is None:
            call = IncomingCall(key=key, call_id=self.pairing.call_id(key), queue_frames=self.config.queue_frames, notify=self._notify, io_executor=self._io)
            self._pending[key] = call
            self._spawn(self._hand_out(call), f"audiosocket-pair-{call.call_id}")
        try:
            call._attach(leg)
        except AudioSocketError as exc:
            self._notify(IngressNotice(exc.code, exc.message, call.call_id, speaker))
            leg.close()
            return
        if call._handed_out:
            self._notify(IngressNotice("late_leg", f"call {call.call_id}: {speaker} leg joined after the call started", call.call_id, speaker))
        # The reader runs in this connection's own task (the one asyncio gave us).
        await self._read_leg(call, leg)

    async def _read_leg(self, call: IncomingCall, leg: Leg) -> None:
        try:
            async with asyncio.timeout(None) as deadline:  # one timer, moved on at every frame
                await self._read_frames(call, leg, deadline)
        except asyncio.TimeoutError:
            call._leg_ended(leg, "error", AudioSocketError(f"no frame for {self.config.idle_timeout_s} s", code="idle"))
        except AudioSocketError as exc:
            call._leg_ended(leg, "error", exc)
        except (ConnectionError, OSError) as exc:
            call._leg_ended(leg, "error", AudioSocketError(f"connection lost: {exc}", code="truncated_frame"))
        except asyncio.CancelledError:
            call._leg_ended(leg, "closed")
            raise
        finally:
            if not leg.done.is_set():
                call._leg_ended(leg, "closed")
            if call.finished and self._pending.get(call.key) is call:
                del self._pending[call.key]

    async def _read_frames(self, call: IncomingCall, leg: Leg, deadline: asyncio.Timeout) -> None:
        idle = self.config.idle_timeout_s or None
        loop = asyncio.get_running_loop()
        while True:
            if idle is not None:
                deadline.reschedule(loop.time() + idle)
            frame = await read_frame(leg.reader)
            if frame is None:
                call._leg_ended(leg, "closed")
                return
            if frame.sample_rate is not None:
                call._accept_audio(leg, frame)
            elif frame.kind == Kind.HANGUP:
                call._leg_ended(leg, "hangup")
                return
            elif frame.kind == Kind.DTMF:
                leg.stats.dtmf.append((frame.payload.decode("ascii", "replace"), (leg.offset or 0) + leg.stats.samples_received))
            elif frame.kind == Kind.ERROR:
                code = frame.payload[0] if frame.payload else 0
                what = ASTERISK_ERRORS.get(code, "no code" if not frame.payload else f"code 0x{code:02x}")
                raise AudioSocketError(f"Asterisk reported an error ({what})", code="asterisk_error")
            elif frame.kind == Kind.UUID and frame.payload != leg.uuid.bytes:
                raise AudioSocketError("a second, different UUID frame in the middle of a leg", code="bad_frame")

    async def _hand_out(self, call: IncomingCall) -> None:
        if self.config.pairing != "customer_only":
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(call._paired.wait(), self.config.pair_timeout_s)
            if len(call.legs) == 1:
                only = next(iter(call.legs))
                other = "partner" if only == "customer" else "customer"
                self._notify(IngressNotice("leg_unpaired", f"call {call.call_id}: no {other} leg within {self.config.pair_timeout_s} s; monitoring the {only} alone", call.call_id, only))
        await call._rate_known.wait()
        if call.sample_rate is None:  # every leg ended before any audio
            self._notify(IngressNotice("empty_call", f"call {call.call_id} ended before any audio arrived", call.call_id))
            if self._pending.get(call.key) is call:
                del self._pending[call.key]
            return
        call._handed_out = True
        self.calls_started += 1
        self._calls.add(call)
        try:
            await self._on_call(call)
        except Exception as exc:  # one call's failure never reaches another
            self._notify(IngressNotice("call_failed", f"call {call.call_id}: {type(exc).__name__}: {exc}", call.call_id))
            for leg in call.legs.values():
                leg.close()
        finally:
            self._calls.discard(call)
