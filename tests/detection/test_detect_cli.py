"""``callshield detect`` end to end: the real command in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

CALLSHIELD = str(Path(sys.executable).parent / "callshield")

LINES = [
    json.dumps({"call": "c1", "speaker": "customer", "start": 0.0, "end": 1.5, "text": "i want my money back"}),
    json.dumps({"call": "c2", "speaker": "customer", "start": 0.0, "end": 1.0, "text": "you useless moron"}),
    json.dumps({"call": "c1", "speaker": "partner", "start": 2.0, "end": 4.0, "text": "that item is not refundable"}),
    "{this is not json",
    json.dumps({"call": "c1", "speaker": "customer", "start": 5.0, "end": 6.0, "text": "refund me"}),
    json.dumps({"call": "c1", "speaker": "partner", "start": 7.0, "end": 9.0, "text": "you idiot i know where you live"}),
    "my phone wont charge",
    json.dumps({"call": "c1", "speaker": "customer", "start": 10.0, "end": 11.5, "text": "just give me a refund", "extra": [1, 2]}),
    json.dumps({"call": "c1", "speaker": "supervisor", "text": "hello"}),
    json.dumps({"speaker": "customer", "text": 42}),
    "",
    "what are you wearing",
]


def run(args, stdin: str | None = None, env=None):
    return subprocess.run([CALLSHIELD, *args], input=stdin, capture_output=True, text=True, timeout=60, env=env)


def check_outputs(stdout: str) -> None:
    out = [json.loads(line) for line in stdout.splitlines()]
    assert len(out) == len(LINES)
    # input fields kept, in input order
    assert out[0]["text"] == "i want my money back" and out[0]["call"] == "c1" and out[0]["findings"] == []
    assert [f["category"] for f in out[1]["findings"]] == ["insult"]
    insult = out[1]["findings"][0]
    assert set(insult) == {"category", "subtype", "severity", "score", "span", "evidence", "rule", "why"}
    assert insult["why"].startswith("aimed at the partner")
    assert out[1]["text"][insult["span"][0]:insult["span"][1]] == insult["evidence"]
    assert out[2]["findings"] == []
    assert out[3]["findings"][0]["category"] == "error" and out[3]["text"] == LINES[3] and "JSON" in out[3]["error"]
    assert out[4]["findings"] == []
    assert out[5]["findings"] == [], "partner lines are context, never screened"
    assert out[6] == {"text": "my phone wont charge", "findings": []}
    (repeat,) = out[7]["findings"]
    assert (repeat["category"], repeat["count"], repeat["since"], repeat["span"]) == ("repetition", 3, 0.0, None)
    assert repeat["evidence"] == "i want my money back" and out[7]["extra"] == [1, 2]
    assert out[8]["findings"][0]["category"] == "error" and "speaker" in out[8]["error"]
    assert out[9]["findings"][0]["category"] == "error" and "text" in out[9]["error"]
    assert out[10] == {"text": "", "findings": []}
    assert [f["category"] for f in out[11]["findings"]] == ["sexual"]


def test_detect_reads_a_file(tmp_path):
    path = tmp_path / "call.jsonl"
    path.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    result = run(["detect", str(path)])
    assert result.returncode == 0, result.stderr
    check_outputs(result.stdout)


def test_detect_reads_standard_input():
    for args in (["detect"], ["detect", "-"]):
        result = run(args, stdin="\n".join(LINES) + "\n")
        assert result.returncode == 0, result.stderr
        check_outputs(result.stdout)


def test_detect_on_a_terminal_says_what_to_do_then_reads_what_is_typed():
    import os
    import pty

    from cli.commands.detect import TTY_HINT

    leader, follower = pty.openpty()
    proc = subprocess.Popen([CALLSHIELD, "detect"], stdin=follower, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    os.close(follower)
    try:
        os.write(leader, b"you useless moron\n")
        os.write(leader, b"\x04")  # Ctrl-D: end of input on a terminal
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(leader)
    assert proc.returncode == 0, err
    assert err.splitlines()[0] == TTY_HINT and "\n" not in TTY_HINT
    assert [f["category"] for f in json.loads(out.splitlines()[-1])["findings"]] == ["insult"]
    piped = run(["detect"], stdin="you useless moron\n")  # a pipe is not a person: no hint
    assert piped.returncode == 0 and TTY_HINT not in piped.stderr


def test_detect_reads_several_files_in_order(tmp_path):
    first, second = tmp_path / "a.txt", tmp_path / "b.jsonl"
    first.write_text("hello there\nyou are a liar\n", encoding="utf-8")
    second.write_text(json.dumps({"text": "where do you live", "call": 7}) + "\n", encoding="utf-8")
    result = run(["detect", str(first), str(second)])
    assert result.returncode == 0, result.stderr
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert [o["text"] for o in out] == ["hello there", "you are a liar", "where do you live"]
    assert [[f["category"] for f in o["findings"]] for o in out] == [[], ["integrity"], ["privacy"]]
    assert out[2]["call"] == 7


def test_missing_file_and_bad_config_are_one_line_errors(tmp_path):
    result = run(["detect", str(tmp_path / "nope.jsonl")])
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("callshield: error:") and "nope.jsonl" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    config = tmp_path / "config.toml"
    config.write_text("[detection]\nrepetition_min = 0\n", encoding="utf-8")
    result = run(["--config", str(config), "detect"], stdin="hello\n")
    assert result.returncode == 2 and "repetition_min" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_config_file_sets_detection(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text("[detection]\nrepetition_min = 2\n[detection.severity]\ninsult = \"high\"\n", encoding="utf-8")
    lines = [json.dumps({"call": "x", "text": t}) for t in ("cancel my account", "cancel the account now", "you moron")]
    result = run(["--config", str(config), "detect"], stdin="\n".join(lines) + "\n")
    assert result.returncode == 0, result.stderr
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert out[1]["findings"][0]["category"] == "repetition" and out[1]["findings"][0]["count"] == 2
    assert out[2]["findings"][0]["severity"] == "high"


# ---------------------------------------------------------------- the semantic stage

ONLY_BY_MEANING = "tell me what street you live on"  # no rule matches it; the semantic stage finds privacy
RULES_LINE = "you useless moron"


def fresh_home(tmp_path) -> dict:
    """An empty data directory: the encoder can only come from its pip package."""
    import os

    return {**os.environ, "CALLSHIELD_HOME": str(tmp_path / "home")}


def test_semantic_stage_is_on_by_default(tmp_path, detector):
    lines = [json.dumps({"call": "s", "start": 1.0, "end": 2.5, "text": ONLY_BY_MEANING}), RULES_LINE]
    result = run(["detect"], stdin="\n".join(lines) + "\n", env=fresh_home(tmp_path))
    assert result.returncode == 0, result.stderr
    out = [json.loads(line) for line in result.stdout.splitlines()]
    (finding,) = out[0]["findings"]
    (expected,) = detector.screen(ONLY_BY_MEANING)
    assert finding == {
        "category": "privacy",
        "subtype": None,
        "severity": "high",
        "score": expected.score,
        "span": list(expected.span),
        "evidence": expected.evidence,
        "rule": "semantic.privacy",
        "why": expected.why,
    }
    assert expected.why.startswith("aimed at the partner")
    assert finding["score"] >= 0.95 and finding["evidence"] in ONLY_BY_MEANING[finding["span"][0]:finding["span"][1]]
    assert {k: out[0][k] for k in ("call", "start", "end", "text")} == {"call": "s", "start": 1.0, "end": 2.5, "text": ONLY_BY_MEANING}
    assert [f["rule"].split(".")[0] for f in out[1]["findings"]] == ["insult"]


def test_a_missing_encoder_is_a_one_line_error(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text("[detection]\nencoder = \"no-such-encoder\"\n", encoding="utf-8")
    result = run(["--config", str(config), "detect"], stdin=ONLY_BY_MEANING + "\n", env=fresh_home(tmp_path))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("callshield: error:") and len(result.stderr.strip().splitlines()) == 1
    assert "no-such-encoder" in result.stderr and "callshield models install" in result.stderr
    assert "Traceback" not in result.stderr


def test_semantic_false_screens_with_the_rules_alone(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text("[detection]\nsemantic = false\nencoder = \"no-such-encoder\"\n", encoding="utf-8")
    result = run(["--config", str(config), "detect"], stdin=f"{ONLY_BY_MEANING}\n{RULES_LINE}\n", env=fresh_home(tmp_path))
    assert result.returncode == 0, result.stderr  # the encoder is never looked up
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert out[0] == {"text": ONLY_BY_MEANING, "findings": []}
    assert [f["category"] for f in out[1]["findings"]] == ["insult"]


def test_explain_lists_what_the_checks_ruled_out_and_why():
    result = run(["detect", "--explain"], stdin="he goes you are a clown\nyou are a clown\ni am not going to hurt you\n")
    assert result.returncode == 0, result.stderr
    quoted, said, negated = (json.loads(line) for line in result.stdout.splitlines())
    assert quoted["findings"] == [] and {(d["category"], d["reason"]) for d in quoted["dropped"]} >= {("insult", "reported speech: 'he goes'")}
    assert len(quoted["dropped"]) == len({json.dumps(d, sort_keys=True) for d in quoted["dropped"]}), "each drop once"
    assert set(quoted["dropped"][0]) == {"category", "rule", "evidence", "reason"}
    assert [f["category"] for f in said["findings"]] == ["insult"] and said["dropped"] == []
    assert negated["findings"] == [] and all(d["reason"] == "negated" for d in negated["dropped"])
    plain = run(["detect"], stdin="he goes you are a clown\n")
    assert "dropped" not in json.loads(plain.stdout)
