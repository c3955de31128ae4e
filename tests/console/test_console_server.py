"""The console over real websockets on 127.0.0.1 (port 0) with a real SQLite
file; the tests taking ``store_where`` run once more with a real PostgreSQL
database as the store (``[console] store``)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import logging
import os
import re
import time
import urllib.request

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from agent.link import ConsoleLink
from console import agents
from console.agents import STORE_ERROR_CLOSE_S, SUMMARY_TRIES
from console.errors import StoreError
from kernel import protocol as p
from kernel.backoff import Backoff
from console_kit import FakeClock, open_agent, open_browser, running_console, store_setting, threat_call_events


def test_call_alert_ack_and_authorization_flow(tmp_path, store_where):
    async def main():
        async with running_console(tmp_path, **store_setting(store_where)) as console:
            sup = await open_browser(console)
            await sup.login("sup")
            ann = await open_browser(console)
            await ann.login("ann")
            agent = await open_agent(console)

            await agent.threat_call("call-1")
            await agent.send(p.PartialTranscript(call_id="call-1", speaker="customer", start=6.0, text="and another"))

            call = await sup.expect("call", call__id="call-1")
            assert call["call"]["partner"] == "ann" and call["call"]["seat"] == "12"
            utt = await sup.expect("utterance")
            assert utt["utterance"]["text"] == "i will break your neck"
            finding = await sup.expect("finding")
            assert finding["finding"]["category"] == "threat" and finding["finding"]["span"] == [7, 22]
            alert = await sup.expect("alert")
            assert alert["alert"]["level"] == "alert" and alert["alert"]["partner"] == "ann"
            checkin = await sup.expect("checkin")
            assert checkin["checkin"]["partner"] == "ann"
            partial = await sup.expect("partial")
            assert partial["text"] == "and another"

            level = await ann.expect("level")
            assert level["level"]["suggestion"] == "I will not continue while threats are made."
            assert not any(m["type"] in ("utterance", "finding", "alert", "partial") for m in ann.seen)

            await sup.request("ack_alert", alert_id=alert["alert"]["id"], ref="a1")
            acked = await sup.expect("alert")
            assert acked["alert"]["acknowledged_by"] == "sup"
            await sup.expect("ok", ref="a1")

            assert await sup.refused("authorize_end", call_id="call-1", reason="  ") == "reason_required"
            await sup.request("authorize_end", call_id="call-1", reason="repeated threats", ref="z1")
            await sup.expect("ok", ref="z1")
            end = await agent.expect("end_call_authorized")
            assert end["call_id"] == "call-1" and end["by"] == "sup" and end["reason"] == "repeated threats"
            banner = await ann.expect("authorization")
            assert banner["authorization"]["by"] == "sup"

            audit = await console.db(console.store.audit_entries, action="authorize_end")
            assert len(audit) == 1 and audit[0]["who"] == "sup" and audit[0]["call_id"] == "call-1"
            assert json.loads(audit[0]["detail"]) == {"authorization_id": end["authorization_id"], "reason": "repeated threats"}
            assert audit[0]["at"] == "2025-03-01T09:00:00.000Z"  # the console's clock, passed in

            await agent.send(agent.event(p.CallEnded, call_id="call-1", at=20.0, reason="authorized_end"))
            ended = await sup.expect("call", call__id="call-1")
            assert ended["call"]["ended_at"] and ended["call"]["end_reason"] == "authorized_end"
            for peer in (sup, ann, agent):
                await peer.close()

    asyncio.run(main())


def test_resent_event_is_stored_and_shown_once(tmp_path, store_where):
    async def main():
        async with running_console(tmp_path, **store_setting(store_where)) as console:
            sup = await open_browser(console)
            await sup.login("sup")
            agent = await open_agent(console)
            start = agent.event(p.CallStarted, call_id="c", partner="ann", seat="1", source="wav", started_at="2025-03-01T09:00:00Z", sample_rate=8000)
            said = agent.event(p.UtteranceFinal, call_id="c", speaker="customer", start=0.0, end=1.0, text="hello")
            await agent.send(start)
            await agent.send(said)
            await agent.send(said)  # resent after a lost ack: acknowledged again
            await sup.expect("utterance")
            await sup.nothing("utterance")
            assert console.stats.events_duplicate == 1
            await agent.close()

            again = await open_agent(console)  # reconnect: the console says what it has
            assert again.seen[0]["last_seq"] == said.seq
            await again.close()
            counts = await console.db(console.store.counts)
            assert counts["utterances"] == 1 and counts["events"] == 2

    asyncio.run(main())


def test_authorization_waits_for_an_offline_agent(tmp_path):
    async def main():
        async with running_console(tmp_path) as console:
            agent = await open_agent(console)
            await agent.threat_call("c9")
            await agent.close()
            await asyncio.sleep(0.05)
            sup = await open_browser(console)
            await sup.login("sup")
            await sup.request("authorize_end", call_id="c9", reason="threats", ref="z")
            await sup.expect("ok", ref="z")
            back = await open_agent(console)
            end = await back.expect("end_call_authorized")
            assert end["call_id"] == "c9" and end["reason"] == "threats"

    asyncio.run(main())


def test_partner_cannot_authorize_or_read_other_calls(tmp_path):
    async def main():
        async with running_console(tmp_path) as console:
            agent = await open_agent(console)
            await agent.threat_call("ann-call", partner="ann")
            await agent.threat_call("bob-call", partner="bob")
            ann = await open_browser(console)
            await ann.login("ann")
            before = await console.db(console.store.counts)

            assert await ann.refused("authorize_end", call_id="ann-call", reason="I want to hang up") == "forbidden"
            assert await ann.refused("call_detail", call_id="bob-call") == "forbidden"
            assert await ann.refused("ack_alert", alert_id=1) == "forbidden"
            assert await ann.refused("list_calls") == "forbidden"
            await ann.request("call_detail", call_id="ann-call", ref="own")
            own = await ann.expect("call_detail", ref="own")
            assert own["detail"]["call"]["id"] == "ann-call"

            assert await console.db(console.store.counts) == before
            refused = await console.db(console.store.audit_entries, action="refused")
            assert [r["who"] for r in refused] == ["ann"] * 4
            assert refused[0]["call_id"] == "ann-call" and "authorize_end" in refused[0]["detail"]
            assert refused[1]["call_id"] == "bob-call"
            assert await console.db(console.store.audit_entries, action="authorize_end") == []
            assert agent.seen and not any(m["type"] == "end_call_authorized" for m in agent.seen)
            await agent.nothing("end_call_authorized", wait=0.1)

    asyncio.run(main())


def test_partner_sees_only_their_own_call(tmp_path):
    async def main():
        async with running_console(tmp_path) as console:
            bob = await open_browser(console)
            await bob.login("bob")
            agent = await open_agent(console)
            await agent.threat_call("ann-call", partner="ann")
            await bob.nothing("call", wait=0.3)
            assert [m["type"] for m in bob.seen] == ["session", "snapshot"]
            await agent.threat_call("bob-call", partner="bob")
            await bob.expect("call", call__id="bob-call")
            await bob.expect("level")
            assert all(m.get("call", {}).get("id", "bob-call") == "bob-call" for m in bob.seen)

    asyncio.run(main())


def test_unauthenticated_socket_gets_only_errors_then_is_closed(tmp_path):
    async def main():
        async with running_console(tmp_path) as console:
            agent = await open_agent(console)
            await agent.threat_call("c1")
            stranger = await open_browser(console)
            before = await console.db(console.store.counts)
            await stranger.request("call_detail", call_id="c1")
            assert (await stranger.recv_json())["code"] == "not_authenticated"
            await stranger.request("authorize_end", call_id="c1", reason="x")
            assert (await stranger.recv_json())["code"] == "not_authenticated"
            await stranger.request("resume", token="made-up")
            assert (await stranger.recv_json())["code"] == "not_authenticated"
            closed = False
            try:
                await stranger.recv_json(timeout=2)
            except ConnectionClosed:
                closed = True
            assert closed
            assert all(m["type"] == "error" for m in stranger.seen)
            assert await console.db(console.store.counts) == before
            refused = await console.db(console.store.audit_entries, action="refused")
            assert len(refused) == 3 and {r["who"] for r in refused} == {"-"}

    asyncio.run(main())


def test_forged_agent_messages_are_refused(tmp_path):
    async def main():
        async with running_console(tmp_path) as console:
            sup = await open_browser(console)
            await sup.login("sup")
            one = await open_agent(console, "agent-1")
            await one.threat_call("c1")
            await sup.expect("checkin")  # the last message of the real call
            mark = len(sup.seen)
            before = await console.db(console.store.counts)

            # a wrong token
            bad = await open_agent(console, "agent-2", hello=False)
            answer = await bad.hello(console.tokens["agent-1"])
            assert answer["type"] == "error" and answer["code"] == "bad_token"

            # an agent sending for a call it does not own
            two = await open_agent(console, "agent-2")
            forged = two.event(p.LevelChanged, call_id="c1", level="none", previous="alert", reason="calm", at=9.0)
            await two.send(forged, ack=False)
            refusal = await two.expect("error")
            assert refusal["code"] == "not_your_call" and refusal["seq"] == forged.seq  # refused, never acknowledged
            notice = await sup.expect("notice")
            assert notice["notice"]["code"] == "events_refused" and "agent-2" in notice["notice"]["message"]
            await two.send(p.PartialTranscript(call_id="c1", speaker="customer", start=1.0, text="forged words"))
            assert (await two.expect("error"))["code"] == "not_your_call"
            assert "ack" not in [m["type"] for m in two.seen]

            # a browser socket speaking the agent protocol
            await sup.send_raw(p.encode(one.event(p.CallEnded, call_id="c1", at=1.0, reason="hangup")))
            assert (await sup.expect("error"))["code"] == "bad_message"

            # an agent message on the agent path without hello first
            raw = await open_agent(console, "agent-1", hello=False)
            await raw.send(raw.event(p.CallEnded, call_id="c1", at=1.0, reason="hangup"), ack=False)
            assert (await raw.expect("error"))["code"] == "not_authenticated"

            await sup.nothing("partial", wait=0.2)
            assert [m["type"] for m in sup.seen[mark:]] == ["notice", "error"]
            assert await console.db(console.store.counts) == {**before, "notices": before["notices"] + 1}  # the supervisors' notice only
            call = await console.db(console.store.call, "c1")
            assert call["level"] == "alert" and call["ended_at"] is None
            audit = await console.db(console.store.audit_entries)
            actions = [(a["who"], a["action"]) for a in audit]
            assert ("agent:agent-2", "agent_refused") in actions
            assert actions.count(("agent:agent-2", "refused")) == 2
            assert ("-", "agent_refused") in actions

    asyncio.run(main())


def test_malformed_json_is_answered_and_socket_keeps_working(tmp_path):
    async def main():
        async with running_console(tmp_path) as console:
            sup = await open_browser(console)
            await sup.login("sup")
            await sup.send_raw("{not json")
            assert (await sup.expect("error"))["code"] == "bad_message"
            await sup.send_raw(json.dumps({"v": 1, "type": "ack_alert", "alert_id": "seven", "ref": "q"}))
            assert (await sup.expect("error", ref="q"))["code"] == "bad_message"
            await sup.send_raw(json.dumps({"v": 2, "type": "list_calls"}))
            assert (await sup.expect("error"))["code"] == "bad_version"
            await sup.request("list_calls", ref="ok")
            assert (await sup.expect("calls", ref="ok"))["calls"] == []

            agent = await open_agent(console)
            await agent.send_raw("[1, 2")
            assert (await agent.expect("error"))["code"] == "bad_message"
            await agent.threat_call("still-works")
            assert await console.db(console.store.call, "still-works")

    asyncio.run(main())


def test_slow_browser_is_shed_partials_then_dropped_without_stalling_others(tmp_path):
    async def main():
        async with running_console(tmp_path, browser_queue=8) as console:
            fast = await open_browser(console)
            await fast.login("sup")
            slow = await open_browser(console)
            await slow.login("sup")
            slow.ws.transport.pause_reading()  # a browser that stopped reading
            agent = await open_agent(console)
            await agent.send(agent.event(p.CallStarted, call_id="busy", partner="ann", seat="1", source="wav", started_at="2025-03-01T09:00:00Z"))
            reader = asyncio.create_task(fast.expect("partial", text="last", timeout=20))  # a browser that keeps up
            for i in range(400):  # until the stuck browser's socket buffers are full and its outbox passes the shedding mark
                text = os.urandom(20000).hex()  # incompressible
                await agent.send(p.PartialTranscript(call_id="busy", speaker="customer", start=float(i), text=text))
                await asyncio.sleep(0.002)
                if console.screens.partials_shed:
                    break
            await agent.send(p.PartialTranscript(call_id="busy", speaker="customer", start=999.0, text="last"))
            await reader
            # live partials are shed for the stuck browser (counted), it is not dropped for them
            assert console.screens.partials_shed >= 1 and console.stats.browsers_dropped == 0
            for i in range(400):  # final lines are never shed: they fill its socket, then its outbox, and it is dropped
                text = f"line {i} " + os.urandom(10000).hex()
                await agent.send(agent.event(p.UtteranceFinal, call_id="busy", speaker="customer", start=float(i), end=float(i) + 1, text=text))
                await asyncio.sleep(0.002)
                if console.stats.browsers_dropped:
                    break
            assert console.stats.browsers_dropped == 1
            await fast.expect("utterance", utterance__text=text)
            assert console._health()["browsers"] == 1 and console._health()["partials_shed"] == console.screens.partials_shed
            slow.ws.transport.abort()

    asyncio.run(main())


def test_session_expires_and_logins_are_throttled(tmp_path):
    async def main():
        clock = FakeClock()
        async with running_console(tmp_path, clock=clock, session_hours=1, login_failures=3, lockout_seconds=60) as console:
            first = await open_browser(console)
            session = await first.login("sup")
            again = await open_browser(console)
            await again.request("resume", token=session["token"])
            await again.expect("session", user="sup")
            clock.advance(hours=1, seconds=1)
            late = await open_browser(console)
            await late.request("resume", token=session["token"])
            assert (await late.expect("error"))["code"] == "not_authenticated"

            guesser = await open_browser(console)
            for _ in range(3):
                await guesser.request("login", user="ann", password="wrong password")
                assert (await guesser.expect("error"))["code"] == "bad_login"
            other = await open_browser(console)
            await other.request("login", user="ann", password="correct horse battery")
            assert (await other.expect("error"))["code"] == "too_many_attempts"
            clock.advance(seconds=61)
            await other.login("ann")
            failed = await console.db(console.store.audit_entries, action="login_failed")
            assert len(failed) == 3

    asyncio.run(main())


def test_pages_are_served_with_security_headers(tmp_path):
    async def main():
        async with running_console(tmp_path, users=False) as console:
            loop = asyncio.get_running_loop()

            def get(path):
                try:
                    with urllib.request.urlopen(console.http_url + path, timeout=5) as r:
                        return r.status, dict(r.headers), r.read()
                except urllib.error.HTTPError as e:
                    return e.code, dict(e.headers), e.read()

            status, headers, body = await loop.run_in_executor(None, get, "/")
            assert status == 200 and b"Sign in" in body and headers["Content-Type"].startswith("text/html")
            assert "default-src 'self'" in headers["Content-Security-Policy"] and "script-src 'self'" in headers["Content-Security-Policy"]
            assert headers["X-Content-Type-Options"] == "nosniff"
            for path in ("/partner", "/supervisor", "/static/supervisor.js", "/static/console.css"):
                assert (await loop.run_in_executor(None, get, path))[0] == 200, path
            assert (await loop.run_in_executor(None, get, "/static/../store.py"))[0] == 404
            assert (await loop.run_in_executor(None, get, "/nothing"))[0] == 404
            status, _, body = await loop.run_in_executor(None, get, "/healthz")
            assert status == 200 and json.loads(body)["status"] == "ok"
            for name in ("login.html", "partner.html", "supervisor.html"):
                page = (await loop.run_in_executor(None, get, "/static/" + name))[2].decode()
                assert re.findall(r"<script\b[^>]*>", page) and all(" src=" in tag for tag in re.findall(r"<script\b[^>]*>", page))
                assert not re.search(r"\son[a-z]+\s*=", page)  # no inline event handlers either
            try:
                await connect(console.url + "/ws/browser", origin="http://evil.example")
                raise AssertionError("cross-origin socket accepted")
            except InvalidStatus as exc:
                assert exc.response.status_code == 403

    asyncio.run(main())


def test_sockets_are_not_compressed_even_when_a_client_offers_it(tmp_path):
    """permessage-deflate is declined on both sockets: a compressed stream that
    carries a session token beside a caller's words leaks through its length
    (CRIME/BREACH), and compressing each browser's copy cost CPU at scale."""
    async def main():
        async with running_console(tmp_path) as console:
            for path in ("/ws/browser", "/ws/agent"):
                async with connect(console.url + path, compression="deflate") as ws:
                    assert "Sec-WebSocket-Extensions" in ws.request.headers  # the client did offer it
                    assert ws.response.headers.get("Sec-WebSocket-Extensions") is None, path
                    assert not ws.protocol.extensions

    asyncio.run(main())


