"""The replicas' fan-out through the store's own PostgreSQL: LISTEN/NOTIFY.

``[console] fanout = "postgresql"``: no NATS to run; the replicas reach each
other through the database they already share (``[console] store``). A
:class:`~console.cluster.Fanout` for :class:`~console.cluster.Cluster`, which
does the rest as with NATS (running numbers, gaps, resynchronizations, beats).

- Two connections of its own per replica, besides the store's: one that only
  listens (``LISTEN`` on each subject, as a channel of the same name), and
  one that notifies. A batch of messages is one statement
  (``pg_notify`` over ``unnest``), committed at once: PostgreSQL delivers a
  transaction's notifications together, in the order sent, after commit.
- The listening connection is watched by TCP keepalives (unless the URL sets
  them) and read by one task into a bounded inbox (:data:`INBOX`): when full,
  the oldest goes, counted as dropped (peers' running numbers then show the
  gap and the screens are refreshed from the store); partials are shed first
  above half of it (``Cluster.on_screens``). When the connection is lost (a
  server restart, a failover, ``pg_terminate_backend``) the cluster turns
  ``disconnected`` and the listener connects again with
  :data:`console.cluster.RECONNECT`'s waits (0.5 s doubling to 10 s, with jitter).
- NOTIFY's payload must be shorter than 8000 bytes (in the database's
  encoding, UTF-8 for callshield). A message over :data:`NOTIFY_MAX` is not
  sent: counted (``oversized``, and ``dropped``) and logged (rate-limited).
  A durable one keeps its running number, so the peers find it missing and
  refresh their screens from the store, where it is: shown late, never lost.
- End-call requests: the asker notifies :data:`~console.cluster.END_CALL`
  with a token; the replica holding the agent answers on :data:`REPLIES`
  with the same token; no answer within the timeout is "held nowhere".
- Within one transaction PostgreSQL folds identical notifications (same
  channel, same payload) into one: durable messages carry their running
  number, so only identical partials or beats of one batch can fold, which
  changes nothing on a screen.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
from typing import Any

from console.cluster import END_CALL, INBOX, PREFIX, RECONNECT, SCREENS, SESSIONS, Cluster, shown
from kernel.queues import DropOldestQueue

log = logging.getLogger("callshield.console.cluster")

REPLIES = f"{PREFIX}.replies"
"""Answers to end-call requests, by token."""
CHANNELS = (SCREENS, END_CALL, SESSIONS, REPLIES)
NOTIFY_MAX = 7999
"""Bytes of one NOTIFY payload at most (PostgreSQL: shorter than 8000 in its default build)."""
PENDING_REQUESTS = 256
"""End-call requests awaiting an answer at once, at most (more are answered "held nowhere")."""
CONNECT_TIMEOUT_S = 10
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}
"""TCP keepalives of the listening connection (a silent network cut is found within about 25 s), unless the URL sets them."""
_RNG = random.Random()
_NOTIFY = "SELECT pg_notify(m.c, m.p) FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS m(c, p, i) ORDER BY m.i"


class PostgresFanout:
    """LISTEN/NOTIFY on the PostgreSQL database named by ``url`` (the store's)."""

    kind = "postgresql"

    def __init__(self, url: str) -> None:
        self.url = url
        self._cluster: Cluster | None = None
        self._listener: Any = None
        self._publisher: Any = None
        self._publisher_failed_at = -1e9
        self._publisher_failures = 0
        self._connecting = asyncio.Lock()
        self._inbox: DropOldestQueue[tuple[str, bytes]] = DropOldestQueue(INBOX)
        self._waiting: dict[str, asyncio.Future[bytes]] = {}
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    def start(self, cluster: Cluster) -> None:
        self._cluster = cluster
        cluster.spawn(self._listen())
        cluster.spawn(self._read_inbox())

    async def close(self) -> None:
        self._closed = True
        for name in ("_listener", "_publisher"):
            conn = getattr(self, name)
            setattr(self, name, None)
            if conn is not None:
                await _quietly_close(conn)

    async def _connect(self, *, purpose: str, keepalives: bool) -> Any:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict

        given = conninfo_to_dict(self.url)
        options: dict[str, Any] = {"application_name": f"callshield {purpose} {self._cluster.id}"[:63]}
        if "connect_timeout" not in given:
            options["connect_timeout"] = CONNECT_TIMEOUT_S
        if keepalives:
            options.update({k: v for k, v in KEEPALIVES.items() if k not in given})
        return await psycopg.AsyncConnection.connect(self.url, autocommit=True, **options)

    async def _listen(self) -> None:
        """Keep one connection listening on every channel, connecting again when it is lost."""
        import psycopg
        from psycopg import sql

        cluster = self._cluster
        log.info("replica %s: listening to the other replicas through PostgreSQL at %s", cluster.id, shown(self.url))
        attempt = 0
        while not self._closed:
            conn, why = None, "closed"
            try:
                conn = await self._connect(purpose="listen", keepalives=True)
                for channel in CHANNELS:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                if self._closed:
                    break
                self._listener = conn
                attempt = 0
                cluster.linked()
                async for note in conn.notifies():
                    self._take(note.channel, note.payload)
            except psycopg.Error as exc:
                why = " ".join(str(exc).split())[:200] or type(exc).__name__
            finally:
                self._listener = None
                if conn is not None:
                    await _quietly_close(conn)
            if self._closed:
                return
            cluster.unlinked(why)
            wait = RECONNECT.delay(attempt, _RNG)
            attempt += 1
            log.info("replica %s: PostgreSQL fan-out: connecting again in %.1f s (%s)", cluster.id, wait, why)
            await asyncio.sleep(wait)

    # ------------------------------------------------------------------ in

    def _take(self, channel: str, payload: str) -> None:
        if self._inbox.put((channel, payload.encode("utf-8"))) is not None:
            self._cluster.stats.dropped += 1

    async def _read_inbox(self) -> None:
        cluster = self._cluster
        while True:
            channel, data = await self._inbox.get()  # never closed: never None
            if channel == SCREENS:
                try:
                    cluster.on_screens(data)
                except Exception:  # one bad message must not stop this replica hearing the others
                    log.exception("replica %s: a message from the other replicas could not be shown", cluster.id)
            elif channel == END_CALL:
                cluster.spawn(self._answer(data))
            elif channel == SESSIONS:
                cluster.spawn(cluster.on_sessions(data))
            elif channel == REPLIES:
                token, _, answer = data.partition(b"\n")
                waiting = self._waiting.get(token.decode("ascii", "replace"))
                if waiting is not None and not waiting.done():
                    waiting.set_result(answer)

    async def _answer(self, data: bytes) -> None:
        token, sep, request = data.partition(b"\n")
        if not sep or len(token) > 64:
            return
        answer = await self._cluster.on_end_call(request)
        if answer is not None:
            await self.publish([(REPLIES, token + b"\n" + answer)])

    def backlog(self) -> int:
        return len(self._inbox)

    # ------------------------------------------------------------------ out

    async def publish(self, batch: list[tuple[str, bytes]]) -> int:
        import psycopg

        cluster = self._cluster
        channels, payloads = [], []
        for channel, payload in batch:
            if len(payload) > NOTIFY_MAX:
                cluster.stats.oversized += 1
                cluster.log_rarely(f"replica {cluster.id}: a message of {len(payload)} bytes is over NOTIFY's 8000-byte limit: not sent"
                                   " to the other replicas (they refresh their screens from the store when they find it missing)")
                continue
            channels.append(channel)
            payloads.append(payload.decode("utf-8"))
        if not channels:
            return 0
        conn = await self._publishing()
        if conn is None:
            return 0
        try:
            await conn.execute(_NOTIFY, (channels, payloads))
        except psycopg.Error as exc:
            self._publisher = None
            self._publisher_failed_at = asyncio.get_running_loop().time()
            await _quietly_close(conn)
            cluster.log_rarely(f"replica {cluster.id}: {len(channels)} message(s) for the other replicas not sent: {' '.join(str(exc).split())[:200]}")
            return 0
        return len(channels)

    async def _publishing(self) -> Any:
        """The notifying connection, connecting it if needed (not again sooner than the reconnect wait after a failure)."""
        async with self._connecting:
            return await self._publisher_connection()

    async def _publisher_connection(self) -> Any:
        import psycopg

        conn = self._publisher
        if conn is not None and not (conn.broken or conn.closed):
            return conn
        loop = asyncio.get_running_loop()
        if loop.time() - self._publisher_failed_at < RECONNECT.delay(self._publisher_failures, _RNG):
            return None
        try:
            conn = await self._connect(purpose="notify", keepalives=False)
        except psycopg.Error as exc:
            self._publisher_failed_at = loop.time()
            self._publisher_failures += 1
            self._cluster.log_rarely(f"replica {self._cluster.id}: cannot notify the other replicas: {' '.join(str(exc).split())[:200]}")
            return None
        if self._closed:
            await _quietly_close(conn)
            return None
        self._publisher, self._publisher_failures = conn, 0
        return conn

    async def request(self, subject: str, payload: bytes, timeout: float) -> bytes | None:
        if len(self._waiting) >= PENDING_REQUESTS:
            return None
        token = secrets.token_hex(8)
        answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiting[token] = answer
        try:
            if await self.publish([(subject, token.encode() + b"\n" + payload)]) != 1:
                return None
            return await asyncio.wait_for(answer, timeout)
        except asyncio.TimeoutError:
            return None
        finally:
            self._waiting.pop(token, None)


async def _quietly_close(conn: Any) -> None:
    """Close a fan-out connection, half-dead or gone already: nothing is left to do if it fails (5 s at most)."""
    try:
        await asyncio.wait_for(conn.close(), 5)
    except Exception as exc:  # a broken connection
        log.debug("closing a fan-out connection: %s", exc)
