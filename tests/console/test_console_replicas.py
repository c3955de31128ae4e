"""Several console replicas: two consoles sharing one PostgreSQL store and one
NATS server (both real, ``tests/postgres_kit.py``, ``tests/nats_kit.py``), a
real agent link (``agent/link.ConsoleLink``) and browser sockets on both.

In-process replicas here; ``test_console_failover.py`` kills a replica
process with SIGKILL mid-call.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random

import pytest

from agent.link import ConsoleLink
from console.cluster import SCREENS, Cluster, shown
from console_kit import PASSWORD, open_agent, open_browser, running_console, threat_call_events
from kernel import protocol as p


@contextlib.asynccontextmanager
async def two_replicas(tmp_path, postgresql_server, nats_url: str = "", **config):
    """Replicas ``a`` and ``b`` on one fresh database, linked through one NATS
    (``nats_url``) or, with ``fanout="postgresql"``, through that database; each having heard the other."""
    url = postgresql_server.new_database()
    if nats_url:
        config["nats"] = nats_url
    try:
        async with running_console(tmp_path / "a", store=url, replica="a", **config) as a, \
                running_console(tmp_path / "b", store=url, replica="b", users=False, **config) as b:
            b.tokens = a.tokens
            await until(lambda: a.cluster.peers and b.cluster.peers, "the replicas to hear each other")
            yield a, b
    finally:
        postgresql_server.drop_database(url)


async def until(condition, what: str, timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def agent_link(*consoles, authorizations: list | None = None) -> ConsoleLink:
    got = authorizations if authorizations is not None else []
    return ConsoleLink([c.url for c in consoles], agent_id="agent-1", token=consoles[0].tokens["agent-1"],
                       on_authorization=got.append, rng=random.Random(3), heartbeat_s=1.0)


@pytest.fixture(params=["nats", "postgresql"])
def fanout(request) -> dict:
    """How the two replicas reach each other, once each: NATS, and the store's PostgreSQL (LISTEN/NOTIFY)."""
    if request.param == "nats":
        return {"nats_url": request.getfixturevalue("nats_server").url}
    return {"fanout": "postgresql"}


def ids(prefix: str):
    counter = itertools.count(1)
    return lambda: f"{prefix}-{next(counter)}"


def test_an_agent_on_one_replica_is_seen_on_both_and_an_authorization_given_on_the_other_reaches_it(tmp_path, postgresql_server, fanout):
    async def main():
        async with two_replicas(tmp_path, postgresql_server, **fanout) as (a, b):
            sup_a, sup_b, ann_a = await open_browser(a), await open_browser(b), await open_browser(a)
            await sup_a.login("sup")
            await sup_b.login("sup")
            await ann_a.login("ann")
            authorizations: list[p.EndCallAuthorized] = []
            link = agent_link(b, authorizations=authorizations)  # the agent links to B only
            link.start()
            try:
                await link.wait_connected(10)
                for message in threat_call_events("call-1", partner="ann", event_id=ids("e")):
                    link.publish(message)
                link.publish(p.PartialTranscript(call_id="call-1", speaker="customer", start=6.0, text="and another"))
                await link.drain(10)

                # the alert, the line and the finding reach the supervisors on both replicas; the partner on A sees her call's level
                for sup in (sup_a, sup_b):
                    alert = await sup.expect("alert", alert__call_id="call-1")
                    assert alert["alert"]["level"] == "alert"
                    await sup.expect("partial", call_id="call-1", text="and another")
                    assert [m for m in sup.seen if m["type"] == "utterance"][0]["utterance"]["text"] == "i will break your neck"
                    assert any(m["type"] == "finding" for m in sup.seen)
                await ann_a.expect("level", level__call_id="call-1", level__level="alert")
                # B counts a batch as published when its send returns, which may be after A has shown it (PostgreSQL
                # delivers a NOTIFY at commit): wait for the count, do not race it
                for _ in range(50):
                    if b.cluster.stats.published >= 5:
                        break
                    await asyncio.sleep(0.05)
                assert a.cluster.stats.received >= 5 and b.cluster.stats.published >= 5, (a.cluster.stats, b.cluster.stats)
                await sup_a.nothing("alert")  # shown once, not once per replica

                # authorized on A; the agent is linked to B: B sends it
                await sup_a.request("authorize_end", call_id="call-1", reason="threats", ref="r1")
                await sup_a.expect("ok", ref="r1")
                await until(lambda: authorizations, "the authorization to reach the agent")
                assert authorizations[0].call_id == "call-1" and authorizations[0].by == "sup"
                await until(lambda: a.cluster.stats.end_calls_relayed == 1, "A to hear B took it")
                assert b.cluster.stats.end_calls_delivered == 1 and len(authorizations) == 1
                await sup_b.expect("authorization", authorization__call_id="call-1")
                await ann_a.expect("authorization", authorization__call_id="call-1")

                health = a._health()["cluster"]
                assert health["state"] == "connected" and health["peers"] == ["b"] and health["replica"] == "a"
                assert health["fanout"] == ("postgresql" if "fanout" in fanout else "nats")
                # A leaves B's agent's call alone: B holds the agent
                await until(lambda: a.cluster.held_elsewhere("agent-1"), "B's beat to name its agent")
                a.clock.advance(seconds=a.config.agent_lost_seconds * 2)
                assert await a.agents.sweep() == []  # as one console, A would close it as lost
            finally:
                await link.close()

    asyncio.run(main())


