"""One received RTP media stream (one SDP ``m=`` line) on one UDP port, as call audio.

:meth:`RtpStream.open` binds the port; every datagram that arrives goes, on
the event loop, through: RTCP? (counted, ignored) → SRTP decryption (if
keyed) → :func:`~audio.rtp.packet.parse_rtp` → payload type
(:class:`~audio.rtp.codecs.PayloadDecoder`: telephone-event and comfort noise
counted and ignored, an unknown type counted and dropped) → the
:class:`~audio.rtp.jitter.JitterBuffer` → :class:`~audio.frames.AudioChunk` s
(int16, 8000 Hz, one per played frame, 20 ms by default) in a bounded queue
read by :meth:`RtpStream.chunks`.

Nothing a datagram holds can raise out of the protocol or grow memory: a
malformed datagram is counted (``malformed``) and logged at most once per
:data:`LOG_EVERY_S`; the hand-off queue is bounded (``queue_chunks``) and
drops its oldest chunk when the consumer falls behind (``dropped_chunks``,
reported with an ``rtp_audio_dropped`` notice at most once per
:data:`LOG_EVERY_S`).

Time line: the first packet's audio sits at call sample
``round((arrival - origin) * 8000)``, ``origin`` being the event-loop time
(``loop.time()``) the call started; after that RTP timestamps place the
audio (see :mod:`audio.rtp.jitter`). Two streams of one call given the same
``origin`` share one time line.

No packet for ``silence_timeout_s`` raises an ``rtp_silent`` notice (once
per silence, and ``rtp_resumed`` when packets come back); the stream goes on
(a call on hold sends nothing). After ``flush_after_s`` without a packet the
jitter buffer plays out what it holds, so the last words before a pause are
not kept waiting for the next packet.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import socket
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from audio.errors import RtpError
from audio.frames import AudioChunk, Speaker
from audio.notices import IngressNotice, NoticeSink
from audio.rtp.codecs import CLOCK_RATE, PayloadDecoder
from audio.rtp.jitter import JitterBuffer, JitterCounts
from audio.rtp.packet import is_rtcp, parse_rtp
from audio.rtp.srtp import SrtpKey
from kernel.queues import DropOldestQueue

__all__ = ["LOG_EVERY_S", "RECEIVE_BUFFER_BYTES", "RtpStats", "RtpStream"]

log = logging.getLogger("callshield.audio.rtp")

LOG_EVERY_S = 10.0
"""Malformed-datagram logs and dropped-audio notices: at most one per this many seconds per stream."""

RECEIVE_BUFFER_BYTES = 1 << 20
"""Socket receive buffer asked for each RTP port (the kernel caps it at ``net.core.rmem_max``):
room for a burst of datagrams while the event loop is busy."""

_WATCH_S = 0.1  # how often the idle watch looks (a bound on how late a flush or a silence notice comes)


@dataclass(frozen=True)
class RtpStats:
    """A snapshot of one stream's counters (cumulative since it opened).

    Datagrams: ``packets`` every datagram received on the port (RTP, RTCP,
    garbage), ``bytes`` their size; ``rtcp`` RTCP datagrams (ignored);
    ``malformed`` not RTP (parse error) or failing SRTP authentication.
    Payloads: ``unknown_payload`` a payload type not in the codec map
    (dropped); ``telephone_events`` RFC 4733 packets, ``comfort_noise`` RFC
    3389 packets (recognised, not audio). Jitter buffer (:mod:`audio.rtp.jitter`):
    ``received`` audio packets given to it, ``duplicate`` (also SRTP replays),
    ``late``, ``reordered``, ``lost``, ``concealed_samples`` (silence in
    place of missing audio), ``resyncs``, ``ssrc_changes``, ``stray``,
    ``overflow``. Output: ``samples`` played (8 kHz), ``chunks`` put in the
    queue, ``dropped_chunks`` dropped from it because the consumer was behind.
    """

    packets: int = 0
    bytes: int = 0
    malformed: int = 0
    rtcp: int = 0
    unknown_payload: int = 0
    telephone_events: int = 0
    comfort_noise: int = 0
    received: int = 0
    duplicate: int = 0
    late: int = 0
    reordered: int = 0
    lost: int = 0
    concealed_samples: int = 0
    resyncs: int = 0
    ssrc_changes: int = 0
    stray: int = 0
    overflow: int = 0
    samples: int = 0
    chunks: int = 0
    dropped_chunks: int = 0

    def __add__(self, other: "RtpStats") -> "RtpStats":
        """Counters summed (a speaker's streams across re-INVITEs)."""
        return RtpStats(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in dataclasses.fields(self)})


