"""Early findings: the customer's live hypotheses (partials) screened before the
utterance ends, raised only when stable, never twice, never for the partner."""

from __future__ import annotations

import pytest

from detection import CallScreen, DetectionConfig, DetectionError, Detector


@pytest.fixture(scope="module")
def detector() -> Detector:
    return Detector()


def speak(call: CallScreen, text: str, start: float, *, speaker: str = "customer", word_s: float = 0.3):
    """Say ``text`` word by word: a partial after each word but the last, then the
    final. Returns ``(partial screenings, final screening)``."""
    words = text.split()
    partials = [
        call.hear_partial(speaker, " ".join(words[:i]), start, start + i * word_s)
        for i in range(1, len(words))
    ]
    final = call.hear(speaker, text, start, start + len(words) * word_s)
    return partials, final


def test_a_threat_is_raised_from_partials_before_the_final_then_not_again(detector):
    call = CallScreen(detector)
    said = "i know where you live and you will regret this"
    partials, final = speak(call, said, start=5.0)
    raised = [(i, f) for i, s in enumerate(partials) for f in s.findings]
    assert [(i, f.category, f.rule, f.evidence) for i, f in raised] == [(5, "threat", "threat.intimidation", "i know where you live")]
    index, finding = raised[0]
    # raised at "... live and": the evidence is followed by a word, long before the end of the utterance
    assert finding.text == "i know where you live and"
    assert finding.text[finding.span[0]:finding.span[1]] == "i know where you live"
    assert (finding.start, finding.end) == (5.0, pytest.approx(5.0 + 6 * 0.3))
    assert finding.end < 5.0 + len(said.split()) * 0.3
    assert partials[index].level_change is not None and partials[index].level_change.level == "alert"
    assert partials[index].level_change.at == finding.end
    # the final hears the same threat: it is not raised a second time
    assert [f for f in final.findings if f.category == "threat"] == []
    assert [f.category for f in call.findings] == ["threat"]
    # the ladder counted it once, exactly as if only the final had been screened
    finals_only = CallScreen(detector, DetectionConfig(screen_partials=False))
    finals_only.hear("customer", said, 5.0, 8.0)
    assert call.points == finals_only.points and call.level == finals_only.level


def test_an_unstable_prefix_is_never_raised(detector):
    call = CallScreen(detector)
    assert [f.rule for f in detector.screen("i will find you")] == ["threat.violence_to_you"]  # the trap is real
    partials, final = speak(call, "i will find you a better deal", start=1.0)
    assert [s.findings for s in partials] == [()] * 6
    assert final.findings == () and call.findings == () and call.level == "none"


def test_a_prefix_is_held_until_the_next_word_is_heard(detector):
    call = CallScreen(detector)
    assert call.hear_partial("customer", "i will find you", 1.0, 2.0).findings == ()
    later = call.hear_partial("customer", "i will find you and", 1.0, 2.3)
    assert [f.evidence for f in later.findings] == ["i will find you"]


def test_evidence_that_grows_is_one_finding(detector):
    call = CallScreen(detector)
    partials, final = speak(call, "i will post your name on twitter tonight", start=0.0)
    raised = [f for s in partials for f in s.findings]
    assert [(f.category, f.evidence) for f in raised] == [("defamation", "i will post your name")]
    assert final.findings == ()


def test_a_better_rule_of_the_same_category_later_in_the_utterance_is_not_counted_again(detector):
    call = CallScreen(detector)
    partials, final = speak(call, "shut up you stupid cow", start=0.0)
    raised = [f for s in partials for f in s.findings]
    assert [f.category for f in raised] == ["insult"]
    assert final.findings == ()  # the final's best insult is another rule, same act on the ladder
    finals_only = CallScreen(detector, DetectionConfig(screen_partials=False))
    finals_only.hear("customer", "shut up you stupid cow", 0.0, 1.5)
    assert call.points == finals_only.points


