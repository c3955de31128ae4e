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

- :class:`~models.transcript.Partial`: the hypothesis so far, only when new
  voiced audio was fed since the last one, at most once per
  ``partial_interval_ms`` of fed audio (longer while it does not change, see
  :class:`~models.decoding.PartialPacer`), and only when its text changed;
  none for a stream whose config says ``partials=False``;
- :class:`~models.transcript.Utterance`: final, with speaker, start and end
  in call time and every word with its time and confidence. An utterance
  with no words (a cough the VAD let through) is dropped.

Each speaker of a call follows the site's :class:`~models.decoding.DecodingPlan`
(:class:`CallTranscriber`): the customer live with partials; the partner by
default with finals only, decoded behind the customer in a pool of
idle-priority threads (:func:`idle_executor`, :class:`DeferredTranscriber`).
"""

from __future__ import annotations

import asyncio
import bisect
import json
import os
import threading
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import vosk

from audio.frames import AudioChunk, Endpoint, Speaker, Voiced
from models.decoding import MODEL_SETTINGS, DecodingPlan, PartialPacer, overlay_folder, overlay_model
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


IDLE_NICE = 19


def _lower_priority() -> None:
    """Make the calling thread the last the kernel runs (Linux: a thread's own nice value)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), IDLE_NICE)
    except (AttributeError, OSError):  # not Linux, or not allowed: still a separate pool, just not idle
        pass


def idle_executor(workers: int | None = None) -> ThreadPoolExecutor:
    """The pool of work that waits for idle cores (the partner's deferred decoding):
    threads named ``vosk-idle`` at nice 19, so a core runs them only when the
    customer's decoding (``vosk``, nice 0) leaves it idle, or nearly so."""
    return ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1, thread_name_prefix="vosk-idle", initializer=_lower_priority)


RECOGNIZER_MAX_FED_S = 3600
"""Seconds of audio after which a recognizer is not kept for another stream."""


