"""Judge a change of the semantic stage's data by several trainings of each side,
not by one: a line's verdict on a side is what most of its trainings say.

The tuning step of ``bench/train_semantic.py`` is one seeded draw (``--seed``):
two trainings of the same data move a few lines per set either way. Given
the trainings of the shipped data (``--base``, the shipped stage among them)
and of the candidate's (``--candidate``), each a ``semantic.tsv`` with its
adapter beside it, this screens every development set with the full detector
once per training and prints, per set and side:

- benign lines flagged and abusive lines caught with their category, by the
  side's majority (more than half of its trainings);
- the lines its trainings disagree on (the size of one training's chance);
- lines gained and lost by the candidate's majority against the base's;
- at the end, what the adoption rule's conditions 2 and 3 sum: benign lines
  flagged over every benign row, and rounds 3 to 6 caught with the right
  category (``docs/detection-quality.md``, "From round 17 on").

Only development sets are screened (call-like development lines, rounds 3 to
6, round 8's threat set, held-out rounds 17 to 24, spoken conversation); the
lines rules were written from are left out, as in ``bench/detection_quality.py``.
Issue 11, round 11 (``docs/detection-quality.md``).

Screening takes minutes a training. ``--cache DIR`` keeps each training's
verdicts, keyed by the model and adapter files, the detector's code and
lexicons, and the lines, so the base side's trainings are screened once for
every candidate judged against them. ``--lines`` lists the lines gained and
lost (development lines, readable).

``--null N`` judges no candidate: it cuts the ``--base`` trainings (all of the
same data, at least 2N) into two disjoint sides of N every way, one side as
the base and one as the candidate, and counts how often the adoption rule's
conditions 2 and 3 fail when nothing changed: the rule's own false alarms.

Usage::

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/seed_vote.py [--cache DIR] [--lines] \\
        --base detection/models/en/semantic.tsv --base S1/semantic.tsv --base S2/semantic.tsv \\
        --candidate C0/semantic.tsv --candidate C1/semantic.tsv --candidate C2/semantic.tsv
    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/seed_vote.py [--cache DIR] --null 3 \\
        --base detection/models/en/semantic.tsv --base S1/semantic.tsv ... --base S5/semantic.tsv
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests" / "detection"))

from detection_quality import CATEGORIES, PERSONAL_ATTACK, caught, development_sets  # noqa: E402
from quality_sets import pct  # noqa: E402
from cli.settings import load_settings  # noqa: E402
from detection import Detector  # noqa: E402

BENIGN = ("none", "plain", "trigger")
"""Labels of lines that should not be flagged (call-like sets: ``none``; spoken: ``plain``, ``trigger``)."""


@dataclass(frozen=True)
class Line:
    set: str
    label: str
    text: str

    @property
    def benign(self) -> bool:
        return self.label in BENIGN

    def right(self, found: set[str]) -> bool:
        """What a training's findings make of this line: right when a benign line is not
        flagged, an abusive one is caught with its category (spoken toxic lines name none:
        flagged at all)."""
        if self.benign:
            return not found
        return bool(found) if self.label == "toxic" else caught(found, self.label)


def development_lines() -> list[Line]:
    """Every development line, in the sets ``bench/detection_quality.py`` prints."""
    return [Line(dev.name, label, text) for dev in development_sets() for label, text in dev.rows]


def cache_key(model: Path, lines: list[Line], config: object) -> str:
    """What a training's verdicts depend on: its model and adapter files, the detector's code
    and lexicons (everything under ``detection/``), its ``config`` ([detection] settings), and
    the lines with their labels."""
    from detection.semantic import ADAPTER_FILE

    digest = hashlib.sha256(repr(config).encode())
    for path in (model, model.with_name(ADAPTER_FILE), *sorted((ROOT / "detection").rglob("*"))):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            digest.update(str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name).encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    for line in lines:
        digest.update(f"{line.set}\t{line.label}\t{line.text}\n".encode())
    return digest.hexdigest()


def verdicts(model: Path, lines: list[Line], settings, cache: Path | None = None) -> list[bool]:
    """Per line, whether the full detector with the stage ``model`` judges it right
    (read from ``cache`` when this training judged these lines with this detector before)."""
    from detection.semantic import Head

    config = settings.detection_config()
    kept = cache / f"{cache_key(model, lines, config)}.json" if cache else None
    if kept is not None and kept.is_file():
        print(f"  {model}: verdicts from {kept}", file=sys.stderr, flush=True)
        return json.loads(kept.read_text())
    detector = Detector(config, encoder=settings.encoder(config.encoder), head=Head.load(path=model))
    started = time.perf_counter()
    out = []
    for line in lines:
        found = {"personal attack" if f.category in PERSONAL_ATTACK else f.category for f in detector.screen(line.text)}
        out.append(line.right(found))
    print(f"  {model}: {len(lines)} lines in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    if kept is not None:
        kept.parent.mkdir(parents=True, exist_ok=True)
        kept.write_text(json.dumps(out))
    return out


def majority(votes: list[list[bool]]) -> tuple[list[bool], list[bool]]:
    """Per line: right by more than half of the trainings, and whether they disagree."""
    n = len(votes)
    per_line = list(zip(*votes))
    return [sum(v) * 2 > n for v in per_line], [0 < sum(v) < n for v in per_line]


def kinds(lines: list[Line], name: str) -> list[tuple[str, list[int]]]:
    """The rows printed for a set: benign kinds, then each category present."""
    idx = [i for i, line in enumerate(lines) if line.set == name]
    out = []
    for label, what in (("none", "benign flagged"), ("plain", "plain lines flagged"), ("trigger", "trigger-word lines flagged")):
        of = [i for i in idx if lines[i].label == label]
        if of:
            out.append((what, of))
    for category in (*CATEGORIES, "toxic"):
        of = [i for i in idx if lines[i].label == category]
        if of:
            out.append((category if category != "toxic" else "toxic lines caught", of))
    return out


def rows(lines: list[Line]) -> list[tuple[str, list[int]]]:
    """Every row the report prints, named ``set: kind``, with its lines."""
    return [(f"{name}: {what}", idx) for name in dict.fromkeys(line.set for line in lines) for what, idx in kinds(lines, name)]


def count(lines: list[Line], idx: list[int], right: list[bool]) -> int:
    """What a row counts: its benign lines flagged, or its abusive lines caught with their category."""
    return sum(not right[i] for i in idx) if lines[idx[0]].benign else sum(right[i] for i in idx)


def report(lines: list[Line], base: list[list[bool]], candidate: list[list[bool]], *, listed: bool = False) -> None:
    base_right, base_unsure = majority(base)
    cand_right, cand_unsure = majority(candidate)
    width = 18
    print(f"{'':34}{'base':>{width}}{'candidate':>{width}}{'gained':>8}{'lost':>6}"
          f"{'base unsure':>13}{'cand. unsure':>14}")
    for name in dict.fromkeys(line.set for line in lines):
        print(f"\n== {name}")
        for what, idx in kinds(lines, name):
            gained = sum(cand_right[i] and not base_right[i] for i in idx)
            lost = sum(base_right[i] and not cand_right[i] for i in idx)
            print(f"  {what:32}{pct(count(lines, idx, base_right), len(idx)):>{width}}{pct(count(lines, idx, cand_right), len(idx)):>{width}}"
                  f"{gained:>8}{lost:>6}{sum(base_unsure[i] for i in idx):>13}{sum(cand_unsure[i] for i in idx):>14}")
            if listed:
                for i in idx:
                    if cand_right[i] != base_right[i]:
                        print(f"      {'gained' if cand_right[i] else 'lost  '}  {lines[i].text}")
    print("\n== summed (the adoption rule's conditions 2 and 3)")
    print(f"  {'benign flagged, all benign rows':32}{sum(benign_flagged(lines, base_right).values()):>{width}}"
          f"{sum(benign_flagged(lines, cand_right).values()):>{width}}")
    print(f"  {'rounds 3 to 6, right category':32}{right_category(lines, base_right):>{width}}{right_category(lines, cand_right):>{width}}")
    for row, idx in category_rows(lines):
        print(f"    {row:30}{count(lines, idx, base_right):>{width}}{count(lines, idx, cand_right):>{width}}")


def benign_flagged(lines: list[Line], right: list[bool]) -> dict[str, int]:
    """Benign lines flagged per row of the rule's condition 2 (every benign row the
    report prints: a set, or a set's kind of benign line)."""
    return {row: count(lines, idx, right) for row, idx in rows(lines) if lines[idx[0]].benign}


