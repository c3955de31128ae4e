"""Detection quality: callshield against alt-profanity-check and better-profanity,
on the sets of ``docs/detection-quality.md``, side by side in one run.

"callshield" is the full detector as the commands build it
(``load_settings(None).detector()``: rules + semantic stage); "rules alone"
is the same config without the stage. Tables:

- call-like lines written apart from the detector for issue 11
  (``tests/detection/calls.tsv``): recall per category and benign lines
  flagged; the held-out rounds 17 to 24 (``heldout.tsv``, never trained on);
- ordinary spoken conversation (``tests/detection/spoken.tsv``): plain lines
  and lines with trigger words flagged, toxic lines caught;
- repetition on the development calls;
- ConvAbuse's open part: the semantic stage is trained on it, so this figure
  is a training figure; ``bench/cross_validate.py`` gives the cross-validated one;
- ``--noise``: how recall and false alarms move when 5 % and 10 % of the
  words are recognition errors (dropped, or a similar-sounding word);
- ``--sealed``: the sealed parts, scored once at the end of issue 11 (opened on
  2026-12-06, so their figures are first sight no more; the
  sealed 30 % of ConvAbuse, ``tests/detection/sealed/*.tsv``). Do not run it
  to tune anything: a figure read twice is a training figure.
- ``--sealed-round2``: the second sealed call-like round, written by another
  writer and sealed before the stage was trained on more voices; scored once.
- the third sealed round (a third writer, in the voice of a speech
  recognizer's output) was scored once at the end of round 3 and is a
  development set since (``tests/detection/calls_round3.tsv``, scored with
  the others, ``--misses`` lists its errors);
- the fourth sealed round (a fourth writer, recognizer style, long run-on
  lines, unusual trades) was scored once at the end of round 4 and is a
  development set since (``tests/detection/calls_round4.tsv``);
- the fifth sealed round (a fifth writer, recognizer style, short and long
  rambling turns) was scored once at the end of round 7 and is a development
  set since (``tests/detection/calls_round5.tsv``);
- the sixth sealed round (a sixth writer, recognizer style, sectors and
  voices not used before) and round 8's threat set (a seventh writer: threats
  in many shapes, hard benign lines with threat words) were scored once at
  the end of round 8 and are development sets since
  (``tests/detection/calls_round6.tsv``, ``threat_words_round8.tsv``);
- ``--sealed-round7``: the seventh sealed call-like round (an eighth writer,
  recognizer style, regions and sectors not used before), sealed at the end
  of round 8 and scored once at the end of round 17 (spent since);
- ``--sealed-round8``: the eighth sealed call-like round (a ninth writer,
  recognizer style, sectors and voices the earlier writers were told to
  avoid), sealed in round 17 of issue 11 before round 7's seal was opened;
  to be scored once, at the end of the next round that changes the detector
  (``--model DIR/semantic.tsv --beside-shipped`` when it is a new stage).
- ``--without ID,ID``: a column more, the same detector with those rule or
  exception ids turned off (what a round's rules do, in one sitting).
- ``--training``: also the development utterances and held-out rounds 1 to
  16 (training data of the stage).

Lines a rule was written from (``detection/lexicons/en/provenance.tsv``) are
left out of every table. The competitors only say "profane or not", so for
them a category's recall is the share of its lines they flag at all.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python bench/detection_quality.py [--noise] [--misses] [--training] [--model semantic.tsv [--beside-shipped]] [--without ID,ID]

``--model``: a candidate stage trained with ``bench/train_semantic.py --out``
(thresholds per category: ``[detection.semantic_thresholds]`` in the config,
``CALLSHIELD_CONFIG``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests" / "detection"))

import heldout_set  # noqa: E402
from quality_sets import SPENT, pct, without_provenance, written_set  # noqa: E402
from shared_data import convabuse_all, labelled, shared_dir  # noqa: E402
from cli.settings import load_settings  # noqa: E402
from detection import CallScreen, Detector  # noqa: E402

PERSONAL_ATTACK = {"insult", "integrity"}
CATEGORIES = ["threat", "personal attack", "sexual", "demand", "defamation", "privacy", "profanity"]
WIDTH = 22


def competitors() -> dict:
    out = {}
    try:
        from profanity_check import predict

        out["alt-profanity-check"] = lambda texts: [bool(x) for x in predict(list(texts))]
    except ImportError:
        print("(alt-profanity-check not installed: pip install -e '.[bench]')", file=sys.stderr)
    try:
        from better_profanity import profanity

        profanity.load_censor_words()
        out["better-profanity"] = lambda texts: [profanity.contains_profanity(t) for t in texts]
    except ImportError:
        print("(better-profanity not installed: pip install -e '.[bench]')", file=sys.stderr)
    return out


def scored_rows(rows) -> list[tuple[str, str]]:
    """``(label, text)`` rows with insult and integrity as one "personal attack"."""
    return [("personal attack" if label in PERSONAL_ATTACK else label, text) for label, text in rows]


class Judges:
    """callshield, the rules alone and the competitors, each judging a list of texts."""

    def __init__(self, detector: Detector, rules: Detector, others: dict) -> None:
        self.detectors = {"callshield": detector, "rules alone": rules}
        self.others = others
        self.names = [*self.detectors, *others]

    def add(self, name: str, detector: Detector) -> None:
        """Another callshield column (the same detector with something turned off)."""
        self.detectors[name] = detector
        self.names = [*self.detectors, *self.others]

    def categories(self, texts: list[str]) -> dict[str, list[set[str] | bool]]:
        """Per judge, per text: the categories found (callshield, rules) or whether flagged (competitors)."""
        out: dict[str, list] = {}
        for name, detector in self.detectors.items():
            out[name] = [{("personal attack" if f.category in PERSONAL_ATTACK else f.category) for f in detector.screen(t)}
                         for t in texts]
        for name, fn in self.others.items():
            out[name] = fn(texts)
        return out


def caught(result, label: str) -> bool:
    """A line of ``label`` caught: its category found (callshield), flagged at all (competitors)."""
    return label in result if isinstance(result, set) else bool(result)


def header(names: list[str], first: int = 24) -> None:
    print(f"{'':{first}}" + "".join(f"{n:>{WIDTH}}" for n in names))


def category_table(title: str, rows: list[tuple[str, str]], judges: Judges, misses: bool) -> None:
    """Recall per category (of those present) and benign ``none`` lines flagged."""
    texts = [t for _, t in rows]
    results = judges.categories(texts)
    print(f"\n== {title} ({len(rows)} lines): recall per category, benign lines flagged")
    header(judges.names)
    for category in CATEGORIES:
        idx = [i for i, (label, _) in enumerate(rows) if label == category]
        if idx:
            print(f"{category:24}" + "".join(f"{pct(sum(caught(results[n][i], category) for i in idx), len(idx)):>{WIDTH}}"
                                             for n in judges.names))
    benign = [i for i, (label, _) in enumerate(rows) if label == "none"]
    print(f"{'benign flagged':24}" + "".join(f"{pct(sum(bool(results[n][i]) for i in benign), len(benign)):>{WIDTH}}"
                                              for n in judges.names))
    if misses:
        show_misses(judges.detectors["callshield"], rows)


def spoken_table(title: str, rows: list[tuple[str, str]], judges: Judges, misses: bool) -> None:
    texts = [t for _, t in rows]
    results = judges.categories(texts)
    print(f"\n== {title} ({len(rows)} lines)")
    header(judges.names)
    for label, what in (("plain", "plain lines flagged"), ("trigger", "trigger-word lines flagged"), ("toxic", "toxic lines caught")):
        idx = [i for i, (lab, _) in enumerate(rows) if lab == label]
        print(f"{what:24}" + "".join(f"{pct(sum(bool(results[n][i]) for i in idx), len(idx)):>{WIDTH}}" for n in judges.names))
    if misses:
        show_misses(judges.detectors["callshield"], [("none" if lab != "toxic" else "toxic", t) for lab, t in rows])


def show_misses(detector: Detector, rows: list[tuple[str, str]]) -> None:
    for label, text in rows:
        findings = detector.screen(text)
        cats = {("personal attack" if f.category in PERSONAL_ATTACK else f.category) for f in findings}
        if label == "none" and findings:
            print(f"   FALSE ALARM: {text}   {[(f.category, f.rule, f.evidence) for f in findings]}")
        elif label == "toxic" and not findings or label not in ("none", "toxic") and label not in cats:
            print(f"   MISS {label}: {text}   {[f.category for f in findings]}")


def convabuse_table(title: str, messages, judges: Judges, misses: bool) -> None:
    texts = [m.text for m in messages]
    results = judges.categories(texts)
    print(f"\n== {title} ({len(messages)} messages, recognizer-style text)")
    header(judges.names, 40)
    for split in ("train", "validation"):
        for kind, what in (("abuse_agent", "abuse aimed at the agent caught"), ("clean", "clean messages flagged")):
            idx = [i for i, m in enumerate(messages) if m.split == split and m.kind == kind]
            print(f"{split + ': ' + what:40}" + "".join(f"{pct(sum(bool(results[n][i]) for i in idx), len(idx)):>{WIDTH}}"
                                                        for n in judges.names))
    if misses:
        show_misses(judges.detectors["callshield"],
                    [("toxic" if m.kind == "abuse_agent" else "none", m.text) for m in messages if m.kind != "abuse_other"])


def repetition_table(shared: Path, detector: Detector) -> None:
    calls = defaultdict(list)
    for line in (shared / "detection" / "dev_calls.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            item = json.loads(line)
            calls[item["call"]].append(item)
    caught_ = wrong = expected = quiet = early = 0
    for lines in calls.values():
        call = CallScreen(detector)
        fired_at = None
        requests = 0
        for item in lines:
            screening = call.hear(item.get("speaker", "customer"), item["text"], item.get("start", 0.0), item.get("end", 0.0))
            requests += item.get("speaker", "customer") == "customer"
            if fired_at is None and any(f.category == "repetition" for f in screening.findings):
                fired_at = next(f.count for f in screening.findings if f.category == "repetition")
        if lines[0].get("expect_repetition"):
            expected += 1
            caught_ += fired_at is not None
        else:
            quiet += 1
            wrong += fired_at is not None
        early += fired_at is not None and fired_at < 3
    print(f"\n== development calls ({len(calls)}): repetition (callshield only; the others have no notion of a call)")
    print(f"{'caught':24}{pct(caught_, expected):>{WIDTH}}\n{'wrongly raised':24}{pct(wrong, quiet):>{WIDTH}}"
          f"\n{'before the third request':24}{early:>{WIDTH}}")


def noise_table(detector: Detector, sets: dict[str, list[tuple[str, str]]]) -> None:
    """callshield's recall and false alarms with 0, 5 and 10 % recognition errors."""
    from recognizer_noise import Noise

    vocabulary = frozenset(w for rows in sets.values() for _, t in rows for w in t.lower().replace("'", "").split())
    rates = (0.0, 0.05, 0.10)
    print("\n== recognition errors (callshield): words dropped or heard as a similar-sounding word")
    header([f"{int(r * 100)} % of words" for r in rates], 40)
    for name, rows in sets.items():
        harassment = [(label, t) for label, t in rows if label not in ("none", "plain", "trigger")]
        benign = [t for label, t in rows if label in ("none", "plain", "trigger")]
        recall, alarms = [], []
        for rate in rates:
            noise = Noise(rate, vocabulary, seed=11)
            hits = 0
            for label, text in harassment:
                found = {("personal attack" if f.category in PERSONAL_ATTACK else f.category) for f in detector.screen(noise.apply(text))}
                hits += bool(found) if label == "toxic" else label in found
            recall.append(pct(hits, len(harassment)))
            alarms.append(pct(sum(bool(detector.screen(noise.apply(t))) for t in benign), len(benign)))
        print(f"{name + ': caught':40}" + "".join(f"{r:>{WIDTH}}" for r in recall))
        print(f"{name + ': benign flagged':40}" + "".join(f"{a:>{WIDTH}}" for a in alarms))


