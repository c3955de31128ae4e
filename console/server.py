"""The console: one websockets server for agents, browsers and the web pages.

- ``/ws/agent``: agents speak ``kernel/protocol.py``. After a good
  ``AgentHello`` the console answers ``Welcome(last_seq)`` and any end-call
  authorizations the agent missed while away; every durable event is stored
  (idempotently, by ``event_id``), fanned out to browsers if it is new, then
  acknowledged with ``Ack(seq)``. Partials are forwarded, never stored.
- ``/ws/browser``: pages speak ``console/browser_protocol.py``; every message
  is checked against the sender's role (``console/roles.py``). Refusals are
  answered with an error, written to the audit log, and change nothing.
- Anything else is a page, a static file, ``/healthz``, or 404 (``web.py``).

Fan-out: each browser connection has its own bounded outbox and sender task;
a browser whose outbox overflows is disconnected (counted in
``Console.stats``), never waited for, so one stuck screen cannot delay an
alert for the others.

Blocking work runs in named executors: ``store`` (one thread: SQLite),
``auth`` (scrypt password checks, which take tens of milliseconds each) and
``recordings`` (reading recordings, hashing, evidence zips; ``console/qa.py``).

QA (issue 6, ``console/qa.py`` and ``console/recordings.py``): ``/recordings/``
and ``/evidence/`` over HTTP for qa/supervisor/admin, the ``qa_*`` browser
requests, adoption of finished recordings when a call ends, and the retention
clean-up (at start, then daily).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
import ssl
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any, Awaitable, Callable

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from kernel import protocol as p
from console import browser_protocol as b
from console.auth import LoginThrottle, hash_password, new_password, verify_password
from kernel.clock import Clock, iso, utc_now
from console.config import ConsoleConfig
from console.errors import BadRequest, ConsoleError, Forbidden, NotAuthenticated
from console.roles import WATCHES_ALL_CALLS, may
from console.store import Recorded, Store
from console.web import Site

log = logging.getLogger("callshield.console")

__all__ = ["Console", "ConsoleStats", "utc_now"]

MAX_UNAUTHENTICATED_ERRORS = 3
"""Bad messages an unauthenticated browser socket may send before it is closed."""
HELLO_TIMEOUT = 10.0
"""Seconds an agent has to send ``AgentHello`` after connecting."""
PEER_FAILURE_FACTOR = 10
"""A client address may fail this many times more often than one user name."""
AGENT_INBOUND = tuple(t for t in p.AGENT_MESSAGES if t is not p.AgentHello)


@dataclass
class ConsoleStats:
    """Counters for health checks and benchmarks (since start)."""

    agents_connected: int = 0
    agent_refusals: int = 0
    browser_refusals: int = 0
    browsers_dropped: int = 0
    events_stored: int = 0
    events_duplicate: int = 0
    partials_forwarded: int = 0


class BrowserLink:
    """One browser connection: who is logged in, its bounded outbox, its sender."""

    def __init__(self, ws: ServerConnection, limit: int) -> None:
        self.ws = ws
        self.outbox: asyncio.Queue[str] = asyncio.Queue(maxsize=limit)
        self.user: str | None = None
        self.role: str | None = None
        self.token: str | None = None
        self.bad = 0
        self.dropped = False
        self.sender: asyncio.Task | None = None

    @property
    def peer(self) -> str:
        address = self.ws.remote_address
        return str(address[0]) if address else "?"

    def offer(self, text: str) -> bool:
        """Queue a message; False when the outbox is full (the browser is too slow)."""
        try:
            self.outbox.put_nowait(text)
        except asyncio.QueueFull:
            return False
        return True

    async def pump(self) -> None:
        """Send queued messages in order until the socket closes."""
        try:
            while True:
                text = await self.outbox.get()
                await self.ws.send(text)
        except ConnectionClosed:
            pass


class Console:
    """The hub. ``await start()``, then ``port``/``url`` are real; ``await stop()``."""

    def __init__(self, config: ConsoleConfig, *, clock: Clock = utc_now, retention: Any = None) -> None:
        from kernel.retention import RetentionPolicy
        from console.qa import QaDesk

        self.config = config
        self.clock = clock
        self.stats = ConsoleStats()
        self.store: Store | None = None
        self.port: int = config.port
        self.url: str = ""
        self.http_url: str = ""
        self._server: Server | None = None
        self._store_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._auth_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="auth")
        self._browsers: set[BrowserLink] = set()
        self._agents: dict[str, ServerConnection] = {}
        self._owners: dict[str, str] = {}  # live call id -> agent, for partials
        self._tasks: set[asyncio.Task] = set()
        window = timedelta(seconds=config.lockout_seconds)
        self._throttle_user = LoginThrottle(limit=config.login_failures, window=window)
        # a whole floor may sign in through one proxy address: be more lenient per address
        self._throttle_peer = LoginThrottle(limit=config.login_failures * PEER_FAILURE_FACTOR, window=window)
        self._stopped = asyncio.Event()
        self._site: Site | None = None
        self._routes: list[tuple[Callable[[str], bool], Callable[[Any], Awaitable[Any]]]] = []
        # QA (issue 6): recordings and evidence over HTTP, qa_* requests, retention
        self.qa = QaDesk(self, retention if retention is not None else RetentionPolicy())

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Open (and migrate) the store, read the pages, bind the port."""
        loop = asyncio.get_running_loop()
        self.config.recordings_dir.mkdir(parents=True, exist_ok=True)
        self.store = await loop.run_in_executor(self._store_pool, partial(Store.open, self.config.store_path, clock=self.clock))
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
        log.info("console listening on %s", self.http_url)
        self.qa.start()

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
        if self._server is not None:
            self._server.close(close_connections=True)
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._close_store()
        self._auth_pool.shutdown(wait=True)
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

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def db(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run one store call on the store thread."""
        if self.store is None:
            raise ConsoleError("the store is closed", code="store_closed")
        return await asyncio.get_running_loop().run_in_executor(self._store_pool, partial(fn, *args, **kwargs))

    def _health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "agents": sorted(self._agents),
            "browsers": len(self._browsers),
            "browsers_dropped": self.stats.browsers_dropped,
            "events_stored": self.stats.events_stored,
        }

    # ------------------------------------------------------------------ routing

    def add_route(self, handles: Callable[[str], bool], answer: Callable[[Request], Awaitable[Response]]) -> None:
        """Serve extra HTTP paths (e.g. QA recordings): ``handles(path)`` says
        whether ``answer(request)`` takes a request; checked before the pages."""
        self._routes.append((handles, answer))

    async def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        for handles, answer in self._routes:
            if handles(path):
                return await answer(request)
        assert self._site is not None
        return self._site.answer(request)

    async def _connection(self, ws: ServerConnection) -> None:
        path = ws.request.path.split("?", 1)[0]
        if path == "/ws/agent":
            await self._agent(ws)
        elif path == "/ws/browser":
            await self._browser(ws)
        else:  # pragma: no cover - process_request answers every other path
            await ws.close(1008, "unknown path")

    # ------------------------------------------------------------------ agents

    async def _agent(self, ws: ServerConnection) -> None:
        try:
            raw = await asyncio.wait_for(ws.recv(), HELLO_TIMEOUT)
            hello = p.decode(raw, allowed=(p.AgentHello,))
        except (asyncio.TimeoutError, ConnectionClosed):
            return
        except p.ProtocolError as exc:
            await self._refuse_agent(ws, None, "not_authenticated", f"the first message must be a valid agent_hello ({exc.message})")
            return
        last_seq = await self.db(self.store.check_agent, hello.agent_id, hello.token, hello.site)
        if last_seq is None:
            await self._refuse_agent(ws, hello.agent_id, "bad_token", f"unknown agent or wrong token for {hello.agent_id!r}")
            return
        agent = hello.agent_id
        previous = self._agents.get(agent)
        self._agents[agent] = ws
        self.stats.agents_connected += 1
        if previous is not None and previous is not ws:
            self._spawn(previous.close(1000, "replaced by a new connection of the same agent"))
        try:
            await ws.send(p.encode(p.Welcome(agent_id=agent, last_seq=last_seq)))
            for auth in await self.db(self.store.pending_authorizations, agent):
                await ws.send(p.encode(_end_call(auth)))
            async for raw in ws:
                await self._agent_message(ws, agent, raw)
        except ConnectionClosed:
            pass
        except sqlite3.Error as exc:  # nothing unstored was acknowledged: the agent resends after reconnecting
            log.error("store error on agent %s's link: %s", agent, exc)
            await ws.close(1011, "console store error")
        finally:
            if self._agents.get(agent) is ws:
                del self._agents[agent]

    async def _refuse_agent(self, ws: ServerConnection, agent: str | None, code: str, message: str) -> None:
        self.stats.agent_refusals += 1
        who = f"agent:{agent}" if agent else "-"
        await self.db(self.store.audit, who, "agent_refused", None, f"{code}: {message} (from {_peer(ws)})")
        try:
            await ws.send(p.encode(p.Refused(code=code, message=message)))
            await ws.close(1008, code)
        except ConnectionClosed:
            pass

    async def _agent_message(self, ws: ServerConnection, agent: str, raw: str | bytes) -> None:
        try:
            message = p.decode(raw, allowed=AGENT_INBOUND)
        except p.ProtocolError as exc:
            self.stats.agent_refusals += 1
            await ws.send(p.encode(p.Refused(code=exc.code, message=exc.message)))
            return
        if isinstance(message, p.PartialTranscript):
            owner = self._owners.get(message.call_id)
            if owner is None:
                owner = await self.db(self.store.call_owner, message.call_id)
            if owner != agent:
                await self._refused_event(ws, agent, message, Forbidden(f"call {message.call_id!r} is not this agent's", code="not_your_call"))
                return
            self.stats.partials_forwarded += 1
            self._publish(b.PartialShown(call_id=message.call_id, speaker=message.speaker, start=message.start, text=message.text), call=None, supervisors=True)
            await asyncio.sleep(0)  # let the browsers' senders run between bursts of partials
            return
        try:
            recorded: Recorded = await self.db(self.store.record_event, agent, message)
        except (Forbidden, BadRequest) as exc:
            await self._refused_event(ws, agent, message, exc)
            await ws.send(p.encode(p.Ack(seq=message.seq)))  # a resend would be refused again
            return
        if recorded.new:
            self.stats.events_stored += 1
            self._fan_out(message, recorded)
        else:
            self.stats.events_duplicate += 1
        await ws.send(p.encode(p.Ack(seq=message.seq)))

    async def _refused_event(self, ws: ServerConnection, agent: str, message: Any, exc: ConsoleError) -> None:
        self.stats.agent_refusals += 1
        call_id = getattr(message, "call_id", None)
        await self.db(self.store.audit, f"agent:{agent}", "refused", None, f"{message.TYPE} for call {call_id!r}: {exc.code}")
        await ws.send(p.encode(p.Refused(code=exc.code, message=exc.message)))

    def _fan_out(self, message: Any, rec: Recorded) -> None:
        call = rec.call
        if isinstance(message, p.CallStarted):
            self._owners[message.call_id] = call["agent"]
            self._publish(b.CallShown(call=call), call=call)
        elif isinstance(message, p.UtteranceFinal):
            self._publish(b.UtteranceShown(utterance=rec.record), call=None)
        elif isinstance(message, p.FindingRaised):
            self._publish(b.FindingShown(finding=rec.record), call=None)
        elif isinstance(message, p.LevelChanged):
            self._publish(b.LevelShown(level=rec.record), call=call)
            self._publish(b.CallShown(call=call), call=call)
            if rec.alert:
                self._publish(b.AlertShown(alert=rec.alert), call=None)
        elif isinstance(message, p.CallEnded):
            self._owners.pop(message.call_id, None)
            self._publish(b.CallShown(call=call), call=call)
            self._spawn(self.qa.call_ended(message.call_id))
        elif isinstance(message, p.AgentNotice):
            self._publish(b.NoticeShown(notice=rec.record), call=None)
        if rec.checkin:
            self._publish(b.CheckinShown(checkin=rec.checkin), call=None)

    # ------------------------------------------------------------------ fan-out

    def _publish(self, message: Any, *, call: dict | None, supervisors: bool = True, partner: str | None = None) -> None:
        """Send to every supervisor (if ``supervisors``) and to the partner of
        ``call`` (or the named ``partner``). Encoded once, queued per browser."""
        text = b.encode(message)
        partner = partner or (call["partner"] if call else None)
        for link in list(self._browsers):
            if link.role is None or link.dropped:
                continue
            wanted = (supervisors and link.role in WATCHES_ALL_CALLS) or (partner is not None and link.role == "partner" and link.user == partner)
            if wanted and not link.offer(text):
                self._drop(link)

    def _drop(self, link: BrowserLink) -> None:
        link.dropped = True
        self.stats.browsers_dropped += 1
        log.warning("dropping slow browser %s (%s): %d messages behind", link.user, link.peer, link.outbox.qsize())
        self._browsers.discard(link)
        if link.sender is not None:
            link.sender.cancel()
        self._spawn(link.ws.close(1013, "too slow: reconnect"))

    def _reply(self, link: BrowserLink, message: Any) -> None:
        if not link.offer(b.encode(message)):
            self._drop(link)

    # ------------------------------------------------------------------ browsers

    async def _browser(self, ws: ServerConnection) -> None:
        link = BrowserLink(ws, self.config.browser_queue)
        link.sender = self._spawn(link.pump())
        self._browsers.add(link)
        try:
            async for raw in ws:
                if link.dropped:
                    break
                await self._browser_message(link, raw)
                if link.bad >= MAX_UNAUTHENTICATED_ERRORS and link.role is None:
                    await asyncio.sleep(0)  # let the error go out first
                    await _drain(link)
                    await ws.close(1008, "not authenticated")
                    break
        except ConnectionClosed:
            pass
        finally:
            self._browsers.discard(link)
            if link.sender is not None and not link.dropped:
                link.sender.cancel()

    async def _browser_message(self, link: BrowserLink, raw: str | bytes) -> None:
        try:
            request = b.decode(raw)
        except p.ProtocolError as exc:
            if link.role is None:
                link.bad += 1
                await self._audit_refusal(link, "-", f"unauthenticated bad message: {exc.code}")
            self._reply(link, b.BrowserError(code=exc.code, message=exc.message, ref=b.ref_of(raw)))
            return
        try:
            if isinstance(request, b.Login):
                await self._login(link, request)
            elif isinstance(request, b.Resume):
                await self._resume(link, request)
            elif link.role is None:
                raise NotAuthenticated("log in first")
            elif not may(link.role, request.TYPE):
                raise Forbidden(f"a {link.role} may not {request.TYPE.replace('_', ' ')}")
            else:
                await self._act(link, request)
        except NotAuthenticated as exc:
            link.bad += 1
            await self._audit_refusal(link, link.user or "-", f"{request.TYPE}: {exc.code}")
            self._reply(link, b.BrowserError(code=exc.code, message=exc.message, ref=request.ref))
        except Forbidden as exc:
            await self._audit_refusal(link, link.user or "-", f"{request.TYPE} as {link.role}: {exc.message}", getattr(request, "call_id", None))
            self._reply(link, b.BrowserError(code=exc.code, message=exc.message, ref=request.ref))
        except BadRequest as exc:
            self._reply(link, b.BrowserError(code=exc.code, message=exc.message, ref=request.ref))

    async def _audit_refusal(self, link: BrowserLink, who: str, detail: str, call_id: str | None = None) -> None:
        self.stats.browser_refusals += 1
        await self.db(self.store.audit, who, "refused", call_id, f"{detail} (from {link.peer})")

    async def _login(self, link: BrowserLink, request: b.Login) -> None:
        now = self.clock()
        throttles = ((self._throttle_user, request.user), (self._throttle_peer, link.peer))
        if any(t.blocked(k, now) for t, k in throttles):
            await self.db(self.store.audit, request.user[:64] or "-", "login_throttled", None, f"from {link.peer}")
            raise BadRequest("too many failed logins; try again later", code="too_many_attempts")
        found = await self.db(self.store.credentials, request.user)
        stored = found[1] if found else _dummy_hash()
        ok = await asyncio.get_running_loop().run_in_executor(self._auth_pool, verify_password, request.password, stored)
        if not (found and ok):
            for t, k in throttles:
                t.failed(k, now)
            link.bad += 1
            await self.db(self.store.audit, request.user[:64] or "-", "login_failed", None, f"from {link.peer}")
            raise BadRequest("wrong user name or password", code="bad_login")
        self._throttle_user.succeeded(request.user)
        token, session = await self.db(self.store.create_session, request.user, self.config.session_hours)
        await self.db(self.store.audit, session.user, "login", None, f"as {session.role} from {link.peer}")
        self._reply(link, b.SessionOpened(user=session.user, role=session.role, token=token, expires_at=iso(session.expires_at), ref=request.ref))
        await self._authenticated(link, session.user, session.role, token)

    async def _resume(self, link: BrowserLink, request: b.Resume) -> None:
        session = await self.db(self.store.session, request.token)
        if session is None:
            raise NotAuthenticated("session expired or unknown: log in again")
        self._reply(link, b.SessionOpened(user=session.user, role=session.role, token=request.token, expires_at=iso(session.expires_at), ref=request.ref))
        await self._authenticated(link, session.user, session.role, request.token)

    async def _authenticated(self, link: BrowserLink, user: str, role: str, token: str) -> None:
        link.user, link.role, link.token, link.bad = user, role, token, 0
        self._reply(link, await self.db(_snapshot, self.store, user, role))

    async def _act(self, link: BrowserLink, r: Any) -> None:
        store = self.store
        user = link.user
        if isinstance(r, b.Logout):
            await self.db(store.end_session, link.token)
            await self.db(store.audit, user, "logout", None, f"from {link.peer}")
            self._reply(link, b.Done(of=r.TYPE, ref=r.ref))
            link.user = link.role = link.token = None
        elif isinstance(r, b.CallDetailRequest):
            if link.role == "partner":
                current = await self.db(store.current_call_of, user)
                if current is None or current["id"] != r.call_id:
                    raise Forbidden("a partner may only see their own current call")
            detail = await self.db(store.call_detail, r.call_id)
            if detail is None:
                raise BadRequest(f"no call {r.call_id!r}", code="unknown_call")
            self._reply(link, b.CallDetail(detail=detail, ref=r.ref))
        elif isinstance(r, b.ListCalls):
            calls = await self.db(store.recent_calls, max(1, min(r.limit, 500)))
            self._reply(link, b.CallList(calls=tuple(calls), ref=r.ref))
        elif isinstance(r, b.AckAlert):
            alert, changed = await self.db(store.acknowledge_alert, r.alert_id, user)
            if changed:
                self._publish(b.AlertShown(alert=alert), call=None)
                self._publish(b.CallShown(call=await self.db(store.call, alert["call_id"])), call=None)
            self._reply(link, b.Done(of=r.TYPE, ref=r.ref))
        elif isinstance(r, b.AuthorizeEnd):
            auth, agent = await self.db(store.authorize_end, r.call_id, user, r.reason)
            call = await self.db(store.call, r.call_id)
            self._publish(b.AuthorizationShown(authorization=auth), call=call)
            self._publish(b.CallShown(call=call), call=call)
            self._reply(link, b.Done(of=r.TYPE, ref=r.ref))
            agent_ws = self._agents.get(agent)
            if agent_ws is not None:  # else sent when the agent reconnects
                try:
                    await agent_ws.send(p.encode(_end_call(auth)))
                except ConnectionClosed:
                    pass
        elif isinstance(r, b.NeedHelp):
            current = await self.db(store.current_call_of, user)
            help_ = await self.db(store.request_help, user, current["id"] if current else None, r.note)
            self._publish(b.HelpShown(help=help_), call=None, partner=user)
            self._reply(link, b.Done(of=r.TYPE, ref=r.ref))
        elif isinstance(r, b.AckHelp):
            help_ = await self.db(store.acknowledge_help, r.help_id, user)
            self._publish(b.HelpShown(help=help_), call=None, partner=help_["partner"])
            self._reply(link, b.Done(of=r.TYPE, ref=r.ref))
        elif isinstance(r, b.CheckinDone):
            checkin = await self.db(store.checkin_done, r.checkin_id, user, r.note)
            self._publish(b.CheckinShown(checkin=checkin), call=None)
            self._reply(link, b.Done(of=r.TYPE, ref=r.ref))
        elif isinstance(r, b.ListUsers):
            self._reply(link, b.UserList(users=tuple(await self.db(store.list_users)), ref=r.ref))
        elif isinstance(r, b.AddUser):
            secret = await self.db(store.add_user, r.name, r.role)
            await self.db(store.audit, user, "user_added", None, f"{r.name} as {r.role}")
            self._reply(link, b.UserAdded(name=r.name, role=r.role, secret=secret, ref=r.ref))
        elif isinstance(r, (b.QaCalls, b.QaCall, b.QaMark, b.QaExport)):
            self._reply(link, await self.qa.handle(link, r))
        else:  # pragma: no cover - every request type is handled above
            raise BadRequest(f"{r.TYPE} is not handled", code="unexpected_message")


def _snapshot(store: Store, user: str, role: str) -> b.Snapshot:
    """What a page starts from, per role (runs on the store thread)."""
    if role in WATCHES_ALL_CALLS:
        return b.Snapshot(
            user=user, role=role, calls=tuple(store.live_calls()), alerts=tuple(store.open_alerts(100)),
            checkins=tuple(store.open_checkins()), help=tuple(store.open_help()),
        )
    if role == "partner":
        call = store.current_call_of(user)
        if call is None:
            return b.Snapshot(user=user, role=role)
        return b.Snapshot(
            user=user, role=role, calls=(call,), levels=tuple(store.level_changes(call["id"])),
            authorizations=tuple(store.authorizations(call["id"])),
        )
    if role == "qa":
        return b.Snapshot(user=user, role=role, calls=tuple(store.recent_calls(50)))
    return b.Snapshot(user=user, role=role)


def _end_call(auth: dict[str, Any]) -> p.EndCallAuthorized:
    return p.EndCallAuthorized(call_id=auth["call_id"], authorization_id=auth["id"], by=auth["by"], reason=auth["reason"], authorized_at=auth["authorized_at"])


def _peer(ws: ServerConnection) -> str:
    address = ws.remote_address
    return str(address[0]) if address else "?"


async def _drain(link: BrowserLink, rounds: int = 20) -> None:
    """Give the sender a moment to flush the outbox before a deliberate close."""
    for _ in range(rounds):
        if link.outbox.empty():
            return
        await asyncio.sleep(0.01)


@functools.cache
def _dummy_hash() -> str:
    """A hash of a random password, verified against for unknown user names so
    a failed login takes the same time whether or not the name exists."""
    return hash_password(new_password())