RIGHT_CATEGORY_SETS = ("round 3", "round 4", "round 5", "round 6")
"""The sets whose lines caught with the right category the rule sums (condition 3)."""


def category_rows(lines: list[Line]) -> list[tuple[str, list[int]]]:
    """Each category's lines over rounds 3 to 6 (condition 3's sets), named ``rounds 3 to 6:
    category``: a row a round may name as the one its batch aims to lift, with its own null move."""
    out = []
    for category in CATEGORIES:
        idx = [i for i, line in enumerate(lines) if line.set in RIGHT_CATEGORY_SETS and line.label == category]
        if idx:
            out.append((f"rounds 3 to 6: {category}", idx))
    return out


def right_category(lines: list[Line], right: list[bool]) -> int:
    """Lines caught with the right category over rounds 3 to 6: the sum of :func:`category_rows`."""
    return sum(count(lines, idx, right) for _, idx in category_rows(lines))


@dataclass(frozen=True)
class NullDraw:
    """Two disjoint sides of trainings of the same data, judged as base and candidate."""

    base: tuple[int, ...]
    candidate: tuple[int, ...]
    rows_above: int  # benign rows where the candidate's majority flags more (condition 2 fails if any)
    most_above: int  # the largest excess on one row, in lines
    total_above: int  # benign lines flagged, summed over the rows: candidate minus base
    category_fall: int  # lines caught with the right category over rounds 3 to 6: base minus candidate