def test_store_keeps_events_across_a_console_restart(tmp_path, store_where):
    store = store_setting(store_where)
    async def main():
        async with running_console(tmp_path, **store) as console:
            sup = await open_browser(console)
            await sup.login("sup")
            agent = await open_agent(console)
            await agent.threat_call("c1")
            assert (await sup.expect("utterance"))["utterance"]["text"] == "i will break your neck"
            assert (await sup.expect("alert"))["alert"]["level"] == "alert"
            tokens = console.tokens
        async with running_console(tmp_path, users=False, **store) as console:
            console.tokens = tokens
            agent = await open_agent(console)
            assert agent.seen[0]["last_seq"] == 4
            sup = await open_browser(console)
            await sup.request("login", user="sup", password="correct horse battery")
            await sup.expect("session")
            snap = await sup.expect("snapshot")
            assert [c["id"] for c in snap["calls"]] == ["c1"] and snap["alerts"][0]["level"] == "alert"
            await sup.request("call_detail", call_id="c1", ref="d1")
            detail = await sup.expect("call_detail")
            assert [u["text"] for u in detail["detail"]["utterances"]] == ["i will break your neck"]

    asyncio.run(main())


def test_tls_serves_pages_and_sockets_over_https_and_wss(tmp_path):
    import ssl
    from pathlib import Path

    tls = Path(__file__).with_name("tls")
    trust = ssl.create_default_context(cafile=str(tls / "console.crt"))

    async def main():
        async with running_console(tmp_path, tls_cert=tls / "console.crt", tls_key=tls / "console.key") as console:
            assert console.url.startswith("wss://") and console.http_url.startswith("https://")
            loop = asyncio.get_running_loop()

            def get(path):
                with urllib.request.urlopen(console.http_url + path, timeout=5, context=trust) as r:
                    return r.status, r.headers
            status, headers = await loop.run_in_executor(None, get, "/")
            assert status == 200 and "max-age" in headers["Strict-Transport-Security"]
            async with connect(console.url + "/ws/browser", ssl=trust) as ws:
                await ws.send(json.dumps({"v": 1, "type": "login", "user": "sup", "password": "correct horse battery"}))
                assert json.loads(await ws.recv())["type"] == "session"
            try:
                await connect(console.url.replace("wss://", "ws://") + "/ws/browser")
                raise AssertionError("plain websocket accepted by a TLS console")
            except Exception as exc:  # the TLS server does not speak plain HTTP
                assert not isinstance(exc, AssertionError)

    asyncio.run(main())


