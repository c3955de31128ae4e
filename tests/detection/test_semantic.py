"""The detector's semantic stage with the real sentence encoder: what it finds
that the rules miss, the rules' checks that silence it, where it is switched
off, and its model file and config errors.

The sentences are the tests' own (written for this file, in the recognizer's
style: lowercase, no punctuation); none is in the training data.
"""

from __future__ import annotations

import threading

import pytest

from detection import CallScreen, DetectionConfig, DetectionError, Detector
from detection.semantic import NONE, Head, SemanticStage
from detection.taxonomy import CATEGORIES

# Harassment the rules have no pattern for, found by meaning.
ONLY_BY_MEANING = {
    "threat": "one day you will open your door and i will be there",
    "insult": "you sound like a broken robot with no brain",
    "privacy": "tell me what street you live on",
    "defamation": "the local newspaper will hear about your name",
    "demand": "i want you to fix my neighbours wifi too while youre at it",
}

# The model alone flags these; the rules' own checks silence it.
NEGATED = {
    "demand": "i dont want you to fix my neighbours wifi too while youre at it",
    "privacy": "im not asking what street you live on",
}
IDIOM = ("threat", "ill find you a better deal before you hang up", "find")  # idiom.get_you
LEGIT_REQUEST = ("privacy", "what is your employee number and where are you based", "what")  # legit.your_name
# Round 17's stage no longer flags "my neighbour is a brainless robot" by itself (0.92); the
# detector's own check on who is spoken about is still tested on a line the model does flag.
THIRD_PERSON = ("insult", "my neighbour is a brainless idiot")


@pytest.fixture(scope="module")
def rules_alone() -> Detector:
    return Detector()


def model_verdicts(detector: Detector, text: str):
    """The semantic stage's own opinion, before the detector's checks."""
    return detector.semantic.judge(detector.normalized(text).tokens, detector.semantic.categories)


def fired(detector: Detector, text: str, category: str):
    verdicts = [v for v in model_verdicts(detector, text) if v.category == category and v.fired]
    assert verdicts, f"the model no longer flags {text!r} as {category}: {model_verdicts(detector, text)}"
    return verdicts[0]


# ---------------------------------------------------------------- findings


@pytest.mark.parametrize("category", sorted(ONLY_BY_MEANING))
def test_the_semantic_stage_finds_what_the_rules_miss(detector, rules_alone, category):
    text = ONLY_BY_MEANING[category]
    assert rules_alone.screen(text) == []
    findings = detector.screen(text, start=1.5, end=3.0)
    assert [f.rule for f in findings] == [f"semantic.{category}"], findings
    (finding,) = findings
    assert finding.category == category and finding.subtype is None
    assert finding.severity == detector.config.severity_of(category)
    assert detector.semantic.threshold <= finding.score <= 1.0
    assert (finding.start, finding.end, finding.text) == (1.5, 3.0, text)
    words = finding.evidence.split()
    assert words and all(w in text.split() for w in words)
    first, last = finding.span
    assert 0 <= first < last <= len(text)
    said = text[first:last]
    assert said.split()[0] == words[0] and said.split()[-1] == words[-1]


def test_a_finding_by_the_rules_keeps_the_semantic_stage_quiet_for_its_category(detector):
    text = "you useless moron"
    (finding,) = detector.screen(text)
    assert finding.rule.startswith("insult.")  # not "semantic.insult" as well


# ---------------------------------------------------------------- vetoes


@pytest.mark.parametrize("category", sorted(NEGATED))
def test_a_negated_sentence_the_model_flags_is_not_reported(detector, rules_alone, category):
    text = NEGATED[category]
    fired(detector, text, category)
    assert rules_alone.screen(text) == []
    assert detector.screen(text) == []


@pytest.fixture(scope="module")
def eager(encoder) -> Detector:
    """A detector whose semantic stage speaks from 0.9: vetoes are tested on
    sentences the model flags, whatever a retraining does to their exact score."""
    return Detector(DetectionConfig(semantic_threshold=0.9), encoder=encoder)


@pytest.mark.parametrize("case", [IDIOM, LEGIT_REQUEST], ids=["idiom", "legitimate_request"])
def test_evidence_inside_an_exception_is_not_reported(eager, rules_alone, case):
    detector = eager
    category, text, word = case
    verdict = fired(detector, text, category)
    tokens = detector.normalized(text).tokens
    assert word in {tokens[i] for first, last in verdict.words for i in range(first, last + 1)}
    assert rules_alone.screen(text) == []
    assert detector.screen(text) == []


