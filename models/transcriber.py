"""The streaming transcriber: call audio in, partial and final utterances out.

One :class:`SharedModel` (a ``vosk.Model``, loaded once: seconds and hundreds
of MB) serves every call. Each speaker stream of each call gets its own
recognizer at the stream's own sample rate, in a :class:`SpeakerTranscriber`.
Every recognizer call runs in the ``vosk`` executor, never on the event loop
(Vosk releases the GIL while it decodes, so threads use every core).

Silence is not decoded: a voice activity gate (the caller hands in its
factory, ``gate=``: :class:`audio.vad.Segmenter` in the agent and the
command line) passes only speech (with a little pre- and post-roll) to the
recognizer as :class:`~audio.frames.Voiced` audio, and its
:class:`~audio.frames.Endpoint` finalizes the utterance. Since the recognizer then hears
only part of the call, the transcriber keeps, per run of fed audio, where it
sits in the call, and maps every word time Vosk reports (seconds of *fed*
audio) back to call time. All times are audio time (sample counts), never a
clock.

Results:

- :class:`~models.transcript.Partial`: the hypothesis so far, at most once
  per ``partial_interval_ms`` of fed audio, and only when its text changed;
- :class:`~models.transcript.Utterance`: final, with speaker, start and end
  in call time and every word with its time and confidence. An utterance
  with no words (a cough the VAD let through) is dropped.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import os
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import vosk

from audio.frames import AudioChunk, Endpoint, Speaker, Voiced
from models.errors import ModelError, ModelLoadFailed
from models.layout import check_model_dir
from models.transcript import Partial, Utterance, Word

Result = Partial | Utterance


class Gate(Protocol):
    """The voice activity gate of one speaker stream (:class:`audio.vad.Segmenter` is one).

    Each call returns what became known, in time order: :class:`~audio.frames.Voiced`
    audio (fed to the recognizer) and :class:`~audio.frames.Endpoint` (an
    utterance ends); silence never comes out."""

    def push(self, chunk: AudioChunk) -> list[Voiced | Endpoint]:
        """Take the stream's next chunk."""
        ...

    def flush(self) -> list[Voiced | Endpoint]:
        """End of stream: close any open segment."""
        ...


GateFactory = Callable[[Speaker, int], Gate]
"""Makes the gate of one speaker stream at its sample rate (Hz): ``audio.vad.Segmenter``,
or ``functools.partial(Segmenter, config=vad)``. None instead of a factory: no gate,
every sample is fed and Vosk's own endpointing cuts utterances (the benchmark's
baseline; costs CPU on silence)."""


def recognizer_executor(workers: int | None = None) -> ThreadPoolExecutor:
    """The pool every recognizer call runs in: threads named ``vosk``, one per core by default."""
    return ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1, thread_name_prefix="vosk")


class SharedModel:
    """One ``vosk.Model`` loaded once, shared by all calls (Vosk models are safe to share across threads).

    Attributes:
        path: the model directory.
        name: the model's name (its folder name unless given).
    """

    def __init__(self, model: object, path: Path, name: str | None = None) -> None:
        self.model = model
        self.path = Path(path)
        # A pip package keeps its model in PKG/model: name it after the package.
        self.name = name or (self.path.parent.name if self.path.name == "model" else self.path.name)

    @classmethod
    def load_blocking(cls, path: Path, name: str | None = None) -> "SharedModel":
        """Load the model in this thread (seconds). :class:`ModelError` if it is missing or Vosk refuses it."""
        path = check_model_dir(Path(path))
        vosk.SetLogLevel(-1)  # Kaldi's log lines would drown the command's own output
        try:
            model = vosk.Model(str(path))
        except Exception as exc:  # vosk raises a bare Exception("Failed to create a model")
            raise ModelLoadFailed(f"Vosk could not load the model in {path} ({exc}); reinstall it with 'callshield models install'") from exc
        return cls(model, path, name)

    @classmethod
    async def load(cls, path: Path, executor: Executor, name: str | None = None) -> "SharedModel":
        """Load the model in ``executor``, keeping the event loop free."""
        return await asyncio.get_running_loop().run_in_executor(executor, cls.load_blocking, path, name)

    def recognizer(self, sample_rate: int, *, words: bool = True) -> object:
        """A new ``vosk.KaldiRecognizer`` for one stream at ``sample_rate`` Hz."""
        rec = vosk.KaldiRecognizer(self.model, float(sample_rate))
        if words:
            rec.SetWords(True)
        return rec

    def __repr__(self) -> str:
        return f"SharedModel({self.name!r}, path={str(self.path)!r})"


