"""Abusive language (``profanity``): obscenity and slurs whoever they are aimed
at, counted in strikes on the ladder (a caution at the first, an alert at the
third by default, both configurable)."""

from __future__ import annotations

import pytest

from detection import CallScreen, DetectionConfig, DetectionError, Detector


@pytest.fixture(scope="module")
def rules() -> Detector:
    return Detector()


@pytest.mark.parametrize("text", [
    "this fucking phone never works",          # at the product
    "your company is full of shit",            # at the company
    "oh for fucks sake",                        # at no one
    "i dont give a shit about your terms",     # a negation does not clean it
])
def test_obscenity_is_abusive_language_whoever_it_is_aimed_at(rules, text):
    (finding,) = [f for f in rules.screen(text) if f.category == "profanity"]
    assert finding.severity == "low" and finding.rule.startswith("profanity.") and finding.evidence


@pytest.mark.parametrize("text", [
    "i am so stupid i forgot my password",     # self-directed venting
    "your app is garbage",                      # anger in clean words
    "our bitch had six puppies last week",     # a dog
])
def test_venting_and_clean_anger_are_not_abusive_language(rules, text):
    assert not [f for f in rules.screen(text) if f.category == "profanity"]


def play(call: CallScreen, texts: list[str]):
    return [call.hear("customer", text, 4.0 * i, 4.0 * i + 2.0) for i, text in enumerate(texts)]


def test_three_strikes_a_caution_at_the_first_an_alert_at_the_third(rules):
    call = CallScreen(rules)
    first, second, third = play(call, ["this is fucking ridiculous", "holy shit this bill", "what the fuck is this charge"])
    assert first.level_change.level == "caution" and first.level_change.category == "profanity"
    assert "strike 1 of 3" in first.level_change.reason and first.level_change.suggestion
    assert second.level_change is None
    assert third.level_change.level == "alert" and "strike 3 of 3" in third.level_change.reason


def test_one_strike_per_utterance_however_many_words(rules):
    call = CallScreen(rules)
    screenings = play(call, ["fuck this fucking shit", "fucking hell", "ok thanks"])
    assert [s.level_change.level if s.level_change else None for s in screenings] == ["caution", None, None]
    assert call.level == "caution"


def test_strikes_and_points_are_configurable():
    config = DetectionConfig.from_table({"profanity_caution_strikes": 2, "profanity_alert_strikes": 4, "profanity_points": 0})
    call = CallScreen(Detector(config))
    screenings = play(call, ["holy shit", "this is bullshit", "fucking hell", "oh for fucks sake"])
    assert [s.level_change.level if s.level_change else None for s in screenings] == [None, "caution", None, "alert"]
    assert call.points == 0 and "strike 4 of 4" in screenings[3].level_change.reason
    # with its point (the default), the first strike warns on points alone
    call = CallScreen(Detector(DetectionConfig.from_table({"profanity_caution_strikes": 2})))
    assert play(call, ["holy shit"])[0].level_change.level == "caution" and call.points == 1
    with pytest.raises(DetectionError, match="profanity_caution_strikes <= profanity_alert_strikes"):
        DetectionConfig.from_table({"profanity_caution_strikes": 4, "profanity_alert_strikes": 3})
    with pytest.raises(DetectionError, match="profanity_points must not be negative"):
        DetectionConfig.from_table({"profanity_points": -1})
