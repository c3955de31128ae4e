"""What the transcriber says: timed words, partial and final utterances.

Times are seconds of audio time from the start of the call (derived from
sample counts, never from a clock).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from audio.frames import Speaker


@dataclass(frozen=True)
class Word:
    """One recognized word.

    Attributes:
        word: the word as the model spells it.
        start: start, seconds from the start of the call.
        end: end, seconds from the start of the call.
        conf: the recognizer's confidence, 0.0 to 1.0.
    """

    word: str
    start: float
    end: float
    conf: float

    def to_dict(self) -> dict:
        return {"word": self.word, "start": round(self.start, 3), "end": round(self.end, 3), "conf": round(self.conf, 3)}


@dataclass(frozen=True)
class Partial:
    """A hypothesis that may still change (shown live, never stored as final).

    Attributes:
        speaker: whose words these are.
        start: start of the utterance so far, seconds from the start of the call.
        text: the hypothesis text.
    """

    speaker: Speaker
    start: float
    text: str


@dataclass(frozen=True)
class Utterance:
    """A final utterance of one speaker.

    Attributes:
        speaker: whose words these are.
        start: start, seconds from the start of the call.
        end: end, seconds from the start of the call.
        text: the words joined by single spaces (recognizer style: lowercase, no punctuation).
        words: every word with its time and confidence.
    """

    speaker: Speaker
    start: float
    end: float
    text: str
    words: tuple[Word, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        return {
            "speaker": self.speaker,
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "text": self.text,
            "words": [w.to_dict() for w in self.words],
        }
