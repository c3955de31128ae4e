"""Load shedding (issue 15): live partials go first, and the floor is told.

- Unit: a browser that has fallen behind is sent no partials (counted), while
  final lines still queue; a browser a whole outbox behind is dropped as before.
- Over real websockets with a real console: an agent's dropped partials reach
  supervisors in a ``load`` message from its heartbeats, partners never see
  it, and a supervisor who signs in later is shown it at once.
"""

from __future__ import annotations

import asyncio
import json
import random

import pytest

from agent.link import Backoff, ConsoleLink
from console import browser_protocol as b
from console.fanout import SHED_AT, BrowserLink, Screens
from console.load import LoadWatch
from console_kit import open_browser, running_console
from kernel import protocol as p


class _Socket:
    """Stands in for a browser socket in the unit tests: records closes only."""

    def __init__(self) -> None:
        self.closed: list[tuple[int, str]] = []
        self.remote_address = ("203.0.113.9", 5000)

    async def close(self, code: int, reason: str) -> None:
        self.closed.append((code, reason))


def _supervisor(limit: int, screens: Screens | None = None, *, user: str = "sup", role: str = "supervisor") -> BrowserLink:
    """A browser signed in as ``user`` with ``role``, connected to ``screens`` (if given)."""
    link = BrowserLink(_Socket(), limit)
    if screens is None:
        screens = Screens(on_drop=lambda: None, spawn=asyncio.ensure_future)  # a console of its own
    screens.add(link)
    screens.sign_in(link, user, role, "t")
    return link


def _partial(n: int) -> b.PartialShown:
    return b.PartialShown(call_id="c1", speaker="customer", start=1.0, text=f"partial {n}")


def test_a_browser_behind_is_sent_no_partials_but_every_final_line():
    async def main():
        screens = Screens(on_drop=lambda: None, spawn=asyncio.ensure_future)
        slow, quick = _supervisor(10, screens), _supervisor(10, screens)
        def quick_reads_all() -> None:
            while quick.outbox:
                quick.outbox.take()

        for n in range(int(10 * SHED_AT)):  # slow reads nothing: its outbox fills to the shedding mark
            screens.publish(b.NoticeShown(notice={"code": "x", "n": n}), call=None)
            quick_reads_all()
        for n in range(30):
            screens.publish(_partial(n), call=None)
            quick_reads_all()
        screens.publish(b.NoticeShown(notice={"code": "final"}), call=None)
        return screens, slow, quick

    screens, slow, quick = asyncio.run(main())
    assert slow.shed == 30 and quick.shed == 0 and screens.partials_shed == 30
    assert len(slow.outbox) == int(10 * SHED_AT) + 1 and not slow.dropped  # the final line queued behind
    assert b'"final"' in list(slow.outbox)[-1]


def test_each_message_reaches_the_browsers_its_roles_and_users_name_and_no_other():
    """Delivery goes by role and user, kept as browsers sign in and out: every
    supervisor gets a call's line and its partner gets it; a QA screen (QA
    replays calls, it does not watch them live), another partner, a screen not
    signed in, a signed-out one and a closed one get nothing; a browser that signs in again as someone else gets theirs."""
    async def main():
        screens = Screens(on_drop=lambda: None, spawn=asyncio.ensure_future)
        sup, qa = _supervisor(50, screens), _supervisor(50, screens, user="quinn", role="qa")
        ann, ann2, bob = (_supervisor(50, screens, user=u, role="partner") for u in ("ann", "ann", "bob"))
        anonymous = BrowserLink(_Socket(), 50)
        screens.add(anonymous)
        gone, out = _supervisor(50, screens), _supervisor(50, screens)
        screens.remove(gone)
        screens.sign_out(out)
        screens.publish(b.NoticeShown(notice={"n": 1}), call=None, partner="ann")
        screens.publish(b.NoticeShown(notice={"n": 2}), call=None, supervisors=False, partner="bob")
        screens.sign_in(ann2, "bob", "partner", "t2")  # the same socket, signed in again as bob
        screens.publish(b.NoticeShown(notice={"n": 3}), call=None, supervisors=False, partner="bob")
        return {name: [f.decode() for f in link.outbox] for name, link in
                dict(sup=sup, qa=qa, ann=ann, ann2=ann2, bob=bob, anonymous=anonymous, gone=gone, out=out).items()}

    got = asyncio.run(main())
    seen = {name: [n for n in (1, 2, 3) if any(f'"n":{n}' in f for f in frames)] for name, frames in got.items()}
    assert seen == {"sup": [1], "qa": [], "ann": [1], "ann2": [1, 3], "bob": [2, 3],
                    "anonymous": [], "gone": [], "out": []}


