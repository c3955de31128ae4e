"""A call arriving over AudioSocket: its legs (one TCP connection per direction), its audio, its end.

An :class:`IncomingCall` gathers the customer leg and the partner leg of one
call on one call-wide time line (sample indices). The server
(:mod:`audio.audiosocket.server`) feeds it frames; the consumer iterates
:meth:`IncomingCall.audio`. Only the end of a call flows back to Asterisk:
when a supervisor authorizes ending the call, :meth:`IncomingCall.end_call`
may play a closing message to the customer (paced slin frames, 20 ms each)
and then sends the hang-up frame on every leg.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid as uuidlib
from collections import deque
from collections.abc import AsyncIterator
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from audio.audiosocket.frames import ACCEPTED_RATES, FRAME_MS, Frame, FrameDecoder, encode_audio, encode_hangup
from audio.errors import AudioSocketError, WavError
from audio.frames import AudioChunk, Speaker
from audio.notices import IngressNotice, NoticeSink
from audio.wav import read_mono
from kernel.queues import DropOldestQueue

__all__ = ["DTMF_KEPT", "IncomingCall", "IngressNotice", "Leg", "LegStats", "NoticeSink", "load_closing_message"]

DTMF_KEPT = 64
"""DTMF digits a leg keeps: the latest ones (a keypad flood cannot grow a leg without limit)."""


@dataclass
class LegStats:
    """Counters of one leg. ``samples_received``: audio samples parsed from the
    socket; ``samples_delivered``: samples handed to the consumer; ``dtmf``:
    the latest :data:`DTMF_KEPT` (digit, call sample index) pairs, oldest
    first; ``dtmf_dropped``: older digits let go to make room (counted, not
    kept); ``end_reason``: ``hangup``, ``closed``, ``error``,
    ``authorized_end`` or None while live."""

    samples_received: int = 0
    samples_delivered: int = 0
    dtmf: deque[tuple[str, int]] = field(default_factory=lambda: deque(maxlen=DTMF_KEPT))
    dtmf_dropped: int = 0
    end_reason: str | None = None
    error_code: str | None = None

    def heard_dtmf(self, digit: str, sample: int) -> None:
        """Keep a DTMF digit heard at call sample ``sample``; the oldest kept one goes (counted) when full."""
        if len(self.dtmf) == self.dtmf.maxlen:
            self.dtmf_dropped += 1
        self.dtmf.append((digit, sample))


class Leg:
    """One AudioSocket connection: one direction of one call."""

    def __init__(self, uuid: uuidlib.UUID, speaker: Speaker, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 decoder: FrameDecoder | None = None) -> None:
        self.uuid = uuid
        self.speaker: Speaker = speaker
        self.reader = reader
        self.writer = writer
        self.decoder = decoder or FrameDecoder()
        """This connection's frame decoder (it may hold bytes read past the UUID frame)."""
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
    normally when no leg is left. The hand-off to the consumer is bounded
    (``queue_frames``) and loses nothing: a consumer that falls that far behind
    makes the legs wait (the socket holds the rest). The agent's consumer never
    waits: its call session's queue is where a slow transcriber drops the
    oldest audio, counted and reported (``audio_dropped``). Implements the agent's ``CallControl``:
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
        self._queue: DropOldestQueue[AudioChunk] = DropOldestQueue(queue_frames)
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

    # ---- feeding (server side)

    def _attach(self, leg: Leg) -> None:
        if leg.speaker in self.legs:
            raise AudioSocketError(f"call {self.call_id} already has a {leg.speaker} leg", code="duplicate_leg")
        self.legs[leg.speaker] = leg
        if len(self.legs) == 2:
            self._paired.set()

    async def _accept_audio(self, leg: Leg, frame: Frame) -> None:
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
        await self._queue.put_wait(chunk)

    def _consumer_gone(self) -> None:
        """The call's handler returned: nothing reads :meth:`audio` any more, so
        legs still on the wire never wait for room (what they send is dropped)."""
        self._queue.close()

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
            self._queue.close()

    # ---- consuming

    async def audio(self) -> AsyncIterator[AudioChunk]:
        """Every chunk of every leg, as received (one per audio frame, in arrival
        order), until the last leg ends; then the iterator ends normally."""
        while (chunk := await self._queue.get()) is not None:
            self.legs[chunk.speaker].stats.samples_delivered += len(chunk.samples)
            yield chunk

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
    try:
        return read_mono(path, rate)
    except WavError as exc:
        raise AudioSocketError(f"closing message: {exc.message}", code="bad_closing_message") from exc
