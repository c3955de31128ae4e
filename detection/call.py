"""One call's screening: utterances and loudness in, findings and ladder moves out."""

from __future__ import annotations

from detection.config import DetectionConfig
from detection.detector import Detector
from detection.errors import DetectionError
from detection.findings import Finding, Screening
from detection.ladder import EscalationLadder
from detection.repetition import RepetitionCounter
from detection.shouting import ShoutingMeter

_SPEAKERS = ("customer", "partner")


class CallScreen:
    """Screens one call, in order: what the customer says is screened, what the
    partner says is context (a "can you repeat that" excuses the next repeat).

    The detector's data (lexicon, repetition words, suggestions) is shared;
    ``config`` (default: the detector's) sets this call's thresholds.
    Not thread-safe: one call is heard by one task. Times are seconds of audio time.
    """

    def __init__(self, detector: Detector, config: DetectionConfig | None = None) -> None:
        self.detector = detector
        self.config = config or detector.config
        self._repetition = RepetitionCounter(detector.repetition_words, self.config)
        self._shouting = ShoutingMeter(self.config)
        self._ladder = EscalationLadder(self.config, detector.suggestions)
        self._findings: list[Finding] = []

    @property
    def level(self) -> str:
        """The call's current level: ``none``, ``caution``, ``alert`` or ``end_call_recommended``."""
        return self._ladder.level

    @property
    def findings(self) -> tuple[Finding, ...]:
        """Every finding of the call so far, in the order they were made."""
        return tuple(self._findings)

    @property
    def points(self) -> int:
        return self._ladder.points

    def hear(self, speaker: str, text: str, start: float, end: float) -> Screening:
        """One final utterance of ``speaker`` (``customer`` or ``partner``)."""
        _check_speaker(speaker)
        if speaker == "partner":
            self._repetition.hear_partner(text)
            return Screening()
        findings = list(self.detector.screen(text, start=start, end=end))
        if "repetition" not in self.config.disabled:
            repeated = self._repetition.hear_customer(text, start, end)
            if repeated is not None:
                findings.append(repeated)
        return self._record(findings)

    def hear_loudness(self, speaker: str, start: float, end: float, dbfs: float) -> Screening:
        """One loudness window (dBFS over ``start``..``end``) of ``speaker``'s channel;
        only the customer's voice is judged."""
        _check_speaker(speaker)
        if speaker != "customer" or "shouting" in self.config.disabled:
            return Screening()
        finding = self._shouting.hear(start, end, dbfs)
        return self._record([finding] if finding is not None else [])

    def _record(self, findings: list[Finding]) -> Screening:
        if not findings:
            return Screening()
        self._findings.extend(findings)
        return Screening(tuple(findings), self._ladder.add(findings))


def _check_speaker(speaker: str) -> None:
    if speaker not in _SPEAKERS:
        raise DetectionError(f"speaker must be 'customer' or 'partner', not {speaker!r}", code="bad_speaker")
