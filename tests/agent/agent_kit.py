"""Helpers for the agent tests: a tiny protocol-speaking console (real websockets
on 127.0.0.1) to test the link alone, and small fakes for call sessions."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from websockets.asyncio.server import serve

from kernel import protocol as p


@dataclass
class Stored:
    """What a tiny console keeps across its restarts (like its SQLite file)."""

    by_event: dict = field(default_factory=dict)  # event_id -> message
    order: list = field(default_factory=list)  # event_ids in arrival order (deduplicated)
    received: list = field(default_factory=list)  # every message as received, resends included
    last_seq: dict = field(default_factory=dict)  # agent_id -> highest seq stored
    hellos: int = 0


class TinyConsole:
    """The console's side of the agent protocol, and nothing else.

    ``ack``: acknowledge stored messages (False: store silently, as if the
    acks were lost). ``token``: the one accepted token. ``hang_up_after``:
    close the connection after storing that many messages (a crash).
    """

    def __init__(self, stored: Stored | None = None, *, token: str = "good", ack: bool = True, hang_up_after: int | None = None) -> None:
        self.stored = stored or Stored()
        self.token = token
        self.ack = ack
        self.hang_up_after = hang_up_after
        self.server = None
        self.port = 0
        self.connections = []
        self.partials: list = []
        self.heartbeats: list = []

    async def start(self, port: int = 0) -> "TinyConsole":
        self.server = await serve(self._handle, "127.0.0.1", port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def send_all(self, message) -> None:
        for ws in list(self.connections):
            await ws.send(p.encode(message))

    async def _handle(self, ws) -> None:
        if ws.request.path != "/ws/agent":
            await ws.close(4004, "not found")
            return
        hello = p.decode(await ws.recv(), allowed=(p.AgentHello,))
        self.stored.hellos += 1
        if hello.token != self.token:
            await ws.send(p.encode(p.Refused(code="bad_token", message="unknown agent token")))
            await ws.close(4001, "refused")
            return
        await ws.send(p.encode(p.Welcome(agent_id=hello.agent_id, last_seq=self.stored.last_seq.get(hello.agent_id, 0))))
        self.connections.append(ws)
        stored_here = 0
        try:
            async for raw in ws:
                message = p.decode(raw, allowed=p.AGENT_MESSAGES)
                if isinstance(message, p.Heartbeat):
                    self.heartbeats.append(message)
                    continue
                if isinstance(message, p.PartialTranscript):
                    self.partials.append(message)
                    self.stored.received.append(message)
                    continue
                self.stored.received.append(message)
                if message.event_id not in self.stored.by_event:
                    self.stored.by_event[message.event_id] = message
                    self.stored.order.append(message.event_id)
                self.stored.last_seq[hello.agent_id] = max(self.stored.last_seq.get(hello.agent_id, 0), message.seq)
                stored_here += 1
                if self.ack:
                    await ws.send(p.encode(p.Ack(seq=message.seq)))
                if self.hang_up_after is not None and stored_here >= self.hang_up_after:
                    await ws.close(1011, "crash")
                    return
        finally:
            self.connections.remove(ws)


def notice(n: int, call_id: str = "c1") -> p.AgentNotice:
    return p.AgentNotice(seq=0, event_id=f"{call_id}:{n}", code="test", message=f"message {n}", call_id=call_id)


def types_of(messages) -> list[str]:
    return [m.TYPE for m in messages]


def jsonl(lines: list[dict]) -> str:
    return "".join(json.dumps(line) + "\n" for line in lines)


async def until(predicate, timeout: float = 10.0, step: float = 0.01) -> None:
    """Wait until ``predicate()`` is true (a bounded wait, not a timing assertion)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(step)


class Watcher:
    """A supervisor's (or partner's) browser socket: logs in and keeps every message."""

    def __init__(self, url: str, user: str, password: str) -> None:
        self.url = url.rstrip("/") + "/ws/browser"
        self.user = user
        self.password = password
        self.messages: list[dict] = []
        self._ws = None
        self._task = None

    async def open(self) -> "Watcher":
        from websockets.asyncio.client import connect

        self._ws = await connect(self.url, proxy=None)
        await self._ws.send(json.dumps({"v": 1, "type": "login", "user": self.user, "password": self.password}))
        async with asyncio.timeout(10):
            while True:
                message = json.loads(await self._ws.recv())
                self.messages.append(message)
                assert message["type"] != "error", message
                if message["type"] == "snapshot":
                    break
        self._task = asyncio.get_running_loop().create_task(self._read())
        return self

    async def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            async for raw in self._ws:
                self.messages.append(json.loads(raw))
        except ConnectionClosed:
            pass

    def of(self, kind: str) -> list[dict]:
        return [m for m in self.messages if m["type"] == kind]

    async def send(self, message: dict) -> None:
        await self._ws.send(json.dumps({"v": 1, **message}))

    async def close(self) -> None:
        await self._ws.close()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)


THREAT_CALL = [
    {"speaker": "partner", "start": 0.2, "end": 1.0, "text": "thank you for calling how can i help"},
    {"speaker": "customer", "start": 1.2, "end": 2.0, "text": "my bill is far too high this month"},
    {"speaker": "customer", "start": 2.2, "end": 3.0, "text": "you stupid idiot"},
    {"speaker": "partner", "start": 3.1, "end": 3.6, "text": "please let me help you"},
    {"speaker": "customer", "start": 3.8, "end": 4.6, "text": "i know where you live and you will regret this"},
    {"speaker": "customer", "start": 5.6, "end": 6.4, "text": "i will break every bone in your body"},
    {"speaker": "customer", "start": 6.6, "end": 7.4, "text": "i'm going to come over there and beat you up"},
]


class FakeClock:
    """A loop-free clock for paced transcripts: sleeping advances it, so "when"
    a message was published is exact and no test waits in real time."""

    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
