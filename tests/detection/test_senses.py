"""Word senses (detection.senses): the same word, harassment in one sense and
ordinary talk in another, decided by its context as the encoder reads it."""

from __future__ import annotations

from pathlib import Path

import pytest

from detection import DetectionError
from detection.senses import Senses, load_examples


@pytest.mark.parametrize("text", [
    "honestly these new boots are killing me",
    "we beat them four one on sunday",
    "can you shoot me the form by email",
    "my phone died in the middle of the call",
])
def test_an_ordinary_sense_silences_the_word(detector, text):
    dropped = []
    assert not [f for f in detector.screen(text, dropped=dropped) if f.category in ("threat", "insult", "sexual")]


@pytest.mark.parametrize("text, category", [
    ("i am going to kill you", "threat"),
    ("i will beat you until you cannot stand", "threat"),
    ("say that again and i will shoot you", "threat"),
])
def test_the_harmful_sense_still_counts(detector, text, category):
    assert category in {f.category for f in detector.screen(text)}


def test_a_sense_drop_is_explained(detector):
    examples = load_examples(Path(__file__).resolve().parents[2] / "detection" / "lexicons" / "en")
    senses = Senses(examples, detector.semantic.encoder)
    words = "i beat you fair and square at cards".split()
    reading = senses.ordinary(words, [1], detector.semantic.encoder.read(words).words)
    assert reading is not None and reading.word == "beat" and reading.sense == "win"
    assert reading.explain().startswith("'beat' in the sense 'win' (as in '")
    words = "i will beat you black and blue".split()
    assert senses.ordinary(words, [2], detector.semantic.encoder.read(words).words) is None


def test_a_malformed_senses_file_is_a_clear_error(tmp_path):
    (tmp_path / "senses.tsv").write_text("kill\tviolence\tharm\ti will kill you\n", encoding="utf-8")
    with pytest.raises(DetectionError, match=r"senses.tsv:1: mark the word"):
        load_examples(tmp_path)
    (tmp_path / "senses.tsv").write_text("kill\tviolence\tbad\ti will [kill] you\n", encoding="utf-8")
    with pytest.raises(DetectionError, match=r"harm or other"):
        load_examples(tmp_path)
    (tmp_path / "senses.tsv").write_text("\tviolence\tharm\ti will [kill] you\n", encoding="utf-8")
    with pytest.raises(DetectionError, match=r"no word forms"):
        load_examples(tmp_path)