def disjoint_sides(votes: list[list[bool]], size: int):
    """Every ordered pair of disjoint sides of ``size`` trainings, each with its
    majority (computed once a side): ``(base, base_right, candidate, candidate_right)``."""
    from itertools import combinations

    sides = {c: majority([votes[i] for i in c])[0] for c in combinations(range(len(votes)), size)}
    for base, b in sides.items():
        for candidate, c in sides.items():
            if not set(base) & set(candidate):
                yield base, b, candidate, c


def null_draws(lines: list[Line], votes: list[list[bool]], size: int = 3) -> list[NullDraw]:
    """The rule's conditions 2 and 3 between trainings of the same data: every
    ordered pair of disjoint sides of ``size`` trainings, one judged as the base
    and one as the candidate. Nothing changed between them, so every failure is
    the trainings' chance (issue 11, round 16)."""
    out = []
    for base, b, candidate, c in disjoint_sides(votes, size):
        fb, fc = benign_flagged(lines, b), benign_flagged(lines, c)
        above = [fc[row] - fb[row] for row in fb]
        out.append(NullDraw(base, candidate, sum(d > 0 for d in above), max(above), sum(above),
                            right_category(lines, b) - right_category(lines, c)))
    return out


def null_moves(lines: list[Line], votes: list[list[bool]], size: int = 3) -> dict[str, int]:
    """Per row the report prints (a set's benign lines, its lines of a category, or a category's
    lines over rounds 3 to 6), the largest move, in lines either way, between two disjoint
    sides of ``size`` trainings of the same data: what a row moves by chance alone."""
    every = rows(lines) + category_rows(lines)
    out = {row: 0 for row, _ in every}
    for _, b, _, c in disjoint_sides(votes, size):
        for row, idx in every:
            out[row] = max(out[row], abs(count(lines, idx, b) - count(lines, idx, c)))
    return out


