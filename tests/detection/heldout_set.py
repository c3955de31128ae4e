"""The held-out set (``heldout.tsv``) by round: which line came in which round,
and which rounds no model may learn from.

Each round was written apart from the detector and scored once at first
sight (the figures are in the file's comments, at the head of each round).
Rounds 1 to 16 then became material: rules were written for the misses of
some, and the semantic stage trains on all of them. Rounds 17 to 24 are kept
out of training for good (``bench/train_semantic.py`` skips them), so they
keep measuring the shipped detector on words it never saw.
"""

from __future__ import annotations

import re
from pathlib import Path

HELDOUT = Path(__file__).with_name("heldout.tsv")
RULES_WRITTEN_FOR = range(1, 9)  # rounds the rules were written for
NEVER_TRAINED_ON = range(17, 25)  # rounds no model learns from


def rows(path: Path = HELDOUT, *, unread: bool = False) -> list[tuple[int, str, str]]:
    """``(round, label, text)`` of every line; a round starts at a ``# ---- round N`` comment.
    ``unread``: without the lines a rule or the aim lists were written from
    (``heldout:LINE`` in ``detection/lexicons/en/provenance.tsv``): for figures."""
    read = written_from() if unread else frozenset()
    out, number = [], 1
    for index, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("# ----"):
            number = int(re.search(r"rounds? (\d+)", line).group(1))
        elif line.strip() and not line.startswith("#") and index not in read:
            label, text = line.split("\t", 1)
            out.append((number, label, text))
    return out


def written_from() -> frozenset[int]:
    """Line numbers of ``heldout.tsv`` that something in the lexicon was written from."""
    from detection.lexicon import lexicon_dir, provenance_references

    return frozenset(int(ref.split(":")[1]) for ref in provenance_references(lexicon_dir("en")) if ref.startswith("heldout:"))
