"""Frames of call audio as they travel from a source to the transcriber.

Time is audio time: every chunk knows the sample index (from the start of the
call, at its own sample rate) of its first sample. Nothing here reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Speaker = Literal["customer", "partner"]
SPEAKERS: tuple[Speaker, ...] = ("customer", "partner")


class SampleSpan:
    """Seconds of audio time for anything that has ``start_sample``,
    ``end_sample`` and ``sample_rate`` (chunks, speech segments, loudness windows)."""

    start_sample: int
    end_sample: int
    sample_rate: int

    @property
    def start(self) -> float:
        """Start in seconds of audio time."""
        return self.start_sample / self.sample_rate

    @property
    def end(self) -> float:
        """End in seconds of audio time."""
        return self.end_sample / self.sample_rate

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return (self.end_sample - self.start_sample) / self.sample_rate


@dataclass(frozen=True, eq=False)
class AudioChunk(SampleSpan):
    """A run of mono PCM samples from one speaker of one call.

    Attributes:
        speaker: whose voice this channel carries (``customer`` or ``partner``).
        samples: int16 mono samples, shape ``(n,)``. Never mutated after creation.
        sample_rate: samples per second (Hz) of ``samples``.
        start_sample: index of ``samples[0]`` counted from the start of the
            call, in samples at ``sample_rate``.
    """

    speaker: Speaker
    samples: np.ndarray
    sample_rate: int
    start_sample: int

    def __post_init__(self) -> None:
        if self.samples.dtype != np.int16 or self.samples.ndim != 1:
            raise ValueError("AudioChunk.samples must be a 1-D int16 array")
        self.samples.setflags(write=False)

    @property
    def end_sample(self) -> int:
        """Index one past the last sample, from the start of the call."""
        return self.start_sample + len(self.samples)

    def pcm16(self) -> bytes:
        """The samples as little-endian 16-bit PCM bytes (what Vosk and webrtcvad take)."""
        return self.samples.astype("<i2", copy=False).tobytes()


@dataclass(frozen=True)
class Voiced:
    """Audio inside a speech segment (pre-roll, pauses and post-roll included): feed it to the recognizer.
    The voice activity segmenter (:mod:`audio.vad`) emits it; the transcriber takes it."""

    chunk: AudioChunk


@dataclass(frozen=True)
class Endpoint:
    """A speech segment ended: the recognizer should finalize now.

    Attributes:
        speaker: whose segment.
        start_sample: first sample of the segment (pre-roll included), stream samples.
        end_sample: one past its last sample (post-roll included), stream samples.
    """

    speaker: Speaker
    start_sample: int
    end_sample: int