def test_an_insult_about_a_third_person_is_not_reported(detector, rules_alone):
    category, text = THIRD_PERSON
    fired(detector, text, category)
    assert rules_alone.screen(text) == []
    assert detector.screen(text) == []


# ---------------------------------------------------------------- switched off


def test_semantic_false_builds_no_stage(encoder):
    detector = Detector(DetectionConfig(semantic=False), encoder=encoder)
    assert detector.semantic is None
    assert detector.screen(ONLY_BY_MEANING["privacy"]) == []
    assert Detector().semantic is None


def test_disabled_categories_never_come_from_the_semantic_stage(encoder):
    detector = Detector(DetectionConfig(disabled=("privacy", "threat")), encoder=encoder)
    assert detector.semantic is not None
    assert detector.screen(ONLY_BY_MEANING["privacy"]) == []
    assert detector.screen(ONLY_BY_MEANING["threat"]) == []
    assert [f.rule for f in detector.screen(ONLY_BY_MEANING["insult"])] == ["semantic.insult"]


def test_screen_can_skip_the_semantic_stage(detector):
    for text in ONLY_BY_MEANING.values():
        assert detector.screen(text, semantic=False) == []


def test_partials_are_screened_by_the_rules_alone(detector):
    text = ONLY_BY_MEANING["privacy"]  # its evidence ("you") is followed by a content word: settled on a partial
    call = CallScreen(detector)
    assert call.hear_partial("customer", text, 2.0, 3.5).findings == ()
    assert call.findings == ()
    screening = call.hear("customer", text, 2.0, 4.0)
    assert [f.rule for f in screening.findings] == ["semantic.privacy"]
    assert call.level != "none"


