"""The command line as a user meets it: help works, errors are one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cli import main as cli

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=60, **kwargs)


def test_help_lists_every_built_command():
    out = run("--help")
    assert out.returncode == 0
    built = [name for name, (module, _) in cli.COMMANDS.items() if (ROOT / "cli" / "commands" / f"{module}.py").exists()]
    assert built, "no command modules found"
    for name in built:
        assert name in out.stdout


def test_no_command_prints_usage_and_fails():
    out = run()
    assert out.returncode == 2
    assert "usage: callshield" in out.stderr


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("nope.toml", None, "config file not found: {path}"),  # named but missing
        ("bad.toml", "[models\nmodel = 1\n", "not valid TOML"),
        ("typo.toml", "[detecton]\nrepetition_min = 5\n", "unknown section(s) [detecton]"),  # not a silent default
    ],
    ids=["missing", "bad-toml", "misspelt-section"],
)
def test_a_bad_config_file_is_a_one_line_config_error(tmp_path, name, text, expected):
    from kernel.config import ConfigError, load_config

    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert expected.format(path=path) in message
    assert "\n" not in message and caught.value.code == "bad_config"


def test_a_webhook_url_without_a_usable_secret_stops_the_agent_commands_before_they_connect(tmp_path):
    call = tmp_path / "call.jsonl"
    call.write_text('{"speaker": "customer", "start": 0.0, "end": 1.0, "text": "hello"}\n')
    config = tmp_path / "callshield.toml"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "CALLSHIELD_HOME": str(tmp_path / "home")}
    for table, words in (('url = "https://cti.example/end"', "a url needs a secret"),
                         ('url = "https://cti.example/end"\nsecret = "short"', "shorter than 16 characters")):
        config.write_text(f"[end_call_webhook]\n{table}\n")
        out = run("--config", str(config), "replay", str(call), "--console", "ws://127.0.0.1:9", "--token", "t", env=env)
        assert out.returncode != 0
        assert f"{config}: [end_call_webhook]" in out.stderr and words in out.stderr
        assert "short" not in out.stderr.replace("shorter", "")  # the secret is not echoed
        assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