class SharedModel:
    """One ``vosk.Model`` loaded once, shared by all calls (Vosk models are safe to share across threads).

    Recognizers are kept warm between streams (:meth:`checkout`, :meth:`checkin`):
    a Vosk recognizer of a model with a lookahead graph (``HCLr.fst`` and
    ``Gr.fst``, like the small Korean one) composes the decoding graph as it
    decodes, and caches what it composed. A new recognizer starts with an
    empty cache and pays for composing with its first seconds of speech; a
    recognizer handed on after ``FinalResult`` keeps the cache and nothing
    else (Vosk makes a new feature pipeline and decoder after a final result:
    no speaker adaptation or audio crosses from one stream to the next; the
    words are a new recognizer's up to near-ties, see :mod:`models.decoding`).

    Attributes:
        path: the model directory.
        name: the model's name (its folder name unless given).
    """

    def __init__(self, model: object, path: Path, name: str | None = None, speed: str = MODEL_SETTINGS,
                 keep_warm: int = DecodingPlan.warm_recognizers) -> None:
        self.model = model
        self.path = Path(path)
        self.speed = speed
        """The decoder speed profile it was loaded with (``model``: the model's own settings)."""
        # A pip package keeps its model in PKG/model: name it after the package.
        self.name = name or (self.path.parent.name if self.path.name == "model" else self.path.name)
        self.keep_warm = keep_warm
        """Most recognizers kept between streams (``[models.decoding] warm_recognizers``, see :meth:`checkout`)."""
        self.recognizers_made = 0  # recognizers made by checkout
        self.recognizers_reused = 0  # checkouts served by a warm recognizer
        self._idle: dict[tuple, list[tuple[object, int]]] = {}
        self._pool_lock = threading.Lock()

    @classmethod
    def load_blocking(cls, path: Path, name: str | None = None, speed: str = MODEL_SETTINGS) -> "SharedModel":
        """Load the model in this thread (seconds). :class:`ModelError` if it is missing or Vosk refuses it.
        ``speed``: a profile of :func:`models.decoding.speed_profiles` overlaid on the model's
        decoder settings (a temporary overlay folder; the installed model is only read)."""
        path = check_model_dir(Path(path))
        vosk.SetLogLevel(-1)  # Kaldi's log lines would drown the command's own output
        with overlay_folder() as tmp:  # Vosk reads every file while it loads: the overlay can go afterwards
            load_from = path if speed == MODEL_SETTINGS else overlay_model(path, speed, Path(tmp))
            try:
                model = vosk.Model(str(load_from))
            except Exception as exc:  # vosk raises a bare Exception("Failed to create a model")
                raise ModelLoadFailed(f"Vosk could not load the model in {path} ({exc}); reinstall it with 'callshield models install'") from exc
        loaded = cls(model, path, name, speed)
        if speed != MODEL_SETTINGS:
            try:  # Kaldi checks decoder options only when a recognizer is made (max-active below min-active...)
                loaded.recognizer(16000)
            except Exception as exc:
                raise ModelLoadFailed(f"speed profile {speed!r} does not suit the model in {path} ({exc}): "
                                      "choose another [models.decoding] speed") from exc
        return loaded

    @classmethod
    async def load(cls, path: Path, executor: Executor, name: str | None = None, speed: str = MODEL_SETTINGS) -> "SharedModel":
        """Load the model in ``executor``, keeping the event loop free."""
        return await asyncio.get_running_loop().run_in_executor(executor, cls.load_blocking, path, name, speed)

    def checkout(self, sample_rate: int, *, words: bool = True, partial_words: bool = False,
                 max_alternatives: int = 0) -> tuple[object, int]:
        """A recognizer for one stream: a warm one from an earlier stream if one
        waits with the same rate and options, else a new one (:meth:`recognizer`).
        Returns it with its clock: samples it was fed before (Vosk counts word
        times from a recognizer's first sample). Safe from any thread."""
        with self._pool_lock:
            idle = self._idle.get((sample_rate, words, partial_words, max_alternatives))
            if idle:
                self.recognizers_reused += 1
                return idle.pop()
            self.recognizers_made += 1
        return self.recognizer(sample_rate, words=words, partial_words=partial_words, max_alternatives=max_alternatives), 0

    def checkin(self, rec: object, fed: int, sample_rate: int, *, words: bool = True, partial_words: bool = False,
                max_alternatives: int = 0) -> bool:
        """Give back a recognizer whose stream ended, ``fed`` samples into its clock.
        Its last call must have been ``FinalResult`` (Vosk then drops everything of
        the stream but the decoding graph it expanded, see :class:`_Decoder`).
        Kept for the next stream unless ``keep_warm`` wait already or it has heard
        ``RECOGNIZER_MAX_FED_S`` (its clock is a 32-bit float in Vosk: past that,
        word times would lose sample precision). True if kept."""
        if fed >= RECOGNIZER_MAX_FED_S * sample_rate:
            return False
        with self._pool_lock:
            if self._kept() >= self.keep_warm:
                return False
            self._idle.setdefault((sample_rate, words, partial_words, max_alternatives), []).append((rec, fed))
            return True

    def drop_warm(self) -> None:
        """Let every kept recognizer go (their memory with them): the next streams start cold."""
        with self._pool_lock:
            self._idle.clear()

    @property
    def warm(self) -> int:
        """Recognizers waiting for a stream."""
        with self._pool_lock:
            return self._kept()

    def _kept(self) -> int:
        """Recognizers waiting (the pool's lock held)."""
        return sum(map(len, self._idle.values()))

    def recognizer(self, sample_rate: int, *, words: bool = True, partial_words: bool = False, max_alternatives: int = 0) -> object:
        """A new ``vosk.KaldiRecognizer`` for one stream at ``sample_rate`` Hz.
        ``words``: word times and confidences in finals (findings' spans, QA);
        ``partial_words``: in partials too (unused by callshield: off);
        ``max_alternatives``: n-best finals (unused: 0)."""
        rec = vosk.KaldiRecognizer(self.model, float(sample_rate))
        if words:
            rec.SetWords(True)
        if partial_words:
            rec.SetPartialWords(True)
        if max_alternatives:
            rec.SetMaxAlternatives(max_alternatives)
        return rec

    def __repr__(self) -> str:
        return f"SharedModel({self.name!r}, path={str(self.path)!r})"


