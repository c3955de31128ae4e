"""The call recorder: placement, crash safety, recovery."""

from __future__ import annotations

import asyncio
import os
import signal as signals
import struct
import subprocess
import sys
import threading
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from audio.frames import AudioChunk
from audio.recorder import CallRecorder, RecordingError, wav_header
from audio.recovery import recover, recover_dir
from kernel.recordings import sha256_file
from crash_recorder import RATE, signal

HERE = Path(__file__).resolve().parent


def read_stereo(path: Path) -> tuple[int, np.ndarray]:
    with wave.open(str(path), "rb") as w:
        assert w.getnchannels() == 2 and w.getsampwidth() == 2
        rate = w.getframerate()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    return rate, data


def chunk(speaker, values, start, rate=8000):
    return AudioChunk(speaker, np.asarray(values, dtype=np.int16), rate, start)


def test_places_chunks_at_their_audio_time_with_silence_in_gaps(tmp_path):
    rec = CallRecorder(tmp_path / "call.wav", 8000)
    rec.push(chunk("customer", [1] * 100, 0))
    rec.push(chunk("partner", [2] * 50, 0))
    rec.push(chunk("customer", [3] * 100, 200))  # gap 100..200 -> silence
    rec.push(chunk("partner", [4] * 50, 250))  # gap 50..250 -> silence
    info = rec.close()
    rate, data = read_stereo(info.path)
    assert rate == 8000 and info.frames == len(data) == 300
    assert (data[:100, 0] == 1).all() and (data[100:200, 0] == 0).all() and (data[200:300, 0] == 3).all()
    assert (data[:50, 1] == 2).all() and (data[50:250, 1] == 0).all() and (data[250:300, 1] == 4).all()
    assert info.sha256 == sha256_file(info.path) and info.bytes == info.path.stat().st_size == 44 + 300 * 4
    assert info.duration == pytest.approx(300 / 8000)


def test_late_and_overlapping_samples_are_dropped_and_counted(tmp_path):
    rec = CallRecorder(tmp_path / "call.wav", 8000, max_lag_s=0.01)  # 80 samples of lag allowed
    rec.push(chunk("customer", [5] * 400, 0))  # partner lags > 80: written as silence up to 320
    rec.push(chunk("partner", [6] * 400, 0))  # 0..320 already written: 320 late
    rec.push(chunk("customer", [7] * 100, 350))  # overlaps 350..400: 50 late
    info = rec.close()
    _, data = read_stereo(info.path)
    assert len(data) == 450
    assert (data[:320, 1] == 0).all() and (data[320:400, 1] == 6).all()
    assert (data[:400, 0] == 5).all() and (data[400:450, 0] == 7).all()
    assert info.late_samples == 320 + 50


def test_one_sided_call_is_written_after_the_lag(tmp_path):
    # Only the customer ever speaks: frames must still reach the file during the call.
    rec = CallRecorder(tmp_path / "call.wav", 8000, max_lag_s=0.5, write_interval_s=0.1, sync_interval_s=0.2)
    for i in range(100):  # 2 s
        rec.push(chunk("customer", [9] * 160, i * 160))
    assert rec.frames == 16000 - 4000  # 0.5 s held back waiting for the partner
    info = rec.close()
    _, data = read_stereo(info.path)
    assert len(data) == 16000 and (data[:, 0] == 9).all() and (data[:, 1] == 0).all()


def test_rejects_wrong_rate_and_closed_recorder_and_never_overwrites(tmp_path):
    path = tmp_path / "call.wav"
    rec = CallRecorder(path, 8000)
    with pytest.raises(RecordingError) as err:
        rec.push(chunk("customer", [1] * 10, 0, rate=16000))
    assert err.value.code == "recording_error"
    rec.close()
    with pytest.raises(RecordingError):
        rec.push(chunk("customer", [1] * 10, 0))
    before = path.read_bytes()
    again = CallRecorder(path, 8000)
    again.push(chunk("customer", [1] * 10, 0))
    with pytest.raises(RecordingError, match="already exists"):
        again.close()
    assert path.read_bytes() == before


def test_header_is_synced_during_the_call(tmp_path):
    path = tmp_path / "call.wav"
    rec = CallRecorder(path, 8000, sync_interval_s=0.5)
    for i in range(60):  # 1.2 s
        rec.push(chunk("customer", [1] * 160, i * 160))
        rec.push(chunk("partner", [1] * 160, i * 160))
    # wait for the writer without closing: the file as a crash would leave it
    rec._submit(sync=False)
    for f in list(rec._futures):
        f.result()
    with wave.open(str(path)) as w:
        # the last sync was due at 1.0 s; it covers whatever had reached the writer by then
        assert 8000 <= w.getnframes() <= 9600
    assert path.stat().st_size >= 44 + 8000 * 4
    rec.close()


