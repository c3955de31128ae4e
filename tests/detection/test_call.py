"""One call at a time: repetition across the call, partner context, the ladder."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from detection import CallScreen, DetectionConfig, DetectionError, Detector


@pytest.fixture(scope="module")
def detector() -> Detector:
    return Detector()


def play(call: CallScreen, lines: list[tuple[str, str]]):
    """Feed (speaker, text) lines 3 s apart; the screenings in order."""
    return [call.hear(speaker, text, 3.0 * i, 3.0 * i + 2.0) for i, (speaker, text) in enumerate(lines)]


def repetitions(screenings):
    return [(i, f) for i, s in enumerate(screenings) for f in s.findings if f.category == "repetition"]


def test_same_request_in_other_words_fires_from_the_third_time(detector):
    call = CallScreen(detector)
    screenings = play(call, [
        ("customer", "i need my money back"),
        ("partner", "that purchase is outside the return window"),
        ("customer", "well then refund it"),
        ("partner", "i cant do that"),
        ("customer", "just reimburse me"),
        ("partner", "the policy does not allow it"),
        ("customer", "i want a refund right now"),
    ])
    fired = repetitions(screenings)
    assert [i for i, _ in fired] == [4, 6]
    first = fired[0][1]
    assert (first.count, first.since, first.rule) == (3, 0.0, "repetition.same_request")
    assert first.evidence == "i need my money back"
    assert first.span is None and first.text == "just reimburse me"
    assert fired[1][1].count == 4 and fired[1][1].since == 0.0
    assert first.to_dict()["count"] == 3 and first.to_dict()["since"] == 0.0


def test_confirmations_statements_and_requested_repeats_do_not_count(detector):
    call = CallScreen(detector)
    screenings = play(call, [
        ("customer", "yes"),
        ("partner", "and the account is in your name"),
        ("customer", "yes thats right"),
        ("customer", "okay"),
        ("customer", "thank you"),
        ("customer", "the tv still has no picture"),
        ("partner", "try unplugging the box"),
        ("customer", "still no picture"),
        ("partner", "and now"),
        ("customer", "no picture at all"),
        ("customer", "i want to cancel my subscription"),
        ("partner", "sorry could you repeat that"),
        ("customer", "i want to cancel my subscription"),
        ("partner", "sorry the line is bad say that again"),
        ("customer", "cancel my subscription"),
    ])
    assert repetitions(screenings) == []


def test_unrelated_requests_are_counted_apart(detector):
    call = CallScreen(detector)
    screenings = play(call, [
        ("customer", "can you check my balance"),
        ("customer", "can i change my plan"),
        ("customer", "can you send me a new sim card"),
        ("customer", "can i get a supervisor"),
    ])
    assert repetitions(screenings) == []


def test_repetition_threshold_is_configurable(detector):
    call = CallScreen(detector, DetectionConfig(repetition_min=2))
    screenings = play(call, [("customer", "put your manager on"), ("customer", "i want your supervisor")])
    assert [f.count for _, f in repetitions(screenings)] == [2]


def test_partner_lines_are_never_screened(detector):
    call = CallScreen(detector)
    screening = call.hear("partner", "you idiot i know where you live", 0.0, 2.0)
    assert screening.findings == () and screening.level_change is None
    assert call.findings == () and call.level == "none"


def test_unknown_speaker_is_a_clear_error(detector):
    with pytest.raises(DetectionError) as info:
        CallScreen(detector).hear("caller", "hello", 0.0, 1.0)
    assert info.value.code == "bad_speaker"


def test_ladder_climbs_caution_alert_end_call(detector):
    suggestions = json.loads((resources.files("detection") / "suggestions" / "en.json").read_text(encoding="utf-8"))
    call = CallScreen(detector)
    first = call.hear("customer", "you are a moron", 1.0, 2.0)
    assert first.level_change is not None
    assert (first.level_change.level, first.level_change.previous, first.level_change.category) == ("caution", "none", "insult")
    assert first.level_change.suggestion == suggestions["caution"]["insult"]
    assert first.level_change.at == 2.0 and "moron" in first.level_change.reason
    assert call.hear("customer", "my order number is four five six", 3.0, 4.0).level_change is None
    second = call.hear("customer", "youre a liar", 5.0, 6.0)
    assert (second.level_change.level, second.level_change.previous) == ("alert", "caution")
    third = call.hear("customer", "you lazy pig", 7.0, 8.0)
    assert third.level_change is None  # 6 points: still alert
    last = call.hear("customer", "ill find you and break your neck", 9.0, 10.0)
    assert last.level_change.level == "end_call_recommended"
    assert last.level_change.suggestion == suggestions["end_call_recommended"]["threat"]
    assert call.level == "end_call_recommended"
    assert [f.category for f in call.findings] == ["insult", "integrity", "insult", "threat"]
    assert call.hear("customer", "thanks bye", 11.0, 12.0).level_change is None
    assert call.level == "end_call_recommended"  # never goes down


def test_a_grave_finding_alerts_at_once(detector):
    call = CallScreen(detector)
    change = call.hear("customer", "when does your shift end", 0.0, 1.5).level_change
    assert (change.level, change.previous, change.category) == ("alert", "none", "privacy")


def test_ladder_thresholds_are_configurable(detector):
    config = DetectionConfig.from_table({"caution_points": 2, "alert_points": 3, "end_call_points": 4, "alert_severity": "critical"})
    call = CallScreen(detector, config)
    assert call.hear("customer", "you stupid cow", 0.0, 1.0).level_change.level == "caution"
    assert call.hear("customer", "you absolute muppet", 1.0, 2.0).level_change.level == "end_call_recommended"


def test_repetition_moves_the_ladder(detector):
    call = CallScreen(detector)
    changes = [s.level_change for s in play(call, [("customer", "i want a refund")] * 3)]
    assert changes[:2] == [None, None]
    assert changes[2].level == "caution" and changes[2].category == "repetition"
    assert changes[2].suggestion


def test_one_act_read_as_two_categories_counts_once(detector):
    """Same words, two categories: both findings are reported, the points of the gravest only."""
    config = DetectionConfig.from_table({"alert_severity": "critical"})
    call = CallScreen(detector, config)
    both = call.hear("customer", "do you have a boyfriend", 0.0, 1.5)
    assert {f.category for f in both.findings} == {"sexual", "privacy"}
    one = config.points_of(max((f.severity for f in both.findings), key=["low", "medium", "high", "critical"].index))
    assert call.points == one
    apart = CallScreen(detector, config)
    apart.hear("customer", "do you have a boyfriend", 0.0, 1.5)
    apart.hear("customer", "what street do you live on", 2.0, 3.0)  # a second act: counted
    assert apart.points > one