def test_the_stage_is_shared_by_threads(detector):
    texts = list(ONLY_BY_MEANING.values())
    expected = [[f.rule for f in detector.screen(t)] for t in texts]
    got: dict[int, list] = {}

    def work(n: int) -> None:
        got[n] = [[f.rule for f in detector.screen(t)] for t in texts]

    threads = [threading.Thread(target=work, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert got == {0: expected, 1: expected}


# ---------------------------------------------------------------- the model file


def test_the_committed_model_matches_the_encoder(encoder):
    head = Head.load("en")
    assert head.encoder == DetectionConfig().encoder == "all-minilm-l6-v2"
    assert NONE in head.classes
    assert set(head.classes) - {NONE} <= set(CATEGORIES)
    assert head.weights.shape == (len(head.classes), encoder.dimensions)
    assert head.bias.shape == (len(head.classes),)
    assert head.adapter, "the encoder's top layers were tuned with the head"
    tuned_layers = {int(name.split(".")[1]) for name in head.adapter}
    assert tuned_layers and max(tuned_layers) == encoder.depth - 1
    stage = SemanticStage(encoder, head, 0.95)
    assert stage.encoder.adapter is head.adapter and encoder.adapter is None, "the stage runs the adapted encoder"
    text = ONLY_BY_MEANING["demand"]
    assert float(stage.encoder.embed(text) @ encoder.embed(text)) < 0.999, "the adapter changes what the stage sees"


def _model_copy(tmp_path):
    """The committed model (head and adapter) copied to ``tmp_path``: its ``semantic.tsv``."""
    import shutil

    from detection.semantic import ADAPTER_FILE, MODEL_FILE, model_dir

    for name in (MODEL_FILE, ADAPTER_FILE):
        shutil.copy(model_dir("en") / name, tmp_path / name)
    return tmp_path / MODEL_FILE


def test_an_adapter_that_is_not_the_one_trained_with_the_head_is_refused(tmp_path):
    from detection.semantic import ADAPTER_FILE

    path = _model_copy(tmp_path)
    assert Head.load("en", path).adapter, "the copy loads"
    adapter = tmp_path / ADAPTER_FILE
    raw = bytearray(adapter.read_bytes())
    raw[-1] ^= 0xFF
    adapter.write_bytes(bytes(raw))
    with pytest.raises(DetectionError) as caught:
        Head.load("en", path)
    assert caught.value.code == "bad_model" and "sha256 differs" in str(caught.value) and str(adapter) in str(caught.value)
    adapter.unlink()
    with pytest.raises(DetectionError) as caught:
        Head.load("en", path)
    assert caught.value.code == "bad_model" and "adapter not readable" in str(caught.value)


def test_an_adapter_line_may_not_point_outside_the_model_folder(tmp_path):
    from detection.semantic import ADAPTER_FILE

    path = _model_copy(tmp_path)
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace(f"adapter\t{ADAPTER_FILE}", f"adapter\t../{ADAPTER_FILE}"), encoding="utf-8")
    with pytest.raises(DetectionError) as caught:
        Head.load("en", path)
    assert caught.value.code == "bad_model" and "adapter<TAB>FILE<TAB>SHA256" in str(caught.value)


def test_an_adapter_for_another_encoder_is_a_bad_model_error(encoder):
    import dataclasses

    head = Head.load("en")
    foreign = dict(head.adapter)
    foreign["layer.7.qkv_bias"] = foreign[next(n for n in foreign if n.endswith(".qkv_bias"))]
    with pytest.raises(DetectionError) as caught:
        SemanticStage(encoder, dataclasses.replace(head, adapter=foreign), 0.95)
    assert caught.value.code == "bad_model" and "layer.7.qkv_bias" in str(caught.value)


def write_head(tmp_path, text: str):
    path = tmp_path / "semantic.tsv"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("text, says", [
    (None, "not readable"),
    ("encoder\tx\nclass\tnone\t0.5\t1 2 3\nclass\tthreat\t0\t1 2\n", "equal length"),
    ("encoder\tx\nclass\tnone\tnot-a-number\t1 2 3\nclass\tthreat\t0\t1 2 3\n", ":3:"),
    ("encoder\tx\nweights\t1 2 3\n", ":3:"),
    ("encoder\tx\nclass\tthreat\t0\t1 2 3\nclass\tinsult\t0\t1 2 3\n", "'none'"),
    ("class\tnone\t0\t1 2 3\nclass\tthreat\t0\t1 2 3\n", "encoder line"),
], ids=["missing", "ragged", "bad_bias", "bad_line", "no_none", "no_encoder"])
def test_a_broken_model_file_is_a_bad_model_error(tmp_path, text, says):
    path = tmp_path / "semantic.tsv" if text is None else write_head(tmp_path, "# a comment\n" + text)
    with pytest.raises(DetectionError) as caught:
        Head.load("en", path)
    assert caught.value.code == "bad_model"
    assert str(path) in str(caught.value) and says in str(caught.value)


def test_a_model_of_the_wrong_width_is_refused(tmp_path, encoder):
    path = write_head(tmp_path, "encoder\tsmall\nclass\tnone\t0.5\t1 2 3\nclass\tthreat\t0\t0 1 0\n")
    head = Head.load("en", path)
    assert head.classes == ("none", "threat") and head.weights.shape == (2, 3)
    with pytest.raises(DetectionError) as caught:
        SemanticStage(encoder, head, 0.95)
    assert caught.value.code == "bad_model"
    assert "3 dimensions" in str(caught.value) and str(encoder.dimensions) in str(caught.value)


# ---------------------------------------------------------------- config


def test_config_table_sets_the_semantic_stage():
    config = DetectionConfig.from_table({"semantic": False, "encoder": "/opt/encoders/minilm", "semantic_threshold": 0.9})
    assert (config.semantic, config.encoder, config.semantic_threshold) == (False, "/opt/encoders/minilm", 0.9)
    default = DetectionConfig.from_table({})
    assert (default.semantic, default.encoder, default.semantic_threshold) == (True, "all-minilm-l6-v2", 0.95)


def test_a_category_may_have_its_own_threshold(encoder):
    text = ONLY_BY_MEANING["threat"]
    strict = Detector(DetectionConfig(), encoder=encoder)
    (verdict,) = [v for v in model_verdicts(strict, text) if v.category == "threat"]
    assert verdict.fired
    above = min(0.999, (verdict.probability + 1.0) / 2)  # just out of its reach
    for thresholds, speaks in (({"threat": above}, False), ({"insult": above}, True)):
        detector = Detector(DetectionConfig(semantic_thresholds=thresholds), encoder=encoder)
        assert [f.rule for f in detector.screen(text)] == (["semantic.threat"] if speaks else []), thresholds
    # a lower one of its own lets a category speak where the shared threshold keeps it quiet
    shared = Detector(DetectionConfig(semantic_threshold=above), encoder=encoder)
    assert shared.screen(text) == []
    own = Detector(DetectionConfig(semantic_threshold=above, semantic_thresholds={"threat": 0.9}), encoder=encoder)
    assert [f.rule for f in own.screen(text)] == ["semantic.threat"]


def test_config_table_sets_thresholds_per_category():
    config = DetectionConfig.from_table({"semantic_thresholds": {"threat": 0.9, "privacy": 0.93}})
    assert dict(config.semantic_thresholds) == {"threat": 0.9, "privacy": 0.93}
    assert dict(DetectionConfig.from_table({}).semantic_thresholds) == dict(DetectionConfig().semantic_thresholds)


@pytest.mark.parametrize("table, says", [
    ({"semantic_thresholds": {"threat": 1.0}}, "semantic_thresholds.threat"),
    ({"semantic_thresholds": {"threat": 0.3}}, "semantic_thresholds.threat"),
    ({"semantic_thresholds": {"threat": True}}, "semantic_thresholds.threat"),
    ({"semantic_thresholds": {"rudeness": 0.9}}, "rudeness"),
    ({"semantic_thresholds": {"shouting": 0.9}}, "not judged by meaning"),
    ({"semantic_thresholds": 0.9}, "semantic_thresholds"),
    ({"semantic_threshold": 1.2}, "semantic_threshold"),
    ({"semantic_threshold": 0.4}, "semantic_threshold"),
    ({"semantic_threshold": "high"}, "semantic_threshold"),
    ({"encoder": ""}, "encoder"),
    ({"encoder": 3}, "encoder"),
    ({"semantic": "yes"}, "semantic"),
    ({"classifier": True}, "classifier"),
])
def test_config_table_rejects_bad_semantic_values(table, says):
    with pytest.raises(DetectionError) as caught:
        DetectionConfig.from_table(table)
    assert caught.value.code == "bad_config" and says in str(caught.value)


def test_an_encoder_that_embeds_differently_is_refused(encoder):
    import dataclasses

    head = Head.load("en")
    assert head.probe is not None and len(head.probe[1]) == 8
    SemanticStage(encoder, head, 0.95)  # the installed encoder passes its own probe
    text, values = head.probe
    other = dataclasses.replace(head, probe=(text, tuple(v + 0.01 for v in values)))
    with pytest.raises(DetectionError) as caught:
        SemanticStage(encoder, other, 0.95)
    assert caught.value.code == "bad_model" and "embeds differently" in str(caught.value)


def test_a_stage_built_on_another_stages_encoder_is_the_same_model(detector):
    stage = detector.semantic
    again = SemanticStage(stage.encoder, stage.head, stage.threshold)  # the adapter is not merged twice
    assert again.encoder is stage.encoder
    words = detector.normalized(ONLY_BY_MEANING["threat"]).tokens
    assert again.judge(words, ["threat"]) == stage.judge(words, ["threat"])


LONG_TURN = ("we moved house in june and the meter readings were wrong from the start and the bills kept going up "
             "every month and a little thing like you should be careful walking to the car park at night")


def test_a_harassing_clause_inside_a_long_turn_is_judged_alone(detector, rules_alone, encoder):
    """The whole turn's embedding averages one menacing clause with the meter readings;
    the clause judged alone (at ``semantic_clause_threshold``, 0.98 by default) is found, its evidence in it."""
    assert not rules_alone.screen(LONG_TURN), "the rules must miss it, or the test proves nothing"
    whole_turns = Detector(DetectionConfig(semantic_clause_threshold=1.0), encoder=encoder)
    assert not whole_turns.screen(LONG_TURN)
    assert DetectionConfig().semantic_clause_threshold == 0.98
    findings = detector.screen(LONG_TURN)
    assert [f.category for f in findings] == ["threat"]
    clause_start = LONG_TURN.index("a little thing")
    assert findings[0].span[0] >= clause_start and findings[0].rule == "semantic.threat"


def test_a_long_turn_splits_at_clause_words_into_clauses_of_four_words_or_more(detector):
    words = tuple("i rang and rang and then the engineer came but it broke again so".split())
    clauses = detector._clauses(words)
    assert [" ".join(words[a:b + 1]) for a, b in clauses] == [
        "i rang and rang", "and then the engineer came", "but it broke again so"]
    assert detector._clauses(tuple("you are rude".split())) == [(0, 2)]


def test_the_clause_threshold_is_checked():
    with pytest.raises(DetectionError, match="semantic_clause_threshold"):
        DetectionConfig.from_table({"semantic_clause_threshold": 1.5})
    assert DetectionConfig.from_table({"semantic_threshold": 0.99, "semantic_clause_threshold": 0.98}).semantic_clause_threshold == 0.98
