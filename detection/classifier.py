"""A second opinion for what the rules miss: one small linear model per category.

The rules cannot list every open-class word a caller may use ("you absolute
clown", "you halfwit"). This stage scores the normalized words with a
logistic regression per category over word unigrams, bigrams and three
structural marks (``<you>``: the partner is addressed; ``<other>``: a
product, company, the caller or a third person is named; ``<neg>``: a
negation is present). The weights are a data file,
``detection/models/<language>/classifier.tsv``, written by
``bench/train_classifier.py`` and readable by a reviewer: one line per
category and feature, highest weights first, plus each category's bias and
firing threshold.

It only speaks when the rules found nothing for a category (see
:class:`~detection.detector.Detector`), and only above a high threshold, and
its evidence is the words that pushed the score up most.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from detection.errors import DetectionError

MODEL_FILE = "classifier.tsv"
BIAS = "<bias>"
THRESHOLD = "<threshold>"
MARKS_FILE = "marks.tsv"
FUNCTION = "<function>"  # not a mark: words that make no feature on their own
_EVIDENCE_WORDS = 3


def model_dir(language: str) -> Path:
    return Path(__file__).with_name("models") / language


def load_marks(language: str = "en", path: Path | None = None) -> dict[str, frozenset[str]]:
    """The structural marks (``marks.tsv``): mark -> its words."""
    path = path or model_dir(language) / MARKS_FILE
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DetectionError(f"classifier marks not readable: {path}: {exc.strerror}", code="bad_model") from exc
    marks: dict[str, set[str]] = {}
    for line in lines:
        if line.strip() and not line.startswith("#"):
            name, _, words = line.partition("\t")
            marks.setdefault(name.strip(), set()).update(w.strip() for w in words.split(",") if w.strip())
    return {name: frozenset(words) for name, words in marks.items()}


def features(tokens: tuple[str, ...] | list[str], marks: Mapping[str, frozenset[str]]) -> list[tuple[str, int, int]]:
    """The features of an utterance, each with the word range ``[first, last]`` it covers
    (structural marks cover nothing: ``-1, -1``). Shared by training and screening."""
    function = marks.get(FUNCTION, frozenset())
    out: list[tuple[str, int, int]] = []
    for i, token in enumerate(tokens):
        content = token not in function
        if content:
            out.append((token, i, i))
        if i and (content or tokens[i - 1] not in function):
            out.append((tokens[i - 1] + " " + token, i - 1, i))
    present = set(tokens)
    for name, words in marks.items():
        if name != FUNCTION and not present.isdisjoint(words):
            out.append((name, -1, -1))
    return out


@dataclass(frozen=True)
class Verdict:
    """The model's opinion on one category.

    Attributes:
        category: the category scored.
        probability: 0..1.
        fired: probability at or above the category's threshold.
        words: ``(first, last)`` word indices of the evidence, best first.
    """

    category: str
    probability: float
    fired: bool
    words: tuple[tuple[int, int], ...]


class Classifier:
    """Per-category weights, loaded once; immutable and thread-safe."""

    def __init__(self, weights: Mapping[str, Mapping[str, float]], bias: Mapping[str, float],
                 threshold: Mapping[str, float], marks: Mapping[str, frozenset[str]]) -> None:
        self.marks = dict(marks)
        self.weights = {c: dict(w) for c, w in weights.items()}
        self.bias = dict(bias)
        self.threshold = dict(threshold)
        self.categories = tuple(sorted(self.weights))

    @classmethod
    def load(cls, language: str = "en", path: Path | None = None) -> "Classifier":
        """Read ``classifier.tsv``; a missing or malformed file is a
        :class:`DetectionError` with ``code="bad_model"``."""
        path = path or model_dir(language) / MODEL_FILE
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise DetectionError(f"classifier model not readable: {path}: {exc.strerror}", code="bad_model") from exc
        weights: dict[str, dict[str, float]] = {}
        bias: dict[str, float] = {}
        threshold: dict[str, float] = {}
        for number, line in enumerate(lines, 1):
            if not line.strip() or line.startswith("#"):
                continue
            parts = line.split("\t")
            try:
                category, feature, value = parts[0], parts[1], float(parts[2])
            except (IndexError, ValueError):
                raise DetectionError(f"{path}:{number}: expected category<TAB>feature<TAB>weight", code="bad_model") from None
            if feature == BIAS:
                bias[category] = value
            elif feature == THRESHOLD:
                threshold[category] = value
            else:
                weights.setdefault(category, {})[feature] = value
        for category in weights:
            if category not in bias or category not in threshold:
                raise DetectionError(f"{path}: category {category} lacks {BIAS} or {THRESHOLD}", code="bad_model")
        return cls(weights, bias, threshold, load_marks(language, path.with_name(MARKS_FILE)))

    def judge(self, tokens: tuple[str, ...] | list[str], categories: Iterable[str]) -> list[Verdict]:
        """Score the normalized words for each of ``categories`` the model knows."""
        feats = features(tokens, self.marks)
        out = []
        for category in categories:
            weights = self.weights.get(category)
            if weights is None:
                continue
            z = self.bias[category]
            contributions: list[tuple[float, int, int]] = []
            for feature, first, last in feats:
                w = weights.get(feature)
                if w is not None:
                    z += w
                    if w > 0 and first >= 0:
                        contributions.append((w, first, last))
            probability = 1.0 / (1.0 + math.exp(-z)) if z > -30 else 0.0
            fired = probability >= self.threshold[category]
            words: tuple[tuple[int, int], ...] = ()
            if fired:
                contributions.sort(key=lambda c: (-c[0], c[1]))
                words = tuple((f, l) for _, f, l in contributions[:_EVIDENCE_WORDS])
            out.append(Verdict(category, probability, fired, words))
        return out
