"""Waiting between attempts (an agent reconnecting to its console, a store retrying a write, a replica reconnecting to NATS): exponential, capped, with jitter."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Reconnect delays: ``initial * factor**n`` seconds, capped at ``maximum``
    seconds, each shortened by a random fraction up to ``jitter`` (0..1)."""

    initial: float = 0.25
    maximum: float = 10.0
    factor: float = 2.0
    jitter: float = 0.5

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before reconnect attempt ``attempt`` (0 = the first retry)."""
        base = min(self.maximum, self.initial * self.factor ** min(attempt, 64))
        return base * (1.0 - self.jitter * rng.random())
