"""docs/callshield.example.toml stays true to the code.

The example is what operators copy; these checks fail when a setting is added,
renamed or given a new default without the example following, or when the
example shows a value the parsers reject.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any, Callable, Mapping

from kernel.config import SECTIONS, load_config
from agent.end_call_webhook import EndCallWebhookSettings
from agent.settings import AgentSettings
from cli.settings import load_settings
from audio.audiosocket import AudioSocketConfig
from audio.media_streams import MediaStreamsConfig
from audio.config import AudioConfig
from audio.device import DeviceConfig
from audio.sip.config import SipConfig
from kernel.errors import CallshieldError
from kernel.retention import RetentionPolicy
from audio.vad import VadConfig
from console.config import ConsoleConfig
from detection.config import DetectionConfig
from detection.taxonomy import CATEGORIES, DEFAULT_SEVERITY, JUDGED_BY_MEANING, SEVERITIES
from models.decoding import DecodingPlan
from models.lookup import ModelsConfig

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "callshield.example.toml"

SUB_TABLES = {"models": {"decoding"}, "audio": {"vad"}, "detection": {"severity", "points", "semantic_thresholds"}}


def parsers(tmp_path: Path) -> dict[str, Callable[[Mapping[str, Any]], Any]]:
    """Each section's real parser, as the commands call it."""
    return {
        "models": lambda t: ModelsConfig.from_section(t, base=EXAMPLE.parent),
        "audio": AudioConfig.from_section,
        "detection": DetectionConfig.from_table,
        "agent": AgentSettings.from_table,
        "audiosocket": AudioSocketConfig.from_section,
        "media_streams": MediaStreamsConfig.from_section,
        "siprec": SipConfig.from_section,
        "devices": DeviceConfig.from_section,
        "console": lambda t: ConsoleConfig.from_table(t, data_dir=tmp_path),
        "retention": RetentionPolicy.from_section,
        "end_call_webhook": lambda t: EndCallWebhookSettings.from_section(t, env={}),
    }


def config_keys() -> dict[str, set[str]]:
    """Every key each table accepts, from the dataclasses (config key, not field name, where they differ)."""
    def names(cls, rename: Mapping[str, str] = {}, tables: set[str] = set()) -> set[str]:
        return {rename.get(f.name, f.name) for f in dataclasses.fields(cls)} - tables

    return {
        "models": names(ModelsConfig, tables={"decoding"}),
        "models.decoding": names(DecodingPlan),
        # AudioConfig.channel_map is read from the key "channels"; vad is the [audio.vad] table.
        "audio": names(AudioConfig, {"channel_map": "channels"}, {"vad"}),
        "audio.vad": names(VadConfig),
        "detection": names(DetectionConfig, tables={"severity", "points", "semantic_thresholds"}),
        "detection.severity": set(CATEGORIES),
        "detection.semantic_thresholds": set(JUDGED_BY_MEANING),
        "detection.points": set(SEVERITIES),
        "agent": names(AgentSettings),
        "audiosocket": names(AudioSocketConfig),
        "media_streams": names(MediaStreamsConfig),
        "siprec": names(SipConfig),
        "devices": names(DeviceConfig),
        "console": names(ConsoleConfig),
        "retention": names(RetentionPolicy),
        "end_call_webhook": names(EndCallWebhookSettings),
    }


def example_tables() -> dict[str, Mapping[str, Any]]:
    return tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))


def set_keys(tables: Mapping[str, Any]) -> dict[str, set[str]]:
    """Keys given a value in each table (sub-tables listed under their dotted name, not as keys)."""
    out: dict[str, set[str]] = {}
    for name, table in tables.items():
        subs = SUB_TABLES.get(name, set())
        out[name] = {k for k in table if k not in subs}
        for sub in subs & set(table):
            out[f"{name}.{sub}"] = set(table[sub])
    return out


_HEADER = re.compile(r"^\[([A-Za-z0-9_.]+)\]")
_COMMENTED = re.compile(r"^#\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*\S")


def commented_settings() -> dict[str, dict[str, Any]]:
    """``# key = value`` lines, per table, with the value they would set if uncommented."""
    out: dict[str, dict[str, Any]] = {}
    table = None
    for line in EXAMPLE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        header = _HEADER.match(line)
        if header:
            table = header.group(1)
            continue
        found = _COMMENTED.match(line)
        if found and table is not None:
            key = found.group(1)
            value = tomllib.loads(line.lstrip("#").strip())[key]  # the uncommented line must be valid TOML
            assert key not in out.setdefault(table, {}), f"[{table}] {key} shown twice"
            out[table][key] = value
    return out


