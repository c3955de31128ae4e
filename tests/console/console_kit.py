"""Helpers for the console tests: a movable clock, a real console on port 0,
small websocket clients that speak the agent and browser protocols,
and raw HTTP over TCP (for requests no client library would send)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

from kernel import protocol as p
from console.config import ConsoleConfig
from console.server import Console

PASSWORD = "correct horse battery"
T0 = datetime(2025, 3, 1, 9, 0, 0, tzinfo=timezone.utc)


class FakeClock:
    """A wall clock that only moves when told to."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


def store_setting(where: Path | str) -> dict[str, str]:
    """The ``[console]`` setting for the store at ``where`` (the ``store_where``
    fixture): ``store`` for a PostgreSQL URL; nothing for SQLite (the console's
    own file in its data directory)."""
    return {"store": where} if isinstance(where, str) else {}


@contextlib.asynccontextmanager
async def running_console(data_dir: Path, *, clock=None, users=True, **config: Any):
    """A started console on 127.0.0.1, any free port, with the usual people:
    ``sup`` (supervisor), ``ann`` and ``bob`` (partners), ``quinn`` (qa),
    ``ada`` (admin), and agents ``agent-1``/``agent-2`` (tokens in ``console.tokens``)."""
    console = Console(ConsoleConfig(data_dir=data_dir, port=0, **config), clock=clock or FakeClock())
    await console.start()
    try:
        console.tokens = {}
        if users:
            for name, role in (("sup", "supervisor"), ("ann", "partner"), ("bob", "partner"), ("quinn", "qa"), ("ada", "admin")):
                await console.db(console.store.add_user, name, role, PASSWORD)
            for name in ("agent-1", "agent-2"):
                console.tokens[name] = await console.db(console.store.add_user, name, "agent")
        yield console
    finally:
        await console.stop()


class Peer:
    """A websocket client that keeps every message it receives, by type."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.seen: list[dict[str, Any]] = []

    async def send_raw(self, text: str) -> None:
        await self.ws.send(text)

    async def recv_json(self, timeout: float = 5.0) -> dict[str, Any]:
        message = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        self.seen.append(message)
        return message

    async def expect(self, kind: str, timeout: float = 5.0, **match: Any) -> dict[str, Any]:
        """The next message of type ``kind`` (whose fields equal ``match``); others are kept in ``seen``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError(f"no {kind!r} {match} within {timeout}s; saw {[m.get('type') for m in self.seen]}")
            message = await self.recv_json(left)
            if message.get("type") == kind and all(_field(message, k) == v for k, v in match.items()):
                return message

    async def nothing(self, kind: str, wait: float = 0.3) -> None:
        """Assert no message of type ``kind`` arrives within ``wait`` seconds."""
        with contextlib.suppress(asyncio.TimeoutError):
            while True:
                message = await self.recv_json(wait)
                assert message.get("type") != kind, f"unexpected {kind}: {message}"

    async def close(self) -> None:
        await self.ws.close()


def _field(message: dict[str, Any], dotted: str) -> Any:
    value: Any = message
    for part in dotted.split("__"):
        value = value.get(part) if isinstance(value, dict) else None
    return value


class Browser(Peer):
    """A browser socket (no page): sends browser-protocol requests."""

    _refs = itertools.count(1)

    async def request(self, kind: str, **fields: Any) -> None:
        await self.ws.send(json.dumps({"v": 1, "type": kind, **fields}))

    async def refused(self, kind: str, **fields: Any) -> str:
        """Send a request that must be refused; the ``code`` of the error answering it (by ``ref``)."""
        ref = f"refused-{next(self._refs)}"
        await self.request(kind, ref=ref, **fields)
        return (await self.expect("error", ref=ref))["code"]

    async def login(self, user: str, password: str = PASSWORD) -> dict[str, Any]:
        await self.request("login", user=user, password=password)
        session = await self.expect("session")
        await self.expect("snapshot")
        return session


class Agent(Peer):
    """An agent socket speaking kernel/protocol.py messages with rising seq."""

    def __init__(self, ws, agent_id: str) -> None:
        super().__init__(ws)
        self.agent_id = agent_id
        self.seq = itertools.count(1)
        self.ids = itertools.count(1)

    async def hello(self, token: str) -> dict[str, Any]:
        await self.ws.send(p.encode(p.AgentHello(agent_id=self.agent_id, token=token, site="test")))
        return await self.recv_json()

    def event(self, cls: type, **fields: Any) -> Any:
        return cls(seq=next(self.seq), event_id=f"{self.agent_id}-{next(self.ids)}-{id(self)}", **fields)

    async def send(self, message: Any, *, ack: bool = True) -> dict[str, Any] | None:
        await self.ws.send(p.encode(message))
        if ack and p.is_durable(message):
            return await self.expect("ack", seq=message.seq)
        return None

    async def threat_call(self, call_id: str, partner: str = "ann", text: str = "i will break your neck") -> None:
        """A short call: start, an utterance with a threat, the finding, the level to alert."""
        await self.send(self.event(p.CallStarted, call_id=call_id, partner=partner, seat="12", source="transcript", started_at="2025-03-01T09:00:00.000Z"))
        await self.send(self.event(p.UtteranceFinal, call_id=call_id, speaker="customer", start=3.0, end=5.0, text=text,
                                   words=({"word": "i", "start": 3.0, "end": 3.2, "conf": 1.0},)))
        first = text.find("break")
        span = (first, first + len("break your neck")) if first >= 0 else None
        await self.send(self.event(p.FindingRaised, call_id=call_id, category="threat", severity="high", score=0.9, rule="threat.harm",
                                   evidence="break your neck", start=3.0, end=5.0, text=text, span=span))
        await self.send(self.event(p.LevelChanged, call_id=call_id, level="alert", previous="none", reason="a threat against the partner",
                                   at=5.0, suggestion="I will not continue while threats are made.", category="threat"))


async def open_browser(console: Console) -> Browser:
    return Browser(await connect(console.url + "/ws/browser"))


async def open_agent(console: Console, agent_id: str = "agent-1", *, hello: bool = True) -> Agent:
    agent = Agent(await connect(console.url + "/ws/agent"), agent_id)
    if hello:
        welcome = await agent.hello(console.tokens[agent_id])
        assert welcome["type"] == "welcome", welcome
    return agent


def raw_http(port: int, head: str) -> tuple[int, dict[str, str], bytes]:
    """Send ``head`` (request line and headers, CRLF-separated, no final blank
    line) over a fresh TCP connection; the status, headers and body of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall((head + "\r\n").encode("latin-1"))
        data = b""
        while b"\r\n\r\n" not in data or (b" 101 " not in data[:13] and len(data) < _length(data)):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head_bytes, _, body = data.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split(" ")[1]), headers, body


def _length(data: bytes) -> int:
    head, _, _ = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(head) + 4 + int(line.split(b":")[1])
    return 1 << 30