def test_a_port_in_use_is_a_clear_error(tmp_path):
    from console.config import ConsoleConfig
    from console.errors import ConsoleError
    from console.server import Console

    async def main():
        async with running_console(tmp_path / "a", users=False) as first:
            second = Console(ConsoleConfig(data_dir=tmp_path / "b", port=first.port))
            try:
                await second.start()
                raise AssertionError("two consoles on one port")
            except ConsoleError as exc:
                assert exc.code == "port_unavailable" and str(first.port) in str(exc)

    asyncio.run(main())


def test_a_store_error_drops_a_busy_agents_link_at_once(tmp_path):
    """A store error while the agent's next events wait unread (the console
    stops reading a socket once its link's inbox and 16 frames wait): the console's close cannot be
    answered through them, so it drops the link after STORE_ERROR_CLOSE_S, not
    websockets' 10 s close timeout, during which the agent sent nothing (at 300
    calls in bench/console_capacity.py every alert of that agent came 10 s
    late). The agent resends on its next link; every event stored once."""

    async def main():
        async with running_console(tmp_path) as console:
            store_events, calls = console.store.store_events, []

            def failing_once(agent, messages):
                calls.append(len(messages))
                if len(calls) == 1:  # the call's start, and what else the agent sent with it
                    time.sleep(0.3)  # the agent's next events arrive meanwhile and wait unread
                    raise StoreError("injected: the database failed this write")
                return store_events(agent, messages)

            console.store.store_events = failing_once
            link = ConsoleLink(console.url, agent_id="agent-1", token=console.tokens["agent-1"], backoff=Backoff(initial=0.05, maximum=0.1))
            link.start()
            try:
                await link.wait_connected(5)
                link.publish(p.CallStarted(seq=0, event_id="start", call_id="c", partner="ann", seat="1", source="wav", started_at="2025-03-01T09:00:00Z"))
                for n in range(60):
                    link.publish(p.UtteranceFinal(seq=0, event_id=f"u{n}", call_id="c", speaker="customer", start=n, end=n + 1.0, text=f"line {n}", words=()))
                began = time.monotonic()
                await link.drain(30)
                took = time.monotonic() - began
            finally:
                await link.close()
            assert link.stats.connects == 2 and link.stats.resent > 0, link.stats
            assert took < STORE_ERROR_CLOSE_S + 3, f"the agent's events waited {took:.1f} s for its link to close"
            assert (await console.db(console.store.counts))["utterances"] == 60
            assert console.stats.agent_links_store_errors == 1 and console._health()["agent_links_store_errors"] == 1

    asyncio.run(main())


