"""A call arriving as RTP (SIPREC or plain SIP): its media streams, merged into one call's audio.

A :class:`MediaCall` gathers the :class:`~audio.rtp.stream.RtpStream` s of one
call: two (customer and partner, SIPREC's two labelled streams) or one (a
mixed stream from a PBX's spy or fork). Give every stream of a call the same
``origin`` (event-loop time the call started) and they share one call-wide
time line, as :class:`~audio.audiosocket.call.IncomingCall` legs do.

The consumer (the agent, as with AudioSocket) iterates :meth:`MediaCall.audio`.
The signalling side calls :meth:`MediaCall.end` on BYE, CANCEL or a timeout;
the streams play out what their jitter buffers hold, and the iterator ends
once every chunk was delivered. RTP cannot hang up a call: ending it on a
supervisor's authorization is the signalling side's business (a SIP BYE to
a plain SIP caller, a webhook for SIPREC).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable

from audio.frames import AudioChunk
from audio.notices import IngressNotice, NoticeSink
from audio.rtp.codecs import CLOCK_RATE
from audio.rtp.stream import RtpStats, RtpStream
from kernel.queues import DropOldestQueue

__all__ = ["MediaCall"]


class MediaCall:
    """One call's RTP media streams as one stream of :class:`AudioChunk` s.

    Args:
        call_id: the call's id (the SIP Call-ID, or the SIPREC session id), set
            on every stream for its notices.
        streams: the call's streams (more may come with :meth:`add_stream`).
        queue_chunks: bound of the merged hand-off. Nothing is dropped here: a
            consumer that falls behind makes the streams' own queues fill, and
            those drop their oldest chunks, counted (``dropped_chunks``).
        notify: receives the call's :class:`~audio.notices.IngressNotice` s
            (``stream_replaced``); give the streams the same sink.

    Once a stream belongs to a call, only the call reads its chunks.
    """

    sample_rate = CLOCK_RATE
    """Hz of every chunk (8000)."""

    def __init__(self, call_id: str, streams: Iterable[RtpStream] = (), *, queue_chunks: int = 1000, notify: NoticeSink | None = None) -> None:
        self.call_id = call_id
        self.end_reason: str | None = None
        """Why the call ended, as the signalling side said in :meth:`end` (``bye``,
        ``cancel``, ``timeout``, ``error``, ...); None while live."""
        self._notify = notify
        self._queue: DropOldestQueue[AudioChunk] = DropOldestQueue(queue_chunks)
        self._streams: list[RtpStream] = []
        self._pumps: set[asyncio.Task] = set()
        self._ended = False
        self._delivered: dict[str, int] = {}
        for stream in streams:
            self.add_stream(stream)

    # ---- facts

    @property
    def streams(self) -> dict[str, RtpStream]:
        """The live (not closed) stream of each speaker."""
        return {stream.speaker: stream for stream in self._streams if not stream.closed}

    @property
    def speakers(self) -> tuple[str, ...]:
        """Speakers that have had a stream, in the order they were added."""
        return tuple(dict.fromkeys(stream.speaker for stream in self._streams))

    @property
    def finished(self) -> bool:
        """True once :meth:`end` was called and every stream is closed (the
        audio iterator may still be handing out the last chunks)."""
        return self._ended and all(stream.closed for stream in self._streams)

    def stats(self) -> dict[str, RtpStats]:
        """Counters per speaker, summed over every stream that speaker had (re-INVITEs may replace one)."""
        out: dict[str, RtpStats] = {}
        for stream in self._streams:
            out[stream.speaker] = out.get(stream.speaker, RtpStats()) + stream.stats
        return out

    def samples_delivered(self) -> dict[str, int]:
        """Samples handed to the consumer, per speaker."""
        return dict(self._delivered)

    # ---- signalling side

    def add_stream(self, stream: RtpStream) -> None:
        """Add a stream (a re-INVITE may bring one); call it right after
        :meth:`RtpStream.open`, before packets play. A live stream of the same
        speaker is closed first (its held audio played out), with a
        ``stream_replaced`` notice, and the new one's audio starts no earlier
        than where the old one's ended. Must be called on the event loop;
        ignored (the stream is closed) once the call has ended."""
        if self._ended:
            stream.close()
            return
        stream.call_id = stream.call_id or self.call_id
        for old in self._streams:
            if old.speaker == stream.speaker and old is not stream:
                replaced = not old.closed
                old.close()  # plays out what it held first
                if old.jitter.played_until is not None:
                    stream.jitter.follow(old.jitter.played_until)  # the new stream goes on after it, never on top
                if not replaced:
                    continue
                self._notice(IngressNotice("stream_replaced", f"call {self.call_id}: {stream.speaker} media moved from port {old.port} to {stream.port}", self.call_id, stream.speaker))
        if stream in self._streams:
            return
        self._streams.append(stream)
        task = asyncio.get_running_loop().create_task(self._pump(stream), name=f"rtp-call-{self.call_id}-{stream.speaker}")
        self._pumps.add(task)
        task.add_done_callback(self._pump_done)

    def end(self, reason: str = "bye") -> None:
        """The call is over: close every stream; :meth:`audio` ends after their
        last chunks. The first reason given is kept. Idempotent."""
        if self.end_reason is None:
            self.end_reason = reason
        self._ended = True
        for stream in self._streams:
            stream.close()
        if not self._pumps:
            self._queue.close()

    # ---- consumer side

    async def audio(self) -> AsyncIterator[AudioChunk]:
        """Every chunk of every stream, in the order the streams played them,
        start samples on the call-wide time line, until :meth:`end` and the last chunk."""
        while (chunk := await self._queue.get()) is not None:
            self._delivered[chunk.speaker] = self._delivered.get(chunk.speaker, 0) + len(chunk.samples)
            yield chunk

    def __aiter__(self) -> AsyncIterator[AudioChunk]:
        return self.audio()

    def consumer_gone(self) -> None:
        """Nothing reads :meth:`audio` any more (the call's handler returned):
        the merged queue stops holding streams back, and the call ends (``closed``)."""
        self._queue.close()
        self.end("closed")

    # ---- internals

    async def _pump(self, stream: RtpStream) -> None:
        async for chunk in stream.chunks():
            await self._queue.put_wait(chunk)

    def _pump_done(self, task: asyncio.Task) -> None:
        self._pumps.discard(task)
        if self._ended and not self._pumps:
            self._queue.close()

    def _notice(self, notice: IngressNotice) -> None:
        if self._notify is not None:
            try:
                self._notify(notice)
            except Exception:  # a notice sink must never break ingress
                pass
