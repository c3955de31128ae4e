"""Word senses (detection.senses): the same word, harassment in one sense and
ordinary talk in another, decided by its context as the encoder reads it."""

from __future__ import annotations

from pathlib import Path

import pytest

from detection import DetectionError
from detection.senses import Senses, load_examples

LEXICON = Path(__file__).resolve().parents[2] / "detection" / "lexicons" / "en"


@pytest.mark.parametrize("text, category", [
    ("i bet i can beat you at darts tonight", "threat"),                      # a game; a rule matches "i can beat you"
    ("that mistake will come back to bite me", "insult"),                    # a consequence; a rule matches "bite me"
    ("what are you wearing to the wedding on saturday", "sexual"),           # clothes for a wedding
    ("the ball cock in the loft tank is jammed", "sexual"),                  # a valve
    ("i love the old dick van dyke films", "profanity"),                     # a name: a slur with a clean sense
])
def test_an_ordinary_sense_drops_what_a_rule_matched(detector, text, category):
    rules_alone = [f.category for f in type(detector)().screen(text)]
    assert category in rules_alone, "a rule must match, or the test proves nothing"
    dropped = []
    findings = detector.screen(text, dropped=dropped)
    assert category not in {f.category for f in findings}
    assert any(d.category == category and " in the sense " in d.reason for d in dropped), dropped


@pytest.mark.parametrize("text, category", [
    ("i am going to kill you", "threat"),
    ("i will beat you until you cannot stand", "threat"),
    ("say that again and i will shoot you", "threat"),
    ("you dirty dog", "insult"),
    ("you dirty dog you stupid moron", "insult"),
    ("suck my cock", "sexual"),
    ("shut up you dyke", "profanity"),
])
def test_the_harmful_sense_still_counts(detector, text, category):
    dropped = []
    assert category in {f.category for f in detector.screen(text, dropped=dropped)}
    assert not any(" in the sense " in d.reason for d in dropped if d.category == category)


def test_a_sense_drop_is_explained(detector):
    senses = Senses(load_examples(LEXICON), detector.semantic.encoder)
    words = "we beat them at cards last night".split()
    reading = senses.ordinary(words, [1], detector.semantic.encoder.read(words).words)
    assert reading is not None and reading.word == "beat" and reading.sense == "win"
    assert reading.explain().startswith("'beat' in the sense 'win' (as in '")
    words = "i will beat you black and blue".split()
    assert senses.ordinary(words, [2], detector.semantic.encoder.read(words).words) is None
    assert senses.covers(["beat"]) and not senses.covers(["refund"])


def test_every_word_with_senses_must_read_harmlessly_for_a_drop(detector):
    senses = Senses(load_examples(LEXICON), detector.semantic.encoder)
    words = "my feet are killing me and i will shoot you".split()
    vectors = detector.semantic.encoder.read(words).words
    assert senses.ordinary(words, [3], vectors) is not None         # "killing me": tired feet
    assert senses.ordinary(words, [3, 8], vectors) is None          # ... but "shoot you" is not


@pytest.mark.parametrize("text, says", [
    ("kill\tviolence\tharm\ti will kill you\n", "mark the word in the example"),
    ("kill\tviolence\tharm\ti will [kill] [you]\n", "mark the word in the example"),
    ("kill\tviolence\tbad\ti will [kill] you\n", "harm or other"),
    ("\tviolence\tharm\ti will [kill] you\n", "no word forms"),
    ("kill\tviolence\tharm\ti will [murder] you\n", "is not one of the forms"),
    ("kill\tviolence\tharm\ti will [kill] you\n", "needs examples of a harmful and of an ordinary sense"),
])
def test_a_malformed_senses_file_is_a_clear_error(tmp_path, text, says):
    (tmp_path / "senses.tsv").write_text(text, encoding="utf-8")
    with pytest.raises(DetectionError, match=says):
        load_examples(tmp_path)


@pytest.mark.parametrize("text, ordinary", [
    ("you have to look hard to find the form on your website", "effort"),   # round 7: the effort sense
    ("we tried harder this year to pay on time", "effort"),
    ("you make me so hard when you talk like that", None),
    ("i want to fuck you so hard", None),
])
def test_hard_reads_as_effort_only_where_it_is(detector, text, ordinary):
    senses = Senses(load_examples(LEXICON), detector.semantic.encoder)
    words = text.split()
    index = next(i for i, w in enumerate(words) if w in ("hard", "harder"))
    reading = senses.ordinary(words, [index], detector.semantic.encoder.read(words).words)
    assert (reading.sense if reading else None) == ordinary