@dataclass(frozen=True)
class TranscriberConfig:
    """How a stream is transcribed.

    Attributes:
        partial_interval_ms: at most one partial per this many ms of fed
            audio (partials cost a decode pass; the screen needs ~3 a second).
        partial_max_interval_ms: the longest interval, reached by doubling
            while the partial does not change (see :class:`~models.decoding.PartialPacer`;
            at most ``partial_interval_ms``: a fixed interval).
        partials: produce partials at all (the partner's finals-only plans: False).
        words: ask Vosk for word times and confidences (used: findings' spans, QA).
        partial_words: word times in partials too (Vosk's ``SetPartialWords``;
            nothing uses them: off).
        max_alternatives: n-best finals (``SetMaxAlternatives``; the first is
            used; 0: off, the cheapest).
        max_utterance_s: seconds of fed speech after which an utterance is
            finalized even without a pause (a caller who never stops still
            gets screened).

    Which audio is decoded at all is the gate's (:data:`GateFactory`).
    """

    partial_interval_ms: int = 300
    words: bool = True
    max_utterance_s: float = 15.0
    partials: bool = True
    partial_max_interval_ms: int = 1200
    partial_words: bool = False
    max_alternatives: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.partial_interval_ms, int) or self.partial_interval_ms < 0:
            raise ModelError(f"partial_interval_ms must be a whole number >= 0, not {self.partial_interval_ms!r}", code="bad_config")
        if not isinstance(self.partial_max_interval_ms, int) or self.partial_max_interval_ms < 0:
            raise ModelError(f"partial_max_interval_ms must be a whole number >= 0, not {self.partial_max_interval_ms!r}", code="bad_config")
        if not isinstance(self.max_utterance_s, (int, float)) or not 1 <= self.max_utterance_s <= 600:
            raise ModelError(f"max_utterance_s must be 1 to 600 seconds, not {self.max_utterance_s!r}", code="bad_config")

    @classmethod
    def for_speaker(cls, plan: DecodingPlan, speaker: Speaker) -> "TranscriberConfig":
        """The config of ``speaker``'s stream under ``plan``: partials for the
        customer and for a ``live`` partner, finals only for every other partner plan."""
        return cls(partial_interval_ms=plan.partial_interval_ms, partial_max_interval_ms=plan.partial_max_interval_ms,
                   partials=speaker != "partner" or plan.partner == "live")


@dataclass
class DecodeStats:
    """Counters of one speaker stream (mutable: updated as audio flows).

    Attributes:
        pushed_samples: samples given to the transcriber.
        fed_samples: samples that reached the recognizer (voiced audio only when gated).
        accept_calls: calls of ``AcceptWaveform``.
        partials: partial results produced.
        utterances: final utterances produced.
        backlog_dropped_samples: voiced samples dropped from a deferred
            stream's backlog before they were decoded (overload).
    """

    pushed_samples: int = 0
    fed_samples: int = 0
    accept_calls: int = 0
    partials: int = 0
    utterances: int = 0
    backlog_dropped_samples: int = 0

    def add(self, other: "DecodeStats") -> "DecodeStats":
        return DecodeStats(*(getattr(self, f) + getattr(other, f) for f in self.__dataclass_fields__))


