"""The jitter buffer: order, loss, duplicates, lateness, wraparound, resync, bounds (sans-I/O, no sockets)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audio.g711 import decode_ulaw
from audio.rtp.codecs import PayloadDecoder
from audio.rtp.jitter import JitterBuffer, PlayoutFrame
from audio.rtp.packet import RtpPacket

FRAME = 160
ARRIVAL = 8000  # call sample the first packet arrives at


def code(k: int) -> int:
    """A mu-law byte that tells packet ``k`` apart (never a zero code: 0x7F, 0xFF)."""
    return 0x10 + k % 100


def packet(k: int, *, seq0: int = 1000, ts0: int = 50_000, ssrc: int = 7, n: int = FRAME) -> RtpPacket:
    return RtpPacket(0, (seq0 + k) & 0xFFFF, (ts0 + k * n) & 0xFFFFFFFF, ssrc, k == 0, bytes([code(k)]) * n)


def expected(ks, n: int = FRAME) -> np.ndarray:
    """The audio of packets ``ks`` in a row; None in ``ks`` is a packet's worth of silence."""
    return np.concatenate([np.zeros(n, np.int16) if k is None else decode_ulaw(bytes([code(k)]) * n) for k in ks])


def buffer(**kw) -> JitterBuffer:
    return JitterBuffer(PayloadDecoder({0: "PCMU/8000"}), **kw)


def run(jb: JitterBuffer, pushes, *, flush: bool = True) -> list[PlayoutFrame]:
    """Push (packet, arrival) pairs; return every frame played (with a flush at the end)."""
    frames: list[PlayoutFrame] = []
    for p, arrival in pushes:
        jb.push(p, arrival)
        frames.extend(jb.drain())
    if flush:
        jb.flush()
        frames.extend(jb.drain())
    return frames


def joined(frames: list[PlayoutFrame]) -> tuple[int, np.ndarray]:
    """(start sample, samples) of frames that must follow one another without a gap."""
    for a, b in zip(frames, frames[1:]):
        assert b.start_sample == a.start_sample + len(a.samples), f"gap or overlap at {a.start_sample}..{b.start_sample}"
    return frames[0].start_sample, np.concatenate([f.samples for f in frames])


def in_time(ks):
    """Packets ``ks`` pushed in the order given, each arriving at its own audio time."""
    return [(packet(k), ARRIVAL + k * FRAME) for k in ks]


def test_in_order_stream_plays_after_the_depth_and_starts_at_the_first_arrival():
    jb = buffer(depth=480)
    for k in range(3):
        jb.push(packet(k), ARRIVAL + k * FRAME)
    assert jb.pop() is None  # 60 ms of audio held, none of it past the depth yet
    jb.push(packet(3), ARRIVAL + 3 * FRAME)
    first = jb.pop()
    assert first is not None and first.start_sample == ARRIVAL and np.array_equal(first.samples, expected([0]))
    assert jb.pop() is None
    frames = [first] + run(jb, in_time(range(4, 50)))
    start, audio = joined(frames)
    assert start == ARRIVAL and np.array_equal(audio, expected(range(50)))
    assert jb.counts.lost == jb.counts.duplicate == jb.counts.late == jb.counts.reordered == jb.counts.concealed_samples == 0
    assert jb.counts.received == 50 and jb.counts.played_samples == 50 * FRAME


def test_reordered_packets_within_the_depth_play_in_their_place():
    order = list(range(40))
    order[5], order[6] = order[6], order[5]
    order[20], order[22] = order[22], order[20]  # 22, 21, 20: two packets after a higher one, 20 two places late
    jb = buffer()
    start, audio = joined(run(jb, [(packet(k), ARRIVAL + i * FRAME) for i, k in enumerate(order)]))
    assert np.array_equal(audio, expected(range(40)))
    assert jb.counts.reordered == 3 and jb.counts.lost == 0 and jb.counts.late == 0


