"""The sets detection quality is measured on, and what each may be used for
(``docs/detection-quality.md``), read the same way by every benchmark.

- ``calls``: call-like customer lines per category (and hard benign ``none``
  lines), written apart from the detector for issue 11;
- ``spoken``: ordinary spoken conversation, ``plain`` and ``trigger`` (no
  abuse, but words such as kill, shoot, stupid, ass), and ``toxic`` lines;
- each in two parts: ``development`` (``tests/detection/<name>.tsv``, read
  while building) and ``sealed`` (``tests/detection/sealed/<name>.tsv``,
  scored once, at the end, by ``bench/detection_quality.py --sealed``).

Lines a rule or exception was written from (``provenance.tsv``) are left out
of every figure (:func:`without_provenance`).
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests" / "detection"
PROVENANCE = ROOT / "detection" / "lexicons" / "en" / "provenance.tsv"
WRITTEN_SETS = ("calls", "spoken")
PARTS = ("development", "sealed")


def pct(n: int, d: int) -> str:
    return f"{100.0 * n / d:5.1f}% ({n}/{d})" if d else "   n/a"


def written_set(name: str, part: str = "development") -> list[tuple[int, str, str]]:
    """``(line number, label, text)`` of a written set (``calls`` or ``spoken``)."""
    if name not in WRITTEN_SETS or part not in PARTS:
        raise ValueError(f"no set {name!r} / {part!r}")
    path = TESTS / (f"{name}.tsv" if part == "development" else f"sealed/{name}.tsv")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip() and not line.startswith("#"):
            label, text = line.split("\t", 1)
            rows.append((number, label, text))
    return rows


def provenance_lines(path: Path = PROVENANCE) -> frozenset[str]:
    """Every line reference (``convabuse:ID``, ``spoken:N``, ``calls:N``,
    ``heldout:R``) some rule or exception was written from."""
    refs: set[str] = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            _, sources = line.split("\t", 1)
            refs.update(r.strip() for r in sources.split(",") if re.fullmatch(r"[a-z]+:\S+", r.strip()))
    return frozenset(refs)


def without_provenance(name: str, rows: list[tuple[int, str, str]]) -> list[tuple[int, str, str]]:
    """``rows`` of the development set ``name`` without the lines rules were written from."""
    used = provenance_lines()
    return [row for row in rows if f"{name}:{row[0]}" not in used]
