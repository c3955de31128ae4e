"""The shared data sets, read the same way by every detection benchmark and by
the semantic stage's training script (``bench/train_semantic.py``): where
``shared/`` is, labelled utterance files, ConvAbuse's majority labels with
their targets and abuse types, and typed chat turned into recognizer-style text.

ConvAbuse is sealed in part (``docs/detection-quality.md``): 30 % of its
conversations, chosen by a seeded draw before issue 11 changed anything
(``data/convabuse_sealed.txt``), are left out by every reader here unless a
caller asks for ``part="sealed"``; only ``bench/detection_quality.py --sealed``
does, once, at the end."""

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
    return [(label, text) for _, label, text in numbered(lines)]


def numbered(lines: Iterable[str]) -> list[tuple[int, str, str]]:
    """``(line number, label, text)`` of ``label<TAB>text`` lines, as :func:`labelled`."""
    rows = []
    for number, line in enumerate(lines, 1):
        if line.strip() and not line.startswith("#"):
            label, text = line.split("\t", 1)
            rows.append((number, label, text))
    return rows


SEAL_SEED = "callshield-issue-11-seal-2026-12-06"
"""The seed that chose the sealed ConvAbuse conversations (``data/convabuse_sealed.txt``)."""
SEAL_SHARE = 0.3
SEALED_FILE = ROOT / "bench" / "data" / "convabuse_sealed.txt"
CONVABUSE_SPLITS = (("train", "ConvAbuseEMNLPtrain.csv"), ("validation", "ConvAbuseEMNLPvalid.csv"))
ABUSE_TYPES = ("ableist", "homophobic", "intellectual", "racist", "sexist", "sex_harassment", "transphobic")
TARGETS = ("system", "individual", "generalised")


@dataclass(frozen=True)
class ConvAbuseMessage:
    """One user message with its annotators' majority.

    Attributes:
        example_id: ConvAbuse's id of the message (unique across splits).
        conv_id: the conversation it belongs to (the unit of sealing and of folds).
        split: ``train`` or ``validation`` (ConvAbuse's own split).
        text: the message, recognizer-style (:func:`recognizer_like`).
        kind: ``abuse_agent`` (abusive, aimed at the agent), ``abuse_other``
            (abusive, aimed at someone else or a group) or ``clean``.
        sexual: a majority marked it sexual harassment.
        types: the abuse types a majority marked (of :data:`ABUSE_TYPES`).
        targets: the targets a majority marked (of :data:`TARGETS`).
        severity: the mean vote of those who found it abusive: 1 mild to 3 very strong (0 when clean).
    """

    example_id: str
    conv_id: str
    split: str
    text: str
    kind: str
    sexual: bool
    types: frozenset[str] = frozenset()
    targets: frozenset[str] = frozenset()
    severity: float = 0.0


def sealed_conversations(path: Path = SEALED_FILE) -> frozenset[str]:
    """The ``conv_id`` of every sealed ConvAbuse conversation."""
    return frozenset(line.strip() for line in path.read_text(encoding="utf-8").splitlines()
                     if line.strip() and not line.startswith("#"))


def choose_sealed(conv_ids: Iterable[str]) -> list[str]:
    """The seeded 30 % of ``conv_ids`` that make the seal (how ``data/convabuse_sealed.txt`` was made)."""
    import random

    ordered = sorted(set(conv_ids))
    return sorted(random.Random(SEAL_SEED).sample(ordered, round(SEAL_SHARE * len(ordered))))


def convabuse(path: Path, split: str = "", *, part: str = "open") -> list[ConvAbuseMessage]:
    """The messages of one ConvAbuse file with a clear majority (ambiguous ones dropped).

    ``part``: ``open`` (the default: every message outside the sealed
    conversations), ``sealed`` (only those: scored once, at the end of issue 11,
    by ``bench/detection_quality.py --sealed``) or ``all``."""
    if part not in ("open", "sealed", "all"):
        raise ValueError(f"part must be open, sealed or all, not {part!r}")
    sealed = sealed_conversations() if part != "all" else frozenset()
    rows = []
    with path.open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if part == "open" and row["conv_id"] in sealed or part == "sealed" and row["conv_id"] not in sealed:
                continue
            message = _majority(row, split or path.stem)
            if message is not None:
                rows.append(message)
    return rows


def convabuse_all(shared: Path, *, part: str = "open") -> list[ConvAbuseMessage]:
    """Both ConvAbuse splits at hand (train, then validation), ``part`` as in :func:`convabuse`."""
    folder = shared / "datasets" / "convabuse"
    return [m for split, name in CONVABUSE_SPLITS for m in convabuse(folder / name, split, part=part)]


def _majority(row: dict, split: str) -> ConvAbuseMessage | None:
    votes, targets, types = [], {t: 0 for t in TARGETS}, {t: 0 for t in ABUSE_TYPES}
    for n in range(1, 9):
        chosen = [v for v in ("1", "0", "-1", "-2", "-3") if row.get(f"Annotator{n}_is_abuse.{v}") == "1"]
        if not chosen:
            continue
        votes.append(int(chosen[0]))
        for target in TARGETS:
            targets[target] += row.get(f"Annotator{n}_target.{target}") == "1"
        for kind in ABUSE_TYPES:
            types[kind] += row.get(f"Annotator{n}_{kind}") == "1"
    text = recognizer_like(row["user"])
    if not votes or not text:
        return None
    majority = len(votes) / 2
    ids = (row["example_id"], row["conv_id"], split, text)
    if sum(v < 0 for v in votes) > majority:
        abusive = [-v for v in votes if v < 0]
        return ConvAbuseMessage(
            *ids,
            kind="abuse_agent" if targets["system"] > majority else "abuse_other",
            sexual=types["sex_harassment"] > majority,
            types=frozenset(t for t, n in types.items() if n > majority),
            targets=frozenset(t for t, n in targets.items() if n > majority),
            severity=sum(abusive) / len(abusive),
        )
    if sum(v == 1 for v in votes) > majority:
        return ConvAbuseMessage(*ids, kind="clean", sexual=False)
    return None
