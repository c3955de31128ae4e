"""Decoding plans end to end: `callshield replay` (a subprocess agent with the
real Vosk engine and Korean model) streams a recorded stereo call into a real
Console (real websockets, real SQLite file) under a ``[models.decoding]``
plan; the console stores what the agent decoded."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from agent_kit import Watcher, until
from speech import KOREAN_CALL, write_call
from test_agent_cli import PASSWORD, callshield, started_console

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))  # the scripted recognizer of the transcriber's unit tests

pytestmark = pytest.mark.engine


def replay(tmp_path, ko_model_dir, decoding: str):
    """Replay the Korean call under ``decoding`` (the ``[models.decoding]`` table's lines);
    returns (exit status, stderr, the stored call, partials the supervisor saw)."""
    wav = tmp_path / "call.wav"
    write_call(wav, KOREAN_CALL, rate=8000)
    config = tmp_path / "config.toml"
    config.write_text(f"[models.decoding]\n{decoding}\n", encoding="utf-8")

    async def main():
        console, token = await started_console(tmp_path)
        screen = await Watcher(console.url, "sup", PASSWORD).open()
        try:
            status, out, err = await callshield(tmp_path, "--config", str(config), "replay", str(wav), "--model", str(ko_model_dir),
                                                "--console", console.url, "--token", token, "--agent-id", "replayer", timeout=180)
            calls = await console.db(console.store.recent_calls, 10)
            detail = await console.db(console.store.call_detail, calls[0]["id"]) if calls else None
            await until(lambda: screen.of("call"), timeout=5)
            return status, err, detail, screen.of("partial")
        finally:
            await screen.close()
            await console.stop()

    return asyncio.run(main())


def test_the_default_plan_stores_both_speakers_and_the_deferred_partner_before_the_call_ends(tmp_path, ko_model_dir):
    status, err, detail, partials = replay(tmp_path, ko_model_dir, 'partner = "idle"\nspeed = "fast"')
    assert status == 0, err[-3000:]
    assert "call_ended" not in err, "no event was refused for an ended call"
    speakers = [u["speaker"] for u in detail["utterances"]]
    assert "customer" in speakers and "partner" in speakers, "the partner's deferred words reached the console"
    assert detail["call"]["end_reason"] == "end_of_file"
    assert not [n for n in detail["notices"] if n["code"] == "partner_transcript_dropped"]
    assert not [m for m in partials if m["speaker"] == "partner"], "the partner gets no partials"
    assert [m for m in partials if m["speaker"] == "customer"], "the customer's partials still reach the supervisor"


def test_a_partner_plan_off_stores_the_customer_alone(tmp_path, ko_model_dir):
    status, err, detail, partials = replay(tmp_path, ko_model_dir, 'partner = "off"\nspeed = "fast"')
    assert status == 0, err[-3000:]
    assert {u["speaker"] for u in detail["utterances"]} == {"customer"}


def test_an_overloaded_partner_backlog_is_dropped_first_counted_and_shown_and_its_words_precede_call_ended():
    """A session whose partner waits for the end (plan ``after``) with a one-second backlog:
    three seconds of partner speech drop two, reported as a notice; the customer loses nothing."""
    from agent.call import CallInfo
    from agent.session import CallSession
    from detection import CallScreen, Detector
    from kernel import protocol as p
    from models.decoding import DecodingPlan
    from models.transcriber import CallTranscriber, idle_executor, recognizer_executor
    from test_models_transcriber_unit import RATE, ScriptedModel, chunk

    published = []

    async def source():
        for i in range(150):
            yield chunk(i * 0.02, 0.02, speaker="partner")
            yield chunk(i * 0.02, 0.02, speaker="customer")

    async def main():
        with recognizer_executor(1) as live, idle_executor(1) as idle:
            transcriber = CallTranscriber(ScriptedModel(), RATE, live, gate=None, idle=idle,
                                          plan=DecodingPlan(partner="after", partner_backlog_s=1))
            info = CallInfo("c1", "kim", "1", "wav", RATE, "2026-12-06T00:00:00.000Z")
            session = CallSession(info, publish=published.append, screen=CallScreen(Detector()), transcriber=transcriber, lossless=True)
            await session.run_audio(source())

    asyncio.run(main())
    kinds = [type(m).__name__ for m in published]
    assert kinds[-1] == "CallEnded"
    notices = [m for m in published if isinstance(m, p.AgentNotice)]
    assert {m.code for m in notices} == {"partner_transcript_dropped"}
    assert len(notices) == 2, "the first drop at once, the rest at the end (reports are at least 10 s of audio apart)"
    assert sum(m.dropped for m in notices) == 2
    finals = [m for m in published if isinstance(m, p.UtteranceFinal)]
    assert {m.speaker for m in finals} == {"customer", "partner"}
    customer = [m for m in finals if m.speaker == "customer"]
    assert (customer[0].start, customer[-1].end) == (0.0, 3.0), "the customer lost nothing"
