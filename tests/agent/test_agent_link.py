"""The console link: delivery, acks, reconnect with backoff, resend, seq across restarts."""

from __future__ import annotations

import asyncio
import random

import pytest

from kernel import protocol as p
from agent.link import FLAPPING_S, Backoff, ConsoleLink, LinkError, LinkRefused, console_urls
from agent_kit import Stored, TinyConsole, notice, until

FAST = Backoff(initial=0.02, maximum=0.1, jitter=0.5)


def make_link(url: str, **kwargs) -> ConsoleLink:
    kwargs.setdefault("backoff", FAST)
    return ConsoleLink(url, agent_id="agent-1", token=kwargs.pop("token", "good"), rng=random.Random(7), **kwargs)


def test_backoff_grows_caps_and_jitters():
    backoff = Backoff(initial=0.5, maximum=8.0, factor=2.0, jitter=0.5)
    rng = random.Random(1)
    delays = [backoff.delay(n, rng) for n in range(10)]
    for n, delay in enumerate(delays):
        base = min(8.0, 0.5 * 2**n)
        assert base * 0.5 <= delay <= base
    assert max(delays) <= 8.0 and delays[-1] >= 4.0
    assert len({round(d, 6) for d in delays[6:]}) > 1, "jitter must vary the capped delays"
    assert Backoff(jitter=0.0).delay(3, rng) == 0.25 * 8


def test_delivers_in_order_and_drains_on_acks():
    async def main():
        console = await TinyConsole().start()
        link = make_link(console.url)
        link.start()
        sent = [link.publish(notice(n)) for n in range(1, 6)]
        await link.drain(timeout=10)
        assert [m.seq for m in sent] == [1, 2, 3, 4, 5]
        assert console.stored.order == [f"c1:{n}" for n in range(1, 6)]
        assert link.pending == 0 and link.stats.acked == 5
        await link.close()
        await console.stop()

    asyncio.run(main())


def test_fresh_link_numbers_after_what_the_console_has():
    """An agent process restart: the console already holds seq 1..41 of this agent."""

    async def main():
        stored = Stored(last_seq={"agent-1": 41})
        console = await TinyConsole(stored).start()
        link = make_link(console.url)
        for n in range(1, 4):  # queued before the link ever connected
            link.publish(notice(n))
        link.start()
        await link.drain(timeout=10)
        assert [stored.by_event[e].seq for e in stored.order] == [42, 43, 44]
        assert link.publish(notice(4)).seq == 45
        await link.drain(timeout=10)
        assert stored.last_seq["agent-1"] == 45
        await link.close()
        await console.stop()

    asyncio.run(main())


def test_console_restart_resends_only_what_was_not_stored_and_nothing_twice():
    async def main():
        stored = Stored()
        # First console stores 3 messages without acking them, then crashes.
        first = await TinyConsole(stored, ack=False, hang_up_after=3).start()
        port = first.port
        link = make_link(first.url)
        link.start()
        for n in range(1, 4):
            link.publish(notice(n))
        await until(lambda: len(stored.order) == 3)
        await first.stop()
        assert link.pending == 3, "nothing was acknowledged"
        for n in range(4, 7):  # published while the console is down
            link.publish(notice(n))
        await asyncio.sleep(0.2)  # the link retries against a closed port meanwhile
        second = await TinyConsole(stored).start(port)
        await link.drain(timeout=10)
        assert stored.order == [f"c1:{n}" for n in range(1, 7)]
        # the welcome said 3 were stored: only 4..6 crossed the wire again
        assert [m.event_id for m in stored.received] == [f"c1:{n}" for n in range(1, 7)]
        assert link.stats.failed_connects >= 1 and link.stats.connects == 2
        await link.close()
        await second.stop()

    asyncio.run(main())


def test_unstored_messages_are_resent_and_deduplicated_by_event_id():
    async def main():
        stored = Stored()
        console = await TinyConsole(stored, ack=False).start()
        link = make_link(console.url)
        link.start()
        for n in range(1, 4):
            link.publish(notice(n))
        await until(lambda: len(stored.order) == 3)
        # The console "forgets" the last two (its write was lost) and restarts.
        stored.last_seq["agent-1"] = 1
        await console.stop()
        again = await TinyConsole(stored).start(console.port)
        await link.drain(timeout=10)
        assert [m.event_id for m in stored.received] == ["c1:1", "c1:2", "c1:3", "c1:2", "c1:3"]
        assert stored.order == ["c1:1", "c1:2", "c1:3"]
        assert link.stats.resent == 2
        await link.close()
        await again.stop()

    asyncio.run(main())