def test_a_logout_on_one_replica_closes_the_same_session_on_the_other_at_once(tmp_path, postgresql_server, fanout):
    async def main():
        async with two_replicas(tmp_path, postgresql_server, **fanout) as (a, b):
            b.browsers.sweep_seconds = 3600.0  # not the sweep: the nudge through NATS
            tab_a = await open_browser(a)
            session = await tab_a.login("sup")
            tab_b = await open_browser(b)
            await tab_b.request("resume", token=session["token"])
            await tab_b.expect("snapshot")
            await tab_a.request("logout", ref="out")
            await tab_a.expect("ok", ref="out")
            await asyncio.wait_for(tab_b.ws.wait_closed(), 5)
            assert tab_b.ws.close_code == 4401
            assert b.stats.browsers_signed_out == 1

    asyncio.run(main())


def test_messages_lost_between_replicas_are_counted_and_the_screens_get_a_fresh_snapshot(tmp_path, postgresql_server, fanout):
    async def main():
        async with two_replicas(tmp_path, postgresql_server, **fanout) as (a, b):
            await a.db(a.store.add_user, "sue", "supervisor", PASSWORD)
            sup_a, sue_a = await open_browser(a), await open_browser(a)
            await sup_a.login("sup")
            await sue_a.login("sue")
            agent = await open_agent(b)
            await agent.threat_call("call-2")
            await sup_a.expect("alert", alert__call_id="call-2")
            b.cluster._number += 3  # as if B's next three durable messages never reached A
            await agent.send(agent.event(p.CallEnded, call_id="call-2", at=60.0, reason="hangup"))
            snapshot = await sup_a.expect("snapshot")
            assert snapshot["calls"] == []  # the call's end, which A never got live, from the store
            assert snapshot["user"] == "sup" and (await sue_a.expect("snapshot"))["user"] == "sue"  # one read, each page its own
            assert a.cluster.stats.gaps == 3 and a.cluster.stats.resyncs == 1
            load = await sup_a.expect("load", timeout=5)
            assert load["cluster"] == "connected" and load["cluster_resyncs"] == 1 and load["replica"] == "a"

    asyncio.run(main())


