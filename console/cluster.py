"""Several console replicas as one console: what one replica shows, the others show too.

Replicas share one store (PostgreSQL) and one fan-out between them: NATS
(``[console] nats``; core NATS, no persistence; :class:`NatsFanout` here) or
the store's own PostgreSQL through LISTEN/NOTIFY (``[console] fanout =
"postgresql"``; ``console/cluster_postgresql.py``). Both are a
:class:`Fanout` (publish a batch, request/reply, how far behind this replica
reads); everything else, below, is one code path for both. Through it they pass:

- **what goes on screens** (subject ``callshield.replicas``): every message a
  replica fans out to its own browsers (``Screens.publish``: utterances,
  partials, findings, levels, alerts, authorizations, help requests,
  check-ins, notices, calls) is published once, as the frame already encoded
  for browsers, with who should see it (supervisors, a partner). Every other
  replica queues it for its own browsers; a replica skips its own messages
  (by its replica id; the connection also asks NATS for no echo);
- **end-call authorizations** (``callshield.end_call``, request/reply): given
  on replica A for an agent linked to replica B, A asks; the replica holding
  the agent's link sends it and answers. None answering means the agent is
  linked nowhere: it gets the authorization from the store when it links
  again (``Welcome`` is followed by the pending ones), so a replica that dies
  loses none;
- **sign-outs** (``callshield.sessions``): a logout on one replica makes every
  replica check its sockets' sessions against the store at once (the regular
  sweep, every few seconds, catches the rest);
- **presence**: every :data:`BEAT_S` seconds each replica says which agents
  it holds and how many durable messages it has published, so a peer can
  tell a trailing loss, and the lost-call watch leaves alone the calls whose
  agent another live replica holds.

What may be lost, and what is done about it (every loss counted in
:class:`ClusterStats`, shown on ``/healthz`` and to supervisors):

- partials: shed first, on the way out (a full outbox) and on the way in
  (when this replica is behind reading NATS), as on browsers' outboxes;
- a durable message (anything but a partial) carries its publisher's running
  number; a peer that sees a number skipped (NATS dropped it, the publisher's
  outbox overflowed, either side was disconnected) sends every browser of its
  own a fresh snapshot from the store, where the message already is. Nothing
  durable is lost to a screen, at worst shown from the snapshot;
- a replica that dies may have stored and acknowledged what it never
  relayed: when its peers stop hearing it (:data:`PEER_GONE_S`) they send
  their screens a fresh snapshot too;
- the fan-out down (NATS, or the PostgreSQL listening connection): each
  replica still serves its own agents and browsers; the cluster state turns
  ``disconnected`` (``/healthz``, the supervisors' load line), reconnects back
  off (0.5 s doubling to :data:`RECONNECT_MAX_S`, with jitter), and once back
  the gaps are found and the screens resynchronized.

Inbound messages are checked (bounded header, a browser frame of a known
type); a bad one is counted, logged (rate-limited) and dropped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import secrets
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from console.errors import ConsoleError
from kernel.backoff import Backoff
from kernel.queues import DropOldestQueue

log = logging.getLogger("callshield.console.cluster")

PREFIX = "callshield"
SCREENS = f"{PREFIX}.replicas"
"""Fanned-out browser messages and presence beats, in one subject so each publisher's order holds."""
END_CALL = f"{PREFIX}.end_call"
SESSIONS = f"{PREFIX}.sessions"

