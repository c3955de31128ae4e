"""Detection quality: callshield against alt-profanity-check and better-profanity.

"callshield" is the full detector as the commands build it
(``load_settings(None).detector()``: rules + semantic stage); "rules alone" is
the same config without the sentence encoder. Prints, side by side in one run:
- the development utterances (``shared/detection/dev_utterances.tsv``): recall
  per category (share of that category's utterances flagged; for callshield,
  flagged with the right category, insult and integrity counting as one
  "personal attack") and the false-alarm rate on benign utterances;
- the held-out utterances (``tests/detection/heldout.tsv``), written apart from
  the detector in rounds, scored the same way in two tables: rounds 17 to 24,
  which no model has trained on (what the detector does with words it never
  saw), and rounds 1 to 16 (training data of the semantic stage);
- the development calls (``dev_calls.jsonl``): repetition caught / wrongly raised;
- the ConvAbuse validation split (real users abusing service agents):
  recall on abuse aimed at the agent (majority of annotators: abusive and
  aimed at the system) and the false-alarm rate on clean messages (majority:
  not abusive). Typed chat is first made recognizer-like (lowercase, no
  punctuation or emoji markup).

The competitors only say "profane or not", so for them a category's recall is
the share of its utterances they flag at all.

The semantic stage was trained (``bench/train_semantic.py``) on the
development utterances, held-out rounds 1 to 16 and the clean messages of the
ConvAbuse TRAIN split: of these tables, held-out rounds 17 to 24 and ConvAbuse
validation are unseen by it (the rules were never fitted to either). ``--train`` scores the
ConvAbuse train split too; its clean messages are the stage's training data.

Data: ``$CALLSHIELD_SHARED`` or ``../shared`` beside the repository.
Competitors: ``.venv/bin/pip install alt-profanity-check better-profanity``.

    .venv/bin/python bench/detection_quality.py [--train] [--misses]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests" / "detection"))

import heldout_set  # noqa: E402
from shared_data import convabuse as read_convabuse, labelled, shared_dir  # noqa: E402
from agent.settings import load_settings  # noqa: E402
from detection import CallScreen, Detector  # noqa: E402

PERSONAL_ATTACK = {"insult", "integrity"}
DEV_CATEGORIES = ["threat", "personal attack", "sexual", "demand", "defamation", "privacy"]


def competitors():
    out = {}
    try:
        from profanity_check import predict

        out["alt-profanity-check"] = lambda texts: [bool(x) for x in predict(list(texts))]
    except ImportError:
        print("(alt-profanity-check not installed: pip install alt-profanity-check)", file=sys.stderr)
    try:
        from better_profanity import profanity

        profanity.load_censor_words()
        out["better-profanity"] = lambda texts: [profanity.contains_profanity(t) for t in texts]
    except ImportError:
        print("(better-profanity not installed: pip install better-profanity)", file=sys.stderr)
    return out


def scored_rows(rows) -> list[tuple[str, str]]:
    """``(label, text)`` rows with insult and integrity as one "personal attack"."""
    return [("personal attack" if label in PERSONAL_ATTACK else label, text) for label, text in rows]


def dev_utterances(path: Path) -> list[tuple[str, str]]:
    return scored_rows(labelled(path.read_text(encoding="utf-8").splitlines()))


def callshield_hits(detector: Detector, rows):
    """For each (label, text): (caught with the right category, flagged at all, findings)."""
    out = []
    for label, text in rows:
        findings = detector.screen(text)
        cats = {("personal attack" if f.category in PERSONAL_ATTACK else f.category) for f in findings}
        out.append((label in cats, bool(findings), findings))
    return out


def convabuse(path: Path):
    """(text, kind) with kind 'abuse_agent', 'abuse_other' or 'clean' (ambiguous rows dropped)."""
    return [(m.text, m.kind) for m in read_convabuse(path)]


def pct(n: int, d: int) -> str:
    return f"{100.0 * n / d:5.1f}% ({n}/{d})" if d else "   n/a"


def recall_table(rows, caught, flagged, names, width) -> None:
    """One column per name: recall per category (``caught[name][i]``: line i caught
    with its category) and false alarms (``flagged[name][i]``: benign line i flagged)."""
    print(f"{'':18}" + "".join(f"{n:>{width}}" for n in names))
    for category in DEV_CATEGORIES:
        idx = [i for i, (label, _) in enumerate(rows) if label == category]
        print(f"{category:18}" + "".join(f"{pct(sum(caught[n][i] for i in idx), len(idx)):>{width}}" for n in names))
    benign = [i for i, (label, _) in enumerate(rows) if label == "none"]
    print(f"{'false alarms':18}" + "".join(f"{pct(sum(flagged[n][i] for i in benign), len(benign)):>{width}}" for n in names))


def utterance_table(title, rows, detectors, others, names, width, misses) -> None:
    """Recall per category and false alarms on benign lines, side by side;
    ``misses`` lists those of the first detector (callshield)."""
    texts = [t for _, t in rows]
    flagged, alarms = {}, {}
    hits = {}
    for name, detector in detectors.items():
        hits[name] = callshield_hits(detector, rows)
        flagged[name] = [hit for hit, _, _ in hits[name]]
        alarms[name] = [any_ for _, any_, _ in hits[name]]
    for name, fn in others.items():
        res = fn(texts)
        flagged[name] = res
        alarms[name] = res
    print(f"\n== {title} ({len(rows)}): recall per category, false alarms on benign")
    recall_table(rows, flagged, alarms, names, width)
    if misses:
        for (label, text), (hit, any_, findings) in zip(rows, hits[next(iter(detectors))]):
            if label != "none" and not hit:
                print(f"   MISS {label}: {text}   {[f.category for f in findings]}")
            if label == "none" and any_:
                print(f"   FALSE ALARM: {text}   {[(f.category, f.rule, f.evidence) for f in findings]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", action="store_true", help="also score the ConvAbuse train split")
    parser.add_argument("--misses", action="store_true", help="list callshield's misses and false alarms")
    args = parser.parse_args()
    shared = shared_dir()
    settings = load_settings(None)
    config = settings.detection_config()
    detector = settings.detector(config)
    detectors = {"callshield": detector, "rules alone": Detector(config)}
    others = competitors()
    names = [*detectors, *others]
    width = 22
    if detector.semantic is None:
        print("note: [detection] semantic = false in the config: callshield is the rules alone here")
    else:
        print(f"callshield: rules + semantic stage (encoder {detector.semantic.encoder.name}, threshold "
              f"{detector.semantic.threshold}); rules alone: the same config without the encoder.")
        print("note: the development utterances and held-out rounds 1 to 16 are training data of the semantic stage "
              "(so are ConvAbuse TRAIN's clean messages); held-out rounds 17 to 24 and ConvAbuse validation are unseen by it.")

    # ---------------------------------------------------------- development + held-out utterances
    utterance_table(
        "development utterances (semantic stage: training data)", dev_utterances(shared / "detection" / "dev_utterances.tsv"),
        detectors, others, names, width, args.misses,
    )
    heldout = heldout_set.rows()
    unseen = [(label, text) for number, label, text in heldout if number in heldout_set.NEVER_TRAINED_ON]
    trained = [(label, text) for number, label, text in heldout if number not in heldout_set.NEVER_TRAINED_ON]
    utterance_table(
        "held-out rounds 17 to 24 (tests/detection/heldout.tsv; never trained on)", scored_rows(unseen),
        detectors, others, names, width, args.misses,
    )
    utterance_table(
        "held-out rounds 1 to 16 (tests/detection/heldout.tsv; semantic stage: training data)", scored_rows(trained),
        detectors, others, names, width, args.misses,
    )

    # ---------------------------------------------------------- development calls (repetition)
    calls = defaultdict(list)
    for line in (shared / "detection" / "dev_calls.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            item = json.loads(line)
            calls[item["call"]].append(item)
    caught = wrong = expected = quiet = 0
    for lines in calls.values():
        call = CallScreen(detector)
        fired = False
        for item in lines:
            screening = call.hear(item.get("speaker", "customer"), item["text"], item.get("start", 0.0), item.get("end", 0.0))
            fired |= any(f.category == "repetition" for f in screening.findings)
        if lines[0].get("expect_repetition"):
            expected += 1
            caught += fired
        else:
            quiet += 1
            wrong += fired
    print(f"\n== development calls ({len(calls)}): repetition (callshield only; the others have no notion of a call)")
    print(f"{'caught':18}{pct(caught, expected):>{width}}\n{'wrongly raised':18}{pct(wrong, quiet):>{width}}")

    # ---------------------------------------------------------- ConvAbuse
    splits = [("validation", "ConvAbuseEMNLPvalid.csv")] + ([("train", "ConvAbuseEMNLPtrain.csv")] if args.train else [])
    for split, filename in splits:
        data = convabuse(shared / "datasets" / "convabuse" / filename)
        texts = [t for t, _ in data]
        results = {name: [bool(d.screen(t)) for t in texts] for name, d in detectors.items()}
        for name, fn in others.items():
            results[name] = fn(texts)
        agent = [i for i, (_, k) in enumerate(data) if k == "abuse_agent"]
        other = [i for i, (_, k) in enumerate(data) if k == "abuse_other"]
        clean = [i for i, (_, k) in enumerate(data) if k == "clean"]
        seen = "never trained on" if split == "validation" else "its clean messages: semantic stage training data"
        print(f"\n== ConvAbuse {split} ({len(data)} messages, recognizer-style text; {seen})")
        print(f"{'':26}" + "".join(f"{n:>{width}}" for n in names))
        print(f"{'abuse aimed at the agent':26}" + "".join(f"{pct(sum(results[n][i] for i in agent), len(agent)):>{width}}" for n in names))
        print(f"{'abuse aimed at others':26}" + "".join(f"{pct(sum(results[n][i] for i in other), len(other)):>{width}}" for n in names))
        print(f"{'false alarms on clean':26}" + "".join(f"{pct(sum(results[n][i] for i in clean), len(clean)):>{width}}" for n in names))
        if args.misses:
            for i in agent:
                if not results["callshield"][i]:
                    print(f"   MISS: {texts[i]}")
            for i in clean:
                if results["callshield"][i]:
                    print(f"   FALSE ALARM: {texts[i]}   {[(f.category, f.rule, f.evidence) for f in detector.screen(texts[i])]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
