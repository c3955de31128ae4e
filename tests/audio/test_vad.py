"""Voice activity segmentation on real human speech and on synthetic edge cases."""

from __future__ import annotations

import numpy as np
import pytest
from audio_kit import DIGIT_GROUPS, SHARED_DIGITS

from audio.errors import AudioError
from audio.frames import AudioChunk
from audio.vad import Endpoint, Segment, Segmenter, VadConfig, Voiced, segments
from audio.wav import WavSource, read_wav


def _digits(shared_dir, name):
    info, data = read_wav(shared_dir / "audio" / name)
    return data[:, 0], info.sample_rate


def _push_all(segmenter, samples, rate, chunk_samples, speaker="customer", start=0):
    out = []
    for at in range(0, len(samples), chunk_samples):
        out += segmenter.push(AudioChunk(speaker, samples[at:at + chunk_samples], rate, start + at))
    return out + segmenter.flush()


@pytest.mark.parametrize("frame_ms", [10, 20, 30])
@pytest.mark.parametrize("name", SHARED_DIGITS)
def test_finds_the_three_digit_groups(shared_dir, name, frame_ms):
    src = WavSource(shared_dir / "audio" / name)
    found = segments(src.chunks(), src.sample_rate, VadConfig(frame_ms=frame_ms))
    assert len(found) == 3, found
    for seg, (start, end) in zip(found, DIGIT_GROUPS):
        assert seg.speaker == "customer" and seg.sample_rate == src.sample_rate
        assert start - 0.45 <= seg.start <= start + 0.15, (seg, start)
        assert end - 0.15 <= seg.end <= end + 0.45, (seg, end)
    for a, b in zip(found, found[1:]):
        assert b.start - a.end > 0.5  # the pauses between groups stay out


@pytest.mark.parametrize("aggressiveness", [0, 3])
def test_aggressiveness_range_still_finds_the_groups(shared_dir, aggressiveness):
    samples, rate = _digits(shared_dir, "digits-8k.wav")
    found = segments([AudioChunk("customer", samples, rate, 0)], rate, VadConfig(aggressiveness=aggressiveness))
    assert len(found) == 3


def test_voiced_audio_tiles_each_segment_exactly(shared_dir):
    samples, rate = _digits(shared_dir, "digits-16k.wav")
    out = _push_all(Segmenter("customer", rate), samples, rate, 320)
    endpoints = [x for x in out if isinstance(x, Endpoint)]
    assert len(endpoints) == 3
    cursor = None
    voiced_total = 0
    for item in out:
        if isinstance(item, Voiced):
            c = item.chunk
            assert c.speaker == "customer" and c.sample_rate == rate
            if cursor is not None:
                assert c.start_sample == cursor  # contiguous inside a segment
            np.testing.assert_array_equal(c.samples, samples[c.start_sample:c.end_sample])  # the real audio, not a copy of something else
            cursor = c.end_sample
            voiced_total += len(c.samples)
        else:
            assert cursor == item.end_sample  # the endpoint closes exactly where the voiced audio stopped
            cursor = None
    assert voiced_total == sum(e.end_sample - e.start_sample for e in endpoints)
    assert voiced_total < 0.75 * len(samples)  # the silence around and between the groups was not emitted


def test_chunk_size_does_not_change_the_segments(shared_dir):
    samples, rate = _digits(shared_dir, "digits-8k.wav")
    cfg = VadConfig(frame_ms=20)
    reference = [x for x in _push_all(Segmenter("customer", rate, cfg), samples, rate, 160) if isinstance(x, Endpoint)]
    for size in (7, 333, len(samples)):
        assert [x for x in _push_all(Segmenter("customer", rate, cfg), samples, rate, size) if isinstance(x, Endpoint)] == reference


