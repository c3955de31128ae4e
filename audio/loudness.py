"""How loud a speaker is, window by window, for shouting detection later on.

The level is the RMS of a short window in dBFS: 0 dBFS is the RMS of a
full-scale square wave (every sample at +-32768), so a full-scale sine reads
-3.01 dBFS and each halving of amplitude takes 6.02 dB off. Digital silence
has no logarithm; it reads :data:`FLOOR_DBFS` (-120), below anything a
16-bit line can carry (its quietest non-zero signal is about -96 dBFS).

Windows are ``window_ms`` long and tile the stream from its first chunk;
``flush`` reports the last, partial window. Detection compares these levels
against the caller's own baseline, so no calibration to sound pressure is
attempted here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from audio.errors import AudioConfigError, AudioError
from audio.frames import AudioChunk, SampleSpan, Speaker
from kernel.pcm import FLOOR_DBFS, dbfs

__all__ = ["FLOOR_DBFS", "Loudness", "LoudnessMeter", "dbfs"]

@dataclass(frozen=True)
class Loudness(SampleSpan):
    """The level of one window of one speaker.

    Attributes:
        speaker: whose voice.
        start_sample: first sample of the window, stream samples.
        end_sample: one past its last sample.
        sample_rate: Hz of the sample counts.
        dbfs: RMS level, dBFS (full-scale square = 0, full-scale sine = -3.01),
            never below -120.0.
    """

    speaker: Speaker
    start_sample: int
    end_sample: int
    sample_rate: int
    dbfs: float


class LoudnessMeter:
    """Loudness per ``window_ms`` window of one speaker's stream (push any chunk size).

    A chunk that does not continue the previous one (a gap or an overlap)
    reports the partial window before it and restarts the tiling at the new
    position.
    """

    def __init__(self, speaker: Speaker, sample_rate: int, window_ms: int = 100) -> None:
        if not isinstance(window_ms, int) or isinstance(window_ms, bool) or not 1 <= window_ms <= 60_000:
            raise AudioConfigError(f"loudness window_ms must be a whole number from 1 to 60000, not {window_ms!r}")
        if sample_rate <= 0:
            raise AudioConfigError(f"sample rate must be positive, not {sample_rate}")
        self.speaker = speaker
        self.sample_rate = sample_rate
        self.window_ms = window_ms
        self.window_samples = max(1, sample_rate * window_ms // 1000)
        self._pending = np.zeros(0, dtype=np.int16)
        self._pending_start = 0
        self._next: int | None = None

    def push(self, chunk: AudioChunk) -> list[Loudness]:
        """Take the next chunk; return one :class:`Loudness` per window completed."""
        if chunk.speaker != self.speaker or chunk.sample_rate != self.sample_rate:
            raise AudioError(
                f"loudness meter for {self.speaker} at {self.sample_rate} Hz got a {chunk.speaker} chunk at {chunk.sample_rate} Hz",
                code="wrong_stream",
            )
        out: list[Loudness] = []
        if self._next is not None and chunk.start_sample != self._next:
            out.extend(self.flush())
        if self._next is None:
            self._pending_start = chunk.start_sample
        self._next = chunk.end_sample
        samples = chunk.samples if len(self._pending) == 0 else np.concatenate([self._pending, chunk.samples])
        n = self.window_samples
        whole = len(samples) // n
        if whole:
            windows = samples[: whole * n].astype(np.float64).reshape(whole, n)
            mean_square = np.einsum("ij,ij->i", windows, windows) / n
            levels = 10.0 * np.log10(np.maximum(mean_square, 1e-300) / (32768.0 * 32768.0))
            for i, level in enumerate(levels):
                start = self._pending_start + i * n
                out.append(Loudness(self.speaker, start, start + n, self.sample_rate, max(FLOOR_DBFS, float(level))))
        self._pending = samples[whole * n:].copy()
        self._pending_start += whole * n
        return out

    def flush(self) -> list[Loudness]:
        """End of stream: the last, partial window (if any samples are left)."""
        out: list[Loudness] = []
        if len(self._pending):
            start = self._pending_start
            out.append(Loudness(self.speaker, start, start + len(self._pending), self.sample_rate, dbfs(self._pending)))
        self._pending = np.zeros(0, dtype=np.int16)
        self._next = None
        return out
