"""PCM16, the sample format every part shares (live frames, recordings, the QA timeline)."""

from __future__ import annotations

import math

import numpy as np

FLOOR_DBFS = -120.0
"""Level (dBFS) reported for digital silence."""


def dbfs(samples: np.ndarray) -> float:
    """RMS level of int16 ``samples`` in dBFS, floored at :data:`FLOOR_DBFS` (empty or silent: the floor)."""
    if len(samples) == 0:
        return FLOOR_DBFS
    x = samples.astype(np.float64)
    mean_square = float(np.dot(x, x)) / len(x)
    if mean_square <= 0.0:
        return FLOOR_DBFS
    return max(FLOOR_DBFS, 10.0 * math.log10(mean_square / (32768.0 * 32768.0)))
