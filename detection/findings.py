"""What the detector reports: findings, escalation level changes, screenings."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    """One piece of harassment found in a customer's words or voice.

    Attributes:
        category: one of :data:`detection.taxonomy.CATEGORIES`.
        subtype: for ``demand``: ``undue``, ``beyond_contract``, ``apology`` or
            ``face_to_face``; otherwise None.
        severity: ``low``, ``medium``, ``high`` or ``critical``.
        score: confidence of the rule, 0.0 to 1.0.
        span: ``(first, last)`` character offsets into ``text`` (last exclusive),
            or None for call-level and acoustic findings.
        evidence: the words that triggered it; for repetition the repeated
            request; for shouting e.g. ``"+14 dB over 6.0 s"``.
        rule: the rule id or reason, e.g. ``threat.violence_to_you``.
        start: start of the utterance or loud stretch, seconds of audio time.
        end: end of the utterance or loud stretch, seconds of audio time.
        text: the utterance text ("" for shouting).
        count: repetition only: how many times the request was made so far.
        since: repetition only: start of the first occurrence, seconds of audio time.
        why: for the categories that count only when aimed at the partner
            (threat, insult, integrity, sexual, privacy): whom the words are
            aimed at and the words that decided it (:mod:`detection.aim`),
            e.g. ``aimed at the partner: 'youre a'``; "" otherwise.
    """

    category: str
    subtype: str | None
    severity: str
    score: float
    span: tuple[int, int] | None
    evidence: str
    rule: str
    start: float = 0.0
    end: float = 0.0
    text: str = ""
    count: int | None = None
    since: float | None = None
    why: str = ""

    def to_dict(self) -> dict:
        """The finding as ``callshield detect`` writes it (and the console stores it)."""
        out = {
            "category": self.category,
            "subtype": self.subtype,
            "severity": self.severity,
            "score": round(self.score, 3),
            "span": list(self.span) if self.span is not None else None,
            "evidence": self.evidence,
            "rule": self.rule,
        }
        if self.why:
            out["why"] = self.why
        if self.count is not None:
            out["count"] = self.count
            out["since"] = self.since
        return out


@dataclass(frozen=True)
class LevelChange:
    """The call's escalation level went up.

    Attributes:
        level: the new level: ``caution``, ``alert`` or ``end_call_recommended``.
        previous: the level before (``none`` at the first finding).
        reason: why, in words, for the partner and supervisors.
        suggestion: a sentence the partner may say now (from
            ``detection/suggestions/<language>.json``), "" if none.
        at: seconds of audio time when the level changed (end of the finding).
        category: the category of the finding that moved the level, or None.
    """

    level: str
    previous: str
    reason: str
    suggestion: str
    at: float
    category: str | None = None


@dataclass(frozen=True)
class Screening:
    """The result of hearing one utterance or one loudness window of a call.

    Attributes:
        findings: the new findings (empty when nothing was found).
        level_change: set when these findings moved the call up the ladder.
    """

    findings: tuple[Finding, ...] = ()
    level_change: LevelChange | None = None


@dataclass(frozen=True)
class Dropped:
    """A candidate the detector's checks ruled out, and why (``callshield detect --explain``).

    Attributes:
        category: the category it would have been.
        rule: the rule id, or ``semantic.<category>``.
        evidence: the words, as normalized.
        reason: why it does not count: ``negated``, ``an idiom or a legitimate
            request``, or whom the words are aimed at (``reported speech: 'he goes'``).
    """

    category: str
    rule: str
    evidence: str
    reason: str
