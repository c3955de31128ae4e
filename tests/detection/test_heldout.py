"""The held-out generalization set (``heldout.tsv``): sentences written apart
from the lexicons, recognizer style. The issue's bar holds on it: at least 9
in 10 harassing utterances of each category caught with the right category
(insult and integrity count as one "personal attack"), at most 2 in 100
benign utterances flagged at all."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from detection import Detector

HELDOUT = Path(__file__).with_name("heldout.tsv")
PERSONAL_ATTACK = {"insult", "integrity"}
CATEGORIES = ("threat", "personal attack", "sexual", "demand", "defamation", "privacy")


def _rows() -> list[tuple[str, str]]:
    rows = []
    for line in HELDOUT.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            label, text = line.split("\t", 1)
            rows.append(("personal attack" if label in PERSONAL_ATTACK else label, text))
    return rows


@pytest.fixture(scope="module")
def scored() -> dict[str, list[tuple[str, bool]]]:
    detector = Detector()
    out: dict[str, list[tuple[str, bool]]] = defaultdict(list)
    for label, text in _rows():
        findings = detector.screen(text)
        if label == "none":
            out[label].append((text, bool(findings)))
        else:
            cats = {"personal attack" if f.category in PERSONAL_ATTACK else f.category for f in findings}
            out[label].append((text, label in cats))
    return out


def test_the_file_is_big_enough_to_mean_something(scored):
    for category in CATEGORIES:
        assert len(scored[category]) >= 25, category
    assert len(scored["none"]) >= 80


@pytest.mark.parametrize("category", CATEGORIES)
def test_nine_in_ten_of_each_category_are_caught(scored, category):
    rows = scored[category]
    missed = [text for text, hit in rows if not hit]
    assert (len(rows) - len(missed)) / len(rows) >= 0.9, missed


def test_at_most_two_in_a_hundred_benign_lines_are_flagged(scored):
    rows = scored["none"]
    flagged = [text for text, hit in rows if hit]
    assert len(flagged) / len(rows) <= 0.02, flagged