class _Decoder:
    """The blocking half of a speaker stream: owns the recognizer; runs in the executor."""

    def __init__(self, model: SharedModel, speaker: Speaker, sample_rate: int, config: TranscriberConfig, stats: DecodeStats) -> None:
        self.model, self.speaker, self.rate, self.config, self.stats = model, speaker, sample_rate, config, stats
        self.rec: object | None = None  # checked out on first use, in the executor; given back at the end of the stream
        self.fed = 0  # the recognizer's clock: samples it was fed since it was made (by earlier streams too)
        self.finalized = True  # the recognizer's last call was FinalResult (it can be handed on)
        self.anchors_fed: list[int] = []  # fed index where each run of contiguous call audio starts
        self.anchors_call: list[int] = []  # ... and the call sample it corresponds to
        self.call_next: int | None = None  # call sample right after the last fed one
        self.utt_call_start: int | None = None  # call sample of the open utterance's first fed sample
        self.utt_fed_start = 0
        self.partial_text = ""
        self.pacer = PartialPacer(sample_rate, config.partial_interval_ms, config.partial_max_interval_ms)
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
            self._release()
        elif self.config.partials and self.utt_call_start is not None and self.pacer.due(self.fed):
            self._partial(out)
        return out

    def _feed(self, chunk: AudioChunk, out: list[Result]) -> None:
        if self.rec is None:
            self.rec, self.fed = self.model.checkout(self.rate, **self._options())
            self.anchors_fed, self.anchors_call, self.call_next = [], [], None
        if chunk.start_sample != self.call_next:
            self.anchors_fed.append(self.fed)
            self.anchors_call.append(chunk.start_sample)
        if self.utt_call_start is None:
            self.utt_call_start, self.utt_fed_start = chunk.start_sample, self.fed
            self.pacer.start(self.fed)
        endpoint = self.rec.AcceptWaveform(chunk.pcm16())
        self.finalized = False
        self.stats.accept_calls += 1
        self.stats.fed_samples += len(chunk.samples)
        self.fed += len(chunk.samples)
        self.call_next = chunk.end_sample
        if endpoint:  # Vosk heard a pause inside the voiced audio
            self._final(out, force=False)
        elif self.fed - self.utt_fed_start >= self.max_utt:
            self._final(out, force=True)

    def _partial(self, out: list[Result]) -> None:
        text = json.loads(self.rec.PartialResult()).get("partial", "").strip()
        changed = text != self.partial_text
        self.pacer.heard(self.fed, changed)
        if text and changed:
            self.partial_text = text
            self.stats.partials += 1
            out.append(Partial(speaker=self.speaker, start=self.utt_call_start / self.rate, text=text))

    def _final(self, out: list[Result], *, force: bool) -> None:
        if self.utt_call_start is None or self.rec is None:
            return  # nothing fed since the last final
        raw = self.rec.FinalResult() if force else self.rec.Result()
        self.finalized = force
        utterance = self._utterance(json.loads(raw))
        if utterance is not None:
            self.stats.utterances += 1
            out.append(utterance)
        self.utt_call_start, self.partial_text = None, ""
        # Later words are fed after this point: only the current run's anchor can still be needed.
        del self.anchors_fed[:-1], self.anchors_call[:-1]

    def _options(self) -> dict:
        return {"words": self.config.words, "partial_words": self.config.partial_words, "max_alternatives": self.config.max_alternatives}

    def _release(self) -> None:
        """End of the stream: hand the recognizer on to the next stream (:meth:`SharedModel.checkin`).
        After ``Result`` (Vosk's own endpoint) Vosk keeps the stream's feature
        pipeline (its speaker adaptation); 10 ms of silence and ``FinalResult`` drop it."""
        if self.rec is None:
            return
        if not self.finalized:
            pad = self.rate // 100
            self.rec.AcceptWaveform(bytes(2 * pad))
            self.rec.FinalResult()
            self.fed += pad
        self.model.checkin(self.rec, self.fed, self.rate, **self._options())
        self.rec, self.finalized = None, True

    def _to_call(self, seconds: float, *, end: bool = False) -> float:
        """Fed-audio seconds (Vosk's clock) to call seconds."""
        fed = max(0, round(seconds * self.rate))
        probe = fed - 1 if end and fed > 0 else fed  # an end belongs to the run its last sample is in
        i = max(0, bisect.bisect_right(self.anchors_fed, probe) - 1)
        return (self.anchors_call[i] + fed - self.anchors_fed[i]) / self.rate

    def _utterance(self, result: dict) -> Utterance | None:
        if "alternatives" in result:  # SetMaxAlternatives: the best first
            result = (result["alternatives"] or [{}])[0]
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


