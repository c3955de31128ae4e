"""Sample-rate conversion, done once at the source edge.

webrtcvad takes only 8, 16, 32 and 48 kHz; Vosk takes any rate but works
best at the model's. A call that arrives at such a rate keeps it (8 kHz
telephony stays 8 kHz: converting it up would invent nothing and cost CPU).
A file at another rate (11.025, 22.05, 44.1 kHz, ...) is converted once, when
the source reads it, to the nearest accepted rate (ties go up, so no
bandwidth is thrown away); nothing downstream ever converts again.

The converter is a rational polyphase resampler with a Kaiser-windowed sinc
kernel (Kaiser beta 8.6; 16 zero crossings each side; cut-off
at 95 % of the lower Nyquist frequency). For a ratio ``up/down`` (reduced by
their gcd) output sample ``n`` sits at input time ``n*down/up``; its
fractional position takes one of ``up`` phases, whose weights are computed
once. All outputs of one phase read the input at a fixed stride of ``down``
samples, so each phase is one strided matrix-vector product (no Python loop
per sample). It is done with ``einsum``, not BLAS, on purpose: OpenBLAS
threads busy-wait and, on cores shared with the recognizers, burnt several
times the CPU they saved in ``bench/vad_speed.py``. Each phase's weights are
normalized to sum 1, so a constant signal stays exactly constant.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from numpy.lib.stride_tricks import as_strided

__all__ = ["VAD_RATES", "delivery_rate", "resample"]

VAD_RATES: tuple[int, ...] = (8000, 16000, 32000, 48000)
"""Sample rates (Hz) webrtcvad accepts; every source delivers one of these."""

_ZERO_CROSSINGS = 16
_ROLLOFF = 0.95
_KAISER_BETA = 8.6


def delivery_rate(file_rate: int) -> int:
    """The rate (Hz) a source at ``file_rate`` Hz delivers: itself if webrtcvad accepts it, else the nearest accepted rate (ties go up)."""
    if file_rate in VAD_RATES:
        return file_rate
    return min(VAD_RATES, key=lambda r: (abs(r - file_rate), -r))


@lru_cache(maxsize=16)
def _phase_weights(up: int, down: int) -> tuple[np.ndarray, int]:
    """float64[up, taps] weights per phase, and the offset of tap 0 from the input index."""
    cutoff = 0.5 * min(1.0, up / down) * _ROLLOFF  # cycles per input sample
    half_width = _ZERO_CROSSINGS / (2.0 * cutoff)  # in input samples
    reach = int(math.ceil(half_width))
    offsets = np.arange(-reach + 1, reach + 1)  # input index = floor(t) + offset
    frac = np.arange(up)[:, None] / up
    distance = frac - offsets[None, :]  # t - j, in input samples
    x = np.clip(distance / half_width, -1.0, 1.0)
    window = np.i0(_KAISER_BETA * np.sqrt(1.0 - x * x)) / np.i0(_KAISER_BETA)
    weights = 2.0 * cutoff * np.sinc(2.0 * cutoff * distance) * window
    weights[np.abs(distance) > half_width] = 0.0
    weights /= weights.sum(axis=1, keepdims=True)
    weights.setflags(write=False)
    return weights, int(offsets[0])


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Convert int16 ``samples`` (shape ``(n,)`` or ``(n, channels)``) from ``from_rate`` to ``to_rate`` Hz.

    Output sample ``k`` is the signal at input time ``k * from_rate / to_rate``
    samples, so time 0 stays time 0 and the output has
    ``ceil(n * to_rate / from_rate)`` samples. Values are rounded and clipped
    to int16.
    """
    if from_rate <= 0 or to_rate <= 0:
        raise ValueError("sample rates must be positive")
    samples = np.asarray(samples)
    if samples.dtype != np.int16:
        raise TypeError(f"resample takes int16 samples, not {samples.dtype}")
    if from_rate == to_rate:
        return samples
    if samples.ndim == 2:
        columns = [resample(np.ascontiguousarray(samples[:, c]), from_rate, to_rate) for c in range(samples.shape[1])]
        if not columns:
            return np.zeros((0, 0), dtype=np.int16)
        return np.stack(columns, axis=1)
    if samples.ndim != 1:
        raise ValueError("resample takes shape (n,) or (n, channels)")

    g = math.gcd(from_rate, to_rate)
    up, down = to_rate // g, from_rate // g
    n_in = len(samples)
    n_out = -(-n_in * up // down)
    out = np.empty(n_out, dtype=np.float64)
    if n_out == 0:
        return out.astype(np.int16)
    weights, first_offset = _phase_weights(up, down)
    taps = weights.shape[1]
    pad = taps + 1
    padded = np.zeros(n_in + 2 * pad + down, dtype=np.float64)
    padded[pad:pad + n_in] = samples
    item = padded.itemsize
    for r in range(min(up, n_out)):
        count = -(-(n_out - r) // up)  # outputs r, r+up, r+2up, ... below n_out
        base = (r * down) // up  # input index (floor) of output r
        phase = (r * down) % up
        start = base + first_offset + pad
        view = as_strided(padded[start:], shape=(count, taps), strides=(down * item, item), writeable=False)
        out[r::up] = np.einsum("ij,j->i", view, weights[phase])  # not BLAS: its threads would spin on shared cores
    return np.clip(np.rint(out), -32768, 32767).astype(np.int16)