def test_a_packet_arriving_before_its_predecessor_at_the_very_start_still_plays():
    jb = buffer()
    start, audio = joined(run(jb, [(packet(1), ARRIVAL), (packet(0), ARRIVAL + 30)] + in_time(range(2, 10))))
    assert start == ARRIVAL - FRAME  # the first arrival anchors packet 1; packet 0 sits one packet before it
    assert np.array_equal(audio, expected(range(10)))


def test_duplicates_are_dropped_and_counted():
    pushes = in_time(range(20))
    pushes.insert(8, (packet(5), ARRIVAL + 8 * FRAME))
    pushes.insert(15, (packet(12), ARRIVAL + 14 * FRAME))
    jb = buffer()
    _, audio = joined(run(jb, pushes))
    assert np.array_equal(audio, expected(range(20)))
    assert jb.counts.duplicate == 2 and jb.counts.received == 22


def test_lost_packets_are_concealed_with_silence_and_counted():
    jb = buffer()
    _, audio = joined(run(jb, in_time([k for k in range(30) if k not in (7, 8, 19)])))
    assert np.array_equal(audio, expected([None if k in (7, 8, 19) else k for k in range(30)]))
    assert jb.counts.lost == 3 and jb.counts.concealed_samples == 3 * FRAME


def test_a_packet_after_its_place_was_played_is_late_not_lost():
    pushes = in_time([k for k in range(30) if k != 5])
    pushes.insert(12, (packet(5), ARRIVAL + 13 * FRAME))  # frame 5 was played when packet 8 arrived
    jb = buffer()
    _, audio = joined(run(jb, pushes))
    assert np.array_equal(audio, expected([None if k == 5 else k for k in range(30)]))
    assert jb.counts.late == 1 and jb.counts.lost == 0 and jb.counts.concealed_samples == FRAME


def test_sequence_numbers_wrap_without_loss_or_resync():
    jb = buffer()
    pushes = [(packet(k, seq0=65530), ARRIVAL + k * FRAME) for k in range(20) if k != 8]  # seq 65538 & 0xFFFF = 2 lost
    pushes[4], pushes[5] = pushes[5], pushes[4]  # a reorder across the wrap (65534, 65535)
    _, audio = joined(run(jb, pushes))
    assert np.array_equal(audio, expected([None if k == 8 else k for k in range(20)]))
    assert jb.counts.lost == 1 and jb.counts.resyncs == 0 and jb.counts.reordered == 1


def test_timestamps_wrap_without_a_jump():
    jb = buffer()
    ts0 = 2**32 - 5 * FRAME
    start, audio = joined(run(jb, [(packet(k, ts0=ts0), ARRIVAL + k * FRAME) for k in range(20)]))
    assert start == ARRIVAL and np.array_equal(audio, expected(range(20)))
    assert jb.counts.resyncs == 0 and jb.counts.concealed_samples == 0


def test_a_long_call_wraps_the_sequence_several_times():
    jb = buffer(depth=0)
    n = 2 * 65536 + 100  # from 65530: the sequence number wraps three times, the timestamp once
    for k in range(n):
        jb.push(RtpPacket(0, (65530 + k) & 0xFFFF, (2**32 - 3 * FRAME + k * FRAME) & 0xFFFFFFFF, 1, False, b"\x20" * FRAME), k * FRAME)
        for frame in jb.drain():
            pass
    assert jb.counts.lost == 0 and jb.counts.resyncs == 0 and jb.played_until == n * FRAME  # depth 0: every frame played at once


def test_a_new_ssrc_is_adopted_when_its_second_packet_confirms_it():
    old = in_time(range(20))
    new = [(packet(k, seq0=40000, ts0=9_999_999, ssrc=99), ARRIVAL + 40 * FRAME + k * FRAME) for k in range(15)]
    jb = buffer()
    frames = run(jb, old + new)
    resync = [i for i, f in enumerate(frames) if f.resync]
    assert len(resync) == 1
    _, before = joined(frames[:resync[0]])
    start, after = joined(frames[resync[0]:])
    assert np.array_equal(before, expected(range(20)))  # the old sender's held audio played out first
    assert start == ARRIVAL + 40 * FRAME  # the new run sits where its first packet arrived
    assert np.array_equal(after, expected(range(15)))  # including the packet held on probation
    assert jb.counts.ssrc_changes == 1 and jb.counts.resyncs == 1 and jb.counts.stray == 0 and jb.counts.lost == 0