def test_aclose_on_the_event_loop_with_a_shared_executor(tmp_path):
    async def call() -> list:
        pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="recorder")
        try:
            recs = [CallRecorder(tmp_path / f"c{n}.wav", 8000, executor=pool, write_interval_s=0.02) for n in range(3)]
            for i in range(50):
                for n, rec in enumerate(recs):
                    rec.push(chunk("customer", [n + 1] * 160, i * 160))
                    rec.push(chunk("partner", [i] * 160, i * 160))
                await asyncio.sleep(0)
            return await asyncio.gather(*(r.aclose() for r in recs))
        finally:
            pool.shutdown()

    infos = asyncio.run(call())
    for n, info in enumerate(infos):
        _, data = read_stereo(info.path)
        assert len(data) == 8000 and (data[:, 0] == n + 1).all()
        assert (data[:, 1] == np.repeat(np.arange(50), 160)).all()  # order kept by the writer


def test_slow_disk_drops_oldest_audio_as_silence_and_keeps_timing(tmp_path):
    gate = threading.Event()
    pool = ThreadPoolExecutor(max_workers=1)
    pool.submit(gate.wait)  # the disk is stuck
    rec = CallRecorder(tmp_path / "call.wav", 8000, executor=pool, max_pending_s=0.5, write_interval_s=0.1)
    for i in range(100):  # 2 s pushed while nothing can be written
        rec.push(chunk("customer", [i + 1] * 160, i * 160))
        rec.push(chunk("partner", [1] * 160, i * 160))
    assert rec.dropped_frames >= 16000 - 4000 - 800
    gate.set()
    info = rec.close()
    pool.shutdown()
    _, data = read_stereo(info.path)
    assert len(data) == 16000  # timing kept: dropped audio became silence
    assert info.dropped_frames == rec.dropped_frames
    assert (data[:info.dropped_frames] == 0).all()
    assert (data[-160:, 0] == 100).all()  # the newest audio is there


def test_killed_mid_call_then_recovered_file_is_valid_and_complete(tmp_path):
    path = tmp_path / "recordings" / "call-1.wav"
    proc = subprocess.Popen([sys.executable, str(HERE / "crash_recorder.py"), str(path)], stdout=subprocess.PIPE, text=True)
    pushed = 0
    try:
        for line in proc.stdout:
            pushed = int(line.split()[1])
            if pushed >= int(2.5 * RATE):
                os.kill(proc.pid, signals.SIGKILL)  # mid-write, no chance to close
                break
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signals.SIGKILL

    reports = recover_dir(path.parent)
    assert [r.path for r in reports] == [path]
    report = reports[0]
    assert report.status == "fixed", report.describe()
    assert report.sample_rate == RATE and report.channels == 2
    assert report.frames > report.claimed_data_bytes // 4  # audio past the last header sync was saved
    assert "fixed" in report.describe()

    rate, data = read_stereo(path)
    assert rate == RATE
    assert len(data) >= pushed - RATE, f"lost more than 1 s: {pushed - len(data)} frames"
    customer, partner = signal(0, len(data))
    assert (data[:, 0] == customer).all() and (data[:, 1] == partner).all()

    info = subprocess.run(["soxi", "-s", str(path)], capture_output=True, text=True, check=True)
    assert int(info.stdout) == len(data)
    stat = subprocess.run(["sox", str(path), "-n", "stat"], capture_output=True, text=True)
    assert stat.returncode == 0, stat.stderr
    assert recover(path).status == "ok"  # idempotent


def test_recover_trims_a_partial_frame_and_fixes_placeholder_sizes(tmp_path):
    path = tmp_path / "torn.wav"
    frames = np.arange(200, dtype="<i2").tobytes()  # 100 stereo frames
    path.write_bytes(wav_header(8000, 0) + frames + b"\x01\x02\x03")  # placeholder sizes, torn last frame
    report = recover(path)
    assert report.status == "fixed" and report.trimmed_bytes == 3 and report.frames == 100
    assert report.claimed_data_bytes == 0 and report.data_bytes == 400
    assert "trimmed 3 bytes" in report.describe()
    with wave.open(str(path)) as w:
        assert w.getnframes() == 100
        assert w.readframes(100) == frames
    riff, = struct.unpack("<I", path.read_bytes()[4:8])
    assert riff == 36 + 400


def test_recover_leaves_what_it_cannot_read(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "text.wav").write_bytes(b"not audio at all, just text")
    (tmp_path / "half.wav").write_bytes(wav_header(8000, 0)[:20])
    (tmp_path / "notes.txt").write_text("ignored")
    reports = {r.path.name: r for r in recover_dir(tmp_path)}
    assert set(reports) == {"empty.wav", "text.wav", "half.wav"}
    assert all(r.status == "unreadable" for r in reports.values())
    assert (tmp_path / "text.wav").read_bytes() == b"not audio at all, just text"
    assert "unreadable" in reports["half.wav"].describe()
    assert recover_dir(tmp_path / "missing") == []
