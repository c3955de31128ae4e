"""Configuration: one TOML file, one section per room of the house.

Where the file is: ``--config FILE``, else ``$CALLSHIELD_CONFIG``, else
``~/.config/callshield/config.toml`` (``$XDG_CONFIG_HOME`` respected). A
missing default file is fine (defaults apply); a missing file that was asked
for by name, or a file that is not valid TOML, is a :class:`ConfigError`.

A section the program does not know (a typo such as ``[detecton]``) is a
:class:`ConfigError`, never silently ignored. Each section is turned into a
frozen dataclass by the package that owns it
(``[models]`` by ``models``, ``[detection]`` by ``detection``, ...), each
read by :func:`kernel.sections.read_section`, so a
reviewer can see every setting and its unit next to the code that uses it.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from kernel.errors import ConfigError

__all__ = ["ConfigError", "ConfigFile", "SECTIONS", "default_config_path", "default_data_dir", "load_config", "secret_from_file"]

SECTIONS = ("models", "audio", "detection", "agent", "audiosocket", "media_streams", "siprec", "devices", "console", "retention",
            "end_call_webhook")
"""Every section of the config file (``docs/callshield.example.toml`` shows them all)."""


def default_config_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "callshield" / "config.toml"


def default_data_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where callshield keeps models, the console's store and recordings by default."""
    env = os.environ if env is None else env
    if env.get("CALLSHIELD_HOME"):
        return Path(env["CALLSHIELD_HOME"])
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "callshield"


def secret_from_file(path: Path, what: str) -> str:
    """The first line of ``path`` (a token or secret file), stripped; an unreadable
    or empty file is a :class:`ConfigError` ``"{what} {path}: cannot read it"``
    (the file's content is never in the message)."""
    try:
        return path.read_text(encoding="utf-8").strip().splitlines()[0].strip()
    except (OSError, UnicodeDecodeError, IndexError):
        raise ConfigError(f"{what} {path}: cannot read it") from None


@dataclass(frozen=True)
class ConfigFile:
    """The parsed config file. ``path`` is None when no file was read."""

    path: Path | None
    tables: Mapping[str, Any] = field(default_factory=dict)

    def section(self, name: str) -> Mapping[str, Any]:
        value = self.tables.get(name, {})
        if not isinstance(value, Mapping):
            raise ConfigError(f"{self.path}: [{name}] must be a table")
        return value


def load_config(path: str | os.PathLike | None = None, env: Mapping[str, str] | None = None) -> ConfigFile:
    env = os.environ if env is None else env
    named = path or env.get("CALLSHIELD_CONFIG")
    target = Path(named) if named else default_config_path(env)
    if not target.exists():
        if named:
            raise ConfigError(f"config file not found: {target}")
        return ConfigFile(path=None)
    try:
        with target.open("rb") as fh:
            tables = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{target}: not valid TOML: {exc}") from exc
    unknown = sorted(set(tables) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{target}: unknown section(s) {', '.join(f'[{name}]' for name in unknown)} (known: {', '.join(SECTIONS)})")
    return ConfigFile(path=target, tables=tables)
