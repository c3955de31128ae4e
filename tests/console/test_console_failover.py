"""A console replica killed mid-call: two ``python -m cli console`` processes
sharing one PostgreSQL store and one NATS server (real ones), a real agent
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
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from websockets.asyncio.client import connect

from agent.link import ConsoleLink
from console.store import Store
from console_kit import PASSWORD, Browser, threat_call_events
from kernel import protocol as p
from test_console_replicas import until

ROOT = Path(__file__).resolve().parents[2]


class Replica:
    """One ``python -m cli console`` process; ``url`` once it serves."""

    def __init__(self, tmp: Path, name: str, store: str, nats: str) -> None:
        self.name = name
        config = tmp / f"{name}.toml"
        config.write_text(f'[console]\nstore = "{store}"\nnats = "{nats}"\nreplica = "{name}"\nport = 0\ndata_dir = "{tmp / name}"\n')
        env = {**os.environ, "PYTHONPATH": str(ROOT), "CALLSHIELD_HOME": str(tmp / name)}
        self.log = open(tmp / f"{name}.log", "w+b")
        self.process = subprocess.Popen([sys.executable, "-m", "cli", "--config", str(config), "console"], cwd=ROOT, env=env,
                                        stdout=subprocess.PIPE, stderr=self.log)
        self.url = ""

    async def started(self) -> None:
        loop = asyncio.get_running_loop()
        line = await asyncio.wait_for(loop.run_in_executor(None, self.process.stdout.readline), 60)
        found = re.search(rb"console at http://([\d.]+:\d+)", line)
        assert found, (line, self.tail())
        self.url = f"ws://{found.group(1).decode()}"

    def health(self) -> dict:
        import urllib.request

        with urllib.request.urlopen(self.url.replace("ws://", "http://") + "/healthz", timeout=5) as answer:
            return json.loads(answer.read())

    def tail(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


async def read_all(browser: Browser) -> None:
    """Keep reading a browser socket (into ``seen``) until cancelled or closed."""
    try:
        while True:
            await browser.recv_json(3600)
    except Exception:  # closed
        return


async def signed_in(replica: Replica, user: str) -> tuple[Browser, dict]:
    browser = Browser(await connect(replica.url + "/ws/browser"))
    await browser.request("login", user=user, password=PASSWORD)
    session = await browser.expect("session", timeout=15)
    await browser.expect("snapshot")
    return browser, session


def test_killing_the_agents_replica_mid_call_loses_no_alert_and_shows_none_twice(tmp_path, postgresql_server, nats_server):
    url = postgresql_server.new_database()
    store = Store.open(url)
    store.add_user("sup", "supervisor", PASSWORD)
    store.add_user("ann", "partner", PASSWORD)
    token = store.add_user("agent-1", "agent")
    store.close()
    a, b = Replica(tmp_path, "a", url, nats_server.url), Replica(tmp_path, "b", url, nats_server.url)

    async def main():
        await a.started()
        await b.started()
        await until(lambda: a.health()["cluster"]["peers"] == ["b"] and b.health()["cluster"]["peers"] == ["a"], "the replicas to hear each other", 30)
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