def test_a_lost_postgresql_connection_loses_no_event_and_logs_no_traceback(tmp_path, postgresql_server, caplog):
    """The database drops the console's connection mid-call: the event that met
    it is not acknowledged (the agent's link closes, 1011), the agent resends on
    its new link, the console's store connects again; stored and shown once."""
    url = postgresql_server.new_database()

    async def main():
        async with running_console(tmp_path, store=url) as console:
            sup = await open_browser(console)
            await sup.login("sup")
            agent = await open_agent(console)
            await agent.send(agent.event(p.CallStarted, call_id="c", partner="ann", seat="1", source="wav", started_at="2025-03-01T09:00:00Z", sample_rate=8000))
            await sup.expect("call", call__id="c")
            assert postgresql_server.cut_connections(url) == 1
            said = agent.event(p.UtteranceFinal, call_id="c", speaker="customer", start=0.0, end=1.0, text="still there?")
            await agent.send(said, ack=False)
            try:
                await agent.expect("ack", seq=said.seq)  # another store call met the cut first and reconnected
            except ConnectionClosed as closed:
                assert closed.rcvd.code == 1011 and closed.rcvd.reason == "console store error"
                agent = await open_agent(console)
                assert agent.seen[0]["last_seq"] == said.seq - 1  # not stored, never acknowledged
                await agent.send(said)
            assert (await sup.expect("utterance"))["utterance"]["text"] == "still there?"
            await sup.nothing("utterance")
            assert (await console.db(console.store.counts))["utterances"] == 1

            assert postgresql_server.cut_connections(url) == 1  # a browser's request meets the next cut
            await sup.request("call_detail", call_id="c", ref="d1")
            answer = await sup.expect("error", ref="d1")
            assert answer["code"] == "store_unavailable"
            await sup.request("call_detail", call_id="c", ref="d2")  # the socket stays; the store is back
            assert [u["text"] for u in (await sup.expect("call_detail", ref="d2"))["detail"]["utterances"]] == ["still there?"]

    with caplog.at_level(logging.INFO):
        asyncio.run(main())
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert 2 <= sum("lost the connection to the store" in r.getMessage() for r in failures) <= 4, [r.getMessage() for r in failures]
    assert all(r.exc_info is None for r in failures)  # one line each, no traceback


