"""Wall-clock time at the console's edge.

Core code never reads the clock itself: the console is handed a clock (a
function returning an aware UTC ``datetime``) and passes it down, so tests can
move time (session expiry, login throttling) without sleeping.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The real wall clock, in UTC. The default clock of the console."""
    return datetime.now(timezone.utc)


def iso(moment: datetime) -> str:
    """ISO 8601 UTC with milliseconds and a ``Z``, as stored and sent."""
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
