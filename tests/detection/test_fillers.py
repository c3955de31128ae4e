"""Hesitations in recognizer text ("uh", "um", filler "like", a trailing "you
know") do not hide harassment, do not move a finding's span off the caller's
words, and do not turn benign lines into findings. Also the negation
exceptions: "i can't stop ...", "why don't you ..." are not denials."""

from __future__ import annotations

import pytest

from detection import Detector
from detection.text import normalize, without_hesitations


@pytest.fixture(scope="module")
def detector() -> Detector:
    return Detector()


def _strip(text: str) -> str:
    return without_hesitations(
        normalize(text),
        frozenset({"uh", "um"}),
        frozenset({"are you", "youre"}),
        (("you", "know"),),
        frozenset({"a", "that"}),
    ).text


def test_fillers_are_dropped_and_offsets_still_point_into_the_original():
    norm = without_hesitations(normalize("Uh, you're UM an idiot"), frozenset({"uh", "um"}), frozenset())
    assert norm.text == "youre an idiot "
    assert norm.tokens == ("youre", "an", "idiot")
    first, last = 0, len(norm.text) - 1
    assert norm.original_span(first, last) == (4, 22)
    assert "Uh, you're UM an idiot"[4:22] == "you're UM an idiot"


def test_like_is_a_filler_only_after_the_listed_words():
    assert _strip("are you like mentally slow") == "are you mentally slow "
    assert _strip("youre like totally useless") == "youre totally useless "
    assert _strip("i like you") == "i like you "            # a verb
    assert _strip("are you like that") == "are you like that "  # the next word keeps it
    assert _strip("you sound like an idiot") == "you sound like an idiot "


def test_tails_go_only_at_the_end_and_an_all_filler_line_is_kept():
    assert _strip("youre useless you know") == "youre useless "
    assert _strip("you know what you did") == "you know what you did "
    assert _strip("uh um") == "uh um "


@pytest.mark.parametrize(
    "text, category",
    [
        ("uh are you like uh completely stupid or something", "insult"),
        ("im um gonna uh hurt you", "threat"),
        ("ill literally find you and uh break your legs", "threat"),
        ("what are you um wearing right now", "sexual"),
        ("i um cant stop thinking about your lips", "sexual"),
        ("why dont you come sit on my lap", "sexual"),
        ("erm where do you usually park", "privacy"),
    ],
)
def test_harassment_with_hesitations_is_caught(detector, text, category):
    assert category in {f.category for f in detector.screen(text)}, detector.screen(text)


@pytest.mark.parametrize(
    "text",
    [
        "uh this app is like so stupid",
        "um i feel like an idiot you know",
        "im not uh threatening you",
        "i dont um think youre lying",
        "uh can i like talk to a supervisor",
    ],
)
def test_benign_lines_with_hesitations_stay_silent(detector, text):
    assert detector.screen(text) == []


def test_the_evidence_is_the_callers_own_words_fillers_included(detector):
    (finding,) = detector.screen("you are uh a complete moron")
    assert finding.evidence == "you are uh a complete moron"


@pytest.mark.parametrize("text, words", [
    ("i i will find you", "i will find you"),
    ("you are you are a clown", "you are a clown"),
    ("we we we went home", "we went home"),
    ("no no it was fine", "no it was fine"),
])
def test_restarts_keep_their_last_saying(text, words):
    from detection import Detector

    assert " ".join(Detector().normalized(text).tokens) == words


def test_a_restart_does_not_move_the_evidence_off_the_callers_words(detector):
    text = "you you are a complete moron"
    (finding,) = [f for f in detector.screen(text) if f.category == "insult"]
    assert text[finding.span[0]:finding.span[1]] == finding.evidence and finding.evidence.endswith("moron")