def test_an_agents_waiting_events_are_stored_together_shown_in_order_and_acknowledged_once_stored(tmp_path, store_where):
    """Group commit: events an agent sent while the store was busy are stored
    in one transaction a run and covered by one cumulative ack, each stored
    before it; partials among them are shown in their place; an event refused
    amid a run is answered with its seq, stores nothing, and the events after
    it are stored; a new call under a used id refuses the events that follow
    it in the same run, as one at a time did."""

    async def main():
        async with running_console(tmp_path, **store_setting(store_where)) as console:
            sup = await open_browser(console)
            await sup.login("sup")
            agent = await open_agent(console)
            await agent.send(agent.event(p.CallStarted, call_id="c", partner="ann", seat="1", source="wav", started_at="2025-03-01T09:00:00Z"))
            began = console.store._conn.transactions
            said = [agent.event(p.UtteranceFinal, call_id="c", speaker="customer", start=float(n), end=n + 0.5, text=f"line {n}", words=())
                    for n in range(200)]
            stray = agent.event(p.LevelChanged, call_id="never-started", level="alert", previous="none", reason="r", at=1.0, suggestion="s")
            again = agent.event(p.CallStarted, call_id="c", partner="bob", seat="2", source="wav", started_at="2025-03-01T10:00:00Z")
            after = agent.event(p.UtteranceFinal, call_id="c", speaker="customer", start=500.0, end=501.0, text="the new call's line", words=())
            out = [*said[:100], p.PartialTranscript(call_id="c", speaker="customer", start=100.0, text="partial amid"), stray, *said[100:150],
                   "{not a message", *said[150:], again, after]
            for message in out:  # sent without waiting for acks, as a link sends: they wait while the store works
                await agent.ws.send(message if isinstance(message, str) else p.encode(message))
            replies = []
            while not any(r.get("seq") == said[-1].seq and r["type"] == "ack" for r in replies) or len([r for r in replies if r["type"] == "error"]) < 4:
                replies.append(await agent.recv_json(10))
            acks = [r["seq"] for r in replies if r["type"] == "ack"]
            errors = [(r.get("seq"), r["code"]) for r in replies if r["type"] == "error"]
            assert acks == sorted(acks) and acks[-1] == said[-1].seq and len(acks) < 30  # cumulative, a few runs
            assert errors == [(stray.seq, "unknown_call"), (None, "bad_message"), (again.seq, "call_id_taken"), (after.seq, "call_id_taken")]
            bad = next(n for n, r in enumerate(replies) if r["type"] == "error" and r.get("seq") is None)
            assert [r["seq"] for r in replies[:bad] if r["type"] == "ack"][-1] == said[149].seq  # answered in its place, after what came before it
            writes = console.store._conn.transactions - began
            assert writes < 40, writes  # 200 events, not a transaction each (refusals write their audit lines)
            assert console._health()["event_runs"] < 20 and console.stats.events_stored == 201
            counts = await console.db(console.store.counts)
            assert counts["utterances"] == 200 and (await console.db(console.store.call, "c")).partner == "ann"
            shown = []
            while len([m for m in shown if m["type"] == "utterance"]) < 200:
                message = await sup.recv_json(10)
                if message["type"] in ("utterance", "partial"):
                    shown.append(message)
            texts = [m["utterance"]["text"] if m["type"] == "utterance" else m["text"] for m in shown]
            assert texts == [f"line {n}" for n in range(100)] + ["partial amid"] + [f"line {n}" for n in range(100, 200)]

    asyncio.run(main())