def test_partials_are_ephemeral_bounded_and_keep_their_place():
    async def main():
        console = await TinyConsole().start()
        link = make_link(console.url, partial_limit=2)
        partial = p.PartialTranscript(call_id="c1", speaker="customer", start=0.0, text="hel")
        link.publish(partial)  # not connected yet: dropped
        assert link.stats.partials_dropped == 1
        link.start()
        await link.wait_connected(timeout=10)
        link.publish(notice(1))
        link.publish(partial)
        link.publish(notice(2))
        await link.drain(timeout=10)
        await until(lambda: len(console.partials) == 1)
        kinds = [m.TYPE for m in console.stored.received]
        assert kinds == ["notice", "partial", "notice"]
        await link.close()
        await console.stop()

    asyncio.run(main())


def test_refused_token_ends_the_link_with_a_clear_error():
    async def main():
        console = await TinyConsole(token="right").start()
        link = make_link(console.url, token="wrong")
        link.publish(notice(1))
        link.start()
        with pytest.raises(LinkRefused) as info:
            await link.drain(timeout=10)
        assert info.value.code == "bad_token" and "refused" in str(info.value)
        assert console.stored.hellos == 1, "a refused token is not retried"
        await link.close()
        await console.stop()

    asyncio.run(main())


def test_unreachable_console_gives_up_after_the_allowed_attempts():
    async def main():
        console = await TinyConsole().start()
        url = console.url
        await console.stop()  # nobody listens there now
        link = make_link(url, max_attempts=3)
        link.publish(notice(1))
        link.start()
        with pytest.raises(LinkError) as info:
            await link.drain(timeout=10)
        assert info.value.code == "console_unreachable"
        assert "after 3 attempt" in str(info.value)
        assert link.stats.failed_connects == 3
        await link.close()

    asyncio.run(main())


def test_end_call_authorization_reaches_the_callback():
    async def main():
        console = await TinyConsole().start()
        got = []

        async def on_authorization(message):
            got.append(message)

        link = make_link(console.url, on_authorization=on_authorization)
        link.start()
        await link.wait_connected(timeout=10)
        auth = p.EndCallAuthorized(call_id="c1", authorization_id="a1", by="lee", reason="threats", authorized_at="2026-11-30T02:00:00.000Z")
        await console.send_all(auth)
        await until(lambda: got)
        assert got == [auth]
        await link.close()
        await console.stop()

    asyncio.run(main())


def test_console_urls_several_replicas():
    assert console_urls("ws://a:8750, wss://b:8750/ws/agent,ws://a:8750") == ("ws://a:8750/ws/agent", "wss://b:8750/ws/agent")
    assert console_urls(["ws://c:1"]) == ("ws://c:1/ws/agent",)
    for bad in ("", " , ", "http://a:8750", "ws://a:1,a:2"):
        with pytest.raises(LinkError) as info:
            console_urls(bad)
        assert info.value.code == "bad_console_url"


def test_a_dead_replica_fails_over_to_the_next_and_loses_or_repeats_nothing():
    """Two console replicas sharing one store: the one the agent is linked to
    dies having stored 3 events it never acknowledged; the agent moves to the
    other at once, which welcomes it with what the store holds."""

    async def main():
        stored = Stored()
        first = await TinyConsole(stored, ack=False, hang_up_after=3).start()
        second = await TinyConsole(stored).start()
        link = make_link(f"{first.url},{second.url}", backoff=Backoff(initial=5.0, maximum=5.0, jitter=0.0))
        link.start()
        for n in range(1, 4):
            link.publish(notice(n))
        await until(lambda: len(stored.order) == 3)
        await asyncio.sleep(FLAPPING_S)  # a link that has lived: not a flapping one
        await first.stop()  # the replica dies; it does not come back
        for n in range(4, 7):
            link.publish(notice(n))
        await link.drain(timeout=4)  # sooner than one backoff delay: the move to the next replica does not wait
        assert stored.order == [f"c1:{n}" for n in range(1, 7)]
        assert [m.event_id for m in stored.received] == [f"c1:{n}" for n in range(1, 7)]  # nothing twice
        assert link.url == second.url + "/ws/agent" and link.stats.failovers >= 1 and link.stats.connects == 2
        await link.close()
        await second.stop()

    asyncio.run(main())


def test_every_replica_unreachable_is_one_clear_error():
    async def main():
        consoles = [await TinyConsole().start() for _ in range(2)]
        urls = ",".join(c.url for c in consoles)
        for console in consoles:
            await console.stop()
        link = make_link(urls, max_attempts=4)
        link.publish(notice(1))
        link.start()
        with pytest.raises(LinkError) as info:
            await link.drain(timeout=10)
        assert "and 1 other console(s)" in str(info.value) and "after 4 attempt" in str(info.value)
        assert link.stats.failed_connects == 4 and link.stats.failovers == 2
        await link.close()

    asyncio.run(main())
