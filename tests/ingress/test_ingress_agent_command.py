"""`callshield agent --audiosocket` for real: a subprocess agent on the Korean
model, a fake Asterisk sending both legs of a call, a real Console storing it."""

from __future__ import annotations

import asyncio
import signal
import sys
import uuid

from agent_process import ROOT, agent_process, env_for, free_port, wait_for_line
from fake_asterisk import leg_uuid, play_leg
from ingress_kit import split_call
from speech import KOREAN_CALL, call_samples

from console.config import ConsoleConfig
from console.server import Console

def test_agent_command_serves_audiosocket_calls_into_the_console(tmp_path, ko_model_dir):
    stereo, spans = call_samples(KOREAN_CALL, rate=8000)
    customer, partner = split_call(stereo)
    port = free_port()

    async def main():
        async with agent_process(tmp_path, ko_model_dir, ["--audiosocket", f"127.0.0.1:{port}", "--partner", "kim", "--seat", "12",
                                                          "--recordings", str(tmp_path / "data" / "recordings")],
                                 ready="AudioSocket calls accepted") as run:
            call = uuid.uuid4()
            legs = await asyncio.gather(
                play_leg(port, leg_uuid(call, "customer"), customer, speed=4.0),
                play_leg(port, leg_uuid(call, "partner"), partner, speed=4.0),
            )
            details = await run.ended_calls(1)
            status = await run.stop()
            return status, legs, details[0] if details else None, run.log

    status, legs, detail, log = asyncio.run(main())
    assert detail is not None, "the call never ended in the console:\n" + log
    assert status == 0, log
    assert all(leg.sent_samples > 0 for leg in legs)
    row = detail["call"]
    assert (row["partner"], row["seat"], row["source"]) == ("kim", "12", "audiosocket")
    speakers = {u["speaker"] for u in detail["utterances"]}
    assert speakers == {"customer", "partner"}, detail["utterances"]
    call_length = len(customer) / 8000
    for u in detail["utterances"]:
        assert 0 <= u["start"] < u["end"] <= call_length + 0.5 and u["text"].strip()


