"""The held-out set (``heldout.tsv``, read by :mod:`heldout_set`): sentences
written apart from the detector, recognizer style, in rounds of 20 per
category and 60 hard benign lines, each scored blind once (the figures at
first sight are in the file's comments).

- Rounds 17 to 24 have never been trained on: the issue's bar holds there on
  words the detector never saw: at least 9 in 10 harassing utterances of each
  category caught with the right category (insult and integrity count as one
  "personal attack"), at most 2 in 100 benign utterances flagged at all.
  When written: threat 147/160, personal attack 153/160, sexual 151/160,
  demand 144/160 (the bar exactly), defamation 156/160, privacy 158/160;
  benign 8/480 flagged.
- Rounds 1 to 8: the rules were written for them; the bar holds too.
- Rounds 9 to 16: the semantic stage trains on them (and rules were written for
  some misses of rounds 9 to 12), so they are regression tests of the whole
  detector, holding the level reached per category.
"""

from __future__ import annotations

from collections import defaultdict

import pytest

from heldout_set import NEVER_TRAINED_ON, RULES_WRITTEN_FOR, rows

PERSONAL_ATTACK = {"insult", "integrity"}
CATEGORIES = ("threat", "personal attack", "sexual", "demand", "defamation", "privacy")
#: Rounds 9 to 16 (training data of the semantic stage): the share caught when these
#: tests were written (threat 145/160, personal attack 152/160, sexual 153/160, demand
#: 142/160, defamation 154/160, privacy 156/160; benign 5/480 flagged), rounded down.
#: Since issue 11 the stage learns from real people's lines too (ConvAbuse), and these
#: written rounds weigh less in its training: threat 145/160, personal attack 149/159,
#: sexual 152/160, demand 143/160, defamation 152/160, privacy 154/160; benign 5/480.
FLOOR_LATER_ROUNDS = {"threat": 0.90, "personal attack": 0.93, "sexual": 0.95, "demand": 0.85,
                      "defamation": 0.94, "privacy": 0.95}
BENIGN_CEILING = 0.02


def _rows() -> list[tuple[int, str, str]]:
    """(round, label, text), insult and integrity as "personal attack"."""
    return [(number, "personal attack" if label in PERSONAL_ATTACK else label, text)
            for number, label, text in rows(unread=True)]


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
    return _score(detector, [r for r in _rows() if r[0] not in RULES_WRITTEN_FOR and r[0] not in NEVER_TRAINED_ON])


@pytest.fixture(scope="module")
def scored_unseen(detector) -> dict[str, list[tuple[str, bool]]]:
    return _score(detector, [r for r in _rows() if r[0] in NEVER_TRAINED_ON])


def test_the_rounds_are_big_enough_to_mean_something(scored, scored_later, scored_unseen):
    for category in CATEGORIES:
        assert len(scored[category]) >= 25, category
        assert len(scored_later[category]) >= 40, category
        # 160 written, less those read since (provenance.tsv): 20 threats by round 8 and before (its rules were written
        # from the threats missed here), a few of the others
        assert len(scored_unseen[category]) >= 140, category
    assert len(scored["none"]) >= 80 and len(scored_later["none"]) >= 300 and len(scored_unseen["none"]) >= 470


def _caught(rows: list[tuple[str, bool]]) -> tuple[float, list[str]]:
    return sum(hit for _, hit in rows) / len(rows), [text for text, hit in rows if not hit]


def _flagged(rows: list[tuple[str, bool]]) -> tuple[float, list[str]]:
    return sum(hit for _, hit in rows) / len(rows), [text for text, hit in rows if hit]


#: Where the issue's bar holds: the rounds never trained on, and those the rules were written for.
BAR_ROUNDS = pytest.mark.parametrize("rounds", ["scored_unseen", "scored"], ids=["never_trained_on", "rules_written_for"])


@BAR_ROUNDS
@pytest.mark.parametrize("category", CATEGORIES)
def test_nine_in_ten_of_each_category_are_caught(request, rounds, category):
    share, missed = _caught(request.getfixturevalue(rounds)[category])
    assert share >= 0.9, missed


@BAR_ROUNDS
def test_at_most_two_in_a_hundred_benign_lines_are_flagged(request, rounds):
    share, flagged = _flagged(request.getfixturevalue(rounds)["none"])
    assert share <= BENIGN_CEILING, flagged


@pytest.mark.parametrize("category", CATEGORIES)
def test_trained_rounds_keep_the_floor_reached(scored_later, category):
    share, missed = _caught(scored_later[category])
    assert share >= FLOOR_LATER_ROUNDS[category], missed


def test_trained_rounds_flag_few_benign_lines(scored_later):
    share, flagged = _flagged(scored_later["none"])
    assert share <= BENIGN_CEILING, flagged
