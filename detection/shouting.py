"""Shouting: the customer's voice sustained well above their own baseline.

Fed one loudness window (about 100 ms, in dBFS) at a time by the pipeline's
loudness meter. The baseline is the median level of the customer's recent
voiced, not-loud windows, so it follows a quiet line or a loud handset and
is not dragged up by the shouting itself. A loud stretch (windows at least
``shouting_over_db`` above the baseline, with quieter gaps up to
``shouting_gap_seconds``) lasting ``shouting_min_seconds`` is one finding,
reported as soon as it is long enough; it is reported once.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, field

from detection.config import DetectionConfig
from detection.findings import Finding


@dataclass
class ShoutingMeter:
    """One per call, for the customer's channel. Times are seconds of audio time."""

    config: DetectionConfig
    _history: deque = field(default_factory=deque)      # (end, dbfs, duration) of voiced calm windows
    _sorted: list = field(default_factory=list)         # their levels, sorted, for the median
    _voiced_seconds: float = 0.0
    _loud_start: float | None = None
    _loud_last: float = 0.0                             # end of the last loud window
    _loud_seconds: float = 0.0
    _loud_peak: float = -200.0                          # highest dB over baseline in the stretch
    _reported: bool = False

    @property
    def baseline(self) -> float | None:
        """The caller's usual level (dBFS), or None until enough voice was heard."""
        if self._voiced_seconds < self.config.shouting_baseline_seconds or not self._sorted:
            return None
        return self._sorted[len(self._sorted) // 2]

    def hear(self, start: float, end: float, dbfs: float) -> Finding | None:
        if end <= start or dbfs < self.config.silence_dbfs:
            self._maybe_close(end)
            return None
        baseline = self.baseline
        over = None if baseline is None else dbfs - baseline
        if over is not None and over >= self.config.shouting_over_db:
            return self._loud(start, end, over)
        self._maybe_close(end)
        self._remember(start, end, dbfs)
        return None

    def _loud(self, start: float, end: float, over: float) -> Finding | None:
        if self._loud_start is None or start - self._loud_last > self.config.shouting_gap_seconds:
            self._loud_start, self._loud_seconds, self._loud_peak, self._reported = start, 0.0, -200.0, False
        self._loud_last = end
        self._loud_seconds += end - start
        self._loud_peak = max(self._loud_peak, over)
        if self._reported or end - self._loud_start < self.config.shouting_min_seconds:
            return None
        if self._loud_seconds < 0.6 * self.config.shouting_min_seconds:
            return None
        self._reported = True
        length = end - self._loud_start
        return Finding(
            category="shouting",
            subtype=None,
            severity=self.config.severity_of("shouting"),
            score=min(1.0, 0.6 + 0.02 * (self._loud_peak - self.config.shouting_over_db) + 0.05 * (length - self.config.shouting_min_seconds)),
            span=None,
            evidence=f"+{self._loud_peak:.0f} dB over {length:.1f} s",
            rule="shouting.over_baseline",
            start=self._loud_start,
            end=end,
            text="",
        )

    def _maybe_close(self, now: float) -> None:
        if self._loud_start is not None and now - self._loud_last > self.config.shouting_gap_seconds:
            self._loud_start = None

    def _remember(self, start: float, end: float, dbfs: float) -> None:
        duration = end - start
        self._history.append((end, dbfs, duration))
        bisect.insort(self._sorted, dbfs)
        self._voiced_seconds += duration
        window = self.config.shouting_window_seconds
        while self._history and self._voiced_seconds - self._history[0][2] >= window:
            _, old, old_duration = self._history.popleft()
            self._sorted.pop(bisect.bisect_left(self._sorted, old))
            self._voiced_seconds -= old_duration