class DeferredTranscriber(SpeakerTranscriber):
    """A speaker decoded behind the live ones (the partner's ``idle`` and ``after`` plans).

    ``push`` runs the gate on the loop and puts the voiced audio in a backlog
    of at most ``backlog_s`` seconds; one task per stream decodes the backlog
    in ``executor`` (the idle pool, :func:`idle_executor`), a second of
    speech at a time, and ``push`` returns what it finished since the last
    call. A full backlog drops its oldest audio, counted in
    ``stats.backlog_dropped_samples`` (the call's transcript misses that
    speech; the customer's is untouched). ``at_end``: decoding waits for
    :meth:`flush` (the ``after`` plan). :meth:`flush` returns once the whole
    backlog is decoded, so every utterance comes before the call ends.
    ``lossless``: the source can wait (a recording replayed faster than real
    time): a full backlog makes ``push`` wait until it is decoded instead of
    dropping any of it.
    """

    BATCH_S = 1.0

    def __init__(self, model: SharedModel, speaker: Speaker, sample_rate: int, executor: Executor | None,
                 config: TranscriberConfig = TranscriberConfig(), *, gate: GateFactory | None, backlog_s: float,
                 at_end: bool = False, lossless: bool = False) -> None:
        super().__init__(model, speaker, sample_rate, executor, config, gate=gate)
        self.at_end, self.lossless = at_end, lossless
        self.backlog_limit = max(1, int(backlog_s * sample_rate))
        self._backlog: deque[Voiced | Endpoint] = deque()
        self._backlog_samples = 0
        self._ready: list[Result] = []
        self._worker: asyncio.Task | None = None

    @property
    def backlog_s(self) -> float:
        """Seconds of voiced audio waiting to be decoded."""
        return self._backlog_samples / self.sample_rate

    def _enqueue(self, events: Iterable[Voiced | Endpoint]) -> None:
        for event in events:
            self._backlog.append(event)
            if isinstance(event, Voiced):
                self._backlog_samples += len(event.chunk.samples)
        while self._backlog_samples > self.backlog_limit and not self.lossless:
            event = self._backlog.popleft()
            if isinstance(event, Voiced):
                self._backlog_samples -= len(event.chunk.samples)
                self.stats.backlog_dropped_samples += len(event.chunk.samples)

    def _wake(self) -> None:
        if self._backlog and (self._worker is None or self._worker.done()):
            self._take_failure()
            self._worker = asyncio.get_running_loop().create_task(self._decode_backlog(), name=f"deferred-{self.speaker}")

    def _take_failure(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None and worker.done() and not worker.cancelled() and worker.exception() is not None:
            raise worker.exception()

    async def _decode_backlog(self) -> None:
        loop = asyncio.get_running_loop()
        batch_limit = int(self.BATCH_S * self.sample_rate)
        while self._backlog:
            batch, samples = [], 0
            while self._backlog and samples < batch_limit:
                event = self._backlog.popleft()
                batch.append(event)
                if isinstance(event, Voiced):
                    samples += len(event.chunk.samples)
            self._backlog_samples -= samples
            results = await loop.run_in_executor(self.executor, self._decoder.process, batch, False)
            self._ready.extend(results)  # after the await: push may have taken the list that was there before

    def _results(self) -> list[Result]:
        ready, self._ready = self._ready, []
        return ready

    async def push(self, chunk: AudioChunk) -> list[Result]:
        """Queue the chunk's voiced audio; return the results decoded since the last call."""
        if self._worker is not None and self._worker.done():
            self._take_failure()
        events = self._events(chunk)
        if events:
            self._enqueue(events)
            if not self.at_end:
                self._wake()
            while self._backlog_samples > self.backlog_limit:  # lossless: wait for the decoder rather than drop
                self._wake()
                await asyncio.wait({self._worker})
                self._take_failure()
        return self._results()

    async def flush(self) -> list[Result]:
        """End of stream: decode the whole backlog, then finalize."""
        self._enqueue(self._segmenter.flush() if self._segmenter is not None else [])
        self._wake()
        if self._worker is not None:
            await asyncio.wait({self._worker})
            self._take_failure()
        final = await asyncio.get_running_loop().run_in_executor(self.executor, self._decoder.process, [], True)
        return self._results() + final


class CallTranscriber:
    """Both speakers of one call: routes each chunk to its speaker's transcriber
    (each gated by its own ``gate(speaker, sample_rate)``, see :data:`GateFactory`).

    ``plan``: the site's :class:`~models.decoding.DecodingPlan` (each speaker's
    config from :meth:`TranscriberConfig.for_speaker`; a partner on ``idle`` or
    ``after`` is a :class:`DeferredTranscriber` in ``idle`` (an
    :func:`idle_executor`; None: ``executor``, without the lower priority);
    on ``off`` their audio is not decoded at all). None: every speaker
    with ``config``, live. ``lossless``: the source can wait (see
    :class:`DeferredTranscriber`): nothing is dropped from a backlog.
    """

    def __init__(self, model: SharedModel, sample_rate: int, executor: Executor,
                 speakers: Iterable[Speaker] = ("customer", "partner"), config: TranscriberConfig = TranscriberConfig(),
                 *, gate: GateFactory | None, plan: DecodingPlan | None = None, idle: Executor | None = None,
                 lossless: bool = False) -> None:
        self.model, self.sample_rate, self.executor, self.config, self.gate = model, sample_rate, executor, config, gate
        self.plan, self.idle, self.lossless = plan, idle, lossless
        self.speakers: dict[Speaker, SpeakerTranscriber] = {}
        for speaker in speakers:
            self._speaker(speaker)

    def _speaker(self, speaker: Speaker) -> SpeakerTranscriber | None:
        found = self.speakers.get(speaker)
        if found is not None:
            return found
        plan = self.plan
        if plan is None:
            found = SpeakerTranscriber(self.model, speaker, self.sample_rate, self.executor, self.config, gate=self.gate)
        elif speaker == "partner" and plan.partner == "off":
            return None
        elif speaker == "partner" and plan.partner_deferred:
            found = DeferredTranscriber(self.model, speaker, self.sample_rate, self.idle or self.executor,
                                        TranscriberConfig.for_speaker(plan, speaker), gate=self.gate,
                                        backlog_s=plan.partner_backlog_s, at_end=plan.partner == "after", lossless=self.lossless)
        else:
            found = SpeakerTranscriber(self.model, speaker, self.sample_rate, self.executor,
                                       TranscriberConfig.for_speaker(plan, speaker), gate=self.gate)
        self.speakers[speaker] = found
        return found

    @property
    def stats(self) -> DecodeStats:
        """The counters of every speaker, summed."""
        total = DecodeStats()
        for transcriber in self.speakers.values():
            total = total.add(transcriber.stats)
        return total

    @property
    def backlog_dropped_s(self) -> float:
        """Seconds of speech dropped undecoded from deferred speakers' backlogs (overload)."""
        return sum(t.stats.backlog_dropped_samples for t in self.speakers.values()) / self.sample_rate

    async def push(self, chunk: AudioChunk) -> list[Result]:
        transcriber = self._speaker(chunk.speaker)
        return [] if transcriber is None else await transcriber.push(chunk)

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