def test_a_final_still_raises_what_its_partials_did_not(detector):
    call = CallScreen(detector)
    call.hear_partial("customer", "you stupid", 0.0, 0.6)
    partials = call.hear_partial("customer", "you stupid idiot i know", 0.0, 1.2)
    assert [f.category for f in partials.findings] == ["insult"]
    final = call.hear("customer", "you stupid idiot i know where you live", 0.0, 2.4)
    assert [f.category for f in final.findings] == ["threat"]
    assert [f.category for f in call.findings] == ["insult", "threat"]


def test_the_next_utterance_starts_afresh(detector):
    call = CallScreen(detector)
    first = call.hear_partial("customer", "you are a liar and", 0.0, 1.2)
    call.hear("customer", "you are a liar and a thief", 0.0, 2.0)
    second = call.hear_partial("customer", "you are a liar and", 3.0, 4.2)
    assert [f.rule for f in first.findings] == [f.rule for f in second.findings] == ["integrity.liar"]
    # a partial of a new utterance (another start) begins afresh even if the last final was lost
    third = call.hear_partial("customer", "you are a liar and", 6.0, 7.2)
    assert [f.rule for f in third.findings] == ["integrity.liar"]
    assert call.hear_partial("customer", "you are a liar and a", 6.0, 7.5).findings == ()


def test_partner_partials_are_not_screened(detector):
    call = CallScreen(detector)
    partials, final = speak(call, "i know where you live and you will regret this", start=0.0, speaker="partner")
    assert all(s.findings == () and s.level_change is None for s in partials)
    assert final.findings == () and call.findings == () and call.level == "none"
    # nor do they leave state that would hide the customer's own words
    partials, final = speak(call, "i know where you live and you will regret this", start=4.0)
    assert [f.category for s in partials for f in s.findings] == ["threat"]


def test_repetition_is_judged_on_finals_only(detector):
    lines = ["i want my money back now", "just give me my money back please", "i want my money back right now"]
    with_partials, finals_only = CallScreen(detector), CallScreen(detector, DetectionConfig(screen_partials=False))
    fired = []
    for n, line in enumerate(lines):
        partials, final = speak(with_partials, line, start=4.0 * n)
        assert not any(f.category == "repetition" for s in partials for f in s.findings)
        reference = finals_only.hear("customer", line, 4.0 * n, 4.0 * n + 2.0)
        fired.append(([f.count for f in final.findings if f.category == "repetition"],
                      [f.count for f in reference.findings if f.category == "repetition"]))
    assert fired == [([], []), ([], []), ([3], [3])]


def test_screen_partials_off_restores_finals_only(detector):
    call = CallScreen(detector, DetectionConfig.from_table({"screen_partials": False}))
    partials, final = speak(call, "i know where you live and you will regret this", start=0.0)
    assert all(s.findings == () for s in partials)
    assert [(f.category, f.text) for f in final.findings] == [("threat", "i know where you live and you will regret this")]
    assert DetectionConfig().screen_partials is True
    assert DetectionConfig.from_table({"screen_partials": True}).screen_partials is True


def test_screen_partials_must_be_a_boolean():
    with pytest.raises(DetectionError) as info:
        DetectionConfig.from_table({"screen_partials": "yes"})
    assert info.value.code == "bad_config" and "screen_partials must be true or false" in str(info.value)


def test_a_partial_of_an_unknown_speaker_is_a_clear_error(detector):
    with pytest.raises(DetectionError) as info:
        CallScreen(detector).hear_partial("caller", "hello", 0.0, 0.5)
    assert info.value.code == "bad_speaker"


def test_function_words_that_lead_into_idioms_are_looked_past(detector):
    """'shoot you' is held over 'an' (PARTIAL_HOLD) until 'email' excuses it."""
    call = CallScreen(detector)
    partials, final = speak(call, "im going to shoot you an email with the details", start=0.0)
    assert [f for s in partials for f in s.findings] == [] and final.findings == ()
    threat = CallScreen(detector)
    partials, _ = speak(threat, "im going to shoot you an hour from now", start=0.0)
    early = [f for s in partials for f in s.findings]
    assert [f.category for f in early] == ["threat"]