def test_who_a_browser_is_changes_only_through_the_screens_index():
    """A browser's user, role and token are read-only: set anywhere else, the
    index that decides what it is sent would go stale."""
    link = BrowserLink(_Socket(), 5)
    for name in ("user", "role", "token"):
        with pytest.raises(AttributeError):
            setattr(link, name, "sup")


def test_a_browser_a_whole_outbox_behind_is_still_dropped():
    async def main():
        dropped = []
        screens = Screens(on_drop=lambda: dropped.append(1), spawn=asyncio.ensure_future)
        slow = _supervisor(4, screens)
        for n in range(5):
            screens.publish(b.NoticeShown(notice={"n": n}), call=None)
        await asyncio.sleep(0)
        return dropped, slow

    dropped, slow = asyncio.run(main())
    assert dropped == [1] and slow.dropped and slow.ws.closed == [(1013, "too slow: reconnect")]


def test_load_is_shown_when_it_changes_and_only_then():
    async def main():
        screens = Screens(on_drop=lambda: None, spawn=asyncio.ensure_future)
        sup = _supervisor(100, screens)
        watch = LoadWatch(screens, lambda: 0)
        watch.show()  # nothing shed yet: nothing shown
        quiet = len(sup.outbox)
        watch.heard("agent-1", 0)
        watch.show()
        still_quiet = len(sup.outbox)
        watch.heard("agent-1", 3)
        watch.show()
        watch.show()  # unchanged: not shown again
        shown = [f for f in sup.outbox]
        later = _supervisor(100)
        watch.greet(later)
        return quiet, still_quiet, shown, list(later.outbox)

    quiet, still_quiet, shown, greeted = asyncio.run(main())
    assert quiet == still_quiet == 0
    assert len(shown) == 1 and b'"type":"load"' in shown[0] and b'"partials_dropped":3' in shown[0]
    assert greeted == shown


def test_an_agents_dropped_partials_reach_supervisors_not_partners(tmp_path):
    async def main():
        async with running_console(tmp_path) as console:
            sup, ann = await open_browser(console), await open_browser(console)
            await sup.login("sup")
            await ann.login("ann")
            link = ConsoleLink(console.url, agent_id="agent-1", token=console.tokens["agent-1"],
                               backoff=Backoff(initial=0.02, maximum=0.1, jitter=0.5), rng=random.Random(7))
            for n in range(7):  # the link is down: partials are dropped, and counted
                link.publish(p.PartialTranscript(call_id="c1", speaker="customer", start=0.0, text=f"word {n}"))
            link.start()
            try:
                load = await sup.expect("load", timeout=5)
                await ann.nothing("load", wait=1.5)
                late = await open_browser(console)
                await late.login("sup")
                greeted = await late.expect("load", timeout=2)
                return load, greeted, link.stats.partials_dropped
            finally:
                await link.close()

    load, greeted, dropped = asyncio.run(main())
    assert dropped == 7
    assert load["agents"] == [{"agent": "agent-1", "partials_dropped": 7}] and load["partials_shed"] == 0
    assert greeted["agents"] == load["agents"]


class _CountedWrites:
    """A real socket transport, its writes counted (everything else passes through)."""

    def __init__(self, transport) -> None:
        self._transport = transport
        self.writes = 0

    def write(self, data) -> None:
        self.writes += 1
        self._transport.write(data)

    def writelines(self, chunks) -> None:
        self.writes += 1
        self._transport.writelines(chunks)

    def __getattr__(self, name):
        return getattr(self._transport, name)


async def _link_to_a_real_browser(limit: int, *, max_queue: int = 16):
    """A BrowserLink over a real websocket (server and client on this loop), its
    transport's writes counted; returns (link, client socket, server)."""
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import serve

    ready: asyncio.Future = asyncio.get_running_loop().create_future()

    async def handler(ws):
        ws.transport = _CountedWrites(ws.transport)
        link = BrowserLink(ws, limit)
        link.sender = asyncio.create_task(link.pump())
        ready.set_result(link)
        await ws.wait_closed()
        link.sender.cancel()

    server = await serve(handler, "127.0.0.1", 0, compression=None)
    port = server.sockets[0].getsockname()[1]
    client = await connect(f"ws://127.0.0.1:{port}", compression=None, max_size=None, max_queue=max_queue)
    return await ready, client, server


