"""The jitter buffer: RTP packets in, in any order; fixed frames of call audio out, in timestamp order.

Sans-I/O: :meth:`JitterBuffer.push` takes a packet and the call sample at
which it arrived (the caller reads its clock); :meth:`JitterBuffer.pop`
returns the frames that became ready. Nothing here reads a clock or waits.

How it plays (every number in 8 kHz samples, which for every supported codec
is the RTP clock, :mod:`audio.rtp.codecs`):

- **Depth.** A frame ``[t, t + frame)`` of RTP time is played once audio
  reaching ``t + frame + depth`` has arrived (default depth 480 samples,
  60 ms): a packet may come up to ``depth`` of audio time after the ones that
  follow it and still be played in its place. :meth:`flush` plays what is
  held at once (end of a call, or the sender fell silent).
- **Time line.** Frames carry ``start_sample`` on the call-wide time line:
  the first packet of a stream sits at the call sample it arrived at; after
  it, RTP timestamps place every sample (audio time, not arrival time).
- **Loss.** A stretch of a frame no packet covered is filled with silence
  (``concealed_samples``); a sequence number never received when the
  playout passes it is ``lost``. A gap in timestamps with no gap in
  sequence numbers (silence suppression, comfort noise) is filled with
  silence too, and counted in ``concealed_samples`` only.
- **Order.** Sequence numbers (16 bit) and timestamps (32 bit) are extended
  across their wraparound (RFC 3550 A.1), so a stream can run for days.
  ``reordered``: a packet arriving after one with a higher sequence number;
  ``late``: one arriving after its place was played (dropped; if it had
  been counted lost, it is not lost any more); ``duplicate``: a sequence
  number already received (dropped).
- **Resync.** A new SSRC, or a sequence jump of :data:`MAX_DROPOUT` or more,
  is adopted only when the next packet confirms it (its sequence number
  follows: RFC 3550 A.1 probation); until then such a packet is held aside
  and, if never confirmed, counted as ``stray``. A timestamp jump of more
  than ``max_gap`` samples from an in-sequence packet resyncs at once, and so
  does a packet arriving more than ``max_gap`` after the call sample its
  timestamp places it at (a sender whose timestamps stood still through a
  hold would otherwise fall behind the other speaker for good). At a
  resync what is held is played out first, then the new run starts at the
  call sample its first packet arrived at (never before the end of what was
  already played): ``resyncs`` counts them, ``ssrc_changes`` those that came
  with a new SSRC.
- **Bounds.** At most ``max_packets`` packets are held; one more plays the
  oldest frame early (``overflow``) rather than grow. A frame is at most
  ``frame`` samples; a gap filled with silence is at most ``max_gap``.
"""

from __future__ import annotations

from bisect import insort
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from audio.rtp.packet import RtpPacket

__all__ = ["MAX_DROPOUT", "MAX_MISORDER", "JitterBuffer", "JitterCounts", "PayloadSource", "PlayoutFrame"]

MAX_DROPOUT = 3000
"""A forward sequence jump this large or larger is not loss but a new run (RFC 3550 A.1)."""

MAX_MISORDER = 100
"""A backward sequence step within this many is a late or reordered packet (RFC 3550 A.1); beyond it, a jump."""

_SEEN_KEPT = 4096  # sequence numbers remembered for duplicate and loss accounting


class PayloadSource(Protocol):
    """What the buffer needs of a codec (:class:`audio.rtp.codecs.PayloadDecoder` is one)."""

    def samples(self, payload_type: int, payload: bytes) -> int: ...

    def decode(self, payload_type: int, payload: bytes) -> np.ndarray: ...

    def reset(self) -> None: ...


@dataclass(frozen=True, eq=False)
class PlayoutFrame:
    """A run of played audio.

    Attributes:
        start_sample: call-wide sample index of ``samples[0]``.
        samples: int16 at 8000 Hz, at most the buffer's ``frame`` samples
            (fewer only for the last frame before a flush or a resync).
        concealed: how many of ``samples`` are silence standing in for audio
            no packet brought.
        resync: True on the first frame after a resync (its start may jump forward).
    """

    start_sample: int
    samples: np.ndarray
    concealed: int = 0
    resync: bool = False


@dataclass
class JitterCounts:
    """The buffer's running counters (see the module docstring for each meaning)."""

    received: int = 0
    duplicate: int = 0
    late: int = 0
    reordered: int = 0
    lost: int = 0
    concealed_samples: int = 0
    played_samples: int = 0
    resyncs: int = 0
    ssrc_changes: int = 0
    stray: int = 0
    overflow: int = 0


class _Held:
    __slots__ = ("seq", "ts", "packet", "n", "audio")

    def __init__(self, seq: int, ts: int, packet: RtpPacket, n: int) -> None:
        self.seq, self.ts, self.packet, self.n = seq, ts, packet, n
        self.audio: np.ndarray | None = None

    def __lt__(self, other: "_Held") -> bool:
        return (self.ts, self.seq) < (other.ts, other.seq)


