"""The console: one websockets server for agents, browsers and the web pages.

- ``/ws/agent``: the agents' side (``console/agents.py``): events stored
  once, fanned out, acknowledged; end-call authorizations sent back.
- ``/ws/browser``: the browsers' side (``console/browsers.py``): sign-in,
  snapshots, requests checked against the sender's role.
- Anything else is a page, a static file, ``/healthz``, or 404 (``web.py``),
  after the extra routes (QA's ``/recordings/`` and ``/evidence/``).

Every request, page or websocket upgrade, first passes the host gate
(``web.HostGate``): an allowed ``Host`` (``[console] allowed_hosts``), an
``Origin`` that is this console's own, no doubled ``Host``, ``Origin``,
``Authorization`` or ``Range``. A refusal (``web.Refusal``, from the gate or
a route) is answered with its status and a one-line body and logged once.

Fan-out (``console/fanout.py``): each browser connection has its own bounded
outbox and sender task; a browser whose outbox overflows is disconnected
(counted in ``Console.stats``), never waited for, so one stuck screen cannot
delay an alert for the others.

Blocking work runs in named executors: ``store`` (one thread: the store's
one connection, SQLite or PostgreSQL),
``auth`` (scrypt password checks, which take tens of milliseconds each) and
``recordings`` (reading recordings, hashing, evidence zips; ``console/qa.py``).

Several replicas (issue 15, ``[console] nats`` or ``fanout``): ``console/cluster.py``
relays what this console shows to the other replicas' browsers through NATS
or the store's PostgreSQL (LISTEN/NOTIFY, ``console/cluster_postgresql.py``),
and authorizations to the replica holding the agent; ``/healthz`` shows the
cluster's state (``cluster``: null for one console).

QA (issue 6, ``console/qa.py`` and ``console/recordings.py``): ``/recordings/``
and ``/evidence/`` over HTTP for qa/supervisor/admin, the ``qa_*`` browser
requests, adoption of finished recordings when a call ends, and the retention
clean-up (at start, then daily).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from console.agents import AgentLinks
from console.browsers import BrowserDesk
from console.cluster import Cluster, NatsFanout, require_client
from console.cluster_postgresql import PostgresFanout
from console.config import ConsoleConfig
from console.errors import ConsoleError
from console.fanout import Screens
from console.hub import ConsoleStats
from console.load import LoadWatch
from console.qa import QaDesk
from console.store import Store
from console.web import HostGate, Refusal, Site, response, split_target
from kernel import protocol as p
from kernel.clock import Clock, utc_now
from kernel.retention import RetentionPolicy

log = logging.getLogger("callshield.console")

__all__ = ["Console", "ConsoleStats", "utc_now"]


class Console:
    """The hub. ``await start()``, then ``port``/``url`` are real; ``await stop()``."""

    def __init__(self, config: ConsoleConfig, *, clock: Clock = utc_now, retention: RetentionPolicy | None = None) -> None:
        self.config = config
        self.clock = clock
        self.stats = ConsoleStats()
        self.store: Store | None = None
        self.port: int = config.port
        self.url: str = ""
        self.http_url: str = ""
        self._server: Server | None = None
        self._store_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._tasks: set[asyncio.Task] = set()
        self._stopped = asyncio.Event()
        self._site: Site | None = None
        self._gate: HostGate | None = None
        self._routes: list[tuple[Callable[[str], bool], Callable[[Request], Awaitable[Response]]]] = []
        self.screens = Screens(on_drop=self._dropped, spawn=self.spawn, on_unsendable=self._unsendable)
        self.cluster: Cluster | None = None
        self.load = LoadWatch(self.screens, lambda: self.stats.browsers_dropped, lambda: self.cluster)
        # QA (issue 6): recordings and evidence over HTTP, qa_* requests, retention
        self.qa = QaDesk(self, retention if retention is not None else RetentionPolicy())
        self.agents = AgentLinks(self, self.qa)
        self.browsers = BrowserDesk(self, self.qa)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Open (and migrate) the store, read the pages, bind the port."""
        loop = asyncio.get_running_loop()
        if self.config.fanout_kind == "nats":
            require_client()  # before anything is opened or bound
        self.config.recordings_dir.mkdir(parents=True, exist_ok=True)
        self.store = await loop.run_in_executor(self._store_pool, partial(Store.open, self.config.store_location, clock=self.clock))
        self._site = await loop.run_in_executor(self._store_pool, partial(Site, health=self._health, tls=self.config.tls))
        context = None
        if self.config.tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            try:
                context.load_cert_chain(str(self.config.tls_cert), str(self.config.tls_key))
            except (OSError, ssl.SSLError) as exc:
                raise ConsoleError(f"cannot load TLS certificate {self.config.tls_cert} / key {self.config.tls_key}: {exc}", code="bad_tls") from exc
        try:
            self._server = await serve(
                self._connection,
                self.config.host,
                self.config.port,
                process_request=self._http,
                ssl=context,
                max_size=p.MAX_MESSAGE_BYTES,
                server_header="callshield",
                # No permessage-deflate: each browser's copy of every message was compressed
                # apart (8 % of a console's CPU at 1,000 calls, bench/console_capacity.py), the
                # messages are small, and a compressed stream that carries a session token
                # beside text a caller chose (the transcript) is what CRIME/BREACH-style
                # length attacks read under TLS.
                compression=None,
            )
        except OSError as exc:
            await self._close_store()
            raise ConsoleError(f"cannot listen on {self.config.host}:{self.config.port}: {exc.strerror or exc}", code="port_unavailable") from exc
        self.port = self._server.sockets[0].getsockname()[1]
        host = self.config.host
        if host in ("", "0.0.0.0", "::"):
            host = "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        scheme = "wss" if self.config.tls else "ws"
        self.url = f"{scheme}://{host}:{self.port}"
        self.http_url = f"{'https' if self.config.tls else 'http'}://{host}:{self.port}"
        self._gate = HostGate.for_console(self.config.allowed_hosts, self.config.host, own=host)
        log.info("console listening on %s", self.http_url)
        if self.config.fanout_kind:
            self._link_replicas(host)
        self.qa.start()
        self.agents.start()
        self.spawn(self.load.run())

    def _link_replicas(self, host: str) -> None:
        """Several replicas: publish what is shown here, show what the others publish (``console/cluster.py``)."""
        replica = self.config.replica or f"{socket.gethostname()}-{self.port}"
        fanout = PostgresFanout(self.config.store) if self.config.fanout_kind == "postgresql" else NatsFanout(self.config.nats)
        self.cluster = Cluster(
            fanout.url, replica, fanout=fanout, deliver=self.screens.deliver, end_call=self.agents.deliver_end_call,
            sessions_changed=self.browsers.sessions_changed, resync=self.browsers.resync,
            agents=lambda: tuple(self.agents.connected), peer_gone=self.agents.peer_gone, spawn=self.spawn,
        )
        self.cluster.start()
        self.screens.relay = self.cluster.relay

    async def serve_forever(self) -> None:
        """Serve until :meth:`stop` is called (starting first if needed)."""
        if self._server is None:
            await self.start()
        await self._stopped.wait()

    async def stop(self) -> None:
        """Close every socket, then flush and close the store."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self.cluster is not None:
            self.screens.relay = None
            await self.cluster.close()
        if self._server is not None:
            self._server.close(close_connections=True)
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._close_store()
        self.browsers.close()
        self.qa.close()

    async def _close_store(self) -> None:
        if self.store is not None:
            await asyncio.get_running_loop().run_in_executor(self._store_pool, self.store.close)
            self.store = None
        self._store_pool.shutdown(wait=True)

    async def __aenter__(self) -> "Console":
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task:
        """Run ``coro`` as a task the console keeps (and cancels at stop)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def db(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run one store call on the store thread."""
        if self.store is None:
            raise ConsoleError("the store is closed", code="store_closed")
        return await asyncio.get_running_loop().run_in_executor(self._store_pool, partial(fn, *args, **kwargs))

    def _dropped(self) -> None:
        self.stats.browsers_dropped += 1

    def _unsendable(self) -> None:
        self.stats.messages_unsendable += 1

    def _health(self) -> dict[str, object]:
        return {
            "status": "ok",
            "agents": sorted(self.agents.connected),
            "browsers": len(self.screens.links),
            "browsers_dropped": self.stats.browsers_dropped,
            "partials_shed": self.screens.partials_shed,
            "messages_unsendable": self.stats.messages_unsendable,
            "events_stored": self.stats.events_stored,
            "event_runs": self.stats.event_runs,
            "events_shown_late": self.stats.events_shown_late,
            "events_unshown_dropped": self.stats.events_unshown_dropped,
            "agent_links_store_errors": self.stats.agent_links_store_errors,
            "store_conflicts": self.store.conflicts.health() if self.store is not None else {},
            "cluster": self.cluster.health() if self.cluster is not None else None,
        }

    # ------------------------------------------------------------------ routing

    def add_route(self, handles: Callable[[str], bool], answer: Callable[[Request], Awaitable[Response]]) -> None:
        """Serve extra HTTP paths (e.g. QA recordings): ``handles(path)`` says
        whether ``answer(request)`` takes a request; checked before the pages."""
        self._routes.append((handles, answer))

    async def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        assert self._site is not None and self._gate is not None
        path, _ = split_target(request.path)
        try:
            self._gate.check(request)
            for handles, answer in self._routes:
                if handles(path):
                    return await answer(request)
            return self._site.answer(request)
        except Refusal as refusal:
            address = connection.remote_address
            log.warning("refused %s from %s: %s (%d)%s", request.path[:80].encode("unicode_escape").decode("ascii"),
                        address[0] if address else "?", refusal.reason, refusal.status.value, f" {refusal.detail}" if refusal.detail else "")
            return response(refusal.status, f"{refusal.reason}\n".encode(), "text/plain; charset=utf-8", None, tls=self.config.tls)

    async def _connection(self, ws: ServerConnection) -> None:
        path = ws.request.path.split("?", 1)[0]
        if path == "/ws/agent":
            await self.agents.serve(ws)
        elif path == "/ws/browser":
            await self.browsers.serve(ws)
        else:  # pragma: no cover - process_request answers every other path
            await ws.close(1008, "unknown path")
