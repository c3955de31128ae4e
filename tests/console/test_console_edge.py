"""The console's edge under hostile input (issue 13, #4, #8-#11), against a real
console over real sockets: poisoned agent messages, messages no browser can
read, foreign Host and Origin (DNS rebinding), doubled headers, malformed
request targets. HTTP is spoken over raw TCP, so nothing is tidied up on the way."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from console import browser_protocol as b
from console_kit import open_agent, open_browser, raw_http, running_console
from kernel import protocol as p

UPGRADE = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"


def get(port: int, path: str = "/", host: str | None = None, extra: str = "") -> tuple[int, dict[str, str], bytes]:
    return raw_http(port, f"GET {path} HTTP/1.1\r\nHost: {f'127.0.0.1:{port}' if host is None else host}\r\n{extra}")


def tracebacks(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


def refusals(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "callshield.console" and r.getMessage().startswith("refused ")]


# --------------------------------------------------------------------------- 4, 8, 9: poisoned messages from an agent


POISONED = [
    # a partial with a lone UTF-16 surrogate (JSON allows "\ud800"; no UTF-8 socket can carry it)
    lambda call: json.dumps({"v": 1, "type": "partial", "call_id": call, "speaker": "customer", "start": 1.0, "text": "hello \ud800 there"}),
    # NaN and Infinity in an utterance's words (were stored, then sent to browsers as invalid JSON)
    lambda call: json.dumps({"v": 1, "type": "utterance", "seq": 90, "event_id": "nan-1", "call_id": call, "speaker": "customer", "start": 1.0,
                             "end": 2.0, "text": "x", "words": [{"word": "x", "start": float("nan"), "end": float("inf"), "conf": 1.0}]}),
    # nesting deep enough for a RecursionError
    lambda call: '{"v": 1, "type": "partial", "call_id": "' + call + '", "speaker": "customer", "start": 1.0, "text": ' + "[" * 5000 + "]" * 5000 + "}",
    # an integer over 4,300 digits, and one too big for SQLite
    lambda call: '{"v": 1, "type": "call_ended", "seq": ' + "9" * 5000 + ', "event_id": "e", "call_id": "' + call + '", "at": 1, "reason": "hangup"}',
    lambda call: '{"v": 1, "type": "call_ended", "seq": ' + str(1 << 64) + ', "event_id": "e", "call_id": "' + call + '", "at": 1, "reason": "hangup"}',
]


def test_poisoned_agent_messages_are_refused_and_every_socket_stays_open(tmp_path, caplog):
    """#4: a poisoned message gets a clear error; the agent's and the browsers'
    sockets stay open, and later utterances still reach the supervisor."""
    async def main():
        async with running_console(tmp_path) as console:
            sup, ann = await open_browser(console), await open_browser(console)
            await sup.login("sup")
            await ann.login("ann")
            agent = await open_agent(console)
            await agent.send(agent.event(p.CallStarted, call_id="c1", partner="ann", seat="1", source="transcript", started_at="2025-03-01T09:00:00.000Z"))
            for round_, poison in enumerate(POISONED * 2):
                await agent.send_raw(poison("c1"))
                error = await agent.expect("error")
                assert error["code"] == "bad_message" and error["message"], error
                text = f"utterance number {round_}"
                await agent.send(agent.event(p.UtteranceFinal, call_id="c1", speaker="customer", start=float(round_), end=round_ + 0.5, text=text))
                await sup.expect("utterance", utterance__text=text)
                await agent.send(p.PartialTranscript(call_id="c1", speaker="customer", start=float(round_), text=f"partial {round_}"))
                await sup.expect("partial", text=f"partial {round_}")
            for peer in (agent, sup, ann):
                assert peer.ws.close_code is None, peer
            await agent.send(agent.event(p.LevelChanged, call_id="c1", level="caution", previous="none", reason="insults", at=9.0))
            await ann.expect("level", level__level="caution")  # the partner's socket still carries the call

    asyncio.run(main())
    assert not tracebacks(caplog)


# --------------------------------------------------------------------------- 4: the browser send path itself


def test_a_message_no_browser_can_read_is_counted_and_never_closes_a_socket(tmp_path, caplog):
    """Whatever reaches the fan-out (a bug upstream, an old stored row): a
    message that cannot be encoded is sent to no one, counted and logged once;
    every browser keeps its socket and gets the next message."""
    async def main():
        async with running_console(tmp_path) as console:
            sup, other = await open_browser(console), await open_browser(console)
            await sup.login("sup")
            await other.login("sup")
            unreadable = [
                b.PartialShown(call_id="c1", speaker="customer", start=1.0, text="lone \ud800 surrogate"),
                b.PartialShown(call_id="c1", speaker="customer", start=math.nan, text="not a number"),
                b.PartialShown(call_id="c1", speaker="customer", start=math.inf, text="infinite"),
            ]
            for n, message in enumerate(unreadable):
                console.screens.publish(message, call=None)
                console.screens.publish(b.PartialShown(call_id="c1", speaker="customer", start=float(n), text=f"fine {n}"), call=None)
                for browser in (sup, other):
                    got = await browser.expect("partial")
                    assert got["text"] == f"fine {n}", got  # the unreadable one was skipped, not sent
            raw = []
            for browser in (sup, other):
                await browser.request("list_calls", ref="after")
                await browser.expect("calls")
                raw += [json.dumps(m) for m in browser.seen]
                assert browser.ws.close_code is None
            assert console.stats.messages_unsendable == len(unreadable)
            assert all("NaN" not in m and "Infinity" not in m for m in raw)
            health = json.loads((await asyncio.to_thread(get, console.port, "/healthz"))[2])
            assert health["messages_unsendable"] == len(unreadable)

    with caplog.at_level(logging.WARNING, logger="callshield.console"):
        asyncio.run(main())
    logged = [r for r in caplog.records if "cannot be encoded" in r.getMessage()]
    assert len(logged) == 3 and not any(r.exc_info for r in logged), [r.getMessage() for r in logged]


# --------------------------------------------------------------------------- 10: DNS rebinding


def test_foreign_host_names_are_refused_on_every_request_and_upgrade(tmp_path, caplog):
    async def main():
        async with running_console(tmp_path) as console:
            port = console.port

            def probe():
                out = {}
                for host in ("evil.example", f"evil.example:{port}", f"127.0.0.1.evil.example:{port}", f"localhost.:{port}x", "", "a b"):
                    for path in ("/", "/healthz", "/static/console.css", "/recordings/c1.wav", "/evidence/c1.zip", "/ws/browser"):
                        out[(host, path)] = get(port, path, host=host)
                    for path in ("/ws/browser", "/ws/agent"):
                        out[(host, path + " upgrade")] = get(port, path, host=host, extra=UPGRADE + f"Origin: http://{host}\r\n")
                out["no host"] = raw_http(port, "GET / HTTP/1.1\r\n")
                for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LocalHost.:{port}", f"[::1]:{port}", "localhost"):
                    out[("ok", host)] = get(port, "/", host=host)
                    out[("ok upgrade", host)] = get(port, "/ws/browser", host=host, extra=UPGRADE + f"Origin: http://{host}\r\n")
                return out

            out = await asyncio.to_thread(probe)
            for key, (status, headers, body) in out.items():
                if key[0] == "ok":
                    assert status == 200, (key, status, body)
                elif key[0] == "ok upgrade":
                    assert status == 101, (key, status, body)
                elif key == "no host" or key[0] in ("", "a b", f"localhost.:{port}x"):
                    assert status in (400, 421), (key, status, body)
                else:
                    assert status == 421 and b"allowed_hosts" in body, (key, status, body)
                    assert "content-security-policy" in headers and "evil" not in headers["content-security-policy"]

    asyncio.run(main())
    assert not tracebacks(caplog)
    assert any(line.endswith("(421) Host 'evil.example'") for line in refusals(caplog))  # the operator sees which name to allow


def test_configured_allowed_hosts_replace_the_defaults(tmp_path):
    async def main():
        async with running_console(tmp_path, users=False, allowed_hosts=("Callshield.Site.Example",)) as console:
            port = console.port

            def probe():
                return {host: get(port, "/", host=host)[0] for host in
                        (f"callshield.site.example:{port}", "callshield.site.example.", f"127.0.0.1:{port}", f"localhost:{port}", "other.site.example")}

            statuses = await asyncio.to_thread(probe)
            # listed names, and the console's own address (its url: what `callshield serve`'s agent uses)
            assert statuses == {f"callshield.site.example:{port}": 200, "callshield.site.example.": 200, f"127.0.0.1:{port}": 200,
                                f"localhost:{port}": 421, "other.site.example": 421}
            async with connect(console.url + "/ws/browser") as ws:  # the usual client still gets in
                await ws.send(json.dumps({"v": 1, "type": "resume", "token": "x"}))
                assert json.loads(await ws.recv())["type"] == "error"

    asyncio.run(main())


def test_origin_must_be_this_console_itself(tmp_path):
    async def main():
        async with running_console(tmp_path, users=False) as console:
            port = console.port
            own = f"127.0.0.1:{port}"
            foreign = ["http://evil.example", f"http://evil.example:{port}", f"http://localhost:{port + 1}", f"http://127.0.0.1:{port + 1}",
                       "null", f"file://{own}", f"http://{own}/path", "http://[::1", f"http://{own}@evil.example", ""]

            def probe():
                out = {}
                for origin in foreign:
                    for path in ("/ws/browser", "/ws/agent"):
                        out[(origin, path)] = get(port, path, host=own, extra=UPGRADE + f"Origin: {origin}\r\n")[0]
                    out[(origin, "/")] = get(port, "/", host=own, extra=f"Origin: {origin}\r\n")[0]
                out[("own", "/ws/browser")] = get(port, "/ws/browser", host=own, extra=UPGRADE + f"Origin: http://{own}\r\n")[0]
                out[("none", "/ws/agent")] = get(port, "/ws/agent", host=own, extra=UPGRADE)[0]
                return out

            out = await asyncio.to_thread(probe)
            assert {k: v for k, v in out.items() if k[0] not in ("own", "none") and v != 403} == {}
            assert out[("own", "/ws/browser")] == 101 and out[("none", "/ws/agent")] == 101
            try:
                await connect(console.url + "/ws/browser", origin=f"http://localhost:{port}")  # an allowed name, but not this Host
                raise AssertionError("socket from another origin accepted")
            except InvalidStatus as exc:
                assert exc.response.status_code == 403

    asyncio.run(main())


# --------------------------------------------------------------------------- 11: doubled headers, odd targets


def test_doubled_headers_and_odd_targets_get_a_clear_400_logged_once(tmp_path, caplog):
    async def main():
        async with running_console(tmp_path, users=False) as console:
            port = console.port
            own = f"127.0.0.1:{port}"
            doubled = {
                "Host": f"Host: {own}\r\n",
                "Origin": f"Origin: http://{own}\r\nOrigin: http://evil.example\r\n",
                "Authorization": "Authorization: Bearer a\r\nAuthorization: Bearer b\r\n",
                "Range": "Range: bytes=0-1\r\nRange: bytes=2-\r\n",
            }

            def probe():
                out = {}
                for header, lines in doubled.items():
                    for path in ("/", "/recordings/c1.wav", "/evidence/c1.zip", "/ws/browser"):
                        extra = lines + (UPGRADE if path.startswith("/ws/") else "")
                        out[(header, path)] = get(port, path, host=own, extra=extra)
                out["//[x/"] = get(port, "//[x/", host=own)
                out["link with 5,000 &"] = get(port, "/recordings/c1.wav?" + "&" * 5000, host=own)
                return out

            with caplog.at_level(logging.INFO, logger="callshield.console"):
                caplog.clear()
                out = await asyncio.to_thread(probe)
            for (header, path), (status, headers, body) in ((k, v) for k, v in out.items() if isinstance(k, tuple)):
                assert status == 400 and body == f"more than one {header} header\n".encode(), (header, path, status, body)
                assert headers["content-type"].startswith("text/plain") and "x-frame-options" in headers
            assert out["//[x/"][0] == 404
            assert out["link with 5,000 &"][0] == 400 and b"too many query fields" in out["link with 5,000 &"][2]
            assert len(refusals(caplog)) == len(doubled) * 4 + 1  # once each
            assert all("\n" not in line for line in refusals(caplog))

    asyncio.run(main())
    assert not tracebacks(caplog)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    path=st.sampled_from(["/", "/healthz", "/ws/browser", "/ws/agent", "/recordings/c1.wav", "/evidence/c1.zip", "//[x/", "/static/app.js",
                          "/recordings/c1.wav?user=sup&exp=1&sig=00"]),
    headers=st.lists(st.tuples(st.sampled_from(["Host", "Origin", "Authorization", "Range", "Upgrade", "Connection", "Sec-WebSocket-Key",
                                                "Sec-WebSocket-Version", "X-Other"]),
                               st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"), max_size=40)),
                     max_size=8),
)
def test_any_request_head_gets_an_answer_and_never_a_500(shared_console, path, headers):
    """The HTTP request reader (websockets' parser, then the host gate and the
    routes) answers every well-framed request head with a status below 500."""
    from console.web import host_name

    port = shared_console
    head = f"GET {path} HTTP/1.1\r\n" + "".join(f"{name}: {value.strip()}\r\n" for name, value in headers)
    status, _, _ = raw_http(port, head)
    assert 100 < status < 500, (head, status)
    host = [value.strip() for name, value in headers if name == "Host"]
    if len(host) == 1 and host_name(host[0]) not in (None, "127.0.0.1", "localhost", "::1"):
        assert status in (400, 421), (head, status)


@given(st.text(max_size=80))
@settings(max_examples=200, deadline=None)
def test_host_name_never_raises_and_drops_only_the_port(value):
    from console.web import host_name

    name = host_name(value)
    assert name is None or (name == name.lower() and name.strip() == name and not name.endswith("."))
    if name is not None and not name.count(":") > 1:  # not an IPv6 address
        assert ":" not in name


@pytest.fixture(scope="module")
def shared_console(tmp_path_factory):
    """One console for all the property test's examples, on its own event loop in a thread: its port."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    running = running_console(tmp_path_factory.mktemp("edge"), users=False)
    console = asyncio.run_coroutine_threadsafe(running.__aenter__(), loop).result(30)
    try:
        yield console.port
    finally:
        asyncio.run_coroutine_threadsafe(running.__aexit__(None, None, None), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