@dataclass
class _Run:
    """One run of packets from one SSRC with continuous numbering (between resyncs)."""

    ssrc: int
    max_seq: int  # extended sequence number of the highest packet
    ts_ref: int  # extended timestamp of that packet
    ts_raw: int  # its 32-bit timestamp
    offset: int  # call sample = extended timestamp + offset
    first: bool  # the stream's first run (no resync flag on its first frame)
    play: int | None = None  # extended timestamp of the next sample to play
    end: int = 0  # highest extended timestamp + samples received
    held: list[_Held] = field(default_factory=list)
    seen: set[int] = field(default_factory=set)
    seen_order: deque[int] = field(default_factory=deque)
    played_seq: int | None = None
    first_played_seq: int | None = None
    resync_pending: bool = True

    def saw(self, seq: int) -> None:
        if len(self.seen_order) >= _SEEN_KEPT:
            self.seen.discard(self.seen_order.popleft())
        self.seen.add(seq)
        self.seen_order.append(seq)


class JitterBuffer:
    """A per-stream jitter buffer (sans-I/O; see the module docstring).

    Args:
        source: the stream's payload decoder (sample counts and decoding; its
            ``reset`` is called at every resync).
        depth: samples of later audio to wait for before a frame plays (480 = 60 ms).
        frame: samples per frame played (160 = 20 ms).
        max_packets: packets held at most (bound on memory).
        max_gap: the largest timestamp jump (samples) filled with silence; a
            larger one from an in-sequence packet is a resync (16000 = 2 s).
    """

    def __init__(self, source: PayloadSource, *, depth: int = 480, frame: int = 160, max_packets: int = 200, max_gap: int = 16000) -> None:
        if depth < 0 or frame < 1 or max_packets < 1 or max_gap < frame:
            raise ValueError("depth >= 0, frame >= 1, max_packets >= 1 and max_gap >= frame")
        self.source = source
        self.depth = depth
        self.frame = frame
        self.max_packets = max_packets
        self.max_gap = max_gap
        self.counts = JitterCounts()
        self._run: _Run | None = None
        self._candidate: tuple[RtpPacket, int] | None = None  # a packet that may start a new run (probation)
        self._ready: deque[PlayoutFrame] = deque()
        self._last_end: int | None = None  # call sample one past the last played sample

    # ---- facts

    @property
    def held(self) -> int:
        """Packets held, waiting to be played."""
        return len(self._run.held) if self._run else 0

    @property
    def ssrc(self) -> int | None:
        """SSRC of the current run (None before the first packet)."""
        return self._run.ssrc if self._run else None

    @property
    def played_until(self) -> int | None:
        """Call sample one past the last sample played (None before any)."""
        return self._last_end

    def follow(self, sample: int) -> None:
        """Continue a time line already played up to call sample ``sample`` (another
        stream of the same speaker, which this one replaces): no frame will
        start before it. Call it before the first frame plays."""
        self._last_end = sample if self._last_end is None else max(self._last_end, sample)

    # ---- in

    def push(self, packet: RtpPacket, arrival: int) -> None:
        """Take an audio packet that arrived at call sample ``arrival``; frames it
        makes ready are then returned by :meth:`pop`."""
        self.counts.received += 1
        run = self._run
        if run is None:
            self._start(packet, arrival)
            return
        if packet.ssrc != run.ssrc:
            self._probation(packet, arrival, new_ssrc=True)
            return
        step = (packet.sequence - run.max_seq) & 0xFFFF
        if step < MAX_DROPOUT:
            seq = run.max_seq + step
        elif step <= 0x10000 - MAX_MISORDER:
            self._probation(packet, arrival, new_ssrc=False)
            return
        else:
            seq = run.max_seq - (0x10000 - step)
        if seq in run.seen:
            self.counts.duplicate += 1
            return
        delta = ((packet.timestamp - run.ts_raw + 0x80000000) & 0xFFFFFFFF) - 0x80000000
        ts = run.ts_ref + delta
        n = self.source.samples(packet.payload_type, packet.payload)
        if seq > run.max_seq:
            # The sender's clock jumped, or it fell far behind the call's (timestamps that
            # did not advance through a hold): a new run, placed by arrival.
            if abs(delta) > self.max_gap or arrival - (ts + run.offset) > self.max_gap:
                self.counts.resyncs += 1
                self._restart(packet, arrival)
                return
            run.max_seq, run.ts_ref, run.ts_raw = seq, ts, packet.timestamp
        else:
            self.counts.reordered += 1
            if abs(delta) > self.max_gap + MAX_MISORDER * self.frame:  # an old packet from another time: not ours to place
                self.counts.stray += 1
                return
        run.saw(seq)
        if (run.played_seq is not None and seq < run.played_seq) or (run.play is not None and ts + max(n, 1) <= run.play):
            self.counts.late += 1
            if run.first_played_seq is not None and run.played_seq is not None and run.first_played_seq < seq < run.played_seq:
                self.counts.lost -= 1  # it was counted lost when the playout passed it
            return
        insort(run.held, _Held(seq, ts, packet, n))
        run.end = max(run.end, ts + n)
        self._release(run, run.end - self.depth, partial=False)
        while len(run.held) > self.max_packets:
            self.counts.overflow += 1
            self._release(run, (run.play if run.play is not None else run.held[0].ts) + self.frame, partial=True)

    def flush(self) -> None:
        """Play everything held now (the last frame may be short); later packets continue the same run."""
        if self._run is not None:
            self._release(self._run, self._run.end, partial=True)
        if self._candidate is not None:
            self._candidate = None

    # ---- out

    def pop(self) -> PlayoutFrame | None:
        """The next ready frame, in play order; None when none is ready."""
        return self._ready.popleft() if self._ready else None

    def drain(self) -> Iterator[PlayoutFrame]:
        """Every ready frame, in play order (:meth:`pop` until None)."""
        while self._ready:
            yield self._ready.popleft()

    # ---- runs

    def _start(self, packet: RtpPacket, arrival: int) -> None:
        ts = 0x100000000 + packet.timestamp  # extended values start one cycle up: a reordered predecessor stays positive
        seq = 0x10000 + packet.sequence
        run = _Run(packet.ssrc, seq, ts, packet.timestamp, arrival - ts, first=self._last_end is None)
        self._run = run
        n = self.source.samples(packet.payload_type, packet.payload)
        run.saw(seq)
        insort(run.held, _Held(seq, ts, packet, n))
        run.end = ts + n
        self._release(run, run.end - self.depth, partial=False)

    def _restart(self, packet: RtpPacket, arrival: int) -> None:
        if self._run is not None:
            self._release(self._run, self._run.end, partial=True)
        self.source.reset()
        self._start(packet, arrival)

    def _probation(self, packet: RtpPacket, arrival: int, *, new_ssrc: bool) -> None:
        """A packet that does not follow the run: adopt a new run if the one held aside is its predecessor."""
        held = self._candidate
        if held is not None and held[0].ssrc == packet.ssrc and packet.sequence == (held[0].sequence + 1) & 0xFFFF:
            self._candidate = None
            self.counts.stray -= 1  # the held-aside packet was not stray after all
            self.counts.resyncs += 1
            if new_ssrc:
                self.counts.ssrc_changes += 1
            self.counts.received -= 1  # pushed again below
            self._restart(*held)
            self.push(packet, arrival)
            return
        self._candidate = (packet, arrival)
        self.counts.stray += 1

    # ---- playout

    def _release(self, run: _Run, limit: int, *, partial: bool) -> None:
        """Play frames of ``run`` up to extended timestamp ``limit`` (whole frames only unless ``partial``)."""
        if run.play is None:  # the run's first frame: its start is fixed only when it plays
            if not run.held:
                return
            first = run.held[0].ts
            if first + self.frame > limit and not (partial and first < limit):
                return
            run.play = first
            if self._last_end is not None:
                run.offset = max(run.offset, self._last_end - run.play)
        while True:
            end = run.play + self.frame
            if end > limit:
                if not partial or run.play >= limit:
                    return
                end = limit
            self._emit(run, run.play, end)
            run.play = end

    def _emit(self, run: _Run, start: int, end: int) -> None:
        out = np.zeros(end - start, dtype=np.int16)
        covered = np.zeros(end - start, dtype=bool)
        keep: list[_Held] = []
        for item in run.held:
            if item.ts >= end:
                keep.append(item)
                continue
            if item.audio is None:
                item.audio = self.source.decode(item.packet.payload_type, item.packet.payload)
            lo, hi = max(item.ts, start), min(item.ts + item.n, end)
            if hi > lo:
                out[lo - start:hi - start] = item.audio[lo - item.ts:hi - item.ts]
                covered[lo - start:hi - start] = True
            if item.ts + item.n > end:
                keep.append(item)
            else:
                self._played(run, item.seq)
        run.held = keep
        concealed = int((~covered).sum())
        self.counts.concealed_samples += concealed
        self.counts.played_samples += end - start
        resync = run.resync_pending and not run.first
        run.resync_pending = False
        self._ready.append(PlayoutFrame(start + run.offset, out, concealed, resync))
        self._last_end = end + run.offset

    def _played(self, run: _Run, seq: int) -> None:
        if run.played_seq is None:
            run.played_seq = run.first_played_seq = seq
        elif seq > run.played_seq:
            self.counts.lost += sum(1 for missing in range(run.played_seq + 1, seq) if missing not in run.seen)
            run.played_seq = seq