BEAT_S = 2.0
"""Seconds between two presence beats of a replica."""
PEER_GONE_S = 3 * BEAT_S
"""A peer not heard for this long is taken as gone (its agents are no longer held by it)."""
OUTBOX = 4096
"""Messages waiting to go to the other replicas; when full the oldest goes (counted; peers see the gap)."""
SEND_BATCH = 256
"""Messages handed to the fan-out at once (what the outbox holds, up to this)."""
INBOX = 8192
"""Messages from the other replicas held for this one before the oldest is dropped (counted)."""
SHED_AT = 0.5
"""Share of the outbox or inbox above which partials are shed first (counted)."""
MAX_PEERS = 64
"""Replicas heard at once, at most (more senders are counted as bad and ignored)."""
HEAD_MAX = 2048
"""Bytes of a message's routing header read at most."""
END_CALL_TIMEOUT_S = 2.0
"""Seconds to wait for the replica holding an agent to take its authorization."""
RECONNECT_MAX_S = 10.0
"""Longest wait between two attempts to reach NATS."""
RECONNECT = Backoff(initial=0.5, maximum=RECONNECT_MAX_S, factor=2.0, jitter=0.2)
"""Waits between attempts to reach a NATS server: 0.5 s doubling, capped, shortened by up to a fifth at random."""
_RNG = random.Random()
RESYNC_GAP_S = 1.0
"""At most one resynchronization of the screens per this many seconds (gaps found meanwhile wait for the next)."""
BROWSER_TYPES = frozenset({"call", "partial", "utterance", "finding", "level", "alert", "authorization", "help", "checkin", "notice", "load"})
"""Console -> browser message types a peer may relay."""


class ClusterError(ConsoleError):
    """The fan-out cannot be used (nats-py missing, a bad URL)."""

    code = "cluster_unavailable"


@dataclass
class ClusterStats:
    """Counters since start (``/healthz``; the supervisors' load line shows the losses)."""

    published: int = 0
    """Messages handed to NATS."""
    received: int = 0
    """Peers' messages delivered to this replica's browsers."""
    partials_shed: int = 0
    """Partials not published (outbox behind) or not delivered (inbox behind)."""
    dropped: int = 0
    """Messages lost between replicas: outbox overflow, unsent while the fan-out was down or too large for it, dropped for this slow reader."""
    oversized: int = 0
    """Of ``dropped``: messages too large for the fan-out (NOTIFY's 8000 bytes), not sent; peers resynchronize."""
    gaps: int = 0
    """Durable messages of peers found missing (each answered by a resynchronization)."""
    resyncs: int = 0
    """Times this replica's screens were sent a fresh snapshot because of a gap."""
    bad: int = 0
    """Messages from NATS that were not what a replica sends (dropped, logged)."""
    end_calls_relayed: int = 0
    """Authorizations given here and taken by the replica holding the agent."""
    end_calls_delivered: int = 0
    """Authorizations given on another replica and sent to an agent linked here."""
    disconnects: int = 0


class Fanout(Protocol):
    """How replicas reach each other; the :class:`Cluster` does the rest.

    ``start(cluster)`` connects in the background and keeps connecting; it
    calls ``cluster.linked()`` / ``cluster.unlinked(why)`` as the link comes
    and goes, and hands what it receives to ``cluster.on_screens(data)``,
    ``cluster.on_end_call(data)`` (its answer, if any, goes back to the
    asker) and ``cluster.on_sessions(data)``. ``publish`` sends a batch of
    ``(subject, payload)`` in order and says how many went (the rest it
    logged; the cluster counts them dropped). ``request`` asks whoever answers
    ``subject`` and returns the first answer, or None after ``timeout``
    seconds. ``backlog`` is how many received messages wait to be read.
    """

    kind: str
    """``nats`` or ``postgresql``."""
    url: str

    def start(self, cluster: "Cluster") -> None: ...

    async def publish(self, batch: list[tuple[str, bytes]]) -> int: ...

    async def request(self, subject: str, payload: bytes, timeout: float) -> bytes | None: ...

    def backlog(self) -> int: ...

    async def close(self) -> None: ...


@dataclass
class Peer:
    name: str
    heard: float
    """Loop time of its last message."""
    number: int | None = None
    """Its last durable message's running number seen here (None until its first durable message or beat)."""
    agents: frozenset[str] = field(default_factory=frozenset)