def test_a_new_run_never_overlaps_what_was_played():
    jb = buffer()
    old = in_time(range(20))
    new = [(packet(k, seq0=5, ts0=123, ssrc=99), ARRIVAL + 10 * FRAME + k) for k in range(5)]  # arrives "too early"
    frames = run(jb, old + new)
    joined(frames)  # contiguous: the new run starts where the old one ended
    assert jb.counts.ssrc_changes == 1


def test_a_lone_packet_from_another_ssrc_is_stray_and_changes_nothing():
    pushes = in_time(range(20))
    pushes.insert(10, (packet(0, ssrc=666, seq0=3), ARRIVAL + 10 * FRAME))
    jb = buffer()
    _, audio = joined(run(jb, pushes))
    assert np.array_equal(audio, expected(range(20)))
    assert jb.counts.stray == 1 and jb.counts.ssrc_changes == 0 and jb.counts.resyncs == 0


def test_a_huge_sequence_jump_is_a_new_run_once_confirmed():
    old = in_time(range(10))
    jumped = [(packet(k, seq0=1000 + 20000, ts0=50_000 + 10 * FRAME), ARRIVAL + (10 + k) * FRAME) for k in range(10)]
    jb = buffer()
    frames = run(jb, old + jumped)
    _, audio = joined(frames)
    assert np.array_equal(audio, np.concatenate([expected(range(10)), expected(range(10))]))
    assert jb.counts.resyncs == 1 and jb.counts.ssrc_changes == 0 and jb.counts.lost == 0 and jb.counts.stray == 0


def test_a_timestamp_jump_from_an_in_sequence_packet_resyncs_at_its_arrival():
    old = in_time(range(10))
    jumped = [(RtpPacket(0, 1010 + k, 50_000 + 10 * FRAME + 10_000_000 + k * FRAME, 7, False, bytes([code(k)]) * FRAME),
               ARRIVAL + (10 + k) * FRAME + 4000) for k in range(10)]
    jb = buffer()
    frames = run(jb, old + jumped)
    resync = next(i for i, f in enumerate(frames) if f.resync)
    assert frames[resync].start_sample == ARRIVAL + 10 * FRAME + 4000
    assert jb.counts.resyncs == 1 and jb.counts.concealed_samples == 0  # no 20 minutes of silence


def test_a_timestamp_gap_without_a_sequence_gap_is_silence_not_loss():
    pushes = [(RtpPacket(0, 1000 + k, 50_000 + k * FRAME + (4 * FRAME if k >= 10 else 0), 7, False, bytes([code(k)]) * FRAME),
               ARRIVAL + k * FRAME) for k in range(20)]
    jb = buffer()
    _, audio = joined(run(jb, pushes))
    assert np.array_equal(audio, expected(list(range(10)) + [None] * 4 + list(range(10, 20))))
    assert jb.counts.lost == 0 and jb.counts.concealed_samples == 4 * FRAME


def test_packets_longer_than_a_frame_are_split_across_frames():
    n = 240  # 30 ms packets, 20 ms frames
    jb = buffer()
    frames = run(jb, [(packet(k, n=n), ARRIVAL + k * n) for k in range(21)])
    assert {len(f.samples) for f in frames[:-1]} == {FRAME}
    _, audio = joined(frames)
    assert np.array_equal(audio, expected(range(21), n=n))