def test_pure_silence_never_emits_voiced():
    rng = np.random.default_rng(7)
    for rate in (8000, 16000, 48000):
        for signal in (np.zeros(3 * rate, np.int16), rng.normal(0, 20, 3 * rate).astype(np.int16)):
            for aggressiveness in (0, 3):
                assert _push_all(Segmenter("partner", rate, VadConfig(aggressiveness=aggressiveness)), signal, rate, rate // 50, "partner") == []


def test_min_speech_drops_short_clicks(shared_dir):
    samples, rate = _digits(shared_dir, "digits-8k.wav")
    clicks = np.zeros(6 * rate, np.int16)
    for k in range(5):  # five 90 ms bursts of real speech, one second apart
        at = int((1.0 + 0.2 * k) * rate)
        clicks[(k + 1) * rate:(k + 1) * rate + 720] = samples[at:at + 720]
    assert _push_all(Segmenter("customer", rate, VadConfig(min_speech_ms=200)), clicks, rate, 160) == []
    short_ok = _push_all(Segmenter("customer", rate, VadConfig(min_speech_ms=30)), clicks, rate, 160)
    assert len([x for x in short_ok if isinstance(x, Endpoint)]) == 5  # the same bursts do count when allowed


def test_hangover_bridges_pauses(shared_dir):
    samples, rate = _digits(shared_dir, "digits-8k.wav")
    chunks = [AudioChunk("customer", samples, rate, 0)]
    assert len(segments(chunks, rate, VadConfig(hangover_ms=1500))) == 1  # the ~1 s pauses no longer end a segment
    assert len(segments(chunks, rate, VadConfig(hangover_ms=300))) == 3


def test_pre_and_post_roll_widen_the_segment(shared_dir):
    samples, rate = _digits(shared_dir, "digits-16k.wav")
    chunks = [AudioChunk("customer", samples, rate, 0)]
    tight = segments(chunks, rate, VadConfig(pre_roll_ms=0, post_roll_ms=0))
    wide = segments(chunks, rate, VadConfig(pre_roll_ms=300, post_roll_ms=300))
    for t, w in zip(tight, wide):
        assert w.start_sample == t.start_sample - int(0.3 * rate)
        assert w.end_sample == t.end_sample + int(0.3 * rate)


def test_flush_closes_speech_running_to_the_end(shared_dir):
    samples, rate = _digits(shared_dir, "digits-8k.wav")
    cut = samples[: int(7.2 * rate)]  # the call ends in the middle of the third group
    out = _push_all(Segmenter("customer", rate), cut, rate, 160)
    last = out[-1]
    assert isinstance(last, Endpoint) and last.end_sample == len(cut)
    assert len([x for x in out if isinstance(x, Endpoint)]) == 3


def test_time_offset_and_gaps(shared_dir):
    samples, rate = _digits(shared_dir, "digits-8k.wav")
    offset = 10 * rate  # the stream started 10 s into the call
    base = [x for x in _push_all(Segmenter("customer", rate), samples, rate, 160) if isinstance(x, Endpoint)]
    shifted = [x for x in _push_all(Segmenter("customer", rate), samples, rate, 160, start=offset) if isinstance(x, Endpoint)]
    assert [(e.start_sample + offset, e.end_sample + offset) for e in base] == [(e.start_sample, e.end_sample) for e in shifted]

    # audio lost upstream in the middle of the second group: the segment is closed where the gap starts
    seg = Segmenter("customer", rate)
    gap_at, resume_at = int(4.3 * rate), int(4.3 * rate) + 8000
    out = seg.push(AudioChunk("customer", samples[:gap_at], rate, 0))
    out += seg.push(AudioChunk("customer", samples[resume_at:], rate, resume_at))
    out += seg.flush()
    ends = [e for e in out if isinstance(e, Endpoint)]
    assert any(e.end_sample <= gap_at and e.end_sample > gap_at - 1000 for e in ends)
    assert all(not (e.start_sample < resume_at and e.end_sample > gap_at) for e in ends)  # nothing spans the gap


def test_stereo_streams_are_segmented_per_speaker(shared_dir):
    samples, rate = _digits(shared_dir, "digits-8k.wav")
    chunks = []
    for at in range(0, len(samples), 160):
        piece = samples[at:at + 160]
        chunks.append(AudioChunk("customer", piece, rate, at))
        chunks.append(AudioChunk("partner", np.zeros_like(piece), rate, at))
    found = segments(chunks, rate)
    assert {s.speaker for s in found} == {"customer"} and len(found) == 3
    assert isinstance(found[0], Segment) and found[0].duration == pytest.approx(found[0].end - found[0].start)


def test_wrong_streams_and_bad_settings():
    with pytest.raises(AudioError) as err:
        Segmenter("customer", 22050)
    assert err.value.code == "unsupported_rate"
    seg = Segmenter("customer", 8000)
    with pytest.raises(AudioError) as err:
        seg.push(AudioChunk("partner", np.zeros(160, np.int16), 8000, 0))
    assert err.value.code == "wrong_stream"
    with pytest.raises(AudioError) as err:
        seg.push(AudioChunk("customer", np.zeros(160, np.int16), 16000, 0))
    assert err.value.code == "wrong_stream"
    for bad in (dict(frame_ms=25), dict(aggressiveness=4), dict(hangover_ms=-1), dict(min_speech_ms=1.5), dict(post_roll_ms=400), dict(hangover_ms=5)):
        with pytest.raises(AudioError) as err:
            VadConfig(**bad)
        assert err.value.code == "bad_config"
