"""What the console's sides share: the counters, and the hub they are handed.

The agents' side (``console/agents.py``), the browsers' side
(``console/browsers.py``) and QA (``console/qa.py``) each take the hub
(:class:`console.server.Console`) as a :class:`Hub`: its config and clock,
the store and the one way to call it (:meth:`Hub.db`, on the store thread),
the browsers' outboxes, and task spawning. They never import the server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from websockets.http11 import Request, Response

from console.cluster import Cluster
from console.config import ConsoleConfig
from console.fanout import Screens
from console.load import LoadWatch
from console.store import Authorization, Store
from kernel.clock import Clock


@dataclass
class ConsoleStats:
    """Counters for health checks and benchmarks (since start)."""

    agents_connected: int = 0
    agent_refusals: int = 0
    browser_refusals: int = 0
    browsers_dropped: int = 0
    browsers_signed_out: int = 0
    """Signed-in sockets closed because their session ended (logout, expiry, user removed...)."""
    logins_throttled: int = 0
    """Sign-in attempts refused unchecked by the throttle."""
    login_throttle_evicted: int = 0
    """(user, address) pairs and addresses the throttle forgot to stay bounded."""
    events_stored: int = 0
    agent_links_store_errors: int = 0
    """Agent links closed (1011) on a store error; the agent resends what was not acknowledged."""
    events_duplicate: int = 0
    event_runs: int = 0
    """Runs of agents' events handed to the store, one transaction each (a
    group commit; a run that kept racing other replicas took one an event).
    ``events_stored / event_runs`` is the new events a run stored."""
    events_shown_late: int = 0
    """Events stored before a store error hid them from screens (their calls'
    summaries could not be read after the commit), fanned out once they could."""
    events_unshown_dropped: int = 0
    """Of those, events never fanned out: more runs waited than ``UNSHOWN_HELD``
    (they stay stored: a browser's next snapshot shows their calls' levels and
    open alerts, the call's history their lines)."""
    partials_forwarded: int = 0
    partials_refused: int = 0
    """Partials of a call refused as taken on its agent's link (dropped, not forwarded)."""
    messages_unsendable: int = 0
    """Messages for browsers that could not be encoded (sent to no one, logged)."""


class EndCalls(Protocol):
    """Sends an end-call authorization to the agent that owns the call."""

    async def send_end_call(self, agent: str, auth: Authorization) -> None: ...


class Hub(Protocol):
    """The console as its sides see it."""

    config: ConsoleConfig
    clock: Clock
    stats: ConsoleStats
    store: Store | None
    screens: Screens
    agents: EndCalls
    load: LoadWatch
    cluster: Cluster | None
    """The other replicas, through NATS (``[console] nats``) or the store's PostgreSQL (``fanout``); None for one console."""

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task: ...

    async def db(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any: ...

    def add_route(self, handles: Callable[[str], bool], answer: Callable[[Request], Awaitable[Response]]) -> None: ...
