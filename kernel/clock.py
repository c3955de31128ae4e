"""Wall-clock time, passed in, never read by core code.

The agent and the console are handed a clock (a function returning an aware
UTC ``datetime``) and pass it down, so tests can move time (session expiry,
login throttling, retention) without sleeping. Audio time, the seconds from
the start of a call, is what every stage inside a call uses; wall-clock
instants appear only where a person or a record needs them, in the
protocol's format (:func:`iso`).
"""

from __future__ import annotations

import typing
from datetime import datetime, timezone

Clock = typing.Callable[[], datetime]
"""A wall clock: returns an aware UTC ``datetime``. Passed in, never read by core code."""


def utc_now() -> datetime:
    """The real wall clock, in UTC (the default clock of the agent and the console)."""
    return datetime.now(timezone.utc)


def iso(moment: datetime) -> str:
    """The protocol's wall-clock format: ISO 8601 UTC with milliseconds and a ``Z``."""
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    """An instant written by :func:`iso` (or any ISO 8601 string with an offset or ``Z``)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