class Cluster:
    """This replica's side of the fan-out between replicas.

    ``deliver(frame, supervisors, partner, sheddable)`` queues a peer's message
    for this replica's browsers; ``end_call(agent, frame)`` sends an
    authorization (a ``kernel.protocol`` frame) to an agent linked here and
    says whether it was; ``sessions_changed()`` checks this replica's sockets'
    sessions now; ``resync()`` sends this replica's browsers a fresh
    snapshot; ``agents()`` the agents linked here; ``peer_gone(agents)`` is
    called with the agents a peer held when it stops being heard;
    ``spawn`` runs a kept task. ``fanout``: how replicas reach each other
    (default: NATS at ``url``).
    """

    def __init__(self, url: str, replica: str, *, deliver: Callable[[bytes, bool, str | None, bool], None],
                 end_call: Callable[[str, bytes], Awaitable[bool]], sessions_changed: Callable[[], Awaitable[None]],
                 resync: Callable[[], Awaitable[None]], agents: Callable[[], Iterable[str]],
                 peer_gone: Callable[[frozenset[str]], None] = lambda agents: None,
                 spawn: Callable[[Coroutine[Any, Any, Any]], asyncio.Task], fanout: Fanout | None = None) -> None:
        self.url = url
        self.fanout: Fanout = fanout if fanout is not None else NatsFanout(url)
        self.replica = replica
        self.id = f"{replica}#{secrets.token_hex(4)}"
        """This replica's id on the wire: its name and a per-start suffix (two starts are two peers)."""
        self.stats = ClusterStats()
        self.state = "connecting"
        self.peers: dict[str, Peer] = {}  # bounded: a peer not heard for PEER_GONE_S is forgotten at the next beat
        self.spawn = spawn
        self._deliver = deliver
        self._end_call = end_call
        self._sessions_changed = sessions_changed
        self._resync = resync
        self._agents = agents
        self._peer_gone = peer_gone
        self._number = 0
        self._outbox: DropOldestQueue[tuple[str, bytes, bool]] = DropOldestQueue(OUTBOX)
        self._resync_due = False
        self._resyncing: asyncio.Task | None = None
        self._bad_logged = 0.0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Connect in the background (a console starts, and serves, without its peers), publish, beat."""
        self.fanout.start(self)
        self.spawn(self._send())
        self.spawn(self._beat())

    async def close(self) -> None:
        self.state = "closed"
        await self.fanout.close()

    def linked(self) -> None:
        """The fan-out is (again) up."""
        if self.state == "closed":
            return
        was = self.state
        self.state = "connected"
        if was == "connecting":
            log.info("replica %s: linked to the other replicas through %s at %s", self.id, self.fanout.kind, shown(self.fanout.url))
        else:
            log.info("replica %s: %s is back", self.id, self.fanout.kind)

    def unlinked(self, why: str = "") -> None:
        """The fan-out is down (or could not be reached)."""
        if self.state == "connected":
            self.stats.disconnects += 1
            log.warning("replica %s: lost %s%s: serving its own agents and browsers only until it is back",
                        self.id, self.fanout.kind, f" ({why})" if why else "")
        if self.state != "closed":
            self.state = "disconnected"

    def log_rarely(self, text: str) -> None:
        now = asyncio.get_running_loop().time()
        if now - self._bad_logged >= 10.0:
            self._bad_logged = now
            log.warning("%s", text)

    # ------------------------------------------------------------------ out

    def relay(self, frame: bytes, supervisors: bool, partner: str | None, sheddable: bool) -> None:
        """Publish a message this replica fanned out to its own browsers (never waits)."""
        if self.state == "closed":
            return
        if sheddable:
            if len(self._outbox) >= OUTBOX * SHED_AT:
                self.stats.partials_shed += 1
                return
            head = {"r": self.id, "s": supervisors, "p": partner}
        else:
            self._number += 1
            head = {"r": self.id, "n": self._number, "s": supervisors, "p": partner}
        self._queue(SCREENS, _join(head, frame), sheddable)

    def sessions_changed(self) -> None:
        """A session ended here: have every replica check its sockets now."""
        self._queue(SESSIONS, _join({"r": self.id}, b""), False)

    def _queue(self, subject: str, payload: bytes, sheddable: bool) -> None:
        if self._outbox.put((subject, payload, sheddable)) is not None:
            self.stats.dropped += 1

    async def _send(self) -> None:
        while True:
            batch = [await self._outbox.get()]  # never closed: never None
            while len(batch) < SEND_BATCH and self._outbox:
                batch.append(self._outbox.get_nowait())
            sent = await self.fanout.publish([(subject, payload) for subject, payload, _ in batch])
            self.stats.published += sent
            self.stats.dropped += len(batch) - sent  # not sent (the fan-out down, a message too large): peers see the gap and resynchronize

    async def _beat(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            for peer_id in [p for p, peer in self.peers.items() if now - peer.heard > PEER_GONE_S]:
                log.warning("replica %s: peer %s gone (not heard for %.0f s)", self.id, peer_id, now - self.peers[peer_id].heard)
                self._peer_gone(self.peers.pop(peer_id).agents)
                self._want_resync()  # it may have stored what it never relayed: the store has it
            if self.state == "connected":
                self._queue(SCREENS, _join({"r": self.id, "b": self._number, "a": sorted(self._agents())}, b""), False)
            await asyncio.sleep(BEAT_S)

    async def send_end_call(self, agent: str, frame: bytes) -> bool:
        """Ask the replica holding ``agent``'s link to send it ``frame``; whether one did."""
        if self.state != "connected":
            log.warning("replica %s: %s is down: agent %s gets its authorization when it links again", self.id, self.fanout.kind, agent)
            return False
        reply = await self.fanout.request(END_CALL, _join({"r": self.id, "agent": agent}, frame), END_CALL_TIMEOUT_S)
        if reply is None:
            log.info("replica %s: no replica holds agent %s: it gets its authorization when it links again", self.id, agent)
            return False
        taken = reply.startswith(b"ok")
        if taken:
            self.stats.end_calls_relayed += 1
            log.info("replica %s: authorization for agent %s taken by %s", self.id, agent, reply[3:50].decode("utf-8", "replace"))
        return taken

    # ------------------------------------------------------------------ in

    def _read(self, data: bytes) -> tuple[dict, bytes] | None:
        head, sep, body = data[:HEAD_MAX].partition(b"\n")
        if not sep:
            return self._bad("no header line")
        try:
            fields = json.loads(head)
        except ValueError:
            return self._bad("a header that is not JSON")
        if not isinstance(fields, dict) or not isinstance(fields.get("r"), str):
            return self._bad("a header without a replica id")
        return fields, data[len(head) + 1:]

    def _bad(self, why: str) -> None:
        self.stats.bad += 1
        self.log_rarely(f"replica {self.id}: dropped a message from the other replicas with {why}")
        return None

    def on_screens(self, data: bytes) -> None:
        """A message on :data:`SCREENS`: a peer's browser message or presence beat."""
        read = self._read(data)
        if read is None:
            return
        head, frame = read
        sender = head["r"]
        if sender == self.id:
            return
        now = asyncio.get_running_loop().time()
        peer = self.peers.get(sender)
        if peer is None:
            if len(self.peers) >= MAX_PEERS:
                self._bad(f"a sender beyond {MAX_PEERS} replicas")
                return
            peer = self.peers[sender] = Peer(name=sender.split("#", 1)[0][:64], heard=now)
            log.info("replica %s: peer %s is up", self.id, sender)
        peer.heard = now
        if "b" in head:  # a presence beat: its agents, and how many durable messages it has published
            agents = head.get("a")
            if isinstance(agents, list):
                peer.agents = frozenset(a for a in agents[:10000] if isinstance(a, str))
            self._check_number(peer, head.get("b"), beat=True)
            return
        supervisors, partner = head.get("s"), head.get("p")
        if not isinstance(supervisors, bool) or not (partner is None or isinstance(partner, str)):
            self._bad("bad routing")
            return
        if not _browser_frame(frame):
            self._bad("a frame that is no browser message")
            return
        number = head.get("n")
        sheddable = number is None
        if not sheddable:
            self._check_number(peer, number, beat=False)
        elif self.fanout.backlog() >= INBOX * SHED_AT:
            self.stats.partials_shed += 1
            return
        self.stats.received += 1
        self._deliver(frame, supervisors, partner, sheddable)

    def _check_number(self, peer: Peer, number: Any, *, beat: bool) -> None:
        """A peer's durable message ``number`` (from a beat: its last one): any skipped means a resynchronization."""
        if not isinstance(number, int) or isinstance(number, bool) or number < 0:
            self._bad("a bad running number")
            return
        if peer.number is None:  # the first heard from it: the count starts here
            peer.number = number if beat else number - 1
        expected = peer.number if beat else peer.number + 1
        if number > expected:
            self.stats.gaps += number - expected
            log.warning("replica %s: %d message(s) of %s lost between replicas: its screens get a fresh snapshot", self.id, number - expected, peer.name)
            self._want_resync()
        peer.number = max(peer.number, number)

    def _want_resync(self) -> None:
        self._resync_due = True
        if self._resyncing is None or self._resyncing.done():
            self._resyncing = self.spawn(self._resync_soon())

    async def _resync_soon(self) -> None:
        while self._resync_due:
            self._resync_due = False
            self.stats.resyncs += 1
            try:
                await self._resync()
            except ConsoleError as exc:
                log.error("replica %s: resynchronizing screens failed: %s", self.id, exc)
            await asyncio.sleep(RESYNC_GAP_S)

    async def on_end_call(self, data: bytes) -> bytes | None:
        """A request on :data:`END_CALL`: the answer when the agent is linked here (and took it), else None."""
        read = self._read(data)
        if read is None:
            return None
        head, frame = read
        agent = head.get("agent")
        if head["r"] == self.id or not isinstance(agent, str):
            return None
        if await self._end_call(agent, frame):
            self.stats.end_calls_delivered += 1
            return b"ok " + self.id.encode()
        return None

    async def on_sessions(self, data: bytes) -> None:
        """A message on :data:`SESSIONS`: a peer ended a session."""
        read = self._read(data)
        if read is not None and read[0]["r"] != self.id:
            try:
                await self._sessions_changed()
            except ConsoleError as exc:
                log.warning("replica %s: checking sessions failed: %s", self.id, exc)

    # ------------------------------------------------------------------ state

    def held_elsewhere(self, agent: str) -> bool:
        """Whether a live peer holds ``agent``'s link (its calls are that replica's to watch)."""
        return any(agent in peer.agents for peer in self.peers.values())

    def health(self) -> dict[str, Any]:
        return {"replica": self.replica, "id": self.id, "fanout": self.fanout.kind, "url": shown(self.fanout.url), "state": self.state,
                "peers": sorted(p.name for p in self.peers.values()), **asdict(self.stats)}

    @property
    def lost(self) -> int:
        """What the supervisors are told was lost between replicas (partials shed, messages dropped)."""
        return self.stats.partials_shed + self.stats.dropped


