"""One call's screening: utterances and loudness in, findings and ladder moves out.

Early findings (alerts while the customer is still speaking): the
transcriber's live hypothesis of the utterance in progress (a *partial*) may
be screened too, with :meth:`CallScreen.hear_partial`, so a threat is raised
when its words are heard rather than when the customer stops talking. A
partial may still change, so a finding in it is raised early only when it is
*stable*:

- its evidence is followed by at least one more content word in the partial:
  function words that often carry a phrase into an idiom (``PARTIAL_HOLD``
  in the language's ``lists.tsv``: "a", "an", "the", "to", "for", ...) are
  looked past, so "i will find you" of "i will find you a better deal" and
  "shoot you" of "i'm going to shoot you an email" are held until a content
  word is heard, and never raised if the rule no longer fires then;
- it was not raised already for this utterance in progress (per speaker):
  not the same category, rule and evidence words, nor, since an utterance
  yields at most one finding per category and subtype (as the detector's
  best on a final), another finding of the same category and subtype (the
  evidence grew, or a better rule of that category took over as more words
  came). Each act is counted on the ladder once, as on finals.

Only the customer's partials are screened; repetition is never judged on
partials (it is call-level: finals only). Early findings go up the ladder
like any other, so a partial may move the level. When the final utterance
arrives (:meth:`CallScreen.hear`), findings already raised early for it are
not raised again (matched on category and rule, or category and subtype: the
evidence may differ a little between partial and final), the rest are, and
the speaker's partial state starts afresh. A partial whose ``start`` differs
from the utterance in progress begins a new one (the previous final was
lost). ``[detection] screen_partials = false`` turns early findings off
(finals only). Screening a partial costs what screening an utterance costs;
the transcriber throttles partials (at most one per speaker every 300 ms).

What stays weak: stability is one content word of lookahead, so an idiom
recognized only further on is raised early and cannot be taken back when the
final excuses it. Partials are screened by the rules alone, so a word read
in a harmless sense on the final (``detection.senses``: "i beat you fair and
square") may have been raised early from the partial all the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from detection.config import DetectionConfig
from detection.detector import Detector
from detection.errors import DetectionError
from detection.findings import Finding, Screening
from detection.ladder import EscalationLadder
from detection.repetition import RepetitionCounter
from detection.shouting import ShoutingMeter
from detection.text import normalize

_SPEAKERS = ("customer", "partner")


@dataclass
class _InProgress:
    """What was raised early for one speaker's utterance in progress.

    ``start``: the utterance's start (seconds of audio time) as its partials give it;
    ``raised``: the early findings."""

    start: float
    raised: list[Finding] = field(default_factory=list)

    def already(self, finding: Finding) -> bool:
        """Whether ``finding`` (of a partial or of the final) was raised early:
        same category and rule (whatever its evidence), or same category and subtype."""
        return any(
            held.category == finding.category and (held.rule == finding.rule or held.subtype == finding.subtype)
            for held in self.raised
        )


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
        self._hold = detector.lists.words("PARTIAL_HOLD")
        self._shouting = ShoutingMeter(self.config)
        self._ladder = EscalationLadder(self.config, detector.suggestions)
        self._findings: list[Finding] = []
        self._in_progress: dict[str, _InProgress] = {}  # speaker -> early findings of the utterance being spoken

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

    def hear(self, speaker: str, text: str, start: float, end: float, *, dropped: list | None = None) -> Screening:
        """One final utterance of ``speaker`` (``customer`` or ``partner``).
        Findings already raised early from its partials are not raised again.
        ``dropped``: receives the candidates the detector's checks ruled out
        (:meth:`Detector.screen`)."""
        _check_speaker(speaker)
        if speaker == "partner":
            self._repetition.hear_partner(text)
            return Screening()
        early = self._in_progress.pop(speaker, None)
        findings = list(self.detector.screen(text, start=start, end=end, dropped=dropped))
        if early is not None:
            findings = [f for f in findings if not early.already(f)]
        if "repetition" not in self.config.disabled:
            repeated = self._repetition.hear_customer(text, start, end)
            if repeated is not None:
                findings.append(repeated)
        return self._record(findings)

    def hear_partial(self, speaker: str, text: str, start: float, end: float) -> Screening:
        """The live hypothesis of ``speaker``'s utterance in progress: ``start``
        is the utterance's start, ``end`` the audio time the partial reaches.
        Stable findings in it are raised early (see the module docstring);
        the partner's partials and repetition are not judged."""
        _check_speaker(speaker)
        if speaker != "customer" or not self.config.screen_partials:
            return Screening()
        state = self._in_progress.get(speaker)
        if state is None or state.start != start:
            state = self._in_progress[speaker] = _InProgress(start)
        fresh = []
        for finding in self.detector.screen(text, start=start, end=end, semantic=False):  # rules alone: microseconds, on the loop
            if finding.span is None or not self._settled(text, finding.span[1]):
                continue  # the next words may still turn it into something else
            if state.already(finding):
                continue
            state.raised.append(finding)
            fresh.append(finding)
        return self._record(fresh)

    def hear_loudness(self, speaker: str, start: float, end: float, dbfs: float) -> Screening:
        """One loudness window (dBFS over ``start``..``end``) of ``speaker``'s channel;
        only the customer's voice is judged."""
        _check_speaker(speaker)
        if speaker != "customer" or "shouting" in self.config.disabled:
            return Screening()
        finding = self._shouting.hear(start, end, dbfs)
        return self._record([finding] if finding is not None else [])

    def _settled(self, text: str, offset: int) -> bool:
        """Whether a content word (not in ``PARTIAL_HOLD``) follows ``offset`` in ``text``."""
        return any(word not in self._hold for word in normalize(text[offset:]).tokens)

    def _record(self, findings: list[Finding]) -> Screening:
        if not findings:
            return Screening()
        self._findings.extend(findings)
        return Screening(tuple(findings), self._ladder.add(findings))


def _check_speaker(speaker: str) -> None:
    if speaker not in _SPEAKERS:
        raise DetectionError(f"speaker must be 'customer' or 'partner', not {speaker!r}", code="bad_speaker")