def report_null(draws: list[NullDraw], size: int, moves: dict[str, int] | None = None) -> None:
    n = len(draws)
    print(f"Trainings of the same data, cut into two sides of {size}: {n} ordered pairs (base, candidate).")
    print(f"  condition 2 fails (a benign row above the base by a line or more): {sum(d.rows_above > 0 for d in draws)} of {n}")
    print(f"    by two lines or more on a row: {sum(d.most_above >= 2 for d in draws)} of {n}")
    print(f"    benign lines summed over the rows above the base's sum: {sum(d.total_above > 0 for d in draws)} of {n}")
    print(f"  rounds 3 to 6 in the right category fall: {sum(d.category_fall > 0 for d in draws)} of {n}"
          f" (by at most {max(d.category_fall for d in draws)} lines)")
    for d in draws:
        print(f"    base {d.base} candidate {d.candidate}: rows above {d.rows_above}, most {d.most_above}, "
              f"summed {d.total_above:+d}, right category {-d.category_fall:+d}")
    if moves:
        print("  the largest move of each row between two sides, in lines either way:")
        for row, move in moves.items():
            print(f"    {row:60}{move:>4}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, action="append", required=True, metavar="semantic.tsv",
                        help="a training of the shipped data (repeat: the shipped stage and other seeds)")
    parser.add_argument("--candidate", type=Path, action="append", default=[], metavar="semantic.tsv",
                        help="a training of the candidate's data (repeat, one per seed)")
    parser.add_argument("--null", type=int, metavar="N",
                        help="no candidate: cut the --base trainings (at least 2N) into two sides of N every way, "
                             "and count how often the rule's conditions fail between trainings of the same data")
    parser.add_argument("--cache", type=Path, metavar="DIR",
                        help="keep each training's verdicts here and reuse them while nothing they depend on changed")
    parser.add_argument("--lines", action="store_true", help="list the lines gained and lost under each row")
    args = parser.parse_args()
    for path in (*args.base, *args.candidate):
        if not path.is_file():
            parser.error(f"{path}: no such model file (bench/train_semantic.py --seed N --out DIR/semantic.tsv)")
    if args.null is not None:
        if args.candidate or args.null < 1 or args.null % 2 == 0 or len(args.base) < 2 * args.null:
            parser.error("--null N: an odd N, at least 2N --base trainings of the same data, and no --candidate")
    elif len(args.base) < 3 or len(args.candidate) < 3 or len(args.base) % 2 == 0 or len(args.candidate) % 2 == 0:
        parser.error("give an odd number of trainings, at least three, on each side, so every line has a majority")
    settings = load_settings(None)
    lines = development_lines()
    if args.null is not None:
        print(f"{len(lines)} development lines; {len(args.base)} trainings of the same data", file=sys.stderr, flush=True)
        votes = [verdicts(path, lines, settings, args.cache) for path in args.base]
        report_null(null_draws(lines, votes, args.null), args.null, null_moves(lines, votes, args.null))
        return 0
    print(f"{len(lines)} development lines; {len(args.base)} base and {len(args.candidate)} candidate trainings",
          file=sys.stderr, flush=True)
    base = [verdicts(path, lines, settings, args.cache) for path in args.base]
    candidate = [verdicts(path, lines, settings, args.cache) for path in args.candidate]
    print("A line's verdict on a side is what most of its trainings say; 'unsure': lines its trainings disagree on.")
    print("Benign rows count lines flagged; category rows count lines caught with their category. Development figures.")
    report(lines, base, candidate, listed=args.lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
