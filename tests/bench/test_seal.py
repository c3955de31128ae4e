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


def test_long_turns_are_built_from_the_written_training_lines_only():
    """``--long-turns`` (round 6): each harassing turn holds one written harassing line
    and keeps its label, benign turns hold benign lines only, nothing comes from ConvAbuse
    (a cross-validation fold builds the same turns), and the draw is seeded."""
    import train_semantic

    rows = [("threat", "ill find where you live", "training"), ("insult", "you useless cow", "training"),
            ("none", "my bill is wrong", "training"), ("none", "can you check my meter", "training_requests"),
            ("none", "the parcel never came", "training"), ("insult", "you stupid bot", "convabuse"),
            ("none", "hello there", "convabuse")]
    turns = train_semantic.long_turns(rows, 5)
    assert turns == train_semantic.long_turns(list(rows), 5)
    harassing = [t for t in turns if t[0] != "none"]
    benign = [t for t in turns if t[0] == "none"]
    assert len(harassing) == 2 and len(benign) == 5  # each written harassing line at most once
    lines = {"none": {"my bill is wrong", "can you check my meter", "the parcel never came"},
             "threat": {"ill find where you live"}, "insult": {"you useless cow"}}
    for label, text, source in turns:
        assert source == "long_turns" and "bot" not in text and "hello there" not in text
        held = [line for line in lines["none"] if line in text]
        assert len(text.split()) == sum(len(line.split()) for line in held) + (0 if label == "none" else len(next(iter(lines[label])).split()))
        assert label == "none" or next(iter(lines[label])) in text
        assert 2 <= len(held) + (label != "none") <= 3
    assert train_semantic.long_turns(rows, 0) == []


def test_training_makes_its_out_folder_first_and_names_one_it_cannot_make(tmp_path):
    """An --out whose folder is missing is made before the half hour of training,
    and one that cannot be made stops the run at once with the reason (it once
    failed at the very end, after the work)."""
    import subprocess

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n", encoding="utf-8")
    script = Path(__file__).resolve().parents[2] / "bench" / "train_semantic.py"
    done = subprocess.run([sys.executable, str(script), "--out", str(blocker / "model" / "semantic.tsv")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "its folder cannot be made" in done.stderr and str(blocker) in done.stderr
    assert "training on" not in done.stderr
