"""Voice activity: which stretches of one speaker's audio hold speech.

The segmenter decides, frame by frame with webrtcvad, where speech starts
and ends, and drives the recognizer with it: audio inside a speech segment
comes out as :class:`Voiced` (feed it to the recognizer), the end of a
segment as :class:`Endpoint` (finalize now). Silence between segments is
never emitted, so it is never decoded.

A segment:

- opens on the first voiced frame, reaching back ``pre_roll_ms`` so the
  onset of the first word is not clipped;
- counts as speech only once it holds ``min_speech_ms`` of voiced frames;
  a shorter blip (a click, a cough, line noise) is dropped whole and
  nothing of it is emitted;
- stays open across pauses shorter than ``hangover_ms`` (the pause is
  emitted with the speech once speech resumes, so words keep their gaps);
- closes when ``hangover_ms`` of unvoiced frames follow the last voiced
  frame; only the first ``post_roll_ms`` of that silence is emitted, as a
  tail that lets the recognizer hear the word end.

So ``Endpoint.start_sample`` is the first voiced frame minus the pre-roll,
and ``end_sample`` the last voiced frame plus the post-roll; the Voiced
chunks of a segment tile ``[start_sample, end_sample)`` exactly. Pre-roll,
post-roll and hangover are rounded up to whole frames. A segment is known to
be speech only after ``min_speech_ms`` of voiced frames, so its first Voiced
audio comes out that much late (200 ms by default); after that, Voiced
audio follows each chunk at once, except pauses, held until speech resumes
or the hangover ends the segment.

Time is counted in samples of the stream (``AudioChunk.start_sample``).
A chunk that does not continue the previous one (a gap or an overlap, e.g.
after dropped audio) closes any open segment at the point the gap starts
and starts afresh at the new position.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import webrtcvad

from audio.errors import AudioConfigError, AudioError
from audio.frames import AudioChunk, Endpoint, SampleSpan, Speaker, Voiced
from audio.resample import VAD_RATES

__all__ = ["VadConfig", "Voiced", "Endpoint", "Segment", "Segmenter", "segments"]


@dataclass(frozen=True)
class VadConfig:
    """How speech is told from silence.

    Attributes:
        frame_ms: webrtcvad frame length, ms: 10, 20 or 30.
        aggressiveness: webrtcvad mode, 0 (keeps most, for clean lines) to
            3 (drops most non-speech, for noisy lines).
        hangover_ms: ms of non-speech that end a segment.
        min_speech_ms: ms of voiced frames a segment needs to count; shorter
            ones are dropped.
        pre_roll_ms: ms of audio before the first voiced frame included in
            a segment.
        post_roll_ms: ms of audio after the last voiced frame included in a
            segment (at most ``hangover_ms``).
    """

    frame_ms: int = 30
    aggressiveness: int = 2
    hangover_ms: int = 300
    min_speech_ms: int = 200
    pre_roll_ms: int = 150
    post_roll_ms: int = 150

    def __post_init__(self) -> None:
        def whole(name: str) -> int:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise AudioConfigError(f"vad {name} must be a whole number >= 0, not {value!r}")
            return value

        if whole("frame_ms") not in (10, 20, 30):
            raise AudioConfigError(f"vad frame_ms must be 10, 20 or 30, not {self.frame_ms}")
        if whole("aggressiveness") > 3:
            raise AudioConfigError(f"vad aggressiveness must be 0 to 3, not {self.aggressiveness}")
        if whole("hangover_ms") < self.frame_ms:
            raise AudioConfigError(f"vad hangover_ms must be at least frame_ms ({self.frame_ms}), not {self.hangover_ms}")
        whole("min_speech_ms")
        whole("pre_roll_ms")
        if whole("post_roll_ms") > self.hangover_ms:
            raise AudioConfigError(f"vad post_roll_ms ({self.post_roll_ms}) cannot exceed hangover_ms ({self.hangover_ms})")


@dataclass(frozen=True)
class Segment(SampleSpan):
    """A finished speech segment, for tools and tests.

    Attributes:
        speaker: whose speech.
        start_sample: first sample (pre-roll included).
        end_sample: one past the last sample (post-roll included).
        sample_rate: Hz of the sample counts.
    """

    speaker: Speaker
    start_sample: int
    end_sample: int
    sample_rate: int


_IDLE, _CANDIDATE, _SPEECH = "idle", "candidate", "speech"


class Segmenter:
    """Speech segments of one speaker's stream, pushed chunk by chunk (any chunk size).

    ``push`` and ``flush`` return what became known, in time order. CPU cost
    is one webrtcvad call per frame (see ``bench/vad_speed.py``): cheap
    enough to run per chunk on the event loop for live calls; run long
    buffers in an executor.
    """

    def __init__(self, speaker: Speaker, sample_rate: int, config: VadConfig = VadConfig()) -> None:
        if sample_rate not in VAD_RATES:
            raise AudioError(f"voice activity detection takes {', '.join(map(str, VAD_RATES))} Hz, not {sample_rate} Hz", code="unsupported_rate")
        self.speaker = speaker
        self.sample_rate = sample_rate
        self.config = config
        self.frame_samples = sample_rate * config.frame_ms // 1000
        self._vad = webrtcvad.Vad(config.aggressiveness)
        per_ms = sample_rate / 1000
        self._pre_roll_frames = -(-int(config.pre_roll_ms * per_ms) // self.frame_samples)
        self._post_roll_frames = -(-int(config.post_roll_ms * per_ms) // self.frame_samples)
        self._hangover_frames = -(-int(config.hangover_ms * per_ms) // self.frame_samples)
        self._min_voiced = int(config.min_speech_ms * per_ms)
        self.frames_seen = 0  # frames classified so far (for benchmarks and stats)
        self._reset(None)

    def _reset(self, position: int | None) -> None:
        self._next: int | None = position  # expected start_sample of the next chunk
        self._pending_start = position or 0  # stream sample of self._pending[0]
        self._pending = np.zeros(0, dtype=np.int16)  # samples not yet a whole frame
        self._pre_roll: deque[tuple[int, np.ndarray]] = deque(maxlen=max(self._pre_roll_frames, 1))
        self._state = _IDLE
        self._held: list[tuple[int, np.ndarray]] = []  # unvoiced frames after the last voiced one
        self._candidate: list[tuple[int, np.ndarray]] = []  # frames of a segment not yet long enough
        self._voiced = 0  # voiced samples in the current segment
        self._segment_start = 0
        self._segment_end = 0  # one past the last sample emitted as Voiced
        self._out: list[Voiced | Endpoint] = []
        self._run: list[tuple[int, np.ndarray]] = []  # contiguous frames to merge into one Voiced

    # ------------------------------------------------------------------ public

    def push(self, chunk: AudioChunk) -> list[Voiced | Endpoint]:
        """Take the next chunk of this speaker's stream; return the Voiced audio and Endpoints now known."""
        if chunk.speaker != self.speaker or chunk.sample_rate != self.sample_rate:
            raise AudioError(
                f"segmenter for {self.speaker} at {self.sample_rate} Hz got a {chunk.speaker} chunk at {chunk.sample_rate} Hz",
                code="wrong_stream",
            )
        if self._next is not None and chunk.start_sample != self._next:
            self._close(at_end=False)
            out = self._take()
            self._reset(None)
            self._out = out
        if self._next is None:
            self._next = chunk.start_sample
            self._pending_start = chunk.start_sample
        self._next = chunk.end_sample
        samples = chunk.samples if len(self._pending) == 0 else np.concatenate([self._pending, chunk.samples])
        n = self.frame_samples
        whole = len(samples) // n * n
        start = self._pending_start
        for offset in range(0, whole, n):
            frame = samples[offset:offset + n]
            self._frame(start + offset, frame)
        self._pending = samples[whole:].copy()
        self._pending_start = start + whole
        return self._take()

    def flush(self) -> list[Voiced | Endpoint]:
        """End of stream: close an open segment (Endpoint) and forget the stream position."""
        self._close(at_end=True)
        out = self._take()
        self._reset(None)
        return out

    # ------------------------------------------------------------------ frames

    def _frame(self, start: int, frame: np.ndarray) -> None:
        self.frames_seen += 1
        voiced = self._vad.is_speech(frame.astype("<i2", copy=False).tobytes(), self.sample_rate)
        if self._state == _IDLE:
            if voiced:
                self._candidate = list(self._pre_roll) + [(start, frame)]
                self._pre_roll.clear()
                self._segment_start = self._candidate[0][0]
                self._voiced = len(frame)
                self._held = []
                self._state = _CANDIDATE
                self._confirm_if_long_enough()
            elif self._pre_roll_frames:
                self._pre_roll.append((start, frame))
            return
        if voiced:
            frames = self._held + [(start, frame)]
            self._held = []
            self._voiced += len(frame)
            if self._state == _SPEECH:
                for f in frames:
                    self._emit(*f)
            else:
                self._candidate.extend(frames)
                self._confirm_if_long_enough()
            return
        self._held.append((start, frame))
        if len(self._held) >= self._hangover_frames:
            self._end_segment()

    def _confirm_if_long_enough(self) -> None:
        if self._voiced >= self._min_voiced:
            for f in self._candidate:
                self._emit(*f)
            self._candidate = []
            self._state = _SPEECH

    def _end_segment(self) -> None:
        """Hangover reached: finish a confirmed segment, or drop a short one."""
        if self._state == _SPEECH:
            for f in self._held[: self._post_roll_frames]:
                self._emit(*f)
            self._endpoint()
        tail = self._candidate + self._held if self._state == _CANDIDATE else self._held
        self._pre_roll.clear()
        if self._pre_roll_frames:
            self._pre_roll.extend(tail[-self._pre_roll_frames:])
        self._candidate, self._held, self._voiced = [], [], 0
        self._state = _IDLE

    def _close(self, *, at_end: bool) -> None:
        """The stream ends (or jumps): close an open segment now."""
        if self._state == _SPEECH:
            if self._held:
                for f in self._held[: self._post_roll_frames]:
                    self._emit(*f)
            elif at_end and len(self._pending):
                self._emit(self._pending_start, self._pending)  # speech ran to the very end: keep its last samples
            self._endpoint()
        self._state = _IDLE
        self._candidate, self._held, self._voiced = [], [], 0

    # ------------------------------------------------------------------ output

    def _emit(self, start: int, samples: np.ndarray) -> None:
        if self._run and self._run[-1][0] + len(self._run[-1][1]) != start:
            self._merge_run()
        self._run.append((start, samples))
        self._segment_end = start + len(samples)

    def _merge_run(self) -> None:
        if not self._run:
            return
        start = self._run[0][0]
        samples = self._run[0][1] if len(self._run) == 1 else np.concatenate([s for _, s in self._run])
        self._out.append(Voiced(AudioChunk(speaker=self.speaker, samples=np.array(samples, dtype=np.int16), sample_rate=self.sample_rate, start_sample=start)))
        self._run = []

    def _endpoint(self) -> None:
        self._merge_run()
        self._out.append(Endpoint(speaker=self.speaker, start_sample=self._segment_start, end_sample=self._segment_end))

    def _take(self) -> list[Voiced | Endpoint]:
        self._merge_run()
        out, self._out = self._out, []
        return out


def segments(chunks: Iterable[AudioChunk], sample_rate: int, config: VadConfig = VadConfig()) -> list[Segment]:
    """Every speech segment in ``chunks`` (any speakers, each its own stream), ordered by start then speaker."""
    segmenters: dict[Speaker, Segmenter] = {}
    found: list[Segment] = []

    def collect(items: list[Voiced | Endpoint]) -> None:
        for item in items:
            if isinstance(item, Endpoint):
                found.append(Segment(item.speaker, item.start_sample, item.end_sample, sample_rate))

    for chunk in chunks:
        segmenter = segmenters.get(chunk.speaker)
        if segmenter is None:
            segmenter = segmenters[chunk.speaker] = Segmenter(chunk.speaker, sample_rate, config)
        collect(segmenter.push(chunk))
    for segmenter in segmenters.values():
        collect(segmenter.flush())
    found.sort(key=lambda s: (s.start_sample, s.speaker))
    return found
