"""The transcriber's bookkeeping, with a scripted recognizer standing in for Vosk.

The real engine is tested in test_models_engine.py; here a fake recognizer
makes exact assertions possible: what is fed, when partials are asked for,
and how Vosk's fed-audio times map back to call time.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from audio.frames import AudioChunk
from audio.vad import Segmenter, VadConfig, segments
from models.errors import ModelError
from models.transcriber import (
    RECOGNIZER_MAX_FED_S,
    CallTranscriber,
    SharedModel,
    SpeakerTranscriber,
    TranscriberConfig,
    recognizer_executor,
)
from models.transcript import Partial, Utterance
from speech import KOREAN_CALL, call_samples

RATE = 16000


class ScriptedRecognizer:
    """Counts what it is fed; each final has two words splitting the audio fed since the last final."""

    def __init__(self, rate: int, partial_texts: list[str] | None = None) -> None:
        self.rate = rate
        self.fed = 0
        self.utt_start = 0
        self.accept_calls = 0
        self.partial_calls = 0
        self.partial_texts = partial_texts

    def AcceptWaveform(self, data: bytes) -> bool:  # noqa: N802 (Vosk's name)
        self.accept_calls += 1
        self.fed += len(data) // 2
        return False

    def PartialResult(self) -> str:  # noqa: N802
        self.partial_calls += 1
        text = self.partial_texts[min(self.partial_calls, len(self.partial_texts)) - 1] if self.partial_texts else f"w{self.partial_calls}"
        return json.dumps({"partial": text})

    def FinalResult(self) -> str:  # noqa: N802
        start, end = self.utt_start / self.rate, self.fed / self.rate
        mid = (start + end) / 2
        self.utt_start = self.fed
        words = [{"word": "one", "start": start, "end": mid, "conf": 0.5},
                 {"word": "two", "start": mid, "end": end, "conf": 1.7}]
        return json.dumps({"text": "one two", "result": words})

    Result = FinalResult


class ScriptedModel(SharedModel):
    def __init__(self, **kwargs) -> None:
        super().__init__(model=None, path=Path("/scripted"), name="scripted")
        self.made: list[ScriptedRecognizer] = []
        self.kwargs = kwargs

    def recognizer(self, sample_rate: int, **options) -> ScriptedRecognizer:
        rec = ScriptedRecognizer(sample_rate, **self.kwargs)
        rec.options = options
        self.made.append(rec)
        return rec


def chunk(start_s: float, length_s: float, speaker="customer", rate=RATE, value=1000) -> AudioChunk:
    n = int(length_s * rate)
    return AudioChunk(speaker=speaker, samples=np.full(n, value, dtype=np.int16), sample_rate=rate, start_sample=int(start_s * rate))


def test_word_times_are_mapped_back_to_call_time_across_gaps():
    model = ScriptedModel()
    t = SpeakerTranscriber(model, "customer", RATE, None, TranscriberConfig(), gate=None)
    for piece in (chunk(1.0, 1.0), chunk(5.0, 1.0)):  # 3 s of the call never reach the recognizer
        t.push_blocking(piece)
    [utterance] = [r for r in t.flush_blocking() if isinstance(r, Utterance)]
    one, two = utterance.words
    assert (one.start, one.end) == (1.0, 2.0), "a word ending where a run ends stays in that run"
    assert (two.start, two.end) == (5.0, 6.0)
    assert (utterance.start, utterance.end) == (1.0, 6.0)
    assert (one.conf, two.conf) == (0.5, 1.0), "confidence is clamped to 0..1"


def test_silence_never_reaches_the_recognizer():
    stereo, spans = call_samples(KOREAN_CALL[:2], rate=RATE)
    customer = np.ascontiguousarray(stereo[:, 0])
    step = RATE // 50
    pieces = [AudioChunk("customer", customer[i:i + step], RATE, i) for i in range(0, len(customer), step)]
    expected = segments(pieces, RATE, VadConfig())
    assert len(expected) >= 1

    model = ScriptedModel()
    t = SpeakerTranscriber(model, "customer", RATE, None, TranscriberConfig(), gate=Segmenter)
    results = [r for p in pieces for r in t.push_blocking(p)] + t.flush_blocking()
    [rec] = model.made
    voiced = sum(s.end_sample - s.start_sample for s in expected)
    assert rec.fed == t.stats.fed_samples == voiced, "exactly the voiced segments are decoded"
    assert t.stats.pushed_samples == len(customer)
    assert voiced < 0.6 * len(customer), "the call is mostly silence for this speaker"
    assert rec.accept_calls < len(pieces) / 2
    finals = [r for r in results if isinstance(r, Utterance)]
    assert len(finals) == len(expected), "each VAD endpoint finalizes one utterance"
    for utterance, segment in zip(finals, expected):
        assert utterance.start == segment.start and abs(utterance.end - segment.end) < 1e-9


def test_partials_are_throttled_by_audio_time_and_only_sent_when_changed():
    def run(interval_ms: int, texts=None) -> tuple[int, int]:
        model = ScriptedModel(partial_texts=texts)
        t = SpeakerTranscriber(model, "customer", RATE, None, TranscriberConfig(partial_interval_ms=interval_ms), gate=None)
        partials = [r for i in range(150) for r in t.push_blocking(chunk(i * 0.02, 0.02)) if isinstance(r, Partial)]
        assert all(p.start == 0.0 and p.speaker == "customer" for p in partials)
        return model.made[0].partial_calls, len(partials)

    assert run(300) == (10, 10)  # 3 s of audio, one partial per 300 ms
    assert run(1000) == (3, 3)
    assert run(0) == (150, 150)  # unthrottled: every push asks
    # An unchanged hypothesis is not sent again, and is asked for less and less
    # often: at 0.3 s (new text), then 0.6 s, 1.2 s and 2.4 s (the interval doubles).
    assert run(300, texts=["same"]) == (4, 1)


def test_long_speech_is_finalized_at_max_utterance():
    model = ScriptedModel()
    t = SpeakerTranscriber(model, "partner", RATE, None, TranscriberConfig(max_utterance_s=2.0, partial_interval_ms=10_000), gate=None)
    results = [r for i in range(250) for r in t.push_blocking(chunk(i * 0.02, 0.02, speaker="partner"))]
    finals = [r for r in results if isinstance(r, Utterance)]
    assert [(u.start, u.end) for u in finals] == [(0.0, 2.0), (2.0, 4.0)]
    assert t.stats.utterances == 2


def test_wrong_stream_and_concurrent_use_are_errors():
    model = ScriptedModel()
    t = SpeakerTranscriber(model, "customer", RATE, None, TranscriberConfig(), gate=None)
    with pytest.raises(ModelError) as err:
        t.push_blocking(chunk(0, 0.02, speaker="partner"))
    assert err.value.code == "wrong_stream"
    with pytest.raises(ModelError):
        t.push_blocking(chunk(0, 0.02, rate=8000))

    async def two_tasks_at_once():
        with recognizer_executor(2) as pool:
            shared = SpeakerTranscriber(model, "customer", RATE, pool, TranscriberConfig(), gate=None)
            return await asyncio.gather(shared.push(chunk(0, 0.02)), shared.push(chunk(0.02, 0.02)), return_exceptions=True)

    first, second = asyncio.run(two_tasks_at_once())
    assert isinstance(first, list) and isinstance(second, ModelError) and second.code == "concurrent_use"


def test_call_transcriber_routes_speakers_to_their_own_recognizers():
    model = ScriptedModel()

    async def main():
        with recognizer_executor(2) as pool:
            call = CallTranscriber(model, RATE, pool, config=TranscriberConfig(), gate=None)
            for i in range(10):
                await call.push(chunk(i * 0.02, 0.02, speaker="customer"))
            await call.push(chunk(0, 0.1, speaker="partner"))
            return call, await call.flush()

    call, finals = asyncio.run(main())
    assert {u.speaker for u in finals} == {"customer", "partner"}
    assert sorted(rec.fed for rec in model.made) == [int(0.1 * RATE), int(0.2 * RATE)]
    assert call.stats.fed_samples == int(0.3 * RATE) and call.stats.utterances == 2


def test_bad_transcriber_config_is_refused():
    with pytest.raises(ModelError):
        TranscriberConfig(partial_interval_ms=-1)
    with pytest.raises(ModelError):
        TranscriberConfig(max_utterance_s=0)


# ---------------------------------------------------------------- warm recognizers


def _stream(model, start_s: float, speaker="customer", config=TranscriberConfig()) -> list[Utterance]:
    t = SpeakerTranscriber(model, speaker, RATE, None, config, gate=None)
    results = t.push_blocking(chunk(start_s, 1.0, speaker=speaker)) + t.flush_blocking()
    return [r for r in results if isinstance(r, Utterance)]


def test_a_finished_stream_hands_its_recognizer_to_the_next_and_times_stay_in_the_new_calls_time():
    model = ScriptedModel()
    [first] = _stream(model, 2.0)
    [second] = _stream(model, 7.0)  # a later call: the recognizer's clock is 1 s further on, the call's at 7 s
    assert len(model.made) == 1 and (model.recognizers_made, model.recognizers_reused) == (1, 1)
    assert (first.start, first.end) == (2.0, 3.0)
    assert (second.start, second.end) == (7.0, 8.0), "Vosk's clock counts from the recognizer's first sample, not the call's"
    assert [(w.start, w.end) for w in second.words] == [(7.0, 7.5), (7.5, 8.0)]
    assert model.warm == 1, "kept again after the second stream"


def test_streams_at_the_same_time_never_share_a_recognizer():
    model = ScriptedModel()
    a = SpeakerTranscriber(model, "customer", RATE, None, TranscriberConfig(), gate=None)
    b = SpeakerTranscriber(model, "partner", RATE, None, TranscriberConfig(), gate=None)
    a.push_blocking(chunk(0.0, 1.0))
    b.push_blocking(chunk(0.0, 1.0, speaker="partner"))
    a.flush_blocking(), b.flush_blocking()
    assert len(model.made) == 2 and model.warm == 2
    _stream(model, 0.0), _stream(model, 0.0, speaker="partner")
    assert len(model.made) == 2, "both reused"


def test_no_recognizer_is_kept_with_keep_warm_zero_past_the_limit_or_for_other_options():
    model = ScriptedModel()
    model.keep_warm = 0
    _stream(model, 0.0), _stream(model, 0.0)
    assert len(model.made) == 2 and model.warm == 0

    model = ScriptedModel()
    model.keep_warm = 1
    a = SpeakerTranscriber(model, "customer", RATE, None, TranscriberConfig(), gate=None)
    b = SpeakerTranscriber(model, "partner", RATE, None, TranscriberConfig(), gate=None)
    a.push_blocking(chunk(0.0, 1.0)), b.push_blocking(chunk(0.0, 1.0, speaker="partner"))
    a.flush_blocking(), b.flush_blocking()
    assert model.warm == 1, "at most keep_warm wait"

    model = ScriptedModel()
    _stream(model, 0.0, config=TranscriberConfig(words=False))
    _stream(model, 0.0)
    assert len(model.made) == 2, "a recognizer set up without word times is not handed to a stream that needs them"
    assert model.warm == 2

    model = ScriptedModel()
    old = model.recognizer(RATE)
    assert not model.checkin(old, RECOGNIZER_MAX_FED_S * RATE, RATE), "an hour of audio: its clock would lose precision"
    assert model.checkin(old, RECOGNIZER_MAX_FED_S * RATE - 1, RATE)
    model.drop_warm()
    assert model.warm == 0


def test_a_recognizer_left_at_vosks_own_endpoint_is_reset_before_it_is_handed_on():
    """After ``Result`` (Vosk's endpoint) Vosk keeps the stream's feature pipeline;
    only ``FinalResult`` drops it, and it needs audio fed since: 10 ms of silence."""

    class EndpointRecognizer(ScriptedRecognizer):
        calls: list[str]

        def AcceptWaveform(self, data: bytes) -> bool:  # noqa: N802 (Vosk's name)
            super().AcceptWaveform(data)
            self.calls.append(f"accept {len(data) // 2}")
            return True  # Vosk heard the end of an utterance

        def Result(self) -> str:  # noqa: N802
            self.calls.append("result")
            return ScriptedRecognizer.FinalResult(self)

        def FinalResult(self) -> str:  # noqa: N802
            self.calls.append("final")
            return super().FinalResult()

    model = ScriptedModel()
    rec = EndpointRecognizer(RATE)
    rec.calls = []
    model.recognizer = lambda rate, **options: rec
    [utterance] = _stream(model, 1.0)
    assert rec.calls == ["accept 16000", "result", "accept 160", "final"]
    assert model.warm == 1
    checked_out, fed = model.checkout(RATE)
    assert checked_out is rec and fed == RATE + RATE // 100, "the silence counts on the recognizer's clock"
    assert model.warm == 0