@dataclass(frozen=True)
class TranscriberConfig:
    """How a stream is transcribed.

    Attributes:
        partial_interval_ms: at most one partial per this many ms of fed
            audio (partials cost a decode pass; the screen needs ~3 a second).
        words: ask Vosk for word times and confidences.
        max_utterance_s: seconds of fed speech after which an utterance is
            finalized even without a pause (a caller who never stops still
            gets screened).

    Which audio is decoded at all is the gate's (:data:`GateFactory`).
    """

    partial_interval_ms: int = 300
    words: bool = True
    max_utterance_s: float = 15.0

    def __post_init__(self) -> None:
        if not isinstance(self.partial_interval_ms, int) or self.partial_interval_ms < 0:
            raise ModelError(f"partial_interval_ms must be a whole number >= 0, not {self.partial_interval_ms!r}", code="bad_config")
        if not isinstance(self.max_utterance_s, (int, float)) or not 1 <= self.max_utterance_s <= 600:
            raise ModelError(f"max_utterance_s must be 1 to 600 seconds, not {self.max_utterance_s!r}", code="bad_config")


@dataclass
class DecodeStats:
    """Counters of one speaker stream (mutable: updated as audio flows).

    Attributes:
        pushed_samples: samples given to the transcriber.
        fed_samples: samples that reached the recognizer (voiced audio only when gated).
        accept_calls: calls of ``AcceptWaveform``.
        partials: partial results produced.
        utterances: final utterances produced.
    """

    pushed_samples: int = 0
    fed_samples: int = 0
    accept_calls: int = 0
    partials: int = 0
    utterances: int = 0

    def add(self, other: "DecodeStats") -> "DecodeStats":
        return DecodeStats(*(getattr(self, f) + getattr(other, f) for f in self.__dataclass_fields__))