def test_a_burst_reaches_a_browser_whole_and_in_order_in_far_fewer_socket_writes():
    """A supervisor's screen sent many messages at once: each arrives as its own message, in
    order, and they go out in a few writes, not one each (the console's largest cost at a
    thousand calls); a message after a quiet spell is written at once, not held back."""
    async def main():
        link, client, server = await _link_to_a_real_browser(1000)
        try:
            for n in range(300):
                assert link.offer(f'{{"type":"notice","n":{n}}}'.encode())
            got = [json.loads(await asyncio.wait_for(client.recv(), 5))["n"] for _ in range(300)]
            burst = link.ws.transport.writes
            await asyncio.sleep(0.05)  # a quiet spell, longer than FLUSH_EVERY
            before = link.ws.transport.writes
            link.offer(b'{"type":"notice","n":"alone"}')
            for _ in range(5):  # a few turns of the loop, no time: written at once
                await asyncio.sleep(0)
            alone = link.ws.transport.writes - before
            assert json.loads(await asyncio.wait_for(client.recv(), 5))["n"] == "alone"
            return got, burst, alone
        finally:
            client.transport.abort()
            server.close()

    got, burst, alone = asyncio.run(main())
    assert got == list(range(300))
    assert 1 <= burst <= 10, f"{burst} writes for 300 messages"
    assert alone == 1


def test_messages_coming_while_a_write_waits_join_it_in_order():
    """Messages offered one by one a few milliseconds apart (a supervisor's stream): each is
    its own message, in order, and they share writes; the last goes out without a straggler."""
    async def main():
        link, client, server = await _link_to_a_real_browser(1000)
        draw = random.Random(3)
        try:
            for n in range(300):
                assert link.offer(f'{{"type":"notice","n":{n}}}'.encode())
                await asyncio.sleep(draw.choice((0, 0.001, 0.002, 0.003)))
            got = [json.loads(await asyncio.wait_for(client.recv(), 5))["n"] for _ in range(300)]
            return got, link.ws.transport.writes
        finally:
            client.transport.abort()
            server.close()

    got, writes = asyncio.run(main())
    assert got == list(range(300))
    assert writes < 150, f"{writes} writes for 300 messages"


def test_a_sender_waiting_for_more_writes_once_a_quarter_of_its_outbox_waits():
    """A stream to a browser that keeps up never fills its outbox towards the shedding mark
    just because its sender waits to write in batches: a quarter of the outbox waiting ends
    the wait."""
    async def main():
        link, client, server = await _link_to_a_real_browser(40)
        try:
            link.offer(b'{"type":"notice","n":0}')
            await asyncio.wait_for(client.recv(), 5)  # written: a stream has begun, the next write waits
            before = link.ws.transport.writes
            for n in range(1, link.flush_at):
                link.offer(f'{{"type":"notice","n":{n}}}'.encode())
            for _ in range(5):
                await asyncio.sleep(0)
            waiting = link.ws.transport.writes - before
            link.offer(f'{{"type":"notice","n":{link.flush_at}}}'.encode())
            for _ in range(5):  # a few turns of the loop, no time
                await asyncio.sleep(0)
            return link.flush_at, waiting, link.ws.transport.writes - before, len(link.outbox)
        finally:
            client.transport.abort()
            server.close()

    flush_at, waiting, written, left = asyncio.run(main())
    assert flush_at == 10
    assert waiting == 0, "fewer than a quarter of the outbox: the sender still waits for more"
    assert written == 1 and left == 0, "a quarter waiting: written at once, in one write"


def test_a_browser_that_reads_nothing_is_dropped_with_its_socket_buffer_bounded():
    """A screen that stops reading: its socket's buffer grows to WRITE_BUFFER_LIMIT (and a
    message or two), no further; its sender then waits on the socket, its outbox fills, live
    partials to it are shed, and the browser is dropped as too slow (it reconnects and gets a
    fresh snapshot)."""
    from console.fanout import WRITE_BUFFER_LIMIT

    async def main():
        dropped = []
        screens = Screens(on_drop=lambda: dropped.append(1), spawn=asyncio.ensure_future)
        link, client, server = await _link_to_a_real_browser(8, max_queue=1)
        screens.add(link)
        screens.sign_in(link, "sup", "supervisor", "t")
        client.transport.pause_reading()  # the browser reads nothing more
        big = {"k": "x" * 60_000}
        most = 0
        try:
            for n in range(2000):
                if link.dropped:
                    break
                screens.publish(b.NoticeShown(notice={**big, "n": n}), call=None)
                screens.publish(_partial(n), call=None)
                await asyncio.sleep(0.002)
                most = max(most, link.ws.transport.get_write_buffer_size())
            return dropped, link, most, n
        finally:
            client.transport.abort()
            server.close()

    dropped, link, most, sent = asyncio.run(main())
    assert dropped == [1] and link.dropped, f"not dropped after {sent} messages"
    assert link.shed > 0, "the backlog waits in the outbox, where partials are shed, not in the socket"
    assert most <= WRITE_BUFFER_LIMIT + 2 * 61_000, most
