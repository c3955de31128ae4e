"""Loudness meter: known levels, silence, and real speech against its pauses."""

from __future__ import annotations

import math

import numpy as np
import pytest
from audio_kit import DIGIT_GROUPS, tone

from audio.errors import AudioError
from audio.frames import AudioChunk
from audio.loudness import FLOOR_DBFS, Loudness, LoudnessMeter, dbfs
from audio.wav import WavSource


def _meter_all(meter, samples, rate, chunk, speaker="customer"):
    out = []
    for at in range(0, len(samples), chunk):
        out += meter.push(AudioChunk(speaker, samples[at:at + chunk], rate, at))
    return out + meter.flush()


@pytest.mark.parametrize("rate", [8000, 16000, 48000])
@pytest.mark.parametrize("amplitude", [32000, 10000, 1000, 30])
def test_sine_of_known_amplitude(rate, amplitude):
    expected = 20 * math.log10(amplitude / 32768 / math.sqrt(2))
    levels = _meter_all(LoudnessMeter("customer", rate, window_ms=100), tone(1000, 1.0, rate, amplitude), rate, rate // 50)
    assert len(levels) == 10
    for level in levels:
        assert level.dbfs == pytest.approx(expected, abs=0.5)


def test_full_scale_square_is_zero_dbfs_and_silence_is_the_floor():
    square = np.tile(np.array([32767, -32768], dtype=np.int16), 4000)
    assert dbfs(square) == pytest.approx(0.0, abs=0.01)
    assert dbfs(np.zeros(800, np.int16)) == FLOOR_DBFS == -120.0
    assert dbfs(np.zeros(0, np.int16)) == FLOOR_DBFS
    levels = _meter_all(LoudnessMeter("partner", 8000), np.zeros(16000, np.int16), 8000, 160, "partner")
    assert len(levels) == 20 and all(level.dbfs == FLOOR_DBFS for level in levels)
    assert all(math.isfinite(level.dbfs) for level in levels)


def test_windows_tile_the_stream_and_flush_reports_the_rest():
    rate = 8000
    samples = tone(440, 1.03, rate, 5000)  # 10 whole windows of 100 ms and 30 ms left over
    meter = LoudnessMeter("customer", rate, window_ms=100)
    start = 24000  # the stream began 3 s into the call
    out = []
    for at in range(0, len(samples), 333):
        out += meter.push(AudioChunk("customer", samples[at:at + 333], rate, start + at))
    assert len(out) == 10
    out += meter.flush()
    assert len(out) == 11 and out[-1].end_sample - out[-1].start_sample == 240
    assert out[0].start_sample == start and out[-1].end_sample == start + len(samples)
    for a, b in zip(out, out[1:]):
        assert b.start_sample == a.end_sample
    assert isinstance(out[0], Loudness) and out[0].start == pytest.approx(3.0) and out[0].sample_rate == rate


def test_chunk_size_does_not_change_the_levels():
    rate = 16000
    samples = (np.random.default_rng(3).normal(0, 2000, rate * 2)).astype(np.int16)
    a = _meter_all(LoudnessMeter("customer", rate, 50), samples, rate, 7)
    b = _meter_all(LoudnessMeter("customer", rate, 50), samples, rate, len(samples))
    assert [(x.start_sample, x.end_sample) for x in a] == [(x.start_sample, x.end_sample) for x in b]
    np.testing.assert_allclose([x.dbfs for x in a], [x.dbfs for x in b], atol=1e-9)


def test_speech_is_louder_than_its_pauses(shared_dir):
    for name in ("digits-8k.wav", "digits-16k.wav"):
        src = WavSource(shared_dir / "audio" / name)
        meter = LoudnessMeter("customer", src.sample_rate, window_ms=100)
        levels = [x for c in src.chunks() for x in meter.push(c)] + meter.flush()

        def median_level(spans):
            return float(np.median([x.dbfs for x in levels if any(s <= x.start and x.end <= e for s, e in spans)]))

        speech = median_level(DIGIT_GROUPS)
        pauses = median_level([(0.0, 0.6), (3.0, 3.7), (5.3, 6.0)])
        assert speech > pauses + 12, (name, speech, pauses)
        assert -50 < speech < -10  # a real voice at a normal recording level


def test_wrong_stream_and_bad_window():
    meter = LoudnessMeter("customer", 8000)
    with pytest.raises(AudioError) as err:
        meter.push(AudioChunk("partner", np.zeros(10, np.int16), 8000, 0))
    assert err.value.code == "wrong_stream"
    for bad in (0, -5, 2.5):
        with pytest.raises(AudioError) as err:
            LoudnessMeter("customer", 8000, window_ms=bad)
        assert err.value.code == "bad_config"
