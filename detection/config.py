"""The ``[detection]`` config table as a frozen dataclass.

Example (every key optional)::

    [detection]
    language = "en"               # lexicon and suggestion language
    repetition_min = 3            # a request repeated this many times is a finding
    caution_points = 1            # ladder: points at which the partner is warned
    alert_points = 4              # ... at which supervisors are notified
    end_call_points = 10          # ... at which ending the call is recommended
    shouting_over_db = 10.0       # dB above the caller's own baseline that counts as loud
    shouting_min_seconds = 2.0    # loud for at least this long (s) to be shouting
    screen_partials = true        # raise stable findings while the customer is still speaking
    semantic = true               # second stage: judge what the rules miss by meaning (needs the encoder)
    encoder = "all-minilm-l6-v2"  # the semantic stage's sentence encoder: installed name or folder
    semantic_threshold = 0.95     # P(harassment) at which the semantic stage speaks
    semantic_clause_threshold = 0.98  # ... on one clause of a long turn (1.0: whole turns only)
    profanity_caution_strikes = 1 # utterances with abusive language that warn the partner
    profanity_alert_strikes = 3   # ... that notify supervisors (three strikes)
    profanity_points = 1          # ladder points each strike adds besides

    [detection.severity]          # override a category's default severity
    insult = "high"

    [detection.points]            # ladder points per severity
    critical = 6

    [detection.semantic_thresholds]  # the semantic stage's threshold for one category
    threat = 0.9                     # (the others keep semantic_threshold)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping

from kernel.sections import read_section, setting
from detection.errors import DetectionError
from detection.taxonomy import CATEGORIES, DEFAULT_SEVERITY, JUDGED_BY_MEANING, SEVERITIES

DEFAULT_POINTS = MappingProxyType({"low": 1, "medium": 2, "high": 4, "critical": 6})


@dataclass(frozen=True)
class DetectionConfig:
    """Settings of the detector, the repetition counter, shouting and the ladder.

    Attributes:
        language: lexicon language, a folder of ``detection/lexicons/`` (``en``).
        severity: category -> severity overrides (``low`` .. ``critical``);
            categories not listed keep :data:`~detection.taxonomy.DEFAULT_SEVERITY`.
        disabled: categories never reported.
        disabled_rules: ids of rules (``detection/lexicons/<language>/rules.tsv``)
            or exceptions (``exceptions.tsv``) never applied: a site turns off
            one rule that misfires on its callers without losing its
            category; a benchmark shows what a round's rules do. An id the
            lexicon does not have is a configuration error.
        min_score: findings scoring below this (0..1) are dropped.
        repetition_min: occurrences of the same request that make a finding (>= 2).
        repetition_similarity: share (0..1) of content words two requests must
            have in common to be "the same request".
        points: ladder points per severity.
        caution_points: points (sum over the call) that warn the partner.
        alert_points: points that notify supervisors.
        end_call_points: points that recommend ending the call.
        alert_severity: a single finding of this severity or graver alerts
            supervisors at once.
        shouting_over_db: dB above the caller's baseline that count as loud.
        shouting_min_seconds: seconds of sustained loudness that make shouting.
        shouting_gap_seconds: quieter gaps (s) inside one loud stretch that
            do not end it (breaths, pauses between words).
        shouting_baseline_seconds: seconds of the caller's voice needed before
            a baseline is trusted (no shouting finding before that).
        shouting_window_seconds: seconds of recent voice the baseline is the
            median of.
        silence_dbfs: loudness windows below this (dBFS) are silence and
            change nothing.
        screen_partials: screen the customer's live hypotheses (partials) and
            raise stable findings before the utterance ends (see
            :mod:`detection.call`); False: final utterances only.
        semantic: also judge final utterances by meaning (:mod:`detection.semantic`:
            a sentence encoder, its top layers tuned, and a linear model,
            ``detection/models/<language>/``)
            for categories the rules found nothing for. Needs the encoder
            installed (``callshield models install all-minilm-l6-v2``).
        encoder: the sentence encoder: an installed encoder's name or a folder.
        semantic_threshold: probability (0..1) that an utterance is harassment
            at which the semantic stage reports it.
        semantic_clause_threshold: the same probability for one clause of a
            long turn (at least two clauses of four words or more), judged
            when the whole turn did not fire (never below the threshold that
            applies to the category: the higher of the two); 1.0 judges whole
            turns only. 0.98 (the default since round 7 of issue 11,
            ``docs/detection-quality.md``) caught ten more of 474 harassing lines
            in long turns of the development rounds for one more fair request
            flagged among their 314 benign lines.
        semantic_thresholds: category -> its own such probability, for the
            categories it names (the stage's most likely category decides
            which applies); ``bench/cross_validate.py --choose`` chooses
            them on cross-validated verdicts.
        profanity_caution_strikes: utterances with abusive language
            (``profanity`` findings, one strike per utterance) at which the
            partner is warned, whatever the points.
        profanity_alert_strikes: strikes at which supervisors are notified
            (the common three-strikes practice).
        profanity_points: ladder points each strike adds besides (its own,
            lower than any severity's but ``low``); with ``caution_points = 1``
            the first strike warns on points alone, so a site that warns at a
            later strike sets this to 0 and ``profanity_caution_strikes``.
    """

    language: str = "en"
    severity: Mapping[str, str] = setting(default_factory=lambda: MappingProxyType({}), read=lambda v: MappingProxyType(_severity_table(v)))
    disabled: tuple[str, ...] = ()
    disabled_rules: tuple[str, ...] = ()
    min_score: float = 0.5
    repetition_min: int = 3
    repetition_similarity: float = 0.6
    points: Mapping[str, int] = setting(default_factory=lambda: DEFAULT_POINTS,
                                        read=lambda v: MappingProxyType({**DEFAULT_POINTS, **_points_table(v)}))
    caution_points: int = 1
    alert_points: int = 4
    end_call_points: int = 10
    alert_severity: str = "high"
    shouting_over_db: float = 10.0
    shouting_min_seconds: float = 2.0
    shouting_gap_seconds: float = 0.5
    shouting_baseline_seconds: float = 3.0
    shouting_window_seconds: float = 30.0
    silence_dbfs: float = -50.0
    screen_partials: bool = True
    semantic: bool = True
    encoder: str = "all-minilm-l6-v2"
    semantic_threshold: float = 0.95
    semantic_clause_threshold: float = 0.98
    semantic_thresholds: Mapping[str, float] = setting(default_factory=lambda: MappingProxyType({}),
                                                       read=lambda v: MappingProxyType(_thresholds_table(v)))
    profanity_caution_strikes: int = 1
    profanity_alert_strikes: int = 3
    profanity_points: int = 1

    def severity_of(self, category: str) -> str:
        """The severity of ``category`` at this site."""
        return self.severity.get(category) or DEFAULT_SEVERITY[category]

    def points_of(self, severity: str) -> int:
        return int(self.points.get(severity, DEFAULT_POINTS[severity]))

    def points_for(self, category: str, severity: str) -> int:
        """The ladder points a finding adds: abusive language its own, the rest by severity."""
        return self.profanity_points if category == "profanity" else self.points_of(severity)

    @classmethod
    def from_table(cls, table: Mapping[str, Any] | None) -> "DetectionConfig":
        """Build from the ``[detection]`` table; a wrong key or value is a
        :class:`DetectionError` with ``code="bad_config"`` naming it."""
        return read_section(cls, table, section="[detection]", error=lambda message: DetectionError(message, code="bad_config"))

    def check(self) -> None:
        """What the values mean (called by :func:`~kernel.sections.read_section`)."""
        if not self.language.isidentifier():
            raise _bad("language must be a language code such as \"en\"")
        if any(v not in CATEGORIES for v in self.disabled):
            raise _bad(f"disabled must be a list of categories from: {', '.join(CATEGORIES)}")
        if any(not isinstance(v, str) or not re.fullmatch(r"[a-z_]+(\.[a-z_0-9]+)+", v) for v in self.disabled_rules):
            raise _bad("disabled_rules must be a list of rule or exception ids such as \"threat.intimidation\" (rules.tsv, exceptions.tsv)")
        if self.alert_severity not in SEVERITIES:
            raise _bad(f"alert_severity must be one of {', '.join(SEVERITIES)}, not {self.alert_severity!r}")
        if not self.encoder.strip():
            raise _bad("encoder must be an installed encoder's name or a folder")
        if self.repetition_min < 2:
            raise _bad("repetition_min must be at least 2")
        if not 0.0 < self.repetition_similarity <= 1.0:
            raise _bad("repetition_similarity must be in (0, 1]")
        if not 0.0 <= self.min_score <= 1.0:
            raise _bad("min_score must be in [0, 1]")
        if not 0.5 <= self.semantic_threshold < 1.0:
            raise _bad("semantic_threshold must be in [0.5, 1)")
        if not 0.5 <= self.semantic_clause_threshold <= 1.0:
            raise _bad("semantic_clause_threshold must be in [0.5, 1] (1: whole turns only)")
        if self.profanity_points < 0:
            raise _bad("profanity_points must not be negative")
        if not 0 < self.profanity_caution_strikes <= self.profanity_alert_strikes:
            raise _bad("profanity strikes must satisfy 0 < profanity_caution_strikes <= profanity_alert_strikes")
        if not 0 < self.caution_points <= self.alert_points <= self.end_call_points:
            raise _bad("ladder thresholds must satisfy 0 < caution_points <= alert_points <= end_call_points")
        for name in ("shouting_over_db", "shouting_min_seconds", "shouting_baseline_seconds", "shouting_window_seconds"):
            if getattr(self, name) <= 0:
                raise _bad(f"{name} must be positive")
        if self.shouting_gap_seconds < 0:
            raise _bad("shouting_gap_seconds must not be negative")


def _bad(message: str) -> DetectionError:
    return DetectionError(f"[detection] {message}", code="bad_config")


def _severity_table(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ValueError("severity must be a table of category = severity")
    out = {}
    for category, severity in value.items():
        if category not in CATEGORIES:
            raise ValueError(f"severity: unknown category {category!r}; known: {', '.join(CATEGORIES)}")
        if severity not in SEVERITIES:
            raise ValueError(f"severity.{category} must be one of {', '.join(SEVERITIES)}, not {severity!r}")
        out[category] = severity
    return out


def _thresholds_table(value: Any) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise ValueError("semantic_thresholds must be a table of category = probability")
    out = {}
    for category, threshold in value.items():
        if category not in JUDGED_BY_MEANING:
            raise ValueError(f"semantic_thresholds: {category!r} is not judged by meaning; "
                             f"known: {', '.join(JUDGED_BY_MEANING)}")
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.5 <= threshold < 1.0:
            raise ValueError(f"semantic_thresholds.{category} must be a probability in [0.5, 1), not {threshold!r}")
        out[category] = float(threshold)
    return out


def _points_table(value: Any) -> dict[str, int]:
    if not isinstance(value, Mapping):
        raise ValueError("points must be a table of severity = points")
    out = {}
    for severity, points in value.items():
        if severity not in SEVERITIES:
            raise ValueError(f"points: unknown severity {severity!r}; known: {', '.join(SEVERITIES)}")
        if isinstance(points, bool) or not isinstance(points, int) or points < 0:
            raise ValueError(f"points.{severity} must be a whole number >= 0, not {points!r}")
        out[severity] = points
    return out
