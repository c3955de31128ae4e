"""Decoding plans end to end: `callshield replay` (a subprocess agent with the
real Vosk engine and Korean model) streams a recorded stereo call into a real
Console (real websockets, real SQLite file) under a ``[models.decoding]``
plan; the console stores what the agent decoded."""

from __future__ import annotations

import asyncio

import pytest

from agent_kit import Watcher, until
from speech import KOREAN_CALL, write_call
from test_agent_cli import PASSWORD, callshield, started_console

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
