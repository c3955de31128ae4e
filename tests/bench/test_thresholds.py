"""Choosing the semantic stage's threshold per category on cross-validated
verdicts (``bench/cross_validate.py --choose``; the rule is in
``docs/detection-quality.md``, round 3): the most abuse caught within the
clean-message budget, ties to fewer false alarms, then to the shipped 0.95."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import cross_validate  # noqa: E402


def _messages(*rows):
    """``(kind, split, ruled, {category: score})`` rows as messages and their verdicts."""
    messages, verdicts = [], {}
    for n, (kind, split, ruled, semantic) in enumerate(rows):
        messages.append(SimpleNamespace(example_id=str(n), kind=kind, split=split))
        verdicts[str(n)] = {"ruled": ruled, "semantic": semantic}
    return messages, verdicts


CATEGORIES = ("threat", "insult", "privacy")


def test_a_category_drops_to_catch_abuse_while_another_rises_to_keep_the_budget():
    messages, verdicts = _messages(
        ("abuse_agent", "train", False, {"insult": 0.91}),   # caught only if insult goes down to 0.9
        ("clean", "train", False, {"insult": 0.96}),         # flagged by insult at 0.95
        ("clean", "train", False, {"privacy": 0.975}),       # flagged by privacy unless it rises to 0.98
        ("clean", "validation", False, {"threat": 0.5}),     # below every threshold: never flagged
        ("abuse_agent", "validation", True, {}),             # the rules' catch: no threshold changes it
    )
    chosen = cross_validate.choose(messages, verdicts, CATEGORIES, {"train": 1, "validation": 0})
    assert chosen == {"threat": 0.95, "insult": 0.9, "privacy": 0.98}
    flagged = [cross_validate.flagged_at(verdicts[m.example_id], chosen) for m in messages]
    assert flagged == [True, True, False, False, True]


def test_without_anything_to_gain_every_category_keeps_the_shipped_threshold():
    messages, verdicts = _messages(("abuse_agent", "train", True, {}), ("clean", "train", False, {}))
    assert cross_validate.choose(messages, verdicts, CATEGORIES, {"train": 0, "validation": 0}) == \
        dict.fromkeys(CATEGORIES, cross_validate.SHIPPED)


def test_a_budget_no_threshold_can_keep_is_an_error():
    messages, verdicts = _messages(("clean", "train", False, {"threat": 0.999}))
    with pytest.raises(SystemExit, match="no thresholds"):
        cross_validate.choose(messages, verdicts, CATEGORIES, {"train": 0, "validation": 0})


def test_the_nested_figure_judges_each_fold_with_thresholds_chosen_without_it():
    # fold 0 alone holds the abuse that insult at 0.9 would catch; fold 1 alone the clean message it would flag
    messages, verdicts = _messages(
        ("abuse_agent", "train", False, {"insult": 0.91}),
        ("clean", "train", False, {"insult": 0.92}),
        ("clean", "train", False, {}),
        ("clean", "train", False, {}),
    )
    fold_of = {"0": 0, "1": 1, "2": 0, "3": 1}
    # chosen on everything, insult stays at 0.95: lowering it flags a clean message, beyond a budget of 0
    assert cross_validate.choose(messages, verdicts, CATEGORIES, {"train": 0, "validation": 0})["insult"] == 0.95
    nested = cross_validate.choose_nested(messages, verdicts, CATEGORIES, {"train": 0, "validation": 0}, fold_of, 2)
    # fold 0 is judged by thresholds chosen on fold 1 (nothing to catch there: 0.95), so its abuse is missed;
    # fold 1 by thresholds chosen on fold 0 (insult 0.9 catches its abuse for free), so its clean message is flagged
    assert nested == {"0": False, "1": True, "2": False, "3": False}
