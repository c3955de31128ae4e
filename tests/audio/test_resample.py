"""Edge sample-rate conversion: accuracy, anti-aliasing, length and time alignment."""

from __future__ import annotations

import numpy as np
import pytest
from audio_kit import rms, tone

from audio.resample import VAD_RATES, delivery_rate, resample


def test_delivery_rates():
    assert [delivery_rate(r) for r in VAD_RATES] == list(VAD_RATES)
    assert delivery_rate(11025) == 8000
    assert delivery_rate(22050) == 16000
    assert delivery_rate(44100) == 48000
    assert delivery_rate(12000) == 16000  # a tie goes up: no bandwidth thrown away
    assert delivery_rate(24000) == 32000


@pytest.mark.parametrize(("src", "dst"), [(44100, 48000), (22050, 16000), (11025, 8000), (8000, 16000), (16000, 8000), (44101, 48000)])
def test_a_tone_comes_out_as_the_same_tone(src, dst):
    seconds = 0.5
    y = resample(tone(1000, seconds, src, 10000), src, dst)
    assert y.dtype == np.int16 and len(y) == -(-int(round(seconds * src)) * dst // src)
    expected = tone(1000, len(y) / dst, dst, 10000)[: len(y)]
    inner = slice(100, -100)  # the edges see the zero padding
    assert np.abs(y[inner].astype(int) - expected[inner]).max() <= 30  # 0.3 % of the amplitude


@pytest.mark.parametrize(("src", "dst", "freq"), [(22050, 16000, 10000), (11025, 8000, 5000), (48000, 8000, 6000)])
def test_tones_above_the_new_nyquist_are_removed(src, dst, freq):
    y = resample(tone(freq, 0.5, src, 10000), src, dst)
    assert rms(y[100:-100]) < 0.01 * 10000 / np.sqrt(2)


def test_constant_stays_constant_and_stereo_keeps_its_channels():
    dc = np.full(4410, 1234, dtype=np.int16)
    assert set(resample(dc, 44100, 48000)[50:-50].tolist()) == {1234}
    stereo = np.stack([tone(300, 0.2, 22050, 8000), tone(700, 0.2, 22050, 2000)], axis=1)
    out = resample(stereo, 22050, 16000)
    assert out.shape == (3200, 2)
    np.testing.assert_array_equal(out[:, 1], resample(np.ascontiguousarray(stereo[:, 1]), 22050, 16000))
    assert rms(out[:, 0]) > 3 * rms(out[:, 1])


def test_time_zero_stays_time_zero():
    impulse = np.zeros(2205, dtype=np.int16)
    impulse[441] = 30000  # at 20 ms
    y = resample(impulse, 22050, 16000)
    assert abs(int(np.argmax(y)) - 320) <= 1  # still at 20 ms


def test_same_rate_and_empty_input():
    x = tone(300, 0.1, 8000, 1000)
    assert resample(x, 8000, 8000) is x
    assert resample(np.zeros(0, np.int16), 44100, 48000).shape == (0,)
    with pytest.raises(TypeError):
        resample(x.astype(np.float32), 8000, 16000)
