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
