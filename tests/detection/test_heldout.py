"""The held-out set (``heldout.tsv``): sentences written apart from the
lexicons, recognizer style, in rounds, each scored blind once (the figures at
first sight are in the file's comments). Once scored, a round helps build the
detector, so these are regression tests of the whole detector (rules and
semantic stage, as commands build it), not measures of generalization.

- Rounds 1 to 8: the rules were written for them; the issue's bar holds: at
  least 9 in 10 harassing utterances of each category caught with the right
  category (insult and integrity count as one "personal attack"), at most 2
  in 100 benign utterances flagged at all.
- Rounds 9 to 16: the semantic stage trains on them, and rules were written
  for some misses of rounds 9 to 12 after they were scored.
  The bar is NOT met there yet (demand near 8 in 10, threat below 9 in 10),
  so they hold the floor reached, per category, to catch regressions;
  raising it is the open part of issue 3.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import pytest

HELDOUT = Path(__file__).with_name("heldout.tsv")
PERSONAL_ATTACK = {"insult", "integrity"}
CATEGORIES = ("threat", "personal attack", "sexual", "demand", "defamation", "privacy")
RULES_WRITTEN_FOR = range(1, 9)  # rounds 1..8; the rest: 9..16
#: Rounds 9 to 16: the share caught when these tests were written (threat 135/160,
#: personal attack 146/160, sexual 147/160, demand 122/160, defamation 147/160,
#: privacy 148/160; benign 9/480 flagged), rounded down.
FLOOR_LATER_ROUNDS = {"threat": 0.80, "personal attack": 0.90, "sexual": 0.90, "demand": 0.75,
                      "defamation": 0.90, "privacy": 0.90}
BENIGN_CEILING_LATER_ROUNDS = 0.02


def _rows() -> list[tuple[int, str, str]]:
    """(round, label, text) of every line."""
    rows, number = [], 1
    for line in HELDOUT.read_text(encoding="utf-8").splitlines():
        if line.startswith("# ----"):
            number = int(re.search(r"rounds? (\d+)", line).group(1))
        elif line.strip() and not line.startswith("#"):
            label, text = line.split("\t", 1)
            rows.append((number, "personal attack" if label in PERSONAL_ATTACK else label, text))
    return rows


def _score(detector, rows) -> dict[str, list[tuple[str, bool]]]:
    out: dict[str, list[tuple[str, bool]]] = defaultdict(list)
    for _, label, text in rows:
        findings = detector.screen(text)
        if label == "none":
            out[label].append((text, bool(findings)))
        else:
            cats = {"personal attack" if f.category in PERSONAL_ATTACK else f.category for f in findings}
            out[label].append((text, label in cats))
    return out


@pytest.fixture(scope="module")
def scored(detector) -> dict[str, list[tuple[str, bool]]]:
    return _score(detector, [r for r in _rows() if r[0] in RULES_WRITTEN_FOR])


@pytest.fixture(scope="module")
def scored_later(detector) -> dict[str, list[tuple[str, bool]]]:
    return _score(detector, [r for r in _rows() if r[0] not in RULES_WRITTEN_FOR])


def test_the_rounds_are_big_enough_to_mean_something(scored, scored_later):
    for category in CATEGORIES:
        assert len(scored[category]) >= 25, category
        assert len(scored_later[category]) >= 40, category
    assert len(scored["none"]) >= 80 and len(scored_later["none"]) >= 300


@pytest.mark.parametrize("category", CATEGORIES)
def test_nine_in_ten_of_each_category_are_caught(scored, category):
    rows = scored[category]
    missed = [text for text, hit in rows if not hit]
    assert (len(rows) - len(missed)) / len(rows) >= 0.9, missed


def test_at_most_two_in_a_hundred_benign_lines_are_flagged(scored):
    rows = scored["none"]
    flagged = [text for text, hit in rows if hit]
    assert len(flagged) / len(rows) <= 0.02, flagged


@pytest.mark.parametrize("category", CATEGORIES)
def test_later_rounds_keep_the_floor_reached(scored_later, category):
    rows = scored_later[category]
    missed = [text for text, hit in rows if not hit]
    assert (len(rows) - len(missed)) / len(rows) >= FLOOR_LATER_ROUNDS[category], missed


def test_later_rounds_flag_few_benign_lines(scored_later):
    rows = scored_later["none"]
    flagged = [text for text, hit in rows if hit]
    assert len(flagged) / len(rows) <= BENIGN_CEILING_LATER_ROUNDS, flagged
