"""The command line as a user meets it: help works, errors are one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from agent import cli

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=60, **kwargs)


def test_help_lists_every_built_command():
    out = run("--help")
    assert out.returncode == 0
    built = [name for name, (module, _) in cli.COMMANDS.items() if (ROOT / "agent" / "commands" / f"{module}.py").exists()]
    assert built, "no command modules found"
    for name in built:
        assert name in out.stdout


def test_no_command_prints_usage_and_fails():
    out = run()
    assert out.returncode == 2
    assert "usage: callshield" in out.stderr


def test_a_config_file_that_was_named_but_is_missing_is_one_line(tmp_path):
    from agent.config import ConfigError, load_config

    missing = tmp_path / "nope.toml"
    try:
        load_config(missing)
    except ConfigError as exc:
        assert str(missing) in str(exc) and exc.code == "bad_config"
    else:
        raise AssertionError("missing named config file was accepted")


def test_bad_toml_is_a_config_error(tmp_path):
    from agent.config import ConfigError, load_config

    bad = tmp_path / "bad.toml"
    bad.write_text("[models\nmodel = 1\n")
    try:
        load_config(bad)
    except ConfigError as exc:
        assert "not valid TOML" in str(exc)
    else:
        raise AssertionError("bad TOML was accepted")


def test_a_misspelt_section_is_an_error_not_a_silent_default(tmp_path):
    from agent.config import ConfigError, load_config

    typo = tmp_path / "typo.toml"
    typo.write_text("[detecton]\nrepetition_min = 5\n")
    try:
        load_config(typo)
    except ConfigError as exc:
        assert "unknown section(s) [detecton]" in str(exc)
    else:
        raise AssertionError("a misspelt section was accepted")