def assert_same_fields(got: Any, want: Any, where: str) -> None:
    assert type(got) is type(want), where
    for f in dataclasses.fields(want):
        a, b = getattr(got, f.name), getattr(want, f.name)
        if dataclasses.is_dataclass(b):
            assert_same_fields(a, b, f"{where}.{f.name}")
        else:
            assert a == b, f"{where} {f.name}: example gives {a!r}, default is {b!r}"


def clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLSHIELD_")}
    env["CALLSHIELD_HOME"] = str(tmp_path / "home")
    return env


# --------------------------------------------------------------------------- 1. it parses


def test_example_is_valid_toml_and_every_section_goes_through_its_parser(tmp_path):
    text = EXAMPLE.read_text(encoding="utf-8")
    for where in ("--config FILE", "$CALLSHIELD_CONFIG", "~/.config/callshield/config.toml", "unknown section or key"):
        assert where in text, f"header does not mention {where}"

    file = load_config(EXAMPLE)
    assert file.path == EXAMPLE
    assert set(file.tables) == set(SECTIONS), "example sections differ from the sections callshield reads"
    for name, subs in SUB_TABLES.items():
        assert {k for k, v in file.tables[name].items() if isinstance(v, Mapping)} == subs

    settings = load_settings(EXAMPLE, env={"CALLSHIELD_HOME": str(tmp_path)})
    assert settings.data_dir == tmp_path
    assert isinstance(settings.agent, AgentSettings)
    assert isinstance(settings.audio_config(), AudioConfig)
    assert isinstance(settings.detection_config(), DetectionConfig)
    assert isinstance(ModelsConfig.from_section(settings.section("models"), base=EXAMPLE.parent), ModelsConfig)
    assert isinstance(AudioSocketConfig.from_section(settings.section("audiosocket")), AudioSocketConfig)
    assert isinstance(MediaStreamsConfig.from_section(settings.section("media_streams")), MediaStreamsConfig)
    assert isinstance(DeviceConfig.from_section(settings.section("devices")), DeviceConfig)
    assert isinstance(SipConfig.from_section(settings.section("siprec")), SipConfig)
    assert isinstance(ConsoleConfig.from_table(settings.section("console"), data_dir=tmp_path), ConsoleConfig)
    assert isinstance(RetentionPolicy.from_section(settings.section("retention")), RetentionPolicy)
    assert isinstance(settings.end_call_webhook(env={}), EndCallWebhookSettings)


# Commented-out settings that only make sense with another one (the parsers say so).
GIVEN_TOGETHER = {
    ("devices", "partner"): ("customer",),  # a partner device needs a customer device
    ("console", "tls_cert"): ("tls_key",),  # both or neither
    ("console", "tls_key"): ("tls_cert",),
}


def test_every_commented_out_example_value_is_accepted_by_its_parser(tmp_path):
    parse = parsers(tmp_path)
    tables = example_tables()
    checked = 0
    for table, settings in commented_settings().items():
        section, _, sub = table.partition(".")
        for key, value in settings.items():
            base = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in tables[section].items()}
            if sub:
                base[sub] = {**base[sub], key: value}
            else:
                base[key] = value
            for partner in GIVEN_TOGETHER.get((table, key), ()):
                base[partner] = settings[partner]
            parse[section](base)
            checked += 1
    assert checked >= 15, "the example lost its commented-out settings"


def test_a_typo_in_any_section_is_a_one_line_config_error(tmp_path):
    """The header promises it: an unknown key is an error, in every section."""
    parse = parsers(tmp_path)
    tables = example_tables()
    for section in SECTIONS:
        try:
            parse[section]({**tables[section], "no_such_setting": 1})
        except CallshieldError as exc:
            assert exc.code == "bad_config", section
            assert "no_such_setting" in str(exc), section
        else:
            raise AssertionError(f"[{section}] accepted an unknown key")
    try:
        AudioConfig.from_section({"vad": {**tables["audio"]["vad"], "no_such_setting": 1}})
    except CallshieldError as exc:
        assert exc.code == "bad_config" and "no_such_setting" in str(exc)
    else:
        raise AssertionError("[audio.vad] accepted an unknown key")