SEALED_ROUNDS = {2: ("second", "calls_round2"), 7: ("seventh", "calls_round7"), 8: ("eighth", "calls_round8")}
"""The sealed rounds after the first (``tests/detection/sealed/<name>.tsv``), each with its ``--sealed-roundN``."""
CALL_ROUNDS_OPENED = {3: 3, 4: 4, 5: 7, 6: 8}
"""The call-like rounds that are development sets now (``calls_roundN``) and the round at whose end each was opened."""


@dataclasses.dataclass(frozen=True)
class DevelopmentSet:
    """A development set as every benchmark scores it: ``rows`` are ``(label, text)`` without
    the lines rules were written from, insult and integrity as one personal attack (spoken
    sets keep their kinds: plain, trigger, toxic)."""

    name: str
    title: str
    rows: list[tuple[str, str]]
    spoken: bool = False


def development_sets() -> list[DevelopmentSet]:
    """The development sets, in the order they are printed (also ``bench/seed_vote.py``'s)."""

    def rows(name: str) -> list[tuple[str, str]]:
        return [(label, text) for _, label, text in without_provenance(name, written_set(name))]

    sets = [DevelopmentSet("call-like development", "call-like lines written for issue 11 (tests/detection/calls.tsv; development)",
                           scored_rows(rows("calls")))]
    for n, opened in CALL_ROUNDS_OPENED.items():
        sets.append(DevelopmentSet(f"round {n}", f"call-like lines in the recognizer's voice, round {n} (tests/detection/calls_round{n}.tsv; "
                                   f"opened at the end of round {opened}, development since)", scored_rows(rows(f"calls_round{n}"))))
    sets.append(DevelopmentSet("round 8's threat set", "threats and hard benign lines with threat words (tests/detection/threat_words_round8.tsv; "
                               "opened at the end of round 8, development since)", scored_rows(rows("threat_words_round8"))))
    unseen = [(label, text) for number, label, text in heldout_set.rows(unread=True) if number in heldout_set.NEVER_TRAINED_ON]
    sets.append(DevelopmentSet("held-out 17 to 24", "held-out rounds 17 to 24 (tests/detection/heldout.tsv; never trained on)",
                               scored_rows(unseen)))
    sets.append(DevelopmentSet("spoken", "spoken conversation (tests/detection/spoken.tsv; development)", rows("spoken"), spoken=True))
    return sets


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--noise", action="store_true", help="also measure with 5 %% and 10 %% recognition errors")
    parser.add_argument("--misses", action="store_true", help="list callshield's misses and false alarms")
    parser.add_argument("--sealed", action="store_true", help="score the sealed parts opened at the end of issue 11's first round (spent)")
    for n, (which, _) in SEALED_ROUNDS.items():
        parser.add_argument(f"--sealed-round{n}", action="store_true",
                            help=f"score the {which} sealed call-like round (once, at the end of the round it was sealed for)")
    parser.add_argument("--training", action="store_true", help="also score the stage's training sets")
    parser.add_argument("--beside-shipped", action="store_true",
                        help="with --model: a column more, the shipped stage, so both are judged in one sitting")
    parser.add_argument("--without", metavar="ID,ID", type=lambda v: tuple(i for i in v.split(",") if i),
                        help="a column more: the same detector with these rule or exception ids turned off "
                             "([detection] disabled_rules), to show what they do in the same sitting")
    parser.add_argument("--model", type=Path, metavar="semantic.tsv",
                        help="a candidate semantic stage (bench/train_semantic.py --out, its adapter beside it) "
                             "instead of the shipped one")
    args = parser.parse_args()
    shared = shared_dir()
    settings = load_settings(None)
    config = settings.detection_config()
    if args.model:
        from detection.semantic import Head

        detector = Detector(config, encoder=settings.encoder(config.encoder), head=Head.load(path=args.model))
    else:
        detector = settings.detector(config)
    judges = Judges(detector, Detector(dataclasses.replace(config, semantic=False)), competitors())
    if args.beside_shipped:
        if not args.model:
            parser.error("--beside-shipped needs --model (the candidate it stands beside)")
        judges.add("shipped stage", settings.detector(config))
        print("shipped stage: callshield with the shipped semantic stage instead of the candidate")
    if args.without:
        off = dataclasses.replace(config, disabled_rules=(*config.disabled_rules, *args.without))
        judges.add(f"without {len(args.without)} ids", Detector(off, encoder=detector.semantic.encoder, head=detector.semantic.head)
                   if detector.semantic else Detector(off))
        print(f"without {len(args.without)} ids: callshield with {', '.join(args.without)} turned off")
    if detector.semantic is None:
        print("note: [detection] semantic = false in the config: callshield is the rules alone here")
    else:
        own = "".join(f", {c} {t}" for c, t in detector.semantic.thresholds.items())
        print(f"callshield: rules + semantic stage ({args.model or 'shipped'}; encoder {detector.semantic.encoder.name}, "
              f"threshold {detector.semantic.threshold}{own}); rules alone: the same config without the stage.")

    sets = {s.name: s for s in development_sets()}
    for dev in sets.values():
        (spoken_table if dev.spoken else category_table)(dev.title, dev.rows, judges, args.misses)
    repetition_table(shared, detector)
    convabuse_table("ConvAbuse open part (the semantic stage's training data: see bench/cross_validate.py)",
                    [m for m in convabuse_all(shared) if m.kind != "abuse_other"], judges, False)
    if args.training:
        dev = scored_rows(labelled((shared / "detection" / "dev_utterances.tsv").read_text(encoding="utf-8").splitlines()))
        category_table("development utterances (training data)", dev, judges, args.misses)
        trained = [(label, text) for number, label, text in heldout_set.rows(unread=True) if number not in heldout_set.NEVER_TRAINED_ON]
        category_table("held-out rounds 1 to 16 (training data)", scored_rows(trained), judges, args.misses)
    if args.noise:
        noise_table(detector, {"call-like (calls.tsv)": sets["call-like development"].rows,
                               "held-out 17 to 24": sets["held-out 17 to 24"].rows, "spoken (spoken.tsv)": sets["spoken"].rows})
    for n in sorted(SEALED_ROUNDS, reverse=True):
        if getattr(args, f"sealed_round{n}"):
            name = SEALED_ROUNDS[n][1]
            state = "spent: no longer first sight" if name in SPENT else "scored once: list it in bench/quality_sets.py SPENT after this run"
            print(f"\n######## SEALED, ROUND {n} ({state}).")
            category_table(f"SEALED lines, round {n} (tests/detection/sealed/{name}.tsv)",
                           scored_rows([(lab, t) for _, lab, t in written_set(name, "sealed")]), judges, False)
    if args.sealed:
        print("\n######## SEALED PARTS, opened on 2026-12-06 (spent: no longer first sight).")
        category_table("SEALED call-like lines (tests/detection/sealed/calls.tsv)",
                       scored_rows([(lab, t) for _, lab, t in written_set("calls", "sealed")]), judges, False)
        spoken_table("SEALED spoken conversation (tests/detection/sealed/spoken.tsv)",
                     [(lab, t) for _, lab, t in written_set("spoken", "sealed")], judges, False)
        convabuse_table("SEALED ConvAbuse (30 % of conversations; validation-split lines were read before the seal)",
                        [m for m in convabuse_all(shared, part="sealed") if m.kind != "abuse_other"], judges, False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
