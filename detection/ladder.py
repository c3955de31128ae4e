"""The escalation ladder of one call (policy, "Responding to customer harassment").

Every finding adds points by its severity (``[detection.points]``), except
that findings of one utterance whose spans overlap are one act said once: the
same words read as two categories ("do you have a boyfriend": sexual and
privacy) count the points of the gravest of them only. The call
climbs, never descends: ``caution`` (the partner is warned on screen, with a
sentence they may say) at ``caution_points``; ``alert`` (supervisors are
notified) at ``alert_points`` or at once for a finding of ``alert_severity``
or graver; ``end_call_recommended`` at ``end_call_points`` (a supervisor may
then authorize ending the call).

Abusive language (``profanity``) is counted in strikes as well, one per
utterance however many words: the common three-strikes practice warns the
partner at ``profanity_caution_strikes`` (the first, by default) and notifies
supervisors at ``profanity_alert_strikes`` (the third), whatever the points;
each strike also adds ``profanity_points`` (1) to the call's points.
Suggested sentences are data:
``detection/suggestions/<language>.json``, per level and category.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Mapping

from detection.config import DetectionConfig
from detection.errors import DetectionError
from detection.findings import Finding, LevelChange
from detection.taxonomy import LEVELS, level_rank, severity_rank
from kernel.levels import category_words


def load_suggestions(language: str) -> Mapping[str, Mapping[str, str]]:
    """``{level: {category or "default": sentence}}`` from the suggestions file."""
    path = Path(str(resources.files("detection") / "suggestions" / f"{language}.json"))
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DetectionError(f"no suggestions for language {language!r}: {path}", code="bad_config") from exc
    except json.JSONDecodeError as exc:
        raise DetectionError(f"{path.name}: not valid JSON: {exc}", code="bad_lexicon") from exc
    for level in LEVELS[1:]:
        if not isinstance(data.get(level), dict) or "default" not in data[level]:
            raise DetectionError(f"{path.name}: needs a {level!r} table with a \"default\" sentence", code="bad_lexicon")
    return data


@dataclass
class EscalationLadder:
    """One per call."""

    config: DetectionConfig
    suggestions: Mapping[str, Mapping[str, str]]
    level: str = "none"
    points: int = 0
    _counts: dict = field(default_factory=dict)

    @property
    def strikes(self) -> int:
        """Utterances with abusive language so far (the detector gives at most one ``profanity`` finding each)."""
        return self._counts.get("profanity", 0)

    def add(self, findings: tuple[Finding, ...] | list[Finding]) -> LevelChange | None:
        """Count ``findings``; the change of level they cause, if any."""
        if not findings:
            return None
        previous = self.level
        target = previous
        worst = max(findings, key=lambda f: (severity_rank(f.severity), f.score))
        for finding in findings:
            self._counts[finding.category] = self._counts.get(finding.category, 0) + 1
        self.points += sum(max(self.config.points_for(f.category, f.severity) for f in act) for act in _acts(findings))
        cfg = self.config
        if self.points >= cfg.end_call_points:
            target = _higher(target, "end_call_recommended")
        if (self.points >= cfg.alert_points or severity_rank(worst.severity) >= severity_rank(cfg.alert_severity)
                or self.strikes >= cfg.profanity_alert_strikes):
            target = _higher(target, "alert")
        if self.points >= cfg.caution_points or self.strikes >= cfg.profanity_caution_strikes:
            target = _higher(target, "caution")
        if target == previous:
            return None
        self.level = target
        table = self.suggestions.get(target, {})
        return LevelChange(
            level=target,
            previous=previous,
            reason=self._reason(worst),
            suggestion=table.get(worst.category) or table.get("default", ""),
            at=max(f.end for f in findings),
            category=worst.category,
        )

    def _reason(self, worst: Finding) -> str:
        """Why the level moved, in plain words for the partner and supervisors
        (``A threat: "i know where you live". So far on this call: an insult, a threat.``)."""
        said = f": \"{worst.evidence}\"" if worst.evidence else ""
        strikes = ""
        if worst.category == "profanity":
            alert_at = self.config.profanity_alert_strikes
            strikes = f", strike {self.strikes} of {alert_at}" if self.strikes <= alert_at else f", {self.strikes} strikes"
        tally = ", ".join(category_words(c) if n == 1 else f"{category_words(c)} ({n} times)" for c, n in self._counts.items())
        return f"{category_words(worst.category, capitalized=True)}{said}{strikes}. So far on this call: {tally}."


def _acts(findings) -> list[list[Finding]]:
    """Group findings whose spans overlap in the same utterance (same text and
    time); a finding without a span (repetition, shouting) is an act of its own."""
    acts: list[list[Finding]] = []
    for finding in sorted(findings, key=lambda f: (f.start, f.text, f.span or (-1, -1))):
        last = acts[-1][-1] if acts else None
        if (last is not None and finding.span is not None and last.span is not None
                and (last.start, last.end, last.text) == (finding.start, finding.end, finding.text)
                and finding.span[0] < max(f.span[1] for f in acts[-1] if f.span)):
            acts[-1].append(finding)
        else:
            acts.append([finding])
    return acts


def _higher(a: str, b: str) -> str:
    return a if level_rank(a) >= level_rank(b) else b