class _Decoder:
    """The blocking half of a speaker stream: owns the recognizer; runs in the executor."""

    def __init__(self, model: SharedModel, speaker: Speaker, sample_rate: int, config: TranscriberConfig, stats: DecodeStats) -> None:
        self.model, self.speaker, self.rate, self.config, self.stats = model, speaker, sample_rate, config, stats
        self.rec: object | None = None  # made on first use, in the executor
        self.fed = 0  # samples fed to the recognizer since it was made
        self.anchors_fed: list[int] = []  # fed index where each run of contiguous call audio starts
        self.anchors_call: list[int] = []  # ... and the call sample it corresponds to
        self.call_next: int | None = None  # call sample right after the last fed one
        self.utt_call_start: int | None = None  # call sample of the open utterance's first fed sample
        self.utt_fed_start = 0
        self.partial_fed = 0  # fed index of the last partial check
        self.partial_text = ""
        self.partial_step = sample_rate * config.partial_interval_ms // 1000
        self.max_utt = int(sample_rate * config.max_utterance_s)

    def process(self, events: Iterable[Voiced | Endpoint], finish: bool = False) -> list[Result]:
        out: list[Result] = []
        for event in events:
            if isinstance(event, Voiced):
                self._feed(event.chunk, out)
            elif isinstance(event, Endpoint):
                self._final(out, force=True)
        if finish:
            self._final(out, force=True)
        elif self.utt_call_start is not None and self.fed - self.partial_fed >= max(self.partial_step, 1):
            self._partial(out)
        return out

    def _feed(self, chunk: AudioChunk, out: list[Result]) -> None:
        if self.rec is None:
            self.rec = self.model.recognizer(self.rate, words=self.config.words)
        if chunk.start_sample != self.call_next:
            self.anchors_fed.append(self.fed)
            self.anchors_call.append(chunk.start_sample)
        if self.utt_call_start is None:
            self.utt_call_start, self.utt_fed_start, self.partial_fed = chunk.start_sample, self.fed, self.fed
        endpoint = self.rec.AcceptWaveform(chunk.pcm16())
        self.stats.accept_calls += 1
        self.stats.fed_samples += len(chunk.samples)
        self.fed += len(chunk.samples)
        self.call_next = chunk.end_sample
        if endpoint:  # Vosk heard a pause inside the voiced audio
            self._final(out, force=False)
        elif self.fed - self.utt_fed_start >= self.max_utt:
            self._final(out, force=True)

    def _partial(self, out: list[Result]) -> None:
        self.partial_fed = self.fed
        text = json.loads(self.rec.PartialResult()).get("partial", "").strip()
        if text and text != self.partial_text:
            self.partial_text = text
            self.stats.partials += 1
            out.append(Partial(speaker=self.speaker, start=self.utt_call_start / self.rate, text=text))

    def _final(self, out: list[Result], *, force: bool) -> None:
        if self.utt_call_start is None or self.rec is None:
            return  # nothing fed since the last final
        raw = self.rec.FinalResult() if force else self.rec.Result()
        utterance = self._utterance(json.loads(raw))
        if utterance is not None:
            self.stats.utterances += 1
            out.append(utterance)
        self.utt_call_start, self.partial_text = None, ""
        # Later words are fed after this point: only the current run's anchor can still be needed.
        del self.anchors_fed[:-1], self.anchors_call[:-1]

    def _to_call(self, seconds: float, *, end: bool = False) -> float:
        """Fed-audio seconds (Vosk's clock) to call seconds."""
        fed = max(0, round(seconds * self.rate))
        probe = fed - 1 if end and fed > 0 else fed  # an end belongs to the run its last sample is in
        i = max(0, bisect.bisect_right(self.anchors_fed, probe) - 1)
        return (self.anchors_call[i] + fed - self.anchors_fed[i]) / self.rate

    def _utterance(self, result: dict) -> Utterance | None:
        text = " ".join(result.get("text", "").split())
        if not text:
            return None
        words = tuple(
            Word(word=w["word"], start=self._to_call(w["start"]), end=self._to_call(w["end"], end=True),
                 conf=min(1.0, max(0.0, float(w.get("conf", 1.0)))))
            for w in result.get("result", [])
        )
        if words:
            start, end = words[0].start, max(w.end for w in words)
        else:
            start, end = self.utt_call_start / self.rate, (self.call_next or 0) / self.rate
        return Utterance(speaker=self.speaker, start=start, end=end, text=text, words=words)


class SpeakerTranscriber:
    """One recognizer for one speaker of one call, driven by one task at a time.

    ``push`` runs the voice activity gate on the loop (microseconds per
    frame) and everything that touches Vosk in ``executor``. The ``*_blocking``
    twins do the same in the caller's thread, for tools that are not async.
    ``gate``: see :data:`GateFactory` (None: every sample is decoded).
    """

    def __init__(self, model: SharedModel, speaker: Speaker, sample_rate: int, executor: Executor | None,
                 config: TranscriberConfig = TranscriberConfig(), *, gate: GateFactory | None) -> None:
        self.model, self.speaker, self.sample_rate, self.executor, self.config = model, speaker, sample_rate, executor, config
        self.stats = DecodeStats()
        self._segmenter = gate(speaker, sample_rate) if gate is not None else None
        self._decoder = _Decoder(model, speaker, sample_rate, config, self.stats)
        self._busy = False

    def _events(self, chunk: AudioChunk) -> list[Voiced | Endpoint]:
        if chunk.speaker != self.speaker or chunk.sample_rate != self.sample_rate:
            raise ModelError(f"transcriber for {self.speaker} at {self.sample_rate} Hz got {chunk.speaker} audio at {chunk.sample_rate} Hz",
                             code="wrong_stream")
        self.stats.pushed_samples += len(chunk.samples)
        return self._segmenter.push(chunk) if self._segmenter is not None else [Voiced(chunk)]

    async def _run(self, events: list[Voiced | Endpoint], finish: bool) -> list[Result]:
        if self._busy:
            raise ModelError(f"the {self.speaker} transcriber is already busy: drive it from one task", code="concurrent_use")
        self._busy = True
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, self._decoder.process, events, finish)
        finally:
            self._busy = False

    async def push(self, chunk: AudioChunk) -> list[Result]:
        """Take the next chunk of this speaker; return partials and utterances now known."""
        events = self._events(chunk)
        if not events:
            return []
        return await self._run(events, False)

    async def flush(self) -> list[Result]:
        """End of stream: finalize whatever is still open."""
        events = self._segmenter.flush() if self._segmenter is not None else []
        return await self._run(events, True)

    def push_blocking(self, chunk: AudioChunk) -> list[Result]:
        events = self._events(chunk)
        return self._decoder.process(events) if events else []

    def flush_blocking(self) -> list[Result]:
        events = self._segmenter.flush() if self._segmenter is not None else []
        return self._decoder.process(events, finish=True)


