"""The sealed part of ConvAbuse (issue 11's protocol, ``docs/detection-quality.md``):
the committed list is the seeded 30 % of conversations it claims to be, and
every reader keeps its lines out unless asked for them by name."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import shared_data  # noqa: E402


def _conversations(shared_dir: Path) -> set[str]:
    import csv

    out = set()
    for _, name in shared_data.CONVABUSE_SPLITS:
        with (shared_dir / "datasets" / "convabuse" / name).open(encoding="utf-8") as fh:
            out |= {row["conv_id"] for row in csv.DictReader(fh)}
    return out


def test_the_committed_seal_is_the_seeded_thirty_percent(shared_dir):
    conversations = _conversations(shared_dir)
    sealed = shared_data.sealed_conversations()
    assert sorted(sealed) == shared_data.choose_sealed(conversations)
    assert sealed <= conversations
    assert abs(len(sealed) - 0.3 * len(conversations)) <= 1


def test_readers_keep_the_sealed_lines_out_unless_asked(shared_dir):
    sealed = shared_data.sealed_conversations()
    open_ = shared_data.convabuse_all(shared_dir)
    closed = shared_data.convabuse_all(shared_dir, part="sealed")
    everything = shared_data.convabuse_all(shared_dir, part="all")
    assert open_ and closed
    assert not any(m.conv_id in sealed for m in open_)
    assert all(m.conv_id in sealed for m in closed)
    assert len(open_) + len(closed) == len(everything)
    assert {m.example_id for m in open_}.isdisjoint(m.example_id for m in closed)
    assert {m.split for m in open_} == {"train", "validation"}


def test_the_spent_writers_the_stage_may_train_on_are_spent_sets_only():
    """``bench/train_semantic.py --spent-writers`` reads sealed sets already scored, never a
    development set (round 3 is round 4's unseen writer) nor an unopened seal."""
    import quality_sets
    import train_semantic

    assert all(name in quality_sets.SPENT and part == "sealed" for name, part in train_semantic.SPENT_WRITERS)
    rows = train_semantic.spent_rows()
    assert len(rows) == sum(len(quality_sets.written_set(n, p)) for n, p in train_semantic.SPENT_WRITERS)
    assert {label for label, _, _ in rows} >= {"none", "threat", "privacy"}
    assert not {"plain", "trigger"} & {label for label, _, _ in rows}, "spoken benign kinds teach none"
