"""Load shedding as the floor sees it: what was not shown live, and why.

Under overload, live partial transcripts are the first thing to go, at both
ends of the wire; final utterances, findings, alerts and authorizations never
are:

- the console does not queue partials for a browser that has fallen behind
  (:data:`console.fanout.SHED_AT`), counted as ``partials_shed``;
- a browser that still falls a whole outbox behind is disconnected
  (``browsers_dropped``); it reconnects and gets a fresh snapshot, so nothing
  durable is lost;
- an agent drops partials while its link is down or its queue is full, and
  says how many in each heartbeat (``partials_dropped``).

:class:`LoadWatch` gathers these counts and, at most once a second and only
when one changed, shows them to every supervisor (:class:`~console.browser_protocol.LoadShown`);
a supervisor who signs in later is shown the latest at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from console import browser_protocol as b
from console.fanout import BrowserLink, Screens

EVERY_S = 1.0
"""Seconds between two looks at the counts (wall time: a screen refresh, not evidence)."""


class LoadWatch:
    """The counts of what was shed, shown to supervisors when they change."""

    def __init__(self, screens: Screens, browsers_dropped: Callable[[], int]) -> None:
        self._screens = screens
        self._browsers_dropped = browsers_dropped
        self._agents: dict[str, int] = {}  # one entry per agent account: bounded by the users table
        self._shown: b.LoadShown | None = None

    def heard(self, agent: str, partials_dropped: int) -> None:
        """An agent's heartbeat: its partials dropped since it started."""
        if partials_dropped or agent in self._agents:
            self._agents[agent] = max(0, partials_dropped)

    def report(self) -> b.LoadShown:
        agents = tuple({"agent": a, "partials_dropped": n} for a, n in sorted(self._agents.items()))
        return b.LoadShown(partials_shed=self._screens.partials_shed, browsers_dropped=self._browsers_dropped(), agents=agents)

    def show(self) -> None:
        """Publish the counts to supervisors if any changed since last shown."""
        now = self.report()
        if now != self._shown and (self._shown is not None or _anything(now)):
            self._shown = now
            self._screens.publish(now, call=None, supervisors=True)

    def greet(self, link: BrowserLink) -> None:
        """A supervisor signed in: show what was shed so far, if anything was."""
        if self._shown is not None:
            self._screens.reply(link, self._shown)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(EVERY_S)
            self.show()


def _anything(load: b.LoadShown) -> bool:
    return bool(load.partials_shed or load.browsers_dropped or any(a["partials_dropped"] for a in load.agents))