def test_a_replica_serves_its_own_without_nats_and_catches_up_when_it_is_back(tmp_path, postgresql_server):
    from nats_kit import NatsServer

    nats = NatsServer()  # this test stops its own NATS

    async def main():
        async with two_replicas(tmp_path, postgresql_server, nats.url) as (a, b):
            sup_a, sup_b = await open_browser(a), await open_browser(b)
            await sup_a.login("sup")
            await sup_b.login("sup")
            nats.stop()
            await until(lambda: a.cluster.state == "disconnected" and b.cluster.state == "disconnected", "both to see NATS gone")
            assert a._health()["cluster"]["state"] == "disconnected"
            agent = await open_agent(b)
            await agent.threat_call("call-3")
            await sup_b.expect("alert", alert__call_id="call-3")  # B's own browsers: as one console
            load = await sup_a.expect("load", cluster="disconnected")
            assert load["replica"] == "a"
            nats.start()
            await until(lambda: a.cluster.state == "connected" and b.cluster.state == "connected", "both to reconnect", timeout=30)
            # what A's screens missed: relayed late (B's NATS client held it while reconnecting) or,
            # if it was lost on the way, a fresh snapshot from the store
            while True:
                message = await sup_a.recv_json(15)
                if message["type"] == "alert" and message["alert"]["call_id"] == "call-3":
                    assert a.cluster.stats.gaps == 0
                    break
                if message["type"] == "snapshot":
                    assert any(a["call_id"] == "call-3" for a in message["alerts"]) and a.cluster.stats.resyncs >= 1
                    break

    with nats:
        asyncio.run(main())


def test_what_comes_from_nats_is_checked_and_a_bad_message_is_counted_and_dropped(nats_server):
    async def main():
        delivered = []

        async def nothing(*args):
            return False

        cluster = Cluster(nats_server.url, "x", deliver=lambda *a: delivered.append(a), end_call=nothing, sessions_changed=nothing,
                          resync=nothing, agents=lambda: (), spawn=asyncio.get_running_loop().create_task)
        cluster.start()
        import nats

        other = await nats.connect(nats_server.url)
        try:
            await until(lambda: cluster.state == "connected", "the cluster to connect")
            good = json.dumps({"v": 1, "type": "alert", "alert": {}}).encode()
            for payload in (b"no header line", b"[1]\n" + good, b'{"r":"y","n":1,"s":"yes","p":null}\n' + good,
                            b'{"r":"y","n":1,"s":true,"p":null}\n<script>', b'{"r":"y","n":1,"s":true,"p":null}\n{"type":"login"}',
                            b'{"r":"y","n":1,"s":true,"p":"ann"}\n' + good):
                await other.publish(SCREENS, payload)
            await other.flush()
            await until(lambda: cluster.stats.bad == 5 and delivered, "the messages to be read")
            assert delivered == [(good, True, "ann", False)]
        finally:
            await other.close()
            await cluster.close()

    asyncio.run(main())


def test_the_nats_url_shown_hides_its_password():
    assert shown("nats://cs:s3cret@n1:4222,nats://n2:4222") == "nats://cs:***@n1:4222,nats://n2:4222"


def test_nats_needs_a_shared_store_and_a_nats_url(tmp_path):
    from console.config import ConsoleConfig
    from kernel.errors import ConfigError

    with pytest.raises(ConfigError, match="shared store"):
        ConsoleConfig(data_dir=tmp_path, nats="nats://127.0.0.1:4222")
    with pytest.raises(ConfigError, match="nats://HOST:PORT"):
        ConsoleConfig(data_dir=tmp_path, store="postgresql://x@db/x", nats="http://127.0.0.1:4222")
    with pytest.raises(ConfigError, match="replica"):
        ConsoleConfig(data_dir=tmp_path, store="postgresql://x@db/x", nats="nats://db:4222", replica="a b")
    pg = "postgresql://x@db/x"
    assert ConsoleConfig(data_dir=tmp_path, store=pg, nats="nats://db:4222").fanout_kind == "nats"  # the default with nats set
    assert ConsoleConfig(data_dir=tmp_path, store=pg).fanout_kind == ""  # one console
    assert ConsoleConfig(data_dir=tmp_path, store=pg, fanout="postgresql").fanout_kind == "postgresql"
    for bad, why in (({"fanout": "redis"}, "fanout must be"), ({"fanout": "nats"}, "needs \\[console\\] nats"),
                     ({"fanout": "postgresql", "store": ""}, "shared store"),
                     ({"fanout": "postgresql", "nats": "nats://db:4222"}, "leave \\[console\\] nats out")):
        with pytest.raises(ConfigError, match=why):
            ConsoleConfig(data_dir=tmp_path, **{"store": pg, **bad})