class CallTranscriber:
    """Both speakers of one call: routes each chunk to its speaker's transcriber
    (each gated by its own ``gate(speaker, sample_rate)``, see :data:`GateFactory`)."""

    def __init__(self, model: SharedModel, sample_rate: int, executor: Executor,
                 speakers: Iterable[Speaker] = ("customer", "partner"), config: TranscriberConfig = TranscriberConfig(),
                 *, gate: GateFactory | None) -> None:
        self.model, self.sample_rate, self.executor, self.config, self.gate = model, sample_rate, executor, config, gate
        self.speakers: dict[Speaker, SpeakerTranscriber] = {}
        for speaker in speakers:
            self._speaker(speaker)

    def _speaker(self, speaker: Speaker) -> SpeakerTranscriber:
        found = self.speakers.get(speaker)
        if found is None:
            found = self.speakers[speaker] = SpeakerTranscriber(self.model, speaker, self.sample_rate, self.executor, self.config,
                                                                gate=self.gate)
        return found

    @property
    def stats(self) -> DecodeStats:
        """The counters of every speaker, summed."""
        total = DecodeStats()
        for transcriber in self.speakers.values():
            total = total.add(transcriber.stats)
        return total

    async def push(self, chunk: AudioChunk) -> list[Result]:
        return await self._speaker(chunk.speaker).push(chunk)

    async def flush(self) -> list[Result]:
        out: list[Result] = []
        for transcriber in self.speakers.values():
            out.extend(await transcriber.flush())
        return out


async def transcribe_source(source: AsyncIterable[AudioChunk], model: SharedModel, sample_rate: int, executor: Executor,
                            config: TranscriberConfig = TranscriberConfig(), *, gate: GateFactory | None) -> AsyncIterator[Result]:
    """Partials and utterances of a whole source (a live call or a file), as they become known."""
    speakers = getattr(source, "speakers", ("customer", "partner"))
    call = CallTranscriber(model, sample_rate, executor, speakers=speakers, config=config, gate=gate)
    async for chunk in source:
        for result in await call.push(chunk):
            yield result
    for result in await call.flush():
        yield result


def transcribe_chunks(chunks: Sequence[AudioChunk], model: SharedModel, sample_rate: int, speakers: Iterable[Speaker],
                      config: TranscriberConfig = TranscriberConfig(), *, gate: GateFactory | None) -> list[Utterance]:
    """Every final utterance of a recorded call's ``chunks`` (all of them at ``sample_rate`` Hz),
    sorted by start; blocking, the ``speakers`` decoded in parallel (one thread each, at most one per core).
    ``callshield transcribe`` reads the chunks from a WAV file (``cli.commands.transcribe.transcribe_file``)."""
    speakers = tuple(speakers)
    workers = max(1, min(len(speakers), os.cpu_count() or 1))
    with recognizer_executor(workers) as pool:
        def one(speaker: Speaker) -> list[Result]:
            transcriber = SpeakerTranscriber(model, speaker, sample_rate, pool, config, gate=gate)
            out: list[Result] = []
            for chunk in chunks:
                if chunk.speaker == speaker:
                    out.extend(transcriber.push_blocking(chunk))
            out.extend(transcriber.flush_blocking())
            return out

        results = [r for rs in pool.map(one, speakers) for r in rs]
    utterances = [r for r in results if isinstance(r, Utterance)]
    utterances.sort(key=lambda u: (u.start, u.speaker))
    return utterances