def test_agent_command_refuses_a_bad_audiosocket_address(tmp_path):
    import subprocess

    out = subprocess.run(
        [sys.executable, "-m", "cli", "agent", "--console", "ws://127.0.0.1:9", "--token", "t", "--audiosocket", "127.0.0.1:http"],
        cwd=ROOT, env=env_for(tmp_path), capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == ["callshield: error: --audiosocket wants [HOST:]PORT, not '127.0.0.1:http'"]


def test_serve_takes_audiosocket_calls_into_its_embedded_console(tmp_path, ko_model_dir):
    from console.store import Store

    stereo, _ = call_samples(KOREAN_CALL[:2], rate=8000)
    customer, partner = split_call(stereo)
    port, web_port = free_port(), free_port()
    data = tmp_path / "data"

    async def main():
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cli", "serve", "--port", str(web_port), "--data-dir", str(data),
            "--model", str(ko_model_dir), "--audiosocket", f"127.0.0.1:{port}",
            cwd=ROOT, env=env_for(tmp_path), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        seen: list[str] = []
        try:
            await wait_for_line(proc.stderr, "AudioSocket calls accepted", 60, seen)
            call = uuid.uuid4()
            await asyncio.gather(
                play_leg(port, leg_uuid(call, "customer"), customer, speed=4.0),
                play_leg(port, leg_uuid(call, "partner"), partner, speed=4.0),
            )
            await asyncio.sleep(3.0)  # the tail of the call: final decode, events stored
            proc.send_signal(signal.SIGTERM)
            status = await asyncio.wait_for(proc.wait(), 60)
            seen.append((await proc.stderr.read()).decode())
            return status, "".join(seen)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    status, log = asyncio.run(main())
    assert status == 0, log
    store = Store.open(data / "console.db")
    try:
        calls = store.recent_calls(10)
        assert len(calls) == 1 and calls[0]["source"] == "audiosocket", calls
        detail = store.call_detail(calls[0]["id"])
    finally:
        store.close()
    assert {u["speaker"] for u in detail["utterances"]} == {"customer", "partner"}, log


def test_an_agent_restarted_between_two_calls_with_one_uuid_monitors_the_second_as_uuid_2(tmp_path, ko_model_dir):
    """`callshield agent --audiosocket` runs a call, is restarted, and Asterisk
    sends the same UUIDs again: the console refuses the new call's start as
    `call_id_taken`, the agent renames it `<UUID>.2` while it runs and its
    recording is finished under that name (the second run keeps unflagged
    audio); the first call's record is unchanged and has no recording."""
    from kernel.recordings import read_sidecar, recording_name, sidecar_path

    stereo, _ = call_samples(KOREAN_CALL, rate=8000)
    customer, partner = split_call(stereo)
    keep = tmp_path / "keep.toml"
    keep.write_text("[retention]\nkeep_unflagged_audio = true\n")
    recordings = tmp_path / "data" / "recordings"
    call = uuid.uuid4()
    call_id = str(leg_uuid(call, "customer"))

    async def main():
        from kernel.retention import RetentionPolicy

        # The console keeps unflagged audio too (else its own clean-up at call end would remove the second recording).
        console = Console(ConsoleConfig(data_dir=tmp_path / "data", host="127.0.0.1", port=0), retention=RetentionPolicy(keep_unflagged_audio=True))
        await console.start()
        token = await console.db(console.store.add_user, "floor-1", "agent")
        logs: list[str] = []

        async def run(config: list[str], expect: str, samples: tuple) -> int:
            port = free_port()
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "cli", *config, "agent", "--console", console.url, "--token", token, "--agent-id", "floor-1",
                "--model", str(ko_model_dir), "--audiosocket", f"127.0.0.1:{port}", "--partner", "kim", "--seat", "12",
                "--recordings", str(recordings),
                cwd=ROOT, env=env_for(tmp_path), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )
            seen: list[str] = []
            try:
                await wait_for_line(proc.stderr, "AudioSocket calls accepted", 60, seen)
                await asyncio.gather(play_leg(port, leg_uuid(call, "customer"), samples[0], speed=4.0),
                                     play_leg(port, leg_uuid(call, "partner"), samples[1], speed=4.0))
                for _ in range(300):
                    row = await console.db(console.store.call, expect)
                    if row is not None and row.ended_at:
                        break
                    await asyncio.sleep(0.1)
                proc.send_signal(signal.SIGTERM)
                status = await asyncio.wait_for(proc.wait(), 60)
                seen.append((await proc.stderr.read()).decode())
                return status
            finally:
                logs.append("".join(seen))
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()

        try:
            half = len(customer) // 2
            first = await run([], call_id, (customer[:half], partner[:half]))
            before = await console.db(console.store.call_detail, call_id)
            first_files = sorted(f.name for f in recordings.iterdir())
            second = await run(["--config", str(keep)], f"{call_id}.2", (customer, partner))  # the agent restarted
            after = await console.db(console.store.call_detail, call_id)
            renamed = await console.db(console.store.call_detail, f"{call_id}.2")
            stored = await console.db(console.store.recording, f"{call_id}.2")
            return first, second, before, after, renamed, stored, first_files, logs
        finally:
            await console.stop()

    first, second, before, after, renamed, stored, first_files, logs = asyncio.run(main())
    assert first == 0 and second == 0, logs
    assert before is not None and before.call.ended_at and before.utterances, logs[0]
    assert first_files == [], first_files  # the first call had no finding: its audio went at its end (retention)
    assert after == before  # the first call's record: unchanged
    assert renamed is not None and renamed.call.ended_at and renamed.call.end_reason == "hangup", logs[1]
    assert {u.speaker for u in renamed.utterances} == {"customer", "partner"}
    assert len(renamed.utterances) > len(before.utterances)  # the whole call, under its own id
    assert "call_id_taken" in logs[1] and f"monitored as {call_id}.2" in logs[1]
    # its recording: finished under the new name, adopted by the console for the new call only
    wav = recordings / recording_name(f"{call_id}.2")
    assert sorted(f.name for f in recordings.iterdir()) == [wav.name, sidecar_path(wav).name]
    facts = read_sidecar(sidecar_path(wav))
    assert facts["call_id"] == f"{call_id}.2" and facts["call_started_at"] == renamed.call.started_at
    assert stored is not None and stored.sha256 == facts["sha256"]
