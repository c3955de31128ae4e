"""The shared data sets, read the same way by every detection benchmark and by
the semantic stage's training script (``bench/train_semantic.py``): where
``shared/`` is, labelled utterance files, ConvAbuse's majority labels, and
typed chat turned into recognizer-style text."""

from __future__ import annotations

import csv
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

ROOT = Path(__file__).resolve().parents[1]


def shared_path() -> Path:
    """Where the team's ``shared/`` folder should be (beside the clone; ``$CALLSHIELD_SHARED`` overrides)."""
    return Path(os.environ.get("CALLSHIELD_SHARED", ROOT.parent / "shared"))


def shared_dir() -> Path:
    """The team's ``shared/`` folder; exits with a message when it is not there."""
    path = shared_path()
    if not path.is_dir():
        sys.exit(f"shared data not found at {path} (set CALLSHIELD_SHARED)")
    return path


def recognizer_like(text: str) -> str:
    """Typed chat as a recognizer would write it: lowercase words, apostrophes kept."""
    text = re.sub(r"<[^>]*>", " ", text)
    text = text.lower().replace("\u2019", "'")
    text = re.sub(r"[^a-z0-9' ]+", " ", text)
    return " ".join(text.split())


def labelled(lines: Iterable[str]) -> list[tuple[str, str]]:
    """``(label, text)`` of ``label<TAB>text`` lines (``dev_utterances.tsv``,
    ``heldout.tsv``); blank lines and ``#`` comments skipped."""
    rows = []
    for line in lines:
        if line.strip() and not line.startswith("#"):
            label, text = line.split("\t", 1)
            rows.append((label, text))
    return rows


@dataclass(frozen=True)
class ConvAbuseMessage:
    """One user message with its annotators' majority: ``kind`` is ``abuse_agent``
    (abusive, aimed at the agent), ``abuse_other`` or ``clean``; ``sexual``: a
    majority marked it sexual harassment."""

    text: str
    kind: str
    sexual: bool


def convabuse(path: Path) -> list[ConvAbuseMessage]:
    """The messages of one ConvAbuse split with a clear majority (ambiguous ones dropped)."""
    rows = []
    with path.open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            votes, system, sexual = [], 0, 0
            for n in range(1, 9):
                chosen = [v for v in ("1", "0", "-1", "-2", "-3") if row.get(f"Annotator{n}_is_abuse.{v}") == "1"]
                if not chosen:
                    continue
                votes.append(int(chosen[0]))
                system += row.get(f"Annotator{n}_target.system") == "1"
                sexual += row.get(f"Annotator{n}_sex_harassment") == "1"
            text = recognizer_like(row["user"])
            if not votes or not text:
                continue
            majority = len(votes) / 2
            if sum(v < 0 for v in votes) > majority:
                rows.append(ConvAbuseMessage(text, "abuse_agent" if system > majority else "abuse_other", sexual > majority))
            elif sum(v == 1 for v in votes) > majority:
                rows.append(ConvAbuseMessage(text, "clean", False))
    return rows