class Balancer:
    """A TCP load balancer in front of the replicas (as HAProxy in ``docs/deployment.md``,
    without TLS): each new connection goes to the first replica that accepts it."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for port in self.ports:
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
                break
            except OSError:
                continue
        else:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


@pytest.mark.browser
def test_a_supervisor_page_follows_its_console_replica_going_away_through_the_balancer(tmp_path, postgresql_server, nats_server):
    from playwright.async_api import async_playwright, expect

    from browser import launch
    from console_kit import PASSWORD

    async def main():
        async with two_replicas(tmp_path, postgresql_server, nats_server.url) as (a, b), async_playwright() as pw:
            balancer = Balancer([a.port, b.port])
            await balancer.start()
            browser = await launch(pw)
            try:
                base = f"http://127.0.0.1:{balancer.port}"
                page = await (await browser.new_context(viewport={"width": 1400, "height": 900})).new_page()
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                await page.goto(base + "/")
                await page.fill("#user", "sup")
                await page.fill("#password", PASSWORD)
                await page.click("#sign-in")
                await page.wait_for_url(base + "/supervisor")
                await expect(page.locator("#status")).to_have_text("Connected")
                assert len(a.screens.links) == 1 and not b.screens.links  # the page is on A

                agent = await open_agent(b)  # the agent on B: its alert crosses to the page on A
                await agent.threat_call("call-9")
                await expect(page.locator('#calls tr[data-call="call-9"] .level')).to_have_text("Alert")
                await expect(page.locator("#alerts [data-alert]")).to_have_count(1)

                await a.stop()  # replica A goes away: the page reconnects through the balancer, to B
                await until(lambda: [link.user for link in b.screens.links] == ["sup"], "the page to resume its session on B")
                await expect(page.locator("#status")).to_have_text("Connected")
                await agent.threat_call("call-10", partner="bob")
                await expect(page.locator('#calls tr[data-call="call-10"] .level')).to_have_text("Alert")
                await expect(page.locator("#alerts [data-alert]")).to_have_count(2)  # each alert once
                assert errors == []
                await agent.close()
            finally:
                await browser.close()
                balancer.close()

    asyncio.run(main())


def test_a_peers_beat_reveals_messages_lost_after_its_last_one_and_the_screens_are_refreshed_once(nats_server):
    async def main():
        import nats

        resyncs = []

        async def nothing(*args):
            return False

        async def resync():
            resyncs.append(1)

        cluster = Cluster(nats_server.url, "x", deliver=lambda *a: None, end_call=nothing, sessions_changed=nothing,
                          resync=resync, agents=lambda: (), spawn=asyncio.get_running_loop().create_task)
        cluster.start()
        other = await nats.connect(nats_server.url)
        try:
            await until(lambda: cluster.state == "connected", "the cluster to connect")
            alert = json.dumps({"v": 1, "type": "alert", "alert": {}}).encode()
            await other.publish(SCREENS, b'{"r":"y#1","n":7,"s":true,"p":null}\n' + alert)  # first heard: no gap before it
            await other.publish(SCREENS, b'{"r":"y#1","n":8,"s":true,"p":null}\n' + alert)
            await other.publish(SCREENS, b'{"r":"y#1","b":10,"a":["agent-1"]}\n')  # 9 and 10 never came
            await other.flush()
            await until(lambda: resyncs, "a resynchronization")
            assert cluster.stats.gaps == 2 and cluster.stats.received == 2 and cluster.stats.bad == 0
            assert cluster.held_elsewhere("agent-1") and not cluster.held_elsewhere("agent-2")
            await other.publish(SCREENS, b'{"r":"y#1","b":10,"a":[]}\n')
            await other.flush()
            await asyncio.sleep(0.3)
            assert cluster.stats.gaps == 2 and len(resyncs) == 1 and not cluster.held_elsewhere("agent-1")
        finally:
            await other.close()
            await cluster.close()

    asyncio.run(main())
