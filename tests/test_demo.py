"""The demo (``callshield serve --demo``): its call leaves a supervisor time to
act, it picks only a Vosk model to transcribe it, and it tells a new user how to
sign in, last.

The demo in a browser, at human speed, is tests/test_demo_browser.py; the
demo as a subprocess, tests/agent/test_agent_cli.py.
"""

from __future__ import annotations

import asyncio
import json
import re

from audio.wav import read_info
from cli.commands.serve import _english_model, sign_in_summary
from cli.demo import CALL_TRANSCRIPT, CALL_WAV
from cli.settings import load_settings
from detection import CallScreen



async def read_sign_in(proc: asyncio.subprocess.Process, timeout: float) -> tuple[list[str], dict[str, str], str]:
    """Read a ``callshield serve --demo`` subprocess's sign-in summary from its
    stdout: the lines up to the last, the passwords printed (user -> password)
    and the console's ``http://HOST:PORT``."""
    lines: list[str] = []
    async with asyncio.timeout(timeout):
        while not any("callshield users passwd NAME" in line for line in lines):
            line = (await proc.stdout.readline()).decode()
            assert line, f"serve ended early: {(await proc.stderr.read()).decode()[-2000:]}"
            lines.append(line.strip())
    text = "\n".join(lines)
    passwords = dict(re.findall(r"created user '([\w-]+)'.*password: (\S+)", text))
    return lines, passwords, re.search(r"callshield console: (http://[\d.]+:\d+)/", text).group(1)


# What a person needs after the alert, at the demo's own speed (1.0): read the
# alert (3 s), open the call, type a reason (about 30 characters at 4 a second), send.
SUPERVISOR_SECONDS = 15.0


def _demo_levels(detector) -> tuple[list[tuple[float, str]], float]:
    screen = CallScreen(detector)
    changes, end = [], 0.0
    for line in CALL_TRANSCRIPT.read_text(encoding="utf-8").splitlines():
        turn = json.loads(line)
        end = max(end, turn["end"])
        heard = screen.hear(turn["speaker"], turn["text"], turn["start"], turn["end"])
        if heard.level_change is not None:
            changes.append((turn["end"], heard.level_change.level))
    return changes, end


def test_demo_call_cautions_then_alerts_then_leaves_a_supervisor_time(detector):
    changes, end = _demo_levels(detector)
    assert [level for _, level in changes] == ["caution", "alert"], changes
    (caution_at, _), (alert_at, _) = changes
    assert caution_at < alert_at < 20, "the main act comes early, before a new user gives up watching"
    assert end - alert_at >= SUPERVISOR_SECONDS, f"the call ends {end - alert_at:.1f} s after the alert: no time to authorize"
    info = read_info(CALL_WAV)  # the recording (replayed through a speech model) is the same call
    assert abs(info.duration - end) < 1.0


def _models_dir(tmp_path, *folders):
    root = tmp_path / "models"
    for name, files in folders:
        for part in files:
            (root / name / part).parent.mkdir(parents=True, exist_ok=True)
            (root / name / part).write_bytes(b"x")
    config = tmp_path / "callshield.toml"
    config.write_text(f'[models]\ndir = "{root}"\n', encoding="utf-8")
    return load_settings(config, env={})


ENCODER = ("all-minilm-l6-v2", ("config.json", "vocab.txt", "model.safetensors"))  # the catalogue says: language en
VOSK_EN = ("vosk-model-small-en-us-0.15", ("am/final.mdl", "conf/model.conf", "graph/HCLG.fst"))
VOSK_KO = ("vosk-model-small-ko-0.22", ("am/final.mdl", "conf/model.conf", "graph/HCLG.fst"))


def test_demo_never_takes_the_sentence_encoder_for_an_english_speech_model(tmp_path):
    assert _english_model(_models_dir(tmp_path, ENCODER, VOSK_KO), None) is None


def test_demo_picks_the_installed_english_vosk_model(tmp_path):
    settings = _models_dir(tmp_path, ENCODER, VOSK_EN, VOSK_KO)
    assert _english_model(settings, None) == tmp_path / "models" / VOSK_EN[0]


def test_sign_in_summary_names_the_users_then_how_to_reset_a_password():
    text = sign_in_summary("http://127.0.0.1:8750", [("admin", "admin", "pw-a"), ("demo-supervisor", "supervisor", "pw-s")],
                           demo=True, calls=3)
    lines = text.splitlines()
    assert lines[0].startswith("callshield console: http://127.0.0.1:8750/")
    assert "created user 'demo-supervisor' (supervisor) with password: pw-s" in lines
    assert "3 times, then the demo stops" in text
    assert lines[-1] == "passwords above are shown once; to set a new password: callshield users passwd NAME"
    again = sign_in_summary("http://127.0.0.1:8750", [], demo=False, calls=3).splitlines()
    assert again[-1] == "to set a new password: callshield users passwd NAME" and "password:" not in again[0]
