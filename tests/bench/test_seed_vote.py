"""``bench/seed_vote.py`` (issue 11, round 11): a line's verdict on a side is what most
of its trainings say, and the lines they disagree on are counted, not hidden."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import seed_vote  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "seed_vote.py"


def test_a_verdict_is_what_most_trainings_say_and_their_disagreements_are_counted():
    votes = [[True, True, False, False], [True, False, False, True], [True, True, False, False]]
    right, unsure = seed_vote.majority(votes)
    assert right == [True, True, False, False]
    assert unsure == [False, True, False, True]


def test_a_line_is_right_when_benign_and_unflagged_or_abusive_and_caught_with_its_category():
    assert seed_vote.Line("s", "none", "t").right(set())
    assert not seed_vote.Line("s", "trigger", "t").right({"threat"})
    assert seed_vote.Line("s", "threat", "t").right({"threat", "profanity"})
    assert not seed_vote.Line("s", "threat", "t").right({"personal attack"}), "caught with another category is a miss"
    assert seed_vote.Line("s", "toxic", "t").right({"profanity"}), "a spoken toxic line names no category: flagged at all"


def test_the_development_lines_are_those_the_quality_bench_prints_without_the_rules_sources():
    lines = seed_vote.development_lines()
    names = list(dict.fromkeys(line.set for line in lines))
    assert names == ["call-like development", "round 3", "round 4", "round 5", "round 6", "round 8's threat set",
                     "held-out 17 to 24", "spoken"]
    assert {line.label for line in lines if line.set == "spoken"} == {"plain", "trigger", "toxic"}
    assert all(line.label != "insult" for line in lines), "insult and integrity are scored as one personal attack"


def test_it_refuses_an_even_or_short_side_and_a_missing_model_with_a_clear_error(tmp_path):
    model = Path(__file__).resolve().parents[2] / "detection" / "models" / "en" / "semantic.tsv"
    two = [str(a) for m in (model, model) for a in ("--base", m)] + [str(a) for m in (model, model, model) for a in ("--candidate", m)]
    done = subprocess.run([sys.executable, str(SCRIPT), *two], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "odd number of trainings" in done.stderr
    missing = [str(a) for m in (model, model, tmp_path / "none.tsv") for a in ("--base", m)] * 1
    done = subprocess.run([sys.executable, str(SCRIPT), *missing, "--candidate", str(model)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "none.tsv: no such model file" in done.stderr


def test_verdicts_are_kept_by_what_they_depend_on_and_read_back(tmp_path):
    """``--cache``: a training's verdicts are screened once and read back while its files, the
    detector and the lines are unchanged; any of them changed is another key."""
    import shutil

    from cli.settings import load_settings
    from detection.semantic import ADAPTER_FILE

    shipped = Path(__file__).resolve().parents[2] / "detection" / "models" / "en"
    model = tmp_path / "m" / "semantic.tsv"
    model.parent.mkdir()
    shutil.copy(shipped / "semantic.tsv", model)
    shutil.copy(shipped / ADAPTER_FILE, model.with_name(ADAPTER_FILE))
    settings = load_settings(None)
    config = settings.detection_config()
    lines = [seed_vote.Line("s", "threat", "i know where you live and i will find you"),
             seed_vote.Line("s", "none", "thanks that sorted out my bill")]
    first = seed_vote.verdicts(model, lines, settings, tmp_path / "cache")
    assert first == [True, True]
    (kept,) = (tmp_path / "cache").iterdir()
    kept.write_text("[false, false]")  # read back, not screened again
    assert seed_vote.verdicts(model, lines, settings, tmp_path / "cache") == [False, False]
    key = seed_vote.cache_key(model, lines, config)
    assert kept.name == f"{key}.json"
    assert seed_vote.cache_key(model, [lines[0], seed_vote.Line("s", "threat", lines[1].text)], config) != key
    assert seed_vote.cache_key(model, lines, dataclasses.replace(config, semantic_threshold=0.5)) != key
    model.write_text(model.read_text() + "# another training\n")
    assert seed_vote.cache_key(model, lines, config) != key


def test_the_null_cuts_trainings_of_the_same_data_into_sides_and_counts_the_rules_failures():
    """``--null``: every ordered pair of disjoint sides judged as base and candidate;
    a line only some trainings flag fails condition 2 exactly where the
    candidate side's majority flags it and the base side's does not."""
    lines = [seed_vote.Line("round 3", "none", "a"), seed_vote.Line("round 3", "none", "b"),
             seed_vote.Line("round 3", "threat", "c"), seed_vote.Line("spoken", "plain", "d")]
    same = [[True, True, True, True] for _ in range(6)]
    draws = seed_vote.null_draws(lines, same, 3)
    assert len(draws) == 20 and all(d.rows_above == 0 and d.category_fall == 0 for d in draws)
    # trainings 0 and 1 flag benign line "a" and miss threat "c": a side holding both has a majority for it
    votes = [[i > 1, True, i > 1, True] for i in range(6)]
    draws = seed_vote.null_draws(lines, votes, 3)
    failing = [d for d in draws if d.rows_above]
    assert sorted(d.candidate for d in failing) == [(0, 1, 2), (0, 1, 3), (0, 1, 4), (0, 1, 5)]
    assert all(d.most_above == 1 and d.total_above == 1 and d.category_fall == 1 for d in failing)
    assert seed_vote.benign_flagged(lines, [False, True, True, True]) == {"round 3: benign flagged": 1, "spoken: plain lines flagged": 0}
    assert seed_vote.null_moves(lines, votes, 3) == {"round 3: benign flagged": 1, "round 3: threat": 1,
                                                     "spoken: plain lines flagged": 0, "rounds 3 to 6: threat": 1}
    assert set(seed_vote.null_moves(lines, same, 3).values()) == {0}


def test_the_null_refuses_a_candidate_and_too_few_trainings_with_a_clear_error():
    model = Path(__file__).resolve().parents[2] / "detection" / "models" / "en" / "semantic.tsv"
    three = [str(a) for m in (model, model, model) for a in ("--base", m)]
    done = subprocess.run([sys.executable, str(SCRIPT), "--null", "3", *three], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "at least 2N --base trainings" in done.stderr
    done = subprocess.run([sys.executable, str(SCRIPT), "--null", "1", *three, "--candidate", str(model)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "no --candidate" in done.stderr


def test_the_report_sums_what_the_rules_conditions_2_and_3_weigh(capsys):
    lines = [seed_vote.Line("round 3", "none", "a"), seed_vote.Line("round 3", "threat", "c"),
             seed_vote.Line("spoken", "plain", "d"), seed_vote.Line("spoken", "toxic", "e")]
    base = [[True, True, False, True]] * 3  # "d" flagged, the threat caught
    candidate = [[False, False, True, True]] * 3  # "a" flagged, the threat missed
    seed_vote.report(lines, base, candidate)
    summed = capsys.readouterr().out.split("== summed")[1].splitlines()
    assert summed[1].split()[-2:] == ["1", "1"] and summed[2].split()[-2:] == ["1", "0"]
    assert summed[3].split() == ["rounds", "3", "to", "6:", "threat", "1", "0"]