# --------------------------------------------------------------------------- 2. it shows the defaults


def test_every_value_set_in_the_example_is_the_default(tmp_path):
    parse = parsers(tmp_path)
    tables = example_tables()
    for section in SECTIONS:
        # Fields whose default is derived (agent_id: the host name; console data_dir:
        # the data directory) are commented out in the example, so both sides derive
        # them the same way here and no field needs skipping.
        assert_same_fields(parse[section](tables[section]), parse[section]({}), f"[{section}]")


def test_the_example_sets_every_setting_that_has_a_literal_default():
    """Guards the check above against a vacuous pass: only settings without a
    safe default to show (secrets, paths, devices, derived values) are commented out."""
    commented = {table: set(keys) for table, keys in commented_settings().items()}
    assert commented == {
        "models": {"model", "dir"},
        "detection.severity": set(CATEGORIES),
        "detection.semantic_thresholds": set(JUDGED_BY_MEANING),
        "agent": {"token", "token_file", "ca_file", "agent_id", "closing_message"},
        "media_streams": {"audiohook_keys", "audiohook_keys_file", "twilio_auth_token", "twilio_auth_token_file"},
        "devices": {"stereo", "customer", "partner"},
        "console": {"data_dir", "tls_cert", "tls_key"},
        "end_call_webhook": {"secret", "secret_file", "ca_file"},
    }
    # the severities shown are the taxonomy's defaults
    assert commented_settings()["detection.severity"] == dict(DEFAULT_SEVERITY)
    # the thresholds shown are the shared one's default
    assert set(commented_settings()["detection.semantic_thresholds"].values()) == {DetectionConfig().semantic_threshold}
    # the commented-out settings all default to "none" (or a derived value)
    for cls, keys in ((ModelsConfig, {"model", "dir"}), (DeviceConfig, {"stereo", "customer", "partner"})):
        assert all(getattr(cls(), k) is None for k in keys), cls
    agent = AgentSettings()
    assert all(getattr(agent, k) in (None, "") for k in ("token", "token_file", "ca_file", "closing_message"))
    webhook = EndCallWebhookSettings()
    assert all(getattr(webhook, k) in (None, "") for k in ("secret", "secret_file", "ca_file"))


# --------------------------------------------------------------------------- 3. it is complete


def test_every_setting_of_every_section_is_in_the_example():
    present = set_keys(example_tables())
    commented = commented_settings()
    for table, keys in config_keys().items():
        shown_set = present.get(table, set())
        shown_commented = set(commented.get(table, {}))
        assert not shown_set & shown_commented, f"[{table}] both set and commented out: {shown_set & shown_commented}"
        missing = keys - shown_set - shown_commented
        assert not missing, f"[{table}] missing from the example: {sorted(missing)}"
        extra = (shown_set | shown_commented) - keys
        assert not extra, f"[{table}] in the example but not a setting: {sorted(extra)}"


def test_every_setting_line_has_a_comment_saying_what_it_does():
    table = None
    for number, line in enumerate(EXAMPLE.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if _HEADER.match(line):
            table = _HEADER.match(line).group(1)
            continue
        if table is None or not line:
            continue
        setting = line.lstrip("#").strip()
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*\s*=", setting):
            continue  # prose
        if table in ("detection.severity", "detection.points", "detection.semantic_thresholds"):
            continue  # explained once by the comment above the table's entries
        value_and_comment = setting.split("=", 1)[1]
        assert re.search(r"\s#\s*\S", value_and_comment), f"line {number}: no comment: {line}"


# --------------------------------------------------------------------------- 4. the CLI takes it


def run_cli(tmp_path: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli", "--config", str(EXAMPLE), *args],
                          cwd=tmp_path, env=clean_env(tmp_path), input=stdin, capture_output=True, text=True, timeout=120)


def test_the_cli_accepts_the_example(tmp_path):
    # models path --dir: reads the file and [models], prints the models directory, loads no model.
    out = run_cli(tmp_path, "models", "path", "--dir")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(tmp_path / "home" / "models")  # [models] dir is commented out

    # users list: reads [console]; its store lands in the default data directory.
    out = run_cli(tmp_path, "users", "list")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "home" / "console.db").exists()

    # detect: reads [detection] and builds the detector from it.
    out = run_cli(tmp_path, "detect", stdin="")
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""
