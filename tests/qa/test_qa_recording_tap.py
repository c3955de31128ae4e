"""The agent's recording tap: finalize + hash + sidecar at call end, retention at call end, start-up recovery."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from types import SimpleNamespace

import numpy as np

from agent.recording import RecordingTap, recording_taps, recover_recordings
from kernel.retention import RetentionPolicy
from audio.frames import AudioChunk
from audio.recorder import wav_header
from kernel.recordings import read_sidecar, recording_name, sha256_file, sidecar_path

NOW = datetime(2026, 3, 1, 9, 5, tzinfo=timezone.utc)


def run_call(tap, findings: int) -> None:
    async def call():
        tap.attach(SimpleNamespace(findings=findings))
        for i in range(25):
            tap.push(AudioChunk("customer", np.full(160, i, np.int16), 8000, i * 160))
            tap.push(AudioChunk("partner", np.full(160, -i, np.int16), 8000, i * 160))
        await tap.close()

    asyncio.run(call())


def test_flagged_call_is_kept_with_its_hash(tmp_path):
    pool = ThreadPoolExecutor(1, thread_name_prefix="recorder")
    tap = recording_taps(tmp_path, RetentionPolicy(), clock=lambda: NOW, executor=pool)(SimpleNamespace(call_id="call-9", started_at="2026-03-01T09:00:00.000Z"))
    run_call(tap, findings=2)
    pool.shutdown()
    assert tap.kept is True and tap.path == tmp_path / "call-9.wav"
    facts = read_sidecar(sidecar_path(tap.path))
    assert facts["call_id"] == "call-9" and facts["file"] == "call-9.wav"
    assert facts["sha256"] == sha256_file(tap.path) == tap.info.sha256
    assert facts["duration"] == 0.5 and facts["finalized_at"] == "2026-03-01T09:05:00.000Z" and facts["recovered"] is False
    assert facts["call_started_at"] == "2026-03-01T09:00:00.000Z"  # with the id, it names the call (never adopted for another)


def test_unflagged_audio_is_deleted_at_call_end_unless_kept(tmp_path):
    tap = RecordingTap("quiet", tmp_path, RetentionPolicy(), clock=lambda: NOW)
    run_call(tap, findings=0)
    assert tap.kept is False and not list(tmp_path.iterdir())
    keep = RecordingTap("quiet2", tmp_path, RetentionPolicy(keep_unflagged_audio=True), clock=lambda: NOW)
    run_call(keep, findings=0)
    assert keep.kept is True and sorted(p.name for p in tmp_path.iterdir()) == ["quiet2.wav", "quiet2.wav.json"]


def test_call_without_audio_leaves_nothing(tmp_path):
    tap = RecordingTap("empty", tmp_path, RetentionPolicy(), clock=lambda: NOW)
    asyncio.run(tap.close())
    assert tap.kept is None and not list(tmp_path.iterdir())


def test_odd_call_ids_never_become_paths():
    assert recording_name("abc-1") == "abc-1.wav"
    for odd in ("../console.db", "/etc/passwd", "a/b", "..", ".hidden", "x" * 200, "sip:1@pbx", "통화"):
        name = recording_name(odd)
        assert name.startswith("call-") and name.endswith(".wav") and "/" not in name and ".." not in name


def test_start_up_recovery_writes_missing_sidecars(tmp_path):
    frames = np.arange(400, dtype="<i2").tobytes()
    (tmp_path / "crashed.wav").write_bytes(wav_header(8000, 0) + frames + b"\x07")  # crash mid-call
    (tmp_path / "junk.wav").write_bytes(b"junk")
    reports = {r.path.name: r for r in recover_recordings(tmp_path, clock=lambda: NOW)}
    assert reports["crashed.wav"].status == "fixed" and reports["junk.wav"].status == "unreadable"
    facts = read_sidecar(tmp_path / "crashed.wav.json")
    assert facts["recovered"] is True and facts["sha256"] == sha256_file(tmp_path / "crashed.wav") and facts["bytes"] == 44 + 800
    assert not (tmp_path / "junk.wav.json").exists()
    again = recover_recordings(tmp_path, clock=lambda: NOW)
    assert {r.path.name: r.status for r in again}["crashed.wav"] == "ok"
    assert read_sidecar(tmp_path / "crashed.wav.json") == facts  # first-stored hash never rewritten
