"""Train the detector's second stage and write ``detection/models/en/classifier.tsv``.

One logistic regression per category (one against the rest, numpy, full-batch
gradient descent, fixed seed: the same data gives the same file byte for
byte) over the features of :func:`detection.classifier.features`.

Training data (and only these):
- ``tests/detection/heldout.tsv`` rounds 1 to 6 (everything before the
  ``# ---- round 7`` header); round 7 and later are kept for evaluation;
- ``tests/detection/cases.py`` positives and benign lines;
- ``$CALLSHIELD_SHARED/detection/dev_utterances.tsv``;
- the ConvAbuse TRAIN split: abuse aimed at the agent is a weak positive
  (``sexual`` when most annotators marked sexual harassment, else
  ``insult``), clean messages are negatives. The validation split is never read.

Each category's threshold is chosen on out-of-fold probabilities (5 folds of
the training data) so that at most ``--benign-cap`` of the benign training
lines (call-center benign and ConvAbuse clean, each set separately) reach it,
and never below 0.5.

Usage: ``.venv/bin/python bench/train_classifier.py [--out PATH] [--check]``
(``--check``: train, compare with the committed file, exit 1 if different).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests" / "detection"))

from shared_data import convabuse, labelled, shared_dir  # noqa: E402
from detection import Detector  # noqa: E402
from detection.classifier import BIAS, MODEL_FILE, THRESHOLD, features, load_marks, model_dir  # noqa: E402

CATEGORIES = ("threat", "insult", "integrity", "sexual", "demand", "defamation", "privacy")
SIBLINGS = {"insult": "integrity", "integrity": "insult"}  # never negatives for each other
HELDOUT = ROOT / "tests" / "detection" / "heldout.tsv"
SEED = 7
FOLDS = 5
MIN_COUNT = 2
L2 = 1e-3
STEPS = 400
RATE = 0.05
WEAK = 0.5  # weight of a ConvAbuse positive (typed chat, label mapped by us)


def heldout_training_rows() -> list[tuple[str, str, str]]:
    """(label, text, source) of heldout.tsv before round 7."""
    lines = itertools.takewhile(lambda line: not line.startswith("# ---- round 7"),
                                HELDOUT.read_text(encoding="utf-8").splitlines())
    return [(label, text, "call") for label, text in labelled(lines)]


def cases_rows() -> list[tuple[str, str, str]]:
    import cases

    rows = [(label, text, "call") for label, texts in cases.POSITIVE.items() for text in texts]
    rows += [("none", text, "call") for text in cases.BENIGN]
    return [r for r in rows if r[0] in CATEGORIES or r[0] == "none"]


def dev_rows(shared: Path) -> list[tuple[str, str, str]]:
    lines = (shared / "detection" / "dev_utterances.tsv").read_text(encoding="utf-8").splitlines()
    return [(label, text, "call") for label, text in labelled(lines)]


def convabuse_train_rows(shared: Path) -> list[tuple[str, str, str]]:
    """ConvAbuse train: abuse aimed at the agent as weak insult (or sexual) positives, clean as negatives."""
    rows = []
    for m in convabuse(shared / "datasets" / "convabuse" / "ConvAbuseEMNLPtrain.csv"):
        if m.kind == "abuse_agent":
            rows.append(("sexual" if m.sexual else "insult", m.text, "convabuse"))
        elif m.kind == "clean":
            rows.append(("none", m.text, "convabuse"))
    return rows


def fit(rows_idx, cols_idx, n_rows, n_feats, y, weight, mask):
    """Weighted L2 logistic regression on the rows where ``mask``; returns (w, b)."""
    w = np.zeros(n_feats + 1)  # the last one is the bias
    m1 = np.zeros_like(w)
    m2 = np.zeros_like(w)
    sel = mask[rows_idx]
    r_i, c_i = rows_idx[sel], cols_idx[sel]
    sw = np.where(mask, weight, 0.0)
    total = sw.sum()
    for step in range(1, STEPS + 1):
        z = w[-1] + np.bincount(r_i, weights=w[c_i], minlength=n_rows)
        p = 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))
        resid = sw * (p - y) / total
        g = np.empty_like(w)
        g[:-1] = np.bincount(c_i, weights=resid[r_i], minlength=n_feats) + L2 * w[:-1]
        g[-1] = resid.sum()
        m1 = 0.9 * m1 + 0.1 * g
        m2 = 0.999 * m2 + 0.001 * g * g
        w -= RATE * (m1 / (1 - 0.9**step)) / (np.sqrt(m2 / (1 - 0.999**step)) + 1e-8)
    w, b = w[:-1], float(w[-1])
    return w, b


def predict(rows_idx, cols_idx, n_rows, w, b):
    z = b + np.bincount(rows_idx, weights=w[cols_idx], minlength=n_rows)
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))


def train(shared: Path, benign_cap: float) -> tuple[str, list[str]]:
    detector = Detector()
    marks = load_marks("en")
    rows = heldout_training_rows() + cases_rows() + dev_rows(shared) + convabuse_train_rows(shared)
    tokens = [detector.normalized(text).tokens for _, text, _ in rows]
    feats = [sorted({f for f, _, _ in features(t, marks)}) for t in tokens]
    counts: dict[str, int] = {}
    for fs in feats:
        for f in fs:
            counts[f] = counts.get(f, 0) + 1
    vocab = sorted(f for f, c in counts.items() if c >= MIN_COUNT)
    index = {f: i for i, f in enumerate(vocab)}
    r_list, c_list = [], []
    for i, fs in enumerate(feats):
        for f in fs:
            j = index.get(f)
            if j is not None:
                r_list.append(i)
                c_list.append(j)
    rows_idx = np.array(r_list, dtype=np.int64)
    cols_idx = np.array(c_list, dtype=np.int64)
    n, m = len(rows), len(vocab)
    labels = [label for label, _, _ in rows]
    source = np.array([s for _, _, s in rows])
    benign = np.array([label == "none" for label in labels])
    rng = np.random.default_rng(SEED)
    fold = rng.permutation(n) % FOLDS

    lines: list[str] = []
    report: list[str] = [f"training lines: {n} ({int((source == 'call').sum())} call-center, "
                         f"{int((source == 'convabuse').sum())} ConvAbuse train); features: {m}"]
    union_call = np.zeros(n, dtype=bool)
    for category in CATEGORIES:
        y = np.array([1.0 if label == category else 0.0 for label in labels])
        keep = np.array([label != SIBLINGS.get(category) for label in labels])
        n_pos = max(y[keep].sum(), 1.0)
        n_neg = max((1 - y)[keep].sum(), 1.0)
        weight = np.where(y > 0, 0.5 * n_neg / n_pos, 1.0)
        weight = np.where((source == "convabuse") & (y > 0), weight * WEAK, weight)
        oof = np.zeros(n)
        for k in range(FOLDS):
            w, b = fit(rows_idx, cols_idx, n, m, y, weight, keep & (fold != k))
            oof[fold == k] = predict(rows_idx, cols_idx, n, w, b)[fold == k]
        threshold = 0.5
        for group in ("call", "convabuse"):
            scores = np.sort(oof[benign & (source == group)])[::-1]
            allowed = int(np.floor(benign_cap * len(scores)))
            if len(scores) > allowed:
                threshold = max(threshold, float(scores[allowed]) + 1e-4)
        threshold = min(round(threshold, 4), 0.99)
        fired = oof >= threshold
        union_call |= fired & benign
        pos_call = (y > 0) & (source == "call")
        report.append(
            f"{category:11} positives {int(y.sum()):4}  threshold {threshold:.4f}  out-of-fold: "
            f"recall call-center {int((fired & pos_call).sum())}/{int(pos_call.sum())}, "
            f"benign call-center {int((fired & benign & (source == 'call')).sum())}/{int((benign & (source == 'call')).sum())}, "
            f"ConvAbuse clean {int((fired & benign & (source == 'convabuse')).sum())}/{int((benign & (source == 'convabuse')).sum())}"
        )
        w, b = fit(rows_idx, cols_idx, n, m, y, weight, keep)
        lines.append(f"{category}\t{BIAS}\t{b:.4f}")
        lines.append(f"{category}\t{THRESHOLD}\t{threshold:.4f}")
        order = sorted(range(m), key=lambda j: (-round(w[j], 4), vocab[j]))
        lines += [f"{category}\t{vocab[j]}\t{w[j]:.4f}" for j in order if abs(round(w[j], 4)) >= 0.01]
    report.append(f"any category, out-of-fold: benign call-center lines flagged {int(union_call[source == 'call'].sum())}"
                  f"/{int((benign & (source == 'call')).sum())}, ConvAbuse clean {int(union_call[source == 'convabuse'].sum())}"
                  f"/{int((benign & (source == 'convabuse')).sum())}")
    body = "\n".join(lines) + "\n"
    digest = hashlib.sha256(body.encode("utf-8")).hexdigest()
    header = [
        "# callshield detection classifier, English. GENERATED by bench/train_classifier.py; do not edit by hand.",
        "# One logistic regression per category over word unigrams, bigrams and the marks of marks.tsv.",
        "# Format: category<TAB>feature<TAB>weight; <bias> and <threshold> (probability at which it fires)",
        "# per category; features sorted by weight, highest first (the words that push towards the category).",
        *(f"# {line}" for line in report),
        f"# sha256 of the lines below: {digest}",
    ]
    return "\n".join(header) + "\n" + body, report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=model_dir("en") / MODEL_FILE)
    parser.add_argument("--benign-cap", type=float, default=0.002,
                        help="share of benign training lines (per set, out of fold) allowed at or above a threshold")
    parser.add_argument("--check", action="store_true", help="compare with --out instead of writing it")
    args = parser.parse_args()
    text, report = train(shared_dir(), args.benign_cap)
    print("\n".join(report))
    if args.check:
        same = args.out.read_text(encoding="utf-8") == text
        print("model file is up to date" if same else f"model file differs from a fresh training: {args.out}")
        return 0 if same else 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