class _SummariesFailing:
    """The store's read of a committed run's call summaries fails (as a dropped
    database connection would, after the commit), ``times`` times or until
    :meth:`heal`; ``met`` lists the length of each run it failed."""

    def __init__(self, console, times: int = 10**9) -> None:
        self.times, self.met = times, []
        with_calls = console.store.with_calls

        def failing(messages, recorded):
            if len(self.met) < self.times:
                self.met.append(len(messages))
                raise StoreError("injected: the database failed after the commit")
            return with_calls(messages, recorded)

        console.store.with_calls = failing

    def heal(self) -> None:
        self.times = len(self.met)


def _heartbeats_slowed(console):
    """The store takes 0.3 s over each heartbeat, so the events an agent sends
    right after one wait meanwhile and are stored as one run; returns the undo."""
    calls_heard = console.store.calls_heard

    def slow_heartbeat(*args):
        time.sleep(0.3)
        return calls_heard(*args)

    console.store.calls_heard = slow_heartbeat
    return lambda: setattr(console.store, "calls_heard", calls_heard)


async def _a_threat_call_begun(console):
    """A supervisor watching, and an agent whose call has started (acknowledged);
    the supervisor, the agent, the start, and the call's next events, not sent:
    an utterance, its finding, the level rising to alert."""
    sup = await open_browser(console)
    await sup.login("sup")
    agent = await open_agent(console)
    ids = itertools.count()
    start, *rest = [dataclasses.replace(m, seq=next(agent.seq)) for m in threat_call_events("c", event_id=lambda: f"e{next(ids)}")]
    await agent.send(start)
    return sup, agent, start, rest


