"""Cross-validated detection quality on real people's words (the protocol of
``docs/detection-quality.md``).

The open part of ConvAbuse (both splits; the sealed 30 % of conversations is
never read here) is cut into ``--folds`` folds by conversation, with a seeded
draw. For each fold the semantic stage is trained exactly as
``bench/train_semantic.py`` trains the shipped one, but without that fold's
conversations; then the full detector (the committed rules, plus that fold's
stage) screens the fold's messages. Every message is judged by a stage that
never saw its conversation.

Printed, for several thresholds of the stage (``semantic_threshold``): abuse
aimed at the agent caught and clean messages flagged, for the rules alone,
for the stage alone (its verdict on the whole message, before any check) and
for rules + stage (the detector as shipped), by where the messages come from
(ConvAbuse's train and validation splits). ``--out FILE.json`` keeps every
message's verdicts for a closer look. The rules are not trained per fold: those written before
issue 11 were written partly from both splits (so their figure here is a
training figure); rules written since name their lines in
``detection/lexicons/en/provenance.tsv``, and those lines are left out of
every figure.

    .venv/bin/python bench/cross_validate.py [--folds 5] [--tune-layers N]

With the encoder's layers tuned (the default, as shipped) a fold takes about
as long as ``bench/train_semantic.py`` (minutes); ``--tune-layers 0`` trains
the head alone (about a minute a fold, no torch).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests" / "detection"))

from quality_sets import pct, provenance_lines  # noqa: E402
from shared_data import convabuse_all, shared_dir  # noqa: E402
import train_semantic  # noqa: E402

FOLD_SEED = "callshield-cross-validation"
THRESHOLDS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98)


def folds_of(conversations: list[str], k: int) -> dict[str, int]:
    """Each conversation's fold, 0 to ``k - 1``, by a seeded draw."""
    ordered = sorted(set(conversations))
    random.Random(FOLD_SEED).shuffle(ordered)
    return {conv: i % k for i, conv in enumerate(ordered)}


def table(messages, verdicts: dict[str, dict], columns: dict) -> None:
    """Abuse caught and clean messages flagged, per split, one column per
    ``name: verdict -> flagged``."""
    width = 20
    print(f"{'':34}" + "".join(f"{name:>{width}}" for name in columns))
    for split in ("train", "validation"):
        for kind, label in (("abuse_agent", "abuse aimed at the agent caught"), ("clean", "clean messages flagged")):
            group = [verdicts[m.example_id] for m in messages if m.split == split and m.kind == kind]
            row = "".join(f"{pct(sum(bool(flag(v)) for v in group), len(group)):>{width}}" for flag in columns.values())
            print(f"{split + ': ' + label:34}{row}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--tune-layers", type=int, default=None, metavar="N",
                        help="encoder layers tuned with the head (default: as shipped; 0: the head alone)")
    parser.add_argument("--also", metavar="FILE.tsv", action="append", default=[], type=Path,
                        help="also train every fold on this label<TAB>text file (repeatable; e.g. bench/data/voices/*.tsv)")
    parser.add_argument("--choose", action="store_true",
                        help="choose a threshold per category on these cross-validated verdicts (see semantic_thresholds)")
    parser.add_argument("--out", type=Path, metavar="FILE.json", help="write every message's verdicts here")
    args = parser.parse_args()
    if args.folds < 2:
        parser.error("--folds must be at least 2")

    from cli.settings import load_settings
    from detection import DetectionConfig, Detector

    shared = shared_dir()
    settings = load_settings(None)
    config = settings.detection_config()
    encoder = settings.encoder(config.encoder)
    messages = [m for m in convabuse_all(shared) if m.kind in ("abuse_agent", "clean")]
    written_from = provenance_lines()
    fold = folds_of([m.conv_id for m in messages], args.folds)
    rules = Detector(dataclasses.replace(config, semantic=False))
    verdicts: dict[str, dict] = {}  # example_id -> {"rules": bool, "stage": float, "semantic": {category: score}, threshold: bool}
    started = time.perf_counter()
    cache: dict = {}  # the untuned encoder's embeddings, the same in every fold
    for k in range(args.folds):
        held = frozenset(c for c, f in fold.items() if f == k)
        rows = train_semantic.training_rows(shared, [], exclude=held, also=args.also)
        print(f"fold {k + 1}/{args.folds}: {len(held)} conversations held out, training on {len(rows)} lines "
              f"({time.perf_counter() - started:.0f} s)", file=sys.stderr)
        head, _, _ = train_semantic.train(encoder, rows, name=config.encoder, tune_layers=args.tune_layers, cache=cache)
        # screened once at the lowest threshold: at a higher one the stage's findings are those scoring that much
        detector = Detector(dataclasses.replace(config, semantic=True, semantic_threshold=THRESHOLDS[0]),
                            encoder=encoder, head=head)
        stage = detector.semantic
        for m in messages:
            if m.conv_id in held:
                findings = detector.screen(m.text)
                words = detector.normalized(m.text).tokens
                p = stage.head.probabilities(stage.encoder.embed_many([" ".join(words)]))[0] if words else None
                semantic: dict[str, float] = {}
                for f in findings:
                    if f.rule.startswith("semantic."):
                        semantic[f.category] = max(f.score, semantic.get(f.category, 0.0))
                verdicts[m.example_id] = {
                    "rules": bool(rules.screen(m.text)),
                    "ruled": any(not f.rule.startswith("semantic.") for f in findings),  # with word senses
                    "semantic": semantic,
                    "stage": 0.0 if p is None else float(1.0 - p[stage.head.classes.index("none")]),
                    **{t: any(not f.rule.startswith("semantic.") or f.score >= t for f in findings) for t in THRESHOLDS},
                }

    scored = [m for m in messages if f"convabuse:{m.example_id}" not in written_from]
    print(f"\n== ConvAbuse open part, {args.folds}-fold cross-validation by conversation "
          f"({len(scored)} messages; {len(messages) - len(scored)} left out: rules were written from them)")
    columns = {"rules alone": lambda v: v["rules"], **{f"+ stage at {t}": (lambda v, t=t: v[t]) for t in THRESHOLDS}}
    table(scored, verdicts, columns)
    print("\n-- the stage alone (P(harassment) of the whole message at least the threshold, before any check)")
    table(scored, verdicts, {f"at {t}": (lambda v, t=t: v["stage"] >= t) for t in THRESHOLDS})
    print(f"\n(the shipped threshold is {DetectionConfig().semantic_threshold}; the rules written before issue 11 "
          "were written partly from both splits, so 'rules alone' is a training figure)")
    if args.out:
        args.out.write_text(json.dumps([{"example_id": m.example_id, "split": m.split, "kind": m.kind, "text": m.text,
                                         **{str(k): v for k, v in verdicts[m.example_id].items()}} for m in scored], indent=1))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
