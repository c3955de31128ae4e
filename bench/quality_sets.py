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

from pathlib import Path

from detection.lexicon import lexicon_dir, provenance_references
from shared_data import numbered

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests" / "detection"
WRITTEN_SETS = {"calls": ("development", "sealed"), "spoken": ("development", "sealed"), "calls_round2": ("sealed",),
                "calls_round3": ("development",), "calls_round4": ("development",),
                "calls_round5": ("development",), "calls_round6": ("development",),
                "threat_words_round8": ("development",), "calls_round7": ("sealed",),
                "calls_round8": ("sealed",)}
"""Each written set and its parts: ``calls_round2``, ``calls_round7`` and ``calls_round8`` are sealed only
(a second, an eighth and a ninth writer's lines; ``calls_round7``'s were printed once by a slip of a
shell command in round 17, after its candidate and rule were fixed: ``docs/detection-quality.md``,
"The seal of round 7"). ``calls_round4`` (a fourth writer, the recognizer's voice with
long run-on lines) was sealed at the end of round 3, scored once at the end of round 4, and is
development since. ``calls_round3`` (a third
writer, recognizer-style) was sealed for round 3, scored once at its end, and is development since:
round 4 reads it. ``calls_round5`` (a fifth writer: recognizer style, short and long rambling turns,
many regions and sectors) was written and sealed at the end of round 4, before round 4's seal was
opened, scored once at the end of round 7 (2026-12-07, after its decision: "The seal of round 5") and is
development since. ``calls_round6`` (a sixth writer: recognizer style, sectors and voices no
earlier round used) was written and sealed in round 7, before round 5's seal could be opened, and
``threat_words_round8`` (a seventh writer: threats in many shapes, hard benign lines with threat words)
in round 8, before any of its rules; both were scored once at the end of round 8 (2026-12-07, after its
decision) and are development since. ``calls_round7`` (an eighth writer: recognizer style, regions and
sectors no earlier round used) was written and sealed at the end of round 8, before round 9.
``calls_round8`` (a ninth writer: recognizer style, sectors and voices the earlier writers were told
to avoid) was written and sealed in round 17 of issue 11 (2026-12-08), before round 7's seal was opened."""
DEVELOPMENT_SETS = tuple(name for name, parts in WRITTEN_SETS.items() if "development" in parts)
SPENT = ("calls", "spoken", "calls_round2", "calls_round7")
"""Sealed sets already scored (2026-12-06, the end of issue 11's first round): their figures are
no longer first sight. ``calls_round2`` was written and sealed before the voices batches were
measured, and scored once after the decision not to adopt them (``docs/detection-quality.md``, "Round 2").
(``calls_round3``, sealed before round 3 and scored once after its decision, is development now:
``docs/detection-quality.md``, "The seal of round 3".) ``calls_round4`` was scored once at the end of
round 4 (2026-12-07), after its decision ("The seal of round 4"), and is development since; so is
``calls_round5``, scored once at the end of round 7 ("The seal of round 5"), and so are ``calls_round6``
and ``threat_words_round8``, scored once at the end of round 8 ("Round 8"). ``calls_round7`` was
scored once at the end of round 17 (2026-12-08, after its decision: "The seal of round 7"); it stays
under ``sealed/`` until a round names it a development row of its rule."""


def pct(n: int, d: int) -> str:
    return f"{100.0 * n / d:5.1f}% ({n}/{d})" if d else "   n/a"


def written_set(name: str, part: str = "development") -> list[tuple[int, str, str]]:
    """``(line number, label, text)`` of a part of a written set (:data:`WRITTEN_SETS`)."""
    if part not in WRITTEN_SETS.get(name, ()):
        raise ValueError(f"no set {name!r} / {part!r}")
    path = TESTS / (f"{name}.tsv" if part == "development" else f"sealed/{name}.tsv")
    return numbered(path.read_text(encoding="utf-8").splitlines())


def provenance_lines() -> frozenset[str]:
    """Every line reference (``convabuse:ID``, ``spoken:N``, ``calls:N``,
    ``heldout:N``) something in the lexicon was written from."""
    return provenance_references(lexicon_dir("en"))


def without_provenance(name: str, rows: list[tuple[int, str, str]]) -> list[tuple[int, str, str]]:
    """``rows`` of the development set ``name`` without the lines rules were written from."""
    used = provenance_lines()
    return [row for row in rows if f"{name}:{row[0]}" not in used]