async def _shown(sup, until: str) -> list[dict]:
    """What the supervisor is shown of the call's events, up to the first ``until``."""
    shown = []
    while not shown or shown[-1]["type"] != until:
        message = await sup.recv_json(10)
        if message["type"] in ("utterance", "finding", "alert"):
            shown.append(message)
    return shown


def test_events_stored_before_a_store_error_are_shown_once_before_what_the_agent_sends_next(tmp_path, store_where, monkeypatch):
    """A store error after a run of events was committed (its calls'
    summaries could not be read): the link closes unacknowledged, and the
    agent's next welcome covers what was stored, so the agent never resends
    it. The console holds the run and shows it when the agent links again,
    before anything the new link brings: every event once, the alert among
    them, on a browser that never reconnected."""

    monkeypatch.setattr(agents, "UNSHOWN_RETRY", Backoff(initial=600.0, maximum=600.0))  # only the agent's next link shows it

    async def main():
        async with running_console(tmp_path, **store_setting(store_where)) as console:
            sup, agent, start, rest = await _a_threat_call_begun(console)
            store_events, runs = console.store.store_events, []
            console.store.store_events = lambda agent, events: runs.append(len(events)) or store_events(agent, events)
            broken = _SummariesFailing(console)
            try:
                await agent.send(rest[0], ack=False)  # the utterance alone is the run that meets the error
                while not runs:
                    await asyncio.sleep(0.01)
                for message in rest[1:]:  # the finding and the level to alert wait on the link meanwhile
                    await agent.send(message, ack=False)
                while True:
                    await agent.recv_json(10)
            except ConnectionClosed as closed:
                assert closed.rcvd.code == 1011
            assert broken.met == [1] * SUMMARY_TRIES and runs == [1] and console.stats.agent_links_store_errors == 1
            await sup.nothing("utterance", wait=1.0)  # stored, not shown while the summaries cannot be read
            held = 1

            broken.heal()
            again = await open_agent(console)
            stored = again.seen[0]["last_seq"]
            assert stored == start.seq + held  # the failed run was committed: the agent drops it, never resends it
            for message in rest:
                if message.seq > stored:
                    await again.send(message)
            shown = await _shown(sup, "alert")
            assert [m["type"] for m in shown] == ["utterance", "finding", "alert"]
            assert shown[-1]["alert"]["level"] == "alert"
            await sup.nothing("utterance")
            await sup.nothing("alert")
            assert console.stats.events_shown_late == held and console._health()["events_shown_late"] == held
            counts = await console.db(console.store.counts)
            assert counts["utterances"] == 1 and counts["alerts"] == 1

    asyncio.run(main())