class NatsFanout:
    """The replicas' fan-out through NATS (core NATS: no persistence), one
    client connection; nats-py reconnects by itself, with :func:`_backoff`."""

    kind = "nats"

    def __init__(self, url: str) -> None:
        self.url = url
        self._nc: Any = None
        self._inbox: Any = None
        self._cluster: Cluster | None = None
        self._closed = False

    def start(self, cluster: Cluster) -> None:
        require_client()
        self._cluster = cluster
        cluster.spawn(self._connect())

    async def close(self) -> None:
        self._closed = True
        nc, self._nc = self._nc, None
        if nc is not None:
            try:
                await asyncio.wait_for(nc.close(), 5)
            except Exception as exc:  # closing a half-dead connection: nothing left to do
                log.debug("closing NATS: %s", exc)

    async def _connect(self) -> None:
        import nats

        cluster = self._cluster
        log.info("replica %s: connecting to NATS at %s", cluster.id, shown(self.url))
        try:
            nc = await nats.connect(
                servers=[u.strip() for u in self.url.split(",") if u.strip()], name=f"callshield console {cluster.id}",
                no_echo=True, allow_reconnect=True, max_reconnect_attempts=-1, reconnect_time_wait=0.5, connect_timeout=2,
                ping_interval=5, max_outstanding_pings=2, reconnect_to_server_handler=_backoff,
                error_cb=self._on_error, disconnected_cb=self._on_disconnected, reconnected_cb=self._on_reconnected,
                closed_cb=self._on_closed,
            )
        except Exception as exc:  # a bad URL; unreachable servers are retried inside connect
            cluster.unlinked()
            log.error("replica %s: cannot use NATS at %s: %s", cluster.id, shown(self.url), exc)
            return
        if self._closed:
            await nc.close()
            return
        self._nc = nc
        self._inbox = await nc.subscribe(SCREENS, cb=self._on_screens, pending_msgs_limit=INBOX, pending_bytes_limit=64 * 1024 * 1024)
        await nc.subscribe(END_CALL, cb=self._on_end_call)
        await nc.subscribe(SESSIONS, cb=self._on_sessions)
        await nc.flush()
        cluster.linked()

    async def _on_error(self, exc: Exception) -> None:
        import nats.errors

        if isinstance(exc, nats.errors.SlowConsumerError):
            self._cluster.stats.dropped += 1
            return
        if self._cluster.state != "connected":
            self._cluster.unlinked()
        self._cluster.log_rarely(f"replica {self._cluster.id}: NATS: {type(exc).__name__}: {exc}")

    async def _on_disconnected(self) -> None:
        self._cluster.unlinked()

    async def _on_reconnected(self) -> None:
        self._cluster.linked()

    async def _on_closed(self) -> None:
        self._cluster.unlinked()

    async def _on_screens(self, msg: Any) -> None:
        self._cluster.on_screens(msg.data)

    async def _on_end_call(self, msg: Any) -> None:
        reply = await self._cluster.on_end_call(msg.data)
        if reply is not None and msg.reply:
            await msg.respond(reply)

    async def _on_sessions(self, msg: Any) -> None:
        await self._cluster.on_sessions(msg.data)

    async def publish(self, batch: list[tuple[str, bytes]]) -> int:
        import nats.errors

        nc, sent = self._nc, 0
        if nc is None or nc.is_closed:
            return 0
        for subject, payload in batch:
            try:
                await nc.publish(subject, payload)
                sent += 1
            except nats.errors.Error as exc:
                self._cluster.log_rarely(f"replica {self._cluster.id}: a message for the other replicas was not sent: {type(exc).__name__}: {exc}")
        return sent

    async def request(self, subject: str, payload: bytes, timeout: float) -> bytes | None:
        import nats.errors

        nc = self._nc
        if nc is None or not nc.is_connected:
            return None
        try:
            return (await nc.request(subject, payload, timeout=timeout)).data
        except (nats.errors.Error, asyncio.TimeoutError) as exc:
            log.debug("replica %s: request on %s: %s", self._cluster.id, subject, type(exc).__name__)
            return None

    def backlog(self) -> int:
        return self._inbox.pending_msgs if self._inbox is not None else 0


