"""Wall-clock time at the console's edge.

Core code never reads the clock itself: the console is handed a clock (a
function returning an aware UTC ``datetime``) and passes it down, so tests can
move time (session expiry, login throttling) without sleeping. The format of
wall-clock instants is the protocol's (``agent/protocol.py``), shared with the
agent.
"""

from agent.protocol import Clock, iso, parse_iso, utc_now

__all__ = ["Clock", "iso", "parse_iso", "utc_now"]