def test_a_run_held_after_a_store_error_is_shown_once_the_store_answers_though_its_agent_does_not_come_back(tmp_path):
    """The agent of a held run does not link again (it went to another
    replica, or stopped): the console shows the run as soon as the store
    answers, trying again while it does not."""

    async def main():
        async with running_console(tmp_path) as console:
            sup, agent, start, rest = await _a_threat_call_begun(console)
            broken = _SummariesFailing(console, SUMMARY_TRIES + 2)  # the run's own reads, then the first two tries after them
            _heartbeats_slowed(console)
            with contextlib.suppress(ConnectionClosed):
                await agent.send(p.Heartbeat(calls=("c",)), ack=False)
                for message in rest:
                    await agent.send(message, ack=False)
                while True:
                    await agent.recv_json(10)
            shown = await _shown(sup, "alert")
            assert broken.met == [3] * (SUMMARY_TRIES + 2) and [m["type"] for m in shown] == ["utterance", "finding", "alert"]
            assert console.stats.events_shown_late == broken.met[0]
            await sup.nothing("alert", wait=1.5)

    asyncio.run(main())


def test_a_run_whose_summaries_fail_once_is_shown_and_acknowledged_on_its_open_link(tmp_path):
    """The read of a committed run's calls' summaries fails once (the store
    reconnecting): read again while the link stays open, the run is shown in
    order and acknowledged, and the link never closes."""

    async def main():
        async with running_console(tmp_path) as console:
            sup, agent, start, rest = await _a_threat_call_begun(console)
            broken = _SummariesFailing(console, 1)
            for message in rest:
                await agent.send(message)  # each acknowledged on this link
            shown = await _shown(sup, "alert")
            assert broken.met == [1] and [m["type"] for m in shown] == ["utterance", "finding", "alert"]
            assert console.stats.agent_links_store_errors == 0 and console.stats.events_shown_late == 0

    asyncio.run(main())


def test_held_runs_beyond_the_bound_drop_the_oldest_counted_and_it_stays_stored(tmp_path, monkeypatch):
    """More runs wait to be shown than the console holds (:data:`agents.UNSHOWN_HELD`,
    one here): the oldest is dropped and its events counted in ``/healthz``; the
    others are shown once the store answers; the dropped run's events stay
    stored (the call's history), never shown live."""

    monkeypatch.setattr(agents, "UNSHOWN_HELD", 1)
    monkeypatch.setattr(agents, "UNSHOWN_RETRY", Backoff(initial=600.0, maximum=600.0))  # shown only when asked below

    async def main():
        async with running_console(tmp_path) as console:
            sup = await open_browser(console)
            await sup.login("sup")
            ids = itertools.count()
            calls = []
            for name, call_id, partner in (("agent-1", "c1", "ann"), ("agent-2", "c2", "bob")):
                agent = await open_agent(console, name)
                start, utterance, finding, _ = [dataclasses.replace(m, seq=next(agent.seq))
                                                for m in threat_call_events(call_id, partner, event_id=lambda: f"e{next(ids)}")]
                await agent.send(start)
                calls.append((agent, utterance, finding))
            broken = _SummariesFailing(console)
            (first, utterance, finding), (second, utterance2, _) = calls
            undo = _heartbeats_slowed(console)  # c1's utterance and finding: one run
            for agent, run in ((first, (p.Heartbeat(calls=("c1",)), utterance, finding)), (second, (utterance2,))):
                with pytest.raises(ConnectionClosed) as closed:  # committed, its summaries unreadable: held
                    for message in run:
                        await agent.send(message, ack=False)
                    while True:
                        await agent.recv_json(10)
                assert closed.value.rcvd.code == 1011
                undo()
            assert broken.met == [2] * SUMMARY_TRIES + [1] * SUMMARY_TRIES  # c1's run of two, then c2's of one
            assert console.stats.events_unshown_dropped == 2 and console._health()["events_unshown_dropped"] == 2

            broken.heal()
            await console.agents.show_held()
            shown = await _shown(sup, "utterance")
            assert [m["utterance"]["call_id"] for m in shown] == ["c2"]  # the one held; c1's run was dropped
            await sup.nothing("utterance", wait=1.0)
            await sup.nothing("finding")
            assert console.stats.events_shown_late == 1
            for call_id, findings in (("c1", 1), ("c2", 0)):  # stored, the dropped run too
                history = await console.db(console.store.call_detail, call_id)
                assert [u.text for u in history.utterances] == ["i will break your neck"] and len(history.findings) == findings

    asyncio.run(main())
