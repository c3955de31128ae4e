"""The ladder's reasons are read by partners and supervisors: plain words,
no points, no severity names, every category and severity named."""

from __future__ import annotations

from detection import CallScreen
from detection.taxonomy import CATEGORIES, SEVERITIES
from kernel.levels import CATEGORY_WORDS, SEVERITY_WORDS, browser_script, category_words


def test_every_category_and_severity_has_words_for_the_screens():
    assert set(CATEGORY_WORDS) == set(CATEGORIES)
    assert set(SEVERITY_WORDS) == set(SEVERITIES)
    assert category_words("threat", capitalized=True) == "A threat"
    assert category_words("new_kind") == "new kind"
    script = browser_script()
    assert "CS_CATEGORY_WORDS" in script and '"a threat"' in script and '"grave"' in script


def test_a_level_change_says_what_was_said_in_plain_words(detector):
    screen = CallScreen(detector)
    caution = screen.hear("customer", "shut up you stupid idiot", 1.0, 2.5).level_change
    alert = screen.hear("customer", "i know where you live and you will regret this", 4.0, 6.5).level_change
    assert caution.level == "caution" and caution.reason.startswith('An insult: "') and caution.reason.endswith("So far on this call: an insult.")
    assert alert.level == "alert"
    assert alert.reason == 'A threat: "i know where you live". So far on this call: an insult, a threat.'
    for reason in (caution.reason, alert.reason):
        assert "point" not in reason and not any(severity in reason for severity in SEVERITIES), reason