_FROM_JITTER = tuple(
    f.name for f in dataclasses.fields(JitterCounts)
    if f.name != "duplicate" and f.name in {g.name for g in dataclasses.fields(RtpStats)}
)
"""The jitter buffer's counters that :attr:`RtpStream.stats` copies as they are (``duplicate`` adds SRTP replays)."""


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes, Any], None]) -> None:
        self.on_datagram = on_datagram

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:  # ICMP errors on a receive-only socket: nothing to do
        pass


class RtpStream:
    """One received media stream on one UDP port. Make it with :meth:`open`.

    Consume it with ``async for chunk in stream.chunks()`` (one consumer);
    :meth:`close` plays out what the jitter buffer holds, then ends the
    iterator. ``stats`` is a :class:`RtpStats` snapshot, ``port`` the bound
    port, ``peer`` the address the last RTP packet came from.
    """

    def __init__(self, *, speaker: Speaker, codecs: Mapping[int, str], origin: float, jitter_ms: int, frame_ms: int,
                 queue_chunks: int, srtp: SrtpKey | None, on_notice: NoticeSink | None, silence_timeout_s: float,
                 flush_after_s: float, call_id: str | None, clock: Callable[[], float]) -> None:
        if jitter_ms < 0 or frame_ms < 1 or queue_chunks < 1 or silence_timeout_s <= 0 or flush_after_s <= 0:
            raise RtpError("jitter_ms >= 0, frame_ms, queue_chunks >= 1 and the timeouts > 0", code="bad_config")
        self.speaker: Speaker = speaker
        self.origin = origin
        self.call_id = call_id
        """Named in notices (the SIP side may set it once the call has an id)."""
        self.decoder = PayloadDecoder(codecs)
        self.jitter = JitterBuffer(self.decoder, depth=jitter_ms * CLOCK_RATE // 1000, frame=frame_ms * CLOCK_RATE // 1000)
        self.srtp = srtp
        self._srtp_session = srtp.inbound() if srtp is not None else None
        self._notify = on_notice
        self.silence_timeout_s = silence_timeout_s
        self.flush_after_s = flush_after_s
        self._clock = clock
        self._queue: DropOldestQueue[AudioChunk] = DropOldestQueue(queue_chunks)
        self._transports: list[asyncio.DatagramTransport] = []
        self._watch: asyncio.Task | None = None
        self._closed = False
        self._opened_at = clock()
        self._last_packet: float | None = None
        self._silent = False
        self._counts = {name: 0 for name in ("packets", "bytes", "malformed", "rtcp", "unknown_payload", "telephone_events",
                                             "comfort_noise", "srtp_replays", "samples", "chunks")}
        self._logged_at: float | None = None
        self._unlogged = 0
        self._dropped_reported = 0
        self._dropped_at: float | None = None
        self.port = 0
        """The bound UDP port (even when a ``port_range`` was given)."""
        self.host = ""
        self.peer: Any = None
        """(host, port) the last well-formed RTP packet came from (None before any)."""

    @classmethod
    async def open(cls, host: str, *, port: int = 0, port_range: tuple[int, int] | None = None, speaker: Speaker,
                   codecs: Mapping[int, str], origin: float, jitter_ms: int = 60, frame_ms: int = 20,
                   queue_chunks: int = 500, srtp: SrtpKey | None = None, on_notice: NoticeSink | None = None,
                   silence_timeout_s: float = 30.0, flush_after_s: float = 0.5, call_id: str | None = None,
                   clock: Callable[[], float] | None = None) -> "RtpStream":
        """Bind a UDP port on ``host`` and start receiving.

        Args:
            host: local address to bind (``0.0.0.0`` for all).
            port: the port to bind when ``port_range`` is None (0: any free port).
            port_range: ``(lo, hi)`` inclusive: bind a free *even* port ``p``
                with ``lo <= p`` and ``p + 1 <= hi``, starting at a random one;
                ``p + 1`` is bound too (RTCP sent there is counted and
                ignored). ``no_port`` when none is free.
            speaker: whose voice the stream carries (``customer`` / ``partner``).
            codecs: payload type -> codec name from the SDP (``{0: "PCMU/8000",
                101: "telephone-event/8000"}``), each in
                :data:`audio.rtp.codecs.SUPPORTED` (``bad_codec`` otherwise).
            origin: event-loop time (``loop.time()``, seconds) the call started:
                call sample 0.
            jitter_ms: jitter buffer depth (ms of later audio waited for).
            frame_ms: ms per chunk played.
            queue_chunks: bound of the hand-off queue (chunks); the oldest
                goes, counted, when the consumer is that far behind.
            srtp: the offer's SDES key to decrypt with (None: plain RTP).
            on_notice: receives :class:`~audio.notices.IngressNotice` s
                (``rtp_silent``, ``rtp_resumed``, ``rtp_audio_dropped``).
            silence_timeout_s: seconds without a packet before ``rtp_silent``.
            flush_after_s: seconds without a packet before the jitter buffer
                plays out what it holds.
            call_id: named in notices.
            clock: seconds, the event loop's clock by default (the clock
                ``origin`` was read from).
        Raises:
            RtpError: ``bad_codec``, ``bad_config``, ``bad_crypto``,
                ``srtp_unavailable``, ``no_port``; ``OSError`` if ``port``
                cannot be bound.
        """
        loop = asyncio.get_running_loop()
        stream = cls(speaker=speaker, codecs=codecs, origin=origin, jitter_ms=jitter_ms, frame_ms=frame_ms,
                     queue_chunks=queue_chunks, srtp=srtp, on_notice=on_notice, silence_timeout_s=silence_timeout_s,
                     flush_after_s=flush_after_s, call_id=call_id, clock=clock or loop.time)
        if port_range is None:
            transport, _ = await loop.create_datagram_endpoint(lambda: _Receiver(stream._datagram), local_addr=(host, port))
            stream._transports.append(transport)
        else:
            stream._transports.extend(await _bind_pair(loop, host, port_range, stream._datagram, stream._rtcp_port_datagram))
        sock = stream._transports[0].get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
            except OSError:  # a smaller buffer still works
                pass
        sockname = stream._transports[0].get_extra_info("sockname")
        stream.host, stream.port = sockname[0], sockname[1]
        stream._watch = loop.create_task(stream._watch_idle(), name=f"rtp-watch-{stream.port}")
        return stream

    # ---- facts

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def stats(self) -> RtpStats:
        """A :class:`RtpStats` snapshot."""
        c, j = self._counts, self.jitter.counts
        return RtpStats(
            **{name: getattr(j, name) for name in _FROM_JITTER}, duplicate=j.duplicate + c["srtp_replays"],
            packets=c["packets"], bytes=c["bytes"], malformed=c["malformed"], rtcp=c["rtcp"], unknown_payload=c["unknown_payload"],
            telephone_events=c["telephone_events"], comfort_noise=c["comfort_noise"],
            samples=c["samples"], chunks=c["chunks"], dropped_chunks=self._queue.dropped,
        )

    # ---- out

    async def chunks(self) -> AsyncIterator[AudioChunk]:
        """The stream's audio, chunk by chunk in play order, until :meth:`close` (then what was held comes first)."""
        while (chunk := await self._queue.get()) is not None:
            yield chunk

    def close(self) -> None:
        """Stop receiving, play out what the jitter buffer holds, end :meth:`chunks` after it. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for transport in self._transports:
            transport.close()
        if self._watch is not None:
            self._watch.cancel()
        self.jitter.flush()
        self._deliver()
        self._queue.close()

    # ---- in

    def _rtcp_port_datagram(self, data: bytes, addr: Any) -> None:
        self._counts["packets"] += 1
        self._counts["bytes"] += len(data)
        self._counts["rtcp"] += 1

    def _datagram(self, data: bytes, addr: Any) -> None:
        if self._closed:
            return
        counts = self._counts
        counts["packets"] += 1
        counts["bytes"] += len(data)
        if is_rtcp(data):
            counts["rtcp"] += 1
            return
        try:
            if self._srtp_session is not None:
                data = self._unprotect(data)
            packet = parse_rtp(data)
        except RtpError as exc:
            if exc.code == "srtp_replay":
                counts["srtp_replays"] += 1
            else:
                counts["malformed"] += 1
                self._log_malformed(exc, addr)
            return
        kind = self.decoder.kind(packet.payload_type)
        if kind != "audio":
            counts[{"event": "telephone_events", "comfort_noise": "comfort_noise", None: "unknown_payload"}[kind]] += 1
            return
        now = self._clock()
        self._last_packet = now
        self.peer = addr
        if self._silent:
            self._silent = False
            self._notice("rtp_resumed", f"RTP on port {self.port} resumed")
        try:
            self.jitter.push(packet, round((now - self.origin) * CLOCK_RATE))
        except Exception as exc:  # a bug must not take the port down: count it with the malformed, log it
            counts["malformed"] += 1
            log.exception("RTP port %d: packet seq %d from %s could not be played: %s", self.port, packet.sequence, addr, exc)
        self._deliver()

    def _unprotect(self, data: bytes) -> bytes:
        try:
            return self._srtp_session.unprotect(data)
        except Exception as exc:  # pylibsrtp.Error, or anything libsrtp's binding raises on junk
            text = str(exc)
            if "replay" in text:
                raise RtpError(f"SRTP replay check: {text}", code="srtp_replay") from exc
            raise RtpError(f"SRTP unprotect failed: {text}", code="srtp_failed") from exc

    def _deliver(self) -> None:
        for frame in self.jitter.drain():
            self._counts["samples"] += len(frame.samples)
            self._counts["chunks"] += 1
            self._queue.put(AudioChunk(self.speaker, frame.samples, CLOCK_RATE, frame.start_sample))
        if self._queue.dropped > self._dropped_reported:
            now = self._clock()
            if self._dropped_at is None or now - self._dropped_at >= LOG_EVERY_S:
                self._notice("rtp_audio_dropped", f"{self._queue.dropped - self._dropped_reported} chunk(s) of {self.speaker} audio dropped: the consumer is behind")
                self._dropped_reported = self._queue.dropped
                self._dropped_at = now

    def _log_malformed(self, exc: RtpError, addr: Any) -> None:
        now = self._clock()
        self._unlogged += 1
        if self._logged_at is None or now - self._logged_at >= LOG_EVERY_S:
            log.warning("RTP port %d: %d malformed datagram(s), latest from %s: %s (%s)", self.port, self._unlogged, addr, exc.message, exc.code)
            self._logged_at = now
            self._unlogged = 0

    def _notice(self, code: str, message: str) -> None:
        if self._notify is None:
            return
        try:
            self._notify(IngressNotice(code, message, self.call_id, self.speaker))
        except Exception:  # a notice sink must never break ingress
            log.exception("notice sink failed")

    async def _watch_idle(self) -> None:
        """Play out held audio after ``flush_after_s`` of quiet; report ``silence_timeout_s`` of it."""
        while not self._closed:
            await asyncio.sleep(min(_WATCH_S, self.flush_after_s))
            now = self._clock()
            quiet = now - (self._last_packet if self._last_packet is not None else self._opened_at)
            if self.jitter.held and quiet >= self.flush_after_s:
                self.jitter.flush()
                self._deliver()
            if not self._silent and quiet >= self.silence_timeout_s:
                self._silent = True
                self._notice("rtp_silent", f"no RTP on port {self.port} for {self.silence_timeout_s:g} s (on hold?); still listening")


async def _bind_pair(loop: asyncio.AbstractEventLoop, host: str, port_range: tuple[int, int],
                     on_rtp: Callable[[bytes, Any], None], on_rtcp: Callable[[bytes, Any], None]) -> list[asyncio.DatagramTransport]:
    """Bind an even port and the odd one above it inside ``port_range``, from a random start."""
    lo, hi = port_range
    if not 0 < lo <= hi <= 65535:
        raise RtpError(f"RTP port range {lo}..{hi} is not within 1..65535", code="bad_config")
    evens = list(range(lo + (lo % 2), hi, 2))  # p + 1 <= hi
    if not evens:
        raise RtpError(f"RTP port range {lo}..{hi} holds no even/odd port pair", code="bad_config")
    start = random.randrange(len(evens))
    for candidate in evens[start:] + evens[:start]:
        try:
            rtp, _ = await loop.create_datagram_endpoint(lambda: _Receiver(on_rtp), local_addr=(host, candidate))
        except OSError:
            continue
        try:
            rtcp, _ = await loop.create_datagram_endpoint(lambda: _Receiver(on_rtcp), local_addr=(host, candidate + 1))
        except OSError:
            rtp.close()
            continue
        return [rtp, rtcp]
    raise RtpError(f"no free even RTP port in {lo}..{hi}", code="no_port")