def test_held_packets_are_bounded_and_the_overflow_is_counted():
    jb = buffer(max_packets=50)
    for k in range(2000):  # a flood: new sequence numbers, the same timestamp, so nothing ever gets past the depth
        jb.push(RtpPacket(0, k, 1000, 7, False, b"\x20" * FRAME), ARRIVAL)
        assert jb.held <= 50
        list(jb.drain())
    assert jb.counts.overflow > 0


def test_depth_zero_plays_every_whole_frame_at_once():
    jb = buffer(depth=0)
    jb.push(packet(0), ARRIVAL)
    assert jb.pop() is not None


@pytest.mark.parametrize("kw", [dict(depth=-1), dict(frame=0), dict(max_packets=0), dict(max_gap=10)])
def test_bad_settings_are_refused(kw):
    with pytest.raises(ValueError):
        buffer(**kw)


def test_timestamps_that_stood_still_through_a_hold_are_placed_by_arrival():
    """A sender that stops for 5 s and goes on with the very next timestamp would put its
    later audio 5 s early, out of step with the other speaker: it starts a new run at its arrival."""
    before = in_time(range(10))
    after = [(packet(k), ARRIVAL + k * FRAME + 5 * 8000) for k in range(10, 20)]
    jb = buffer()
    frames = run(jb, before + after)
    resync = next(i for i, f in enumerate(frames) if f.resync)
    assert frames[resync].start_sample == ARRIVAL + 10 * FRAME + 5 * 8000
    assert np.array_equal(np.concatenate([f.samples for f in frames]), expected(range(20)))
    assert jb.counts.resyncs == 1 and jb.counts.lost == 0


def test_a_short_pause_with_standing_timestamps_is_played_on_without_a_resync():
    before = in_time(range(10))
    after = [(packet(k), ARRIVAL + k * FRAME + 8000) for k in range(10, 20)]  # one second late: within max_gap
    jb = buffer()
    _, audio = joined(run(jb, before + after))
    assert np.array_equal(audio, expected(range(20))) and jb.counts.resyncs == 0

arrivals = st.lists(
    st.tuples(
        st.integers(-5, 40),  # packet index around a 30-packet stream: dups, reorders, gaps, strays
        st.sampled_from([7, 7, 7, 7, 99]),  # mostly one sender, sometimes another
        st.sampled_from([0, 0, 0, 0, 0, 20000, 40000]),  # sometimes a huge sequence jump
        st.sampled_from([0, 0, 0, 0, 0, 2**31, 10**6]),  # sometimes a timestamp jump
        st.integers(0, 3000),  # arrival jitter (samples)
        st.sampled_from([0, 80, 160, 240]),  # payload length
    ),
    max_size=120,
)


@settings(max_examples=200, deadline=None)
@given(arrivals, st.integers(0, 960), st.booleans())
def test_any_arrivals_play_in_order_without_overlap_and_stay_bounded(pushes, depth, flush_midway):
    jb = buffer(depth=depth, max_packets=20)
    frames: list[PlayoutFrame] = []
    for i, (k, ssrc, seq_jump, ts_jump, jitter, size) in enumerate(pushes):
        p = RtpPacket(0, (1000 + k + seq_jump) & 0xFFFF, (50_000 + k * 160 + ts_jump) & 0xFFFFFFFF, ssrc, False, b"\x20" * size)
        jb.push(p, ARRIVAL + i * 160 + jitter)
        assert jb.held <= 20
        frames.extend(jb.drain())
        if flush_midway and i == len(pushes) // 2:
            jb.flush()
            frames.extend(jb.drain())
    jb.flush()
    frames.extend(jb.drain())
    for a, b in zip(frames, frames[1:]):
        assert b.start_sample >= a.start_sample + len(a.samples)  # in order, never on top of what was played
    for f in frames:
        assert 0 < len(f.samples) <= 160 and 0 <= f.concealed <= len(f.samples)
    c = jb.counts
    assert c.played_samples == sum(len(f.samples) for f in frames)
    assert c.concealed_samples == sum(f.concealed for f in frames)
    assert min(c.duplicate, c.late, c.lost, c.reordered, c.stray, c.resyncs) >= 0
