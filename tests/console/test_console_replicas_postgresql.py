"""Two console replicas linked through their store's PostgreSQL (``[console]
fanout = "postgresql"``, LISTEN/NOTIFY; ``console/cluster_postgresql.py``), on a
real server (``tests/postgres_kit.py``): what only this fan-out has. What
both fan-outs share runs once per fan-out in ``test_console_replicas.py``."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from console.cluster import SCREENS
from console.cluster_postgresql import NOTIFY_MAX, PostgresFanout
from console_kit import open_agent, open_browser
from test_console_replicas import two_replicas, until


def _listeners(admin, url: str) -> list[int]:
    return [r[0] for r in admin.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name LIKE 'callshield listen%%'", (url.rsplit("/", 1)[1],))]


def test_a_message_over_notifys_limit_is_counted_and_the_other_replica_refreshes_its_screens_from_the_store(tmp_path, postgresql_server):
    async def main():
        async with two_replicas(tmp_path, postgresql_server, fanout="postgresql") as (a, b):
            sup_a = await open_browser(a)
            await sup_a.login("sup")
            agent = await open_agent(b)
            long = "i will break your neck " + "and I keep on talking " * 400  # a line of some 9,000 bytes: no NOTIFY carries it
            await agent.threat_call("call-big", text=long)
            await sup_a.expect("alert", alert__call_id="call-big")  # the alert itself is small: it crosses
            snapshot = await sup_a.expect("snapshot", timeout=10)  # the line and the finding did not: a fresh snapshot has them
            assert any(c["id"] == "call-big" for c in snapshot["calls"]), snapshot["calls"]
            assert b.cluster.stats.oversized == 2 and b.cluster.stats.dropped == 2  # the utterance and the finding
            assert a.cluster.stats.gaps == 2 and a.cluster.stats.resyncs >= 1
            assert not [m for m in sup_a.seen if m["type"] == "utterance" and m["utterance"]["call_id"] == "call-big"]
            await agent.threat_call("call-small")  # and the link goes on as before
            await sup_a.expect("utterance", utterance__call_id="call-small")
            await agent.close()

    asyncio.run(main())


def test_notifys_limit_is_the_servers(postgresql_server):
    """The largest payload sent is the largest PostgreSQL takes, and one byte more it refuses."""
    url = postgresql_server.new_database()
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SELECT pg_notify('x', repeat('a', %s))", (NOTIFY_MAX,))
            with pytest.raises(psycopg.errors.InvalidParameterValue, match="payload string too long"):
                conn.execute("SELECT pg_notify('x', repeat('a', %s))", (NOTIFY_MAX + 1,))
    finally:
        postgresql_server.drop_database(url)


def test_the_listening_connection_killed_is_seen_and_connected_again_and_what_was_missed_is_refreshed(tmp_path, postgresql_server):
    async def main():
        async with two_replicas(tmp_path, postgresql_server, fanout="postgresql") as (a, b):
            url = a.config.store
            sup_a = await open_browser(a)
            await sup_a.login("sup")
            agent = await open_agent(b)
            await agent.threat_call("call-1")
            await sup_a.expect("alert", alert__call_id="call-1")
            killed = _listeners(postgresql_server.admin, url)
            assert len(killed) == 2  # one listening connection per replica
            for pid in killed:
                postgresql_server.admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            await until(lambda: a.cluster.stats.disconnects == 1 and b.cluster.stats.disconnects == 1, "both to see their listener gone")
            await until(lambda: a.cluster.state == "connected" and b.cluster.state == "connected", "both to listen again", timeout=30)
            again = _listeners(postgresql_server.admin, url)
            assert len(again) == 2 and not set(again) & set(killed)
            await agent.threat_call("call-2", partner="bob")
            await sup_a.expect("alert", alert__call_id="call-2")  # across the replicas again
            assert a._health()["cluster"]["state"] == "connected" and a.cluster.stats.bad == 0
            await agent.close()

    asyncio.run(main())


def test_a_full_inbox_drops_the_oldest_and_counts_it(postgresql_server):
    """A replica reading too slowly: its bounded inbox keeps the newest, every one dropped counted."""
    async def main():
        url = postgresql_server.new_database()
        delivered: list[bytes] = []

        async def nothing(*args):
            return False

        from console.cluster import Cluster, INBOX

        fanout = PostgresFanout(url)
        cluster = Cluster(url, "x", deliver=lambda *a: delivered.append(a[0]), end_call=nothing, sessions_changed=nothing,
                          resync=nothing, agents=lambda: (), spawn=asyncio.get_running_loop().create_task, fanout=fanout)
        cluster.start()
        try:
            await until(lambda: cluster.state == "connected", "the listener to connect")
            for n in range(INBOX + 10):  # as if NOTIFY had delivered them faster than this replica reads
                fanout._take(SCREENS, f'{{"r":"y#1","n":{n + 1},"s":true,"p":null}}\n{{"type":"alert","alert":{{}}}}')
            assert cluster.stats.dropped == 10 and fanout.backlog() == INBOX
            await until(lambda: fanout.backlog() == 0, "the inbox to be read")
            assert len(delivered) == INBOX and cluster.stats.gaps == 0  # the first heard was number 11: the count starts there
        finally:
            await cluster.close()
            postgresql_server.drop_database(url)

    asyncio.run(main())
