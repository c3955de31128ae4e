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

import multiprocessing
import os
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from threadpoolctl import threadpool_limits

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
BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _rows() -> list[tuple[int, str, str]]:
    """(round, label, text), insult and integrity as "personal attack"."""
    return [(number, "personal attack" if label in PERSONAL_ATTACK else label, text)
            for number, label, text in rows(unread=True)]


def _judge(detector, rows) -> list[bool]:
    """Per row: a benign line flagged at all, or a harassing line caught with its category."""
    out = []
    for _, label, text in rows:
        findings = detector.screen(text)
        if label == "none":
            out.append(bool(findings))
        else:
            out.append(label in {"personal attack" if f.category in PERSONAL_ATTACK else f.category for f in findings})
    return out


_worker_detector = None


def _judge_in_worker(encoder_dir: str, rows) -> list[bool]:
    """:func:`_judge` in a process of its own, with a detector built as the ``detector`` fixture builds it."""
    global _worker_detector
    if _worker_detector is None:
        from detection import Detector
        from models.encoder import SentenceEncoder

        _worker_detector = Detector(encoder=SentenceEncoder(Path(encoder_dir)))
    return _judge(_worker_detector, rows)


@pytest.fixture(scope="module")
def judged(detector, encoder_dir) -> list[tuple[int, str, str, bool]]:
    """Every held-out row screened once by the full detector, on two cores: a
    second process takes every other row while this one screens the rest,
    each on one BLAS thread (numpy's default of a thread per core made the
    two processes fight for the cores: 193 s against 100 s on this machine;
    169 s in one process)."""
    every = _rows()
    theirs, ours = every[1::2], every[0::2]
    blas = {name: os.environ.get(name) for name in BLAS_THREADS}
    os.environ.update({name: "1" for name in BLAS_THREADS})  # read by the worker's numpy as it loads (threadpool_limits reaches only libraries loaded before it)
    try:
        pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        future = pool.submit(_judge_in_worker, str(encoder_dir), theirs)
    finally:
        for name, value in blas.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    with pool, threadpool_limits(1):  # this process's BLAS on one thread too: two cores, two threads
        mine = _judge(detector, ours)
        other = future.result()
    hits = [False] * len(every)
    hits[0::2], hits[1::2] = mine, other
    return [(number, label, text, hit) for (number, label, text), hit in zip(every, hits)]


def _by_label(judged, keep) -> dict[str, list[tuple[str, bool]]]:
    out: dict[str, list[tuple[str, bool]]] = defaultdict(list)
    for number, label, text, hit in judged:
        if keep(number):
            out[label].append((text, hit))
    return out


@pytest.fixture(scope="module")
def scored(judged) -> dict[str, list[tuple[str, bool]]]:
    return _by_label(judged, lambda number: number in RULES_WRITTEN_FOR)


@pytest.fixture(scope="module")
def scored_later(judged) -> dict[str, list[tuple[str, bool]]]:
    return _by_label(judged, lambda number: number not in RULES_WRITTEN_FOR and number not in NEVER_TRAINED_ON)


@pytest.fixture(scope="module")
def scored_unseen(judged) -> dict[str, list[tuple[str, bool]]]:
    return _by_label(judged, lambda number: number in NEVER_TRAINED_ON)


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