def require_client() -> None:
    """Raise :class:`ClusterError` unless nats-py is installed."""
    try:
        import nats  # noqa: F401
    except ImportError as exc:
        raise ClusterError("[console] nats is set but nats-py is not installed: pip install 'callshield[cluster]'") from exc


def _join(head: dict, body: bytes) -> bytes:
    return json.dumps(head, separators=(",", ":")).encode() + b"\n" + body


def _browser_frame(frame: bytes) -> bool:
    """Whether ``frame`` is a console -> browser message (JSON object of a known type)."""
    try:
        message = json.loads(frame)
    except ValueError:
        return False
    return isinstance(message, dict) and message.get("type") in BROWSER_TYPES


def _backoff(servers: list, info: dict) -> tuple[Any, float]:
    """nats-py's reconnect: the server tried least, after a :data:`RECONNECT` wait for its failed attempts."""
    server = min(servers, key=lambda s: s.reconnects)
    return server, RECONNECT.delay(server.reconnects, _RNG)


def shown(url: str) -> str:
    """``url`` with any password masked, for logs and ``/healthz``."""
    out = []
    for one in url.split(","):
        scheme, sep, rest = one.strip().partition("://")
        auth, at, host = rest.rpartition("@")
        if at and ":" in auth:
            auth = auth.split(":", 1)[0] + ":***"
        out.append(f"{scheme}{sep}{auth}{at}{host}")
    return ",".join(out)
