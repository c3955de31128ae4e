"""Provenance (docs/detection-quality.md): every rule and exception says what
it was written from, and every line it names exists, so the quality figures
can leave those lines out."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LEXICON = ROOT / "detection" / "lexicons" / "en"
sys.path.insert(0, str(ROOT / "bench"))


def _ids(name: str) -> set[str]:
    return {line.split("\t")[0] for line in (LEXICON / name).read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")}


def _rows() -> dict[str, str]:
    from detection.lexicon import read_provenance

    return read_provenance(LEXICON)


def test_every_rule_and_exception_says_what_it_was_written_from():
    rows = _rows()
    missing = (_ids("rules.tsv") | _ids("exceptions.tsv")) - set(rows)
    assert not missing, f"no provenance for {sorted(missing)[:5]}"
    lists = _ids("lists.tsv")
    assert {"aim", "senses"} <= set(rows), "the aim reader's lists and the word senses say what they came from"
    for key in set(rows) - _ids("rules.tsv") - _ids("exceptions.tsv"):
        assert key in ("aim", "senses") or key.startswith("list:") and key[5:] in lists, key


def test_every_line_named_exists(shared_dir):
    import quality_sets
    import shared_data

    refs = quality_sets.provenance_lines()
    open_ids = {m.example_id for m in shared_data.convabuse_all(shared_dir)}
    heldout = (ROOT / "tests" / "detection" / "heldout.tsv").read_text(encoding="utf-8").splitlines()
    sets = {name: {n for n, _, _ in quality_sets.written_set(name)} for name in quality_sets.DEVELOPMENT_SETS}
    for ref in refs:
        kind, _, value = ref.partition(":")
        if kind == "convabuse":
            assert value in open_ids, f"{ref}: not a message of ConvAbuse's open part"
        elif kind == "heldout":
            line = heldout[int(value) - 1]
            assert "\t" in line and not line.startswith("#"), f"{ref} is not a line of heldout.tsv"
        else:
            assert kind in sets and int(value) in sets[kind], f"{ref}: no such line"
    assert any(re.fullmatch(r"heldout:\d+", r) for r in refs), "the held-out lines read since issue 11 are named"
    assert any(re.fullmatch(r"calls_round3:\d+", r) for r in refs), "round 3's lines read in round 4 are named (and parsed)"
