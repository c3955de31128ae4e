"""Threats shown by their harm rather than said (issue 11, round 8; rules ``threat.shown_*``).

Each shape is a general fact of how threats are made, not a sentence: the
lines below were written for these tests, not taken from any evaluation set.
Benign lines with the same words (tools, the caller's own injuries, visits to
a branch, safety complaints) must not match."""

from __future__ import annotations

import pytest

from detection.config import DetectionConfig
from detection.detector import Detector

ROUND_8 = ("threat.shown_armed_visit", "threat.shown_pity_if", "threat.shown_damage_for_damage",
           "threat.shown_injury_figure", "threat.shown_someone_hurt", "threat.shown_menace_answer",
           "threat.shown_exposure", "threat.shown_losing_control", "threat.shown_their_people")


@pytest.fixture(scope="module")
def detector():
    return Detector(DetectionConfig(semantic=False))


@pytest.mark.parametrize("line, rule", [
    ("im coming round your office with a crowbar", "threat.shown_armed_visit"),
    ("ill be down at that branch tomorrow with the lads", "threat.shown_armed_visit"),
    ("ill be down there and someone is getting hurt", "threat.shown_armed_visit"),
    ("be a shame if your van got torched", "threat.shown_pity_if"),
    ("shame if you couldnt walk again isnt it", "threat.shown_pity_if"),
    ("ill stick a brick through your window", "threat.shown_damage_for_damage"),
    ("how would you feel if your tyres got slashed", "threat.shown_damage_for_damage"),
    ("if my husband doesnt get his operation you wont survive either", "threat.shown_damage_for_damage"),
    ("youll be drinking your tea through a straw", "threat.shown_injury_figure"),
    ("carry on like this and youll end up with a busted nose", "threat.shown_injury_figure"),
    ("your engineer will be leaving in an ambulance", "threat.shown_injury_figure"),
    ("somebodys getting hurt over this", "threat.shown_someone_hurt"),
    ("agents who talk down to me tend to end up in hospital", "threat.shown_someone_hurt"),
    ("theres a lot of rage in me right now so think hard about your next words", "threat.shown_menace_answer"),
    ("your daughter walks home alone doesnt she", "threat.shown_exposure"),
    ("i know which car that woman drives", "threat.shown_exposure"),
    ("keep pushing me and i cant promise what ill do", "threat.shown_losing_control"),
    ("you lot wont like what happens next", "threat.shown_their_people"),
    ("ill wait next to your van", "threat.shown_their_people"),
])
def test_a_threat_shown_by_its_harm(detector, line, rule):
    assert rule in {f.rule for f in detector.screen(line) if f.category == "threat"}


@pytest.mark.parametrize("line", [
    "ill come down to the branch on friday with my passport and the letter",
    "ill be at the office with my paperwork first thing tomorrow",
    "ill be round at my mums with a hammer putting her shelves up so ring me there",
    "ill turn up at the depot with my driving licence to collect the van",
    "it would be a shame if the offer ended before i could sign up",
    "it would be such a shame if the house burned down because of that faulty boiler you fitted",
    "my husband came home from work with a broken arm and i need to change the appointment",
    "i was eating through a straw for a week after the dentist",
    "the vase came out in pieces when i opened the box",
    "someones going to get hurt on that broken step outside your branch",
    "somebody is going to get hurt if you dont fix that loose paving slab",
    "people who work nights tend to get hurt more often my husband says",
    "do you have a lot of accidents with these heaters",
    "i know where he parks because he is my neighbour and he blocked my drive again",
    "i know what time the office closes thats why im ringing now",
    "you lot wont like this but i have to cancel",
    "im coming for the appointment at three",
    "ill be waiting in the car park for the engineer",
    "i dont know what im gonna do i cant pay this bill",
    "one more time i dont know what else to do",
    "think carefully about your answer because im recording this call",
    "would you like your car serviced at the same time",
    "my mum walks to the shops on her own and she fell last week",
    "my brother deals with people like you at the bank all day he says its a hard job",
    "we came home to find the car had been keyed on the drive and i need to claim",
])
def test_the_same_words_in_ordinary_calls_threaten_nobody(detector, line):
    assert [f for f in detector.screen(line) if f.category == "threat"] == []


def test_the_rounds_rules_can_be_turned_off_together(detector):
    off = Detector(DetectionConfig(semantic=False, disabled_rules=ROUND_8))
    line = "ill stick a brick through your window"
    assert detector.screen(line) and not [f for f in off.screen(line) if f.rule.startswith("threat.shown_")]
    assert {r.id for r in detector.rules if r.id.startswith("threat.shown_")} == set(ROUND_8)
