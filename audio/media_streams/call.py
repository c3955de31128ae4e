"""A call arriving over a websocket media stream: both speakers on one time line, bounded, counted.

The protocol sessions (:mod:`audio.media_streams.audiohook`,
:mod:`audio.media_streams.twilio`) decide where each run of samples sits in
audio time; a :class:`StreamCall` holds the result for the consumer:

- :meth:`StreamCall.deliver` puts an :class:`~audio.frames.AudioChunk` on a
  bounded queue; when the consumer is that far behind, the oldest chunk goes
  and is counted (:attr:`StreamCall.dropped_chunks`). The agent's consumer
  never falls behind: its own session queue is where a slow transcriber drops
  audio, counted and reported.
- :meth:`StreamCall.problem` counts bad input by code, logs the first few of
  each code and reports the first of each to the call's notices; the call
  goes on.
- A pause leaves a gap in the time line (:attr:`StreamStats.paused_samples`),
  which is silence, not loss; audio the sender says it discarded, or a gap in
  its own counters, is loss (:attr:`StreamStats.lost_samples`).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from audio.errors import MediaStreamError
from audio.frames import AudioChunk, Speaker
from audio.notices import IngressNotice, NoticeSink
from kernel.queues import DropOldestQueue

log = logging.getLogger("callshield.audio.media_streams")

EARLY_NOTICES = 20
"""Notices a call keeps before its consumer attaches (the oldest go, counted)."""

LOGGED_PER_CODE = 5
"""Problems of one code logged per call; the rest are counted only (a flood cannot flood the log)."""


@dataclass
class StreamStats:
    """Counters of one stream, all in samples at the call's rate unless named otherwise.

    ``samples_received``/``samples_delivered``: per speaker, parsed from the
    wire / handed to the consumer. ``paused_samples``: time line skipped over
    pauses (silence, not loss). ``lost_samples``: audio the sender reported
    discarded, or missing by its own counters. ``problems``: bad input by
    code (``bad_json``, ``bad_seq``...)."""

    samples_received: Counter[str] = field(default_factory=Counter)
    samples_delivered: Counter[str] = field(default_factory=Counter)
    paused_samples: int = 0
    lost_samples: int = 0
    problems: Counter[str] = field(default_factory=Counter)


@dataclass
class Step:
    """What one received message asks of the server (the sans-I/O sessions' answer).

    ``replies``: messages to send, in order. ``opened``: the stream opened
    (AudioHook ``open`` accepted, Twilio ``start``): start the call with it.
    ``closed``: the protocol's end (AudioHook ``close`` answered, Twilio
    ``stop``): end the call. ``chunks``: (speaker, samples, call start
    sample) to deliver. ``problems``: (code, message) to count.
    ``paused_samples`` / ``lost_samples``: time line skipped over a pause /
    over audio lost."""

    replies: list[dict[str, Any]] = field(default_factory=list)
    opened: Any = None
    closed: bool = False
    chunks: list[tuple[Speaker, np.ndarray, int]] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    paused_samples: int = 0
    lost_samples: int = 0


class StreamCall:
    """One call's audio from a websocket media stream.

    ``call_id``: the platform's id (AudioHook ``conversationId``, Twilio
    ``callSid``). ``source_kind``: ``audiohook`` or ``twilio``. ``partner``,
    ``seat``: the console user and seat the stream named (None: the agent's
    default). ``details``: what else the platform said about the call (shown
    in logs, never secrets).

    Iterate :meth:`audio` for the chunks; it ends when :meth:`end` is called
    (``end_reason``: ``hangup`` for the protocol's own close, ``stream_lost``
    when the connection dropped without it, ``refused``, ``shutdown``). With
    ``stream_lost`` the iterator raises ``MediaStreamError(stream_lost)``
    after the last chunk, so the call ends as an error with everything that
    arrived kept.
    """

    def __init__(self, *, call_id: str, source_kind: str, sample_rate: int, queue_chunks: int,
                 partner: str | None = None, seat: str | None = None, details: Mapping[str, str] | None = None) -> None:
        self.call_id = call_id
        self.source_kind = source_kind
        self.sample_rate = sample_rate
        self.partner = partner
        self.seat = seat
        self.details = dict(details or {})
        self.stats = StreamStats()
        self.end_reason: str | None = None
        self._notify: NoticeSink | None = None
        self._early: DropOldestQueue[IngressNotice] = DropOldestQueue(EARLY_NOTICES)
        self._queue: DropOldestQueue[AudioChunk] = DropOldestQueue(queue_chunks)

    @property
    def dropped_chunks(self) -> int:
        """Chunks dropped because the consumer was ``queue_chunks`` behind."""
        return self._queue.dropped

    @property
    def ended(self) -> bool:
        return self.end_reason is not None

    def deliver(self, speaker: Speaker, samples: np.ndarray, start_sample: int) -> None:
        """Queue ``samples`` (int16 mono) of ``speaker`` starting at call sample ``start_sample``."""
        if self.ended or not len(samples):
            return
        self.stats.samples_received[speaker] += len(samples)
        self._queue.put(AudioChunk(speaker, samples, self.sample_rate, start_sample))

    def problem(self, code: str, message: str) -> None:
        """Count bad input (the call goes on); log the first few, notify the first of each code."""
        report_problem(self.stats.problems, code, message, where=f"{self.source_kind} call {self.call_id}", notify=self._notice)

    def _notice(self, code: str, message: str) -> None:
        notice = IngressNotice(code, message, self.call_id)
        if self._notify is None:
            self._early.put(notice)  # kept until the consumer attaches (bounded, oldest dropped)
        else:
            self._notify(notice)

    def attach_notices(self, sink: NoticeSink) -> None:
        """Send this call's notices to ``sink`` from now on, after the ones kept so far."""
        while self._early:
            sink(self._early.get_nowait())
        if self._early.dropped:
            sink(IngressNotice("notices_dropped", f"{self.source_kind} call {self.call_id}: {self._early.dropped} earlier notice(s) not kept", self.call_id))
        self._notify = sink

    def apply(self, step: Step) -> None:
        """Deliver a step's chunks and count its problems and gaps."""
        self.stats.paused_samples += step.paused_samples
        self.stats.lost_samples += step.lost_samples
        for code, message in step.problems:
            self.problem(code, message)
        for speaker, samples, start in step.chunks:
            self.deliver(speaker, samples, start)

    def end(self, reason: str) -> None:
        """No more audio is coming; the iterator ends once the queue is drained."""
        if self.end_reason is None:
            self.end_reason = reason
        self._queue.close()

    def summary(self) -> str:
        """One line of what the stream counted (for the end-of-call notice and the log)."""
        s = self.stats
        parts = [f"{speaker} {s.samples_received[speaker] / self.sample_rate:.1f} s" for speaker in sorted(s.samples_received)]
        if s.paused_samples:
            parts.append(f"paused {s.paused_samples / self.sample_rate:.1f} s")
        if s.lost_samples:
            parts.append(f"lost {s.lost_samples / self.sample_rate:.2f} s")
        if self.dropped_chunks:
            parts.append(f"{self.dropped_chunks} chunk(s) dropped (queue full)")
        if s.problems:
            parts.append("bad input: " + ", ".join(f"{code} x{n}" for code, n in sorted(s.problems.items())))
        return "; ".join(parts) or "no audio"

    async def audio(self) -> AsyncIterator[AudioChunk]:
        """Every chunk delivered, in arrival order, until :meth:`end`."""
        while (chunk := await self._queue.get()) is not None:
            self.stats.samples_delivered[chunk.speaker] += len(chunk.samples)
            yield chunk
        if self.end_reason == "stream_lost":
            raise MediaStreamError(f"the {self.source_kind} stream dropped without closing; what arrived before was kept", code="stream_lost")

    def __aiter__(self) -> AsyncIterator[AudioChunk]:
        return self.audio()


def report_problem(counts: Counter[str], code: str, message: str, *, where: str,
                   notify: Callable[[str, str], None] | None = None) -> None:
    """Count a problem; log the first :data:`LOGGED_PER_CODE` of its code, notify the first."""
    counts[code] += 1
    n = counts[code]
    if n <= LOGGED_PER_CODE:
        log.warning("%s: %s (%s)%s", where, message, code, " - further ones counted only" if n == LOGGED_PER_CODE else "")
    if n == 1 and notify is not None:
        notify(code, f"{where}: {message}")
