"""Whom the words are aimed at (detection.aim): the partner, the customer, a
third person, anyone (the generic "you") or a quotation, and the finding or
the dropped candidate that says so."""

from __future__ import annotations

import pytest

from detection import Detector


@pytest.fixture(scope="module")
def rules() -> Detector:
    return Detector()


def aim_of(detector: Detector, text: str, word: str, *, nearest: bool = False, acted_on: bool = True):
    norm = detector.normalized(text)
    index = len(norm.tokens) - 1 - norm.tokens[::-1].index(word)  # the last one
    return detector.aim.read(detector.aim.utterance(norm), index, index, nearest=nearest, acted_on=acted_on)


@pytest.mark.parametrize("text, word, who", [
    ("i will hurt you", "you", "partner"),
    ("if you do that again i will make them hurt you", "you", "partner"),     # the customer acts through others
    ("i know some guys who would hurt you", "you", "partner"),                # the customer's people
    ("if you slip off the roof the fall will hurt you", "you", "anyone"),     # a thing acts on "you"
    ("that will hurt you", "you", "anyone"),
    ("down there they would hurt you for a parking ticket", "you", "third party"),
    ("nowadays people hurt you for nothing", "you", "third party"),
    ("what a useless worm you are", "you", "partner"),                        # "you" is the subject
    ("is it just you on the line", "you", "partner"),                         # a verb of being, not an act
])
def test_who_acts_on_you(rules, text, word, who):
    assert aim_of(rules, text, word).who == who


@pytest.mark.parametrize("text, word", [
    ("and then he goes you are a joke", "joke"),
    ("my boss told me i was lazy", "lazy"),
    ("the man at the shop said get lost", "lost"),
    ("so my buddy looks at me and says you are a clown", "clown"),
])
def test_reported_speech_is_a_quotation(rules, text, word):
    aim = aim_of(rules, text, word)
    assert aim.who == "quoted" and aim.explain().startswith("reported speech")


@pytest.mark.parametrize("text, word", [
    ("i told you you are a clown", "clown"),       # the customer's own words to the partner
    ("like i said you are a clown", "clown"),
    ("i say you are a clown", "clown"),
    ("the bill went up and you are a clown", "clown"),   # a thing does not speak
])
def test_the_customers_own_words_are_not_a_quotation(rules, text, word):
    assert aim_of(rules, text, word).who != "quoted"


@pytest.mark.parametrize("text, word, who", [
    ("my husband is a clown", "clown", "third party"),
    ("i am such a clown", "clown", "customer"),
    ("you absolute clown", "clown", "partner"),
    ("clown", "clown", "partner"),                        # a bare insult is said to the listener
    ("i dont think you are a clown", "clown", "customer"),
    ("what a clown i am and now i have to pay", "clown", "customer"),   # the customer names themself after it
    ("what a clown im dealing with", "clown", "partner"),               # ... unless more follows in the same breath
])
def test_the_nearest_pointer_decides_a_context_rule(rules, text, word, who):
    assert aim_of(rules, text, word, nearest=True).who == who


def test_discourse_you_points_at_no_one(rules):
    norm = rules.normalized("you know the neighbour is a clown")
    u = rules.aim.utterance(norm)
    assert u.skip == {0, 1}
    assert rules.aim.read_utterance(u, [norm.tokens.index("clown")], personal=True).who == "third party"
    assert rules.aim.utterance(rules.normalized("you know where i live")).skip == set()  # a verb, not a filler
    assert rules.aim.utterance(rules.normalized("thank you so much")).skip == {0, 1}


@pytest.mark.parametrize("text", [
    "he said it was fixed i will kill you",                       # the customer speaks again
    "she told me you would fix it so if you dont i will kill you",  # a new clause
    "the man at the desk said wait here and you are a clown",
])
def test_a_quotation_does_not_hide_what_follows_it(rules, text):
    assert {f.category for f in rules.screen(text)} & {"threat", "insult"}


def test_a_generic_place_makes_you_anyone_only_for_acts_on_you(rules):
    assert aim_of(rules, "back home they would lock you up for that", "you").who == "third party"
    assert aim_of(rules, "these days you get robbed for a phone", "you").who == "anyone"
    assert aim_of(rules, "you are a clown these days", "you", acted_on=False).partner   # a personal attack
    assert aim_of(rules, "ill find you these days", "you").partner                        # the customer acts


def test_findings_say_whom_they_are_aimed_at_and_drops_say_why(rules):
    (finding,) = [f for f in rules.screen("you are a clown") if f.category == "insult"]
    assert finding.why == "aimed at the partner: 'you are'"
    dropped = []
    assert not [f for f in rules.screen("he goes you are a clown", dropped=dropped) if f.category == "insult"]
    assert any(d.category == "insult" and d.reason == "reported speech: 'he goes'" for d in dropped)
    dropped = []
    assert not rules.screen("over there they would shoot you for less", dropped=dropped)
    assert any(d.category == "threat" and "third party, not the partner" in d.reason for d in dropped)


def test_abusive_language_counts_whoever_it_is_aimed_at(rules):
    for text in ("he goes fuck off", "this fucking printer", "i dont give a shit about your policy"):
        assert [f.category for f in rules.screen(text) if f.category == "profanity"] == ["profanity"], text


def test_a_third_person_subject_makes_you_another_clauses_object(rules):
    """"... can you, they'll rob you blind": "you" is not the one accused of robbing."""
    assert not rules.screen("nobody is honest these days you they will rob you blind")
    assert {f.category for f in rules.screen("you robbed me blind")} == {"integrity"}


@pytest.mark.parametrize("text", ["oi muppet", "oi daft pillock", "och ye gormless wee eejit"])
def test_an_insult_said_as_the_whole_utterance_is_aimed_at_the_listener(rules, text):
    insults = [f for f in rules.screen(text) if f.category == "insult"]
    assert insults and all("aimed at the partner" in f.why for f in insults), insults
