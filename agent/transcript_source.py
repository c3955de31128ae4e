"""A call from its timed transcript: JSON Lines in, utterances out, paced by audio time.

Used by ``callshield replay CALL.jsonl`` (QA re-runs, training, tests where no
speech model of the call's language is installed) and by the demo. One JSON
object per line, the shape ``callshield transcribe`` writes::

    {"speaker": "customer", "start": 3.2, "end": 5.9, "text": "you stupid idiot",
     "words": [{"word": "you", "start": 3.2, "end": 3.5, "conf": 1.0}, ...]}

``speaker`` is ``customer`` or ``partner``; ``start``/``end`` are seconds of
audio time from the start of the call; ``words`` is optional (without it,
word times are spread evenly over the utterance). Other keys (``call``,
labels) are ignored. Blank lines are skipped.

Paced (``realtime=True``), each word's partial transcript is released at the
word's end and the final utterance at its end, measured from the moment
iteration starts on the clock passed in; unpaced, the finals come at once and
partials are left out (nobody watches them). Paced partials are screened like
the transcriber's (early findings, see ``agent.session``): ``position`` tells
the session the audio time each event was released at.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from kernel.errors import CallshieldError
from models.transcript import Partial, Utterance, Word

SPEAKERS = ("customer", "partner")


class TranscriptError(CallshieldError):
    """A timed transcript file that cannot be read or has a bad line."""

    code = "bad_transcript"


@dataclass(frozen=True)
class TimedTranscript:
    """A whole call's utterances, sorted by end time. ``duration``: seconds of audio time."""

    utterances: tuple[Utterance, ...]
    duration: float

    @classmethod
    def read(cls, path: str | Path) -> "TimedTranscript":
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise TranscriptError(f"{path}: not a UTF-8 text file (expected JSON Lines)") from exc
        return cls.parse(text.splitlines(), where=str(path))

    @classmethod
    def parse(cls, lines: Iterable[str], *, where: str = "transcript") -> "TimedTranscript":
        utterances: list[Utterance] = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TranscriptError(f"{where}:{number}: not JSON ({exc.msg})") from exc
            utterances.append(_utterance(raw, f"{where}:{number}"))
        if not utterances:
            raise TranscriptError(f"{where}: no utterances (expected one JSON object per line)")
        utterances.sort(key=lambda u: (u.end, u.start))
        return cls(tuple(utterances), max(u.end for u in utterances))


def _number(raw: dict, key: str, where: str) -> float:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise TranscriptError(f"{where}: {key!r} must be a number of seconds >= 0")
    return float(value)


def _utterance(raw: object, where: str) -> Utterance:
    if not isinstance(raw, dict):
        raise TranscriptError(f"{where}: each line must be a JSON object")
    speaker = raw.get("speaker")
    if speaker not in SPEAKERS:
        raise TranscriptError(f"{where}: 'speaker' must be 'customer' or 'partner'")
    text = raw.get("text")
    if not isinstance(text, str):
        raise TranscriptError(f"{where}: 'text' must be a string")
    start, end = _number(raw, "start", where), _number(raw, "end", where)
    if end < start:
        raise TranscriptError(f"{where}: 'end' is before 'start'")
    words_raw = raw.get("words")
    if words_raw is None:
        words = _spread(text, start, end)
    else:
        if not isinstance(words_raw, list):
            raise TranscriptError(f"{where}: 'words' must be a list")
        words = []
        for item in words_raw:
            if not isinstance(item, dict) or not isinstance(item.get("word"), str):
                raise TranscriptError(f"{where}: each word needs 'word', 'start', 'end'")
            conf = item.get("conf", 1.0)
            if isinstance(conf, bool) or not isinstance(conf, (int, float)):
                raise TranscriptError(f"{where}: word 'conf' must be a number")
            words.append(Word(item["word"], _number(item, "start", where), _number(item, "end", where), float(conf)))
        words = tuple(words)
    return Utterance(speaker=speaker, start=start, end=end, text=" ".join(text.split()), words=words)


def _spread(text: str, start: float, end: float) -> tuple[Word, ...]:
    """Evenly timed words for an utterance given without word times."""
    tokens = text.split()
    if not tokens:
        return ()
    step = (end - start) / len(tokens)
    return tuple(Word(tok, start + i * step, start + (i + 1) * step, 1.0) for i, tok in enumerate(tokens))


class TranscriptSource:
    """Async iterator of :class:`Partial` and :class:`Utterance` for one call.

    ``clock``: a monotonic clock in seconds (default: the event loop's);
    ``speed``: audio seconds per clock second when paced (2.0 = twice as fast).
    """

    def __init__(
        self,
        transcript: TimedTranscript,
        *,
        realtime: bool = False,
        speed: float = 1.0,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], object] = asyncio.sleep,
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.transcript = transcript
        self.realtime = realtime
        self.speed = speed
        self._clock = clock
        self._sleep = sleep
        self.started_at: float | None = None
        """Clock reading when iteration began (audio time 0), for latency measurements."""
        self.position: float | None = None
        """Audio time (s) of the event last released: a partial's word end, an
        utterance's end. The session dates partials (and their early findings) by it."""

    @classmethod
    def open(cls, path: str | Path, **kwargs) -> "TranscriptSource":
        return cls(TimedTranscript.read(path), **kwargs)

    @property
    def duration(self) -> float:
        return self.transcript.duration

    def wall_time_of(self, audio_time: float) -> float:
        """The clock reading at which audio time ``audio_time`` is (or was) released."""
        assert self.started_at is not None, "iteration has not started"
        return self.started_at + audio_time / self.speed

    def events(self) -> list[tuple[float, Partial | Utterance]]:
        """Every event with its release time (seconds of audio time), in release order."""
        timed: list[tuple[float, int, Partial | Utterance]] = []
        for utterance in self.transcript.utterances:
            if self.realtime:
                for i, word in enumerate(utterance.words[:-1]):
                    text = " ".join(w.word for w in utterance.words[: i + 1])
                    timed.append((word.end, 0, Partial(utterance.speaker, utterance.start, text)))
            timed.append((utterance.end, 1, utterance))
        timed.sort(key=lambda item: (item[0], item[1]))
        return [(t, event) for t, _, event in timed]

    async def __aiter__(self) -> AsyncIterator[Partial | Utterance]:
        clock = self._clock or asyncio.get_running_loop().time
        self.started_at = clock()
        for at, event in self.events():
            if self.realtime:
                delay = self.wall_time_of(at) - clock()
                if delay > 0:
                    await self._sleep(delay)
            self.position = at
            yield event
        if self.realtime:
            delay = self.wall_time_of(self.duration) - clock()
            if delay > 0:
                await self._sleep(delay)
