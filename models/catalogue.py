"""The catalogue of models (official Vosk speech models, sentence encoders), read from ``catalogue.json``.

The list is data, not code, so a reviewer (or a site that mirrors the models
on its own intranet) can read and edit it without touching Python. Each entry
says where the zip is, how big it is, and its checksum where one is known.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from models.errors import CatalogueError

CATALOGUE_PATH = Path(__file__).with_name("catalogue.json")

_HEX = {"sha256": re.compile(r"^[0-9a-f]{64}$"), "md5": re.compile(r"^[0-9a-f]{32}$")}
_REQUIRED = ("name", "language", "language_name", "kind", "size", "url")


@dataclass(frozen=True)
class CatalogueEntry:
    """One downloadable model.

    Attributes:
        name: the model's folder name once unpacked (also its install name).
        language: language tag, lowercase (``en-us``, ``ja``, ``ko``).
        language_name: the language in words, for people.
        kind: ``small``, ``medium`` or ``large`` for a speech model (small: for a
            seat; large: for a server); ``encoder`` for a sentence encoder.
        size: download size as upstream writes it (``40M``, ``1.8G``).
        size_bytes: exact size of the zip in bytes, or None if not known.
        url: where the zip (or wheel, a zip too) is (http, https or file).
        sha256: hex SHA-256 of the zip, or None if not known.
        md5: hex MD5 of the zip as upstream publishes it, or None.
        notes: one line for people.
    """

    name: str
    language: str
    language_name: str
    kind: str
    size: str
    url: str
    size_bytes: int | None = None
    sha256: str | None = None
    md5: str | None = None
    notes: str = ""

    @property
    def checksum_known(self) -> bool:
        return bool(self.sha256 or self.md5)


@dataclass(frozen=True)
class Catalogue:
    """Every catalogue entry, in file order (names unique)."""

    entries: tuple[CatalogueEntry, ...]
    path: Path | None = None

    def get(self, name: str) -> CatalogueEntry | None:
        for entry in self.entries:
            if entry.name == name:
                return entry
        return None

    def by_url(self, url: str) -> CatalogueEntry | None:
        for entry in self.entries:
            if entry.url == url:
                return entry
        return None

    def by_file_name(self, file_name: str) -> CatalogueEntry | None:
        """The entry whose URL ends in ``file_name`` (a download fetched on another machine)."""
        for entry in self.entries:
            if entry.url.rstrip("/").rsplit("/", 1)[-1] == file_name:
                return entry
        return None

    def names(self) -> list[str]:
        return [entry.name for entry in self.entries]


def parse_catalogue(data: object, *, origin: str = "catalogue") -> Catalogue:
    """Validate the JSON document and build the catalogue (CatalogueError if malformed)."""
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise CatalogueError(f"{origin}: expected an object with a 'models' list")
    entries: list[CatalogueEntry] = []
    seen: set[str] = set()
    for i, raw in enumerate(data["models"]):
        where = f"{origin}: models[{i}]"
        if not isinstance(raw, dict):
            raise CatalogueError(f"{where}: expected an object")
        for key in _REQUIRED:
            if not isinstance(raw.get(key), str) or not raw[key].strip():
                raise CatalogueError(f"{where}: '{key}' must be a non-empty string")
        unknown = set(raw) - set(CatalogueEntry.__dataclass_fields__)
        if unknown:
            raise CatalogueError(f"{where}: unknown fields {sorted(unknown)}")
        name = raw["name"]
        if name in seen:
            raise CatalogueError(f"{where}: duplicate name {name!r}")
        if "/" in name or name.startswith("."):
            raise CatalogueError(f"{where}: name {name!r} must be a plain folder name")
        seen.add(name)
        if not raw["url"].startswith(("http://", "https://", "file://")):
            raise CatalogueError(f"{where}: url must be http, https or file")
        size_bytes = raw.get("size_bytes")
        if size_bytes is not None and (not isinstance(size_bytes, int) or isinstance(size_bytes, bool) or size_bytes <= 0):
            raise CatalogueError(f"{where}: size_bytes must be a positive integer or null")
        for algo, pattern in _HEX.items():
            value = raw.get(algo)
            if value is not None and (not isinstance(value, str) or not pattern.match(value)):
                raise CatalogueError(f"{where}: {algo} must be lowercase hex or null")
        entries.append(CatalogueEntry(**{k: raw[k] for k in raw}))
    return Catalogue(entries=tuple(entries), path=None)


def load_catalogue(path: Path | None = None) -> Catalogue:
    """Read the catalogue (default: the one shipped beside this module)."""
    target = Path(path) if path else CATALOGUE_PATH
    try:
        data = json.loads(target.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CatalogueError(f"model catalogue not found: {target}") from exc
    except json.JSONDecodeError as exc:
        raise CatalogueError(f"{target}: not valid JSON: {exc}") from exc
    catalogue = parse_catalogue(data, origin=str(target))
    return Catalogue(entries=catalogue.entries, path=target)
