"""A console replica killed mid-call: two ``python -m cli console`` processes
sharing one PostgreSQL store and linked through one NATS server or through
that PostgreSQL's LISTEN/NOTIFY (real ones, once each), a real agent
link (``agent/link.ConsoleLink``) given both URLs, and browser sockets on
both replicas.

The agent's replica dies with SIGKILL while events of a call are in flight.
The agent fails over to the survivor and resends what was not acknowledged;
the survivor stores each event once (by ``event_id``). No alert is lost and
none is shown twice, on the survivor's screens and on the screens of the
dead replica once they reconnect to the survivor (the socket protocol a page
speaks: ``resume`` with its session token, then a snapshot).
"""

from __future__ import annotations

import asyncio
import itertools
import signal

from websockets.asyncio.client import connect

from agent.link import ConsoleLink
from console.store import Store
from console_kit import PASSWORD, Browser, threat_call_events
from replica_kit import Replica, read_all, signed_in
from kernel import protocol as p
from test_console_replicas import fanout, until  # noqa: F401 (fanout: a fixture)


def test_killing_the_agents_replica_mid_call_loses_no_alert_and_shows_none_twice(tmp_path, postgresql_server, fanout):
    url = postgresql_server.new_database()
    store = Store.open(url)
    store.add_user("sup", "supervisor", PASSWORD)
    store.add_user("ann", "partner", PASSWORD)
    token = store.add_user("agent-1", "agent")
    store.close()
    nats, settings = fanout.get("nats_url", ""), {k: v for k, v in fanout.items() if k == "fanout"}
    a, b = Replica(tmp_path, "a", url, nats, **settings), Replica(tmp_path, "b", url, nats, **settings)

    async def main():
        await a.started()
        await b.started()
        await until(lambda: a.health()["cluster"]["peers"] == ["b"] and b.health()["cluster"]["peers"] == ["a"], "the replicas to hear each other", 30)
        assert a.health()["cluster"]["fanout"] == b.health()["cluster"]["fanout"] == settings.get("fanout", "nats")
        sup_a, session_a = await signed_in(a, "sup")
        sup_b, _ = await signed_in(b, "sup")
        authorizations: list = []
        link = ConsoleLink([a.url, b.url], agent_id="agent-1", token=token, on_authorization=authorizations.append, heartbeat_s=1.0)
        link.start()
        try:
            await link.wait_connected(15)
            assert link.url.startswith(a.url)
            counter = itertools.count(1)
            event_id = lambda: f"ev-{next(counter)}"  # noqa: E731
            for message in threat_call_events("call-1", partner="ann", event_id=event_id):
                link.publish(message)
            await link.drain(15)
            for sup in (sup_a, sup_b):
                await sup.expect("alert", alert__call_id="call-1")

            # the second call's events are on their way when A dies
            for message in threat_call_events("call-2", partner="ann", event_id=event_id):
                link.publish(message)
            a.process.send_signal(signal.SIGKILL)
            a.process.wait(10)
            link.publish(p.UtteranceFinal(seq=0, event_id=event_id(), call_id="call-2", speaker="customer", start=7.0, end=8.0,
                                          text="you heard me", words=()))
            await link.drain(30)  # the agent failed over to B and B acknowledged everything
            assert link.url.startswith(b.url) and link.stats.failovers >= 1

            # B's supervisor: call-2's alert live once (from A before it died, or from B), or from a snapshot; never twice.
            # B stops hearing A within seconds and refreshes its screens (A may have stored what it never relayed).
            reading = asyncio.get_running_loop().create_task(read_all(sup_b))
            await until(lambda: b.health()["cluster"]["peers"] == [] and b.health()["cluster"]["resyncs"] >= 1, "B to see A gone", 20)
            await asyncio.sleep(1.0)
            reading.cancel()
            live = [m["alert"]["id"] for m in sup_b.seen if m["type"] == "alert" and m["alert"]["call_id"] == "call-2"]
            assert len(live) <= 1, live
            snapshots = [m for m in sup_b.seen if m["type"] == "snapshot"][1:]  # after the sign-in's
            assert snapshots, "B's screens were not refreshed"
            for snapshot in snapshots:
                ids = [x["call_id"] for x in snapshot["alerts"]]
                assert sorted(ids) == ["call-1", "call-2"], ids

            # A's browser: its socket is gone; the page reconnects (to the balancer's survivor, B) with its token
            await asyncio.wait_for(sup_a.ws.wait_closed(), 10)
            again = Browser(await connect(b.url + "/ws/browser"))
            await again.request("resume", token=session_a["token"])
            await again.expect("session")
            snapshot = await again.expect("snapshot")
            alerts = [x for x in snapshot["alerts"] if x["call_id"] in ("call-1", "call-2")]
            assert sorted(x["call_id"] for x in alerts) == ["call-1", "call-2"]  # none lost, none twice

            # the store: each alert, line and finding once
            check = Store.open(url)
            try:
                detail = check.call_detail("call-2")
                assert len(detail.alerts) == 1 and len(detail.findings) == 1
                assert [u.text for u in detail.utterances] == ["i will break your neck", "you heard me"]
                assert len(check.call_detail("call-1").alerts) == 1
            finally:
                check.close()

            # an authorization given on B reaches the agent (now linked to B)
            await again.request("authorize_end", call_id="call-2", reason="threats", ref="end")
            await again.expect("ok", ref="end")
            await until(lambda: authorizations, "the authorization to reach the agent")
            assert b.health()["cluster"]["peers"] == []
        finally:
            await link.close()

    try:
        asyncio.run(main())
    finally:
        a.stop()
        b.stop()
        postgresql_server.drop_database(url)
