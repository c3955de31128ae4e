"""Shouting from loudness windows, on synthetic call audio (espeak-ng speech)
with a raised stretch; the loudness meter here is a plain RMS per 100 ms, the
same measure the pipeline's meter reports (dBFS)."""

from __future__ import annotations

import numpy as np
import pytest

from detection import CallScreen, DetectionConfig, Detector
from speech import speak

RATE = 8000
WINDOW = 800  # 100 ms


@pytest.fixture(scope="module")
def voice() -> np.ndarray:
    """About 12 s of a calm caller: speech with its natural pauses, at about -30 dBFS."""
    phrase = speak("i am calling about my bill it is higher than last month and i would like to know why", lang="en", rate=RATE)
    samples = np.concatenate([phrase, np.zeros(RATE // 2, np.int16)] * 3).astype(np.float64)
    rms = np.sqrt(np.mean(samples[np.abs(samples) > 0] ** 2))
    return samples * (32768 * 10 ** (-30 / 20) / rms)


def windows(samples: np.ndarray):
    """(start s, end s, dBFS) per 100 ms."""
    for i in range(0, len(samples) - WINDOW + 1, WINDOW):
        chunk = np.clip(samples[i:i + WINDOW], -32768, 32767).astype(np.int16).astype(np.float64)
        rms = np.sqrt(np.mean(chunk ** 2))
        yield i / RATE, (i + WINDOW) / RATE, 20 * np.log10(max(rms, 1.0) / 32768)


def shouting(call: CallScreen, samples: np.ndarray, speaker: str = "customer"):
    found = []
    for start, end, dbfs in windows(samples):
        screening = call.hear_loudness(speaker, start, end, dbfs)
        found += [(f, screening.level_change) for f in screening.findings]
    return found


def raised(samples: np.ndarray, first_s: float, last_s: float, db: float) -> np.ndarray:
    out = samples.copy()
    out[int(first_s * RATE):int(last_s * RATE)] *= 10 ** (db / 20)
    return out


def test_a_raised_stretch_is_one_shouting_finding(voice):
    call = CallScreen(Detector())
    found = shouting(call, raised(voice, 6.0, 10.5, 18.0))
    assert len(found) == 1
    finding, change = found[0]
    assert finding.category == "shouting" and finding.rule == "shouting.over_baseline"
    assert 5.9 <= finding.start <= 7.0
    assert finding.end - finding.start >= 2.0 and finding.end <= 10.6
    assert finding.evidence.startswith("+") and " dB over " in finding.evidence and finding.evidence.endswith(" s")
    assert int(finding.evidence[1:].split()[0]) >= 12
    assert finding.text == "" and finding.span is None and finding.severity == "low"
    assert change is not None and change.level == "caution" and change.category == "shouting"


def test_calm_caller_and_loud_handset_are_not_shouting(voice):
    assert shouting(CallScreen(Detector()), voice) == []
    # a caller who is loud all along (a hot line, a loud voice) has a loud baseline
    assert shouting(CallScreen(Detector()), voice * 10 ** (14 / 20)) == []


def test_short_outburst_and_partner_voice_do_not_count(voice):
    assert shouting(CallScreen(Detector()), raised(voice, 6.0, 7.0, 18.0)) == []
    assert shouting(CallScreen(Detector()), raised(voice, 6.0, 10.5, 18.0), speaker="partner") == []


def test_shouting_thresholds_come_from_config(voice):
    lenient = CallScreen(Detector(), DetectionConfig(shouting_over_db=25.0))
    assert shouting(lenient, raised(voice, 6.0, 10.5, 18.0)) == []
    quick = CallScreen(Detector(), DetectionConfig(shouting_min_seconds=0.5))
    assert len(shouting(quick, raised(voice, 6.0, 7.0, 18.0))) == 1
