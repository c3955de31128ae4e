"""The browsers' side of the console: ``/ws/browser``.

Pages speak ``console/browser_protocol.py``; every message is checked against
the sender's role (``console/roles.py``). Refusals are answered with an
error, written to the audit log, and change nothing. Sign-in checks run on
the ``auth`` executor (scrypt takes tens of milliseconds), throttled per
(user name, client address) and, more leniently, per client address
(``console/auth.py``: :class:`LoginThrottle`); refused sign-ins are audited
as one row per address per minute (:class:`RefusalTally`).

Rights are not cached on a socket: every request of a signed-in page is
checked against the store first, and a sweep every ``sweep_seconds`` closes
the sockets whose session is gone (logged out elsewhere, expired, password
changed, user removed, also by ``callshield users`` in another process) with
close code :data:`SIGNED_OUT`, which the pages show as "signed out". With
several replicas sharing the store, a logout on one also has the others
check at once (``console/cluster.py``, ``callshield.sessions``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from console import browser_protocol as b
from console.auth import LoginThrottle, RefusalTally, hash_password, new_password, verify_password
from console.errors import BadRequest, ConsoleError, Forbidden, NotAuthenticated, StoreError
from console.fanout import BrowserLink
from console.hub import Hub
from console.qa import QaDesk
from console.roles import WATCHES_ALL_CALLS, may
from console.store import Session, Store
from kernel import protocol as p
from kernel.clock import iso

log = logging.getLogger("callshield.console")

MAX_UNAUTHENTICATED_ERRORS = 3
"""Bad messages an unauthenticated browser socket may send before it is closed."""
PEER_FAILURE_FACTOR = 10
"""A client address may fail this many times more often than one (user name, address)."""
SIGNED_OUT = 4401
"""Close code of a socket whose session ended (the pages show "signed out")."""
SWEEP_SECONDS = 5.0
"""How often open sockets are checked against the store's sessions, seconds."""
RESUME_READS = 8
"""A resume reads its session again when another session ended meanwhile, at most this often
(then it is refused, and the page resumes again): bounded, however busy the floor's logouts."""


class BrowserDesk:
    """Browser connections: sign-in, snapshots, and every request a page sends."""

    def __init__(self, hub: Hub, qa: QaDesk) -> None:
        self.hub = hub
        self.qa = qa
        config = hub.config
        self._auth_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="auth")
        # a whole floor may sign in through one proxy address: be more lenient per address
        self.throttle = LoginThrottle(
            limit=config.login_failures, lockout=timedelta(seconds=config.lockout_seconds),
            peer_limit=config.login_failures * PEER_FAILURE_FACTOR, trust=timedelta(hours=config.session_hours),
        )
        self.tally = RefusalTally()
        self.sweep_seconds = SWEEP_SECONDS
        self._sweeper: asyncio.Task | None = None
        self._sessions_ended = 0
        """Sessions this replica has seen end (a logout here, word from another replica, a
        sweep that found one gone): a sign-in whose session was read before one of them
        reads it again (:meth:`_resume`)."""

    def close(self) -> None:
        self._auth_pool.shutdown(wait=True)

    async def _sweep(self) -> None:
        """Every ``sweep_seconds``: close sockets whose session is gone, write
        the throttled sign-ins' summaries that are due (all of them at stop)."""
        try:
            while True:
                await asyncio.sleep(self.sweep_seconds)
                try:
                    await self._check_sessions()
                    await self._write_tally()
                except ConsoleError as exc:  # the store is closing, busy or unreachable (StoreError): try again next round
                    log.warning("session sweep failed: %s", exc)
        except asyncio.CancelledError:
            await self._write_tally(everything=True)
            raise

    async def sessions_changed(self) -> None:
        """Another replica ended a session: check this one's sockets now."""
        self._sessions_ended += 1
        await self._check_sessions()

    async def resync(self) -> None:
        """Send every signed-in browser a fresh snapshot (messages from another
        replica were lost on the way: the store has them)."""
        hub = self.hub
        read: dict[tuple[str, str], b.Snapshot] = {}  # one store read per role (per user for partners), not per page
        for link in [link for link in hub.screens.links if link.role is not None and not link.dropped]:
            user, role = link.user, link.role
            key = (role, user if role == "partner" else "")
            if key not in read:
                read[key] = await hub.db(_snapshot, hub.store, user, role)
            if link.user == user and link.role == role and not link.dropped:
                hub.screens.reply(link, dataclasses.replace(read[key], user=user))

    async def _check_sessions(self) -> None:
        read = [(link, link.token) for link in self.hub.screens.links if link.token is not None and not link.dropped]
        if not read:
            return
        live = await self.hub.db(self.hub.store.live_sessions, {token for _, token in read})
        for link, token in read:
            # judged only on the token that was read: a socket that signed in again meanwhile holds a newer one
            if link.token == token and not _holds(live.get(token), link):
                self._sessions_ended += 1
                await self._sign_out(link, "session ended")

    async def _sign_out(self, link: BrowserLink, why: str) -> None:
        """Take a socket's rights at once, then close it with :data:`SIGNED_OUT`."""
        hub = self.hub
        user = link.user or "-"
        hub.screens.sign_out(link)
        hub.stats.browsers_signed_out += 1
        await hub.db(hub.store.audit, user, "signed_out", None, f"{why}: socket closed (from {link.peer})")
        hub.spawn(_close_after_drain(link, SIGNED_OUT, "signed out"))

    async def _write_tally(self, *, everything: bool = False) -> None:
        hub = self.hub
        for s in self.tally.due(hub.clock(), everything=everything):
            names = ", ".join(s.names) + (" and others" if s.more_names else "")
            detail = f"{s.count} sign-ins refused (too many failures) from {s.peer} since {iso(s.first)}; names: {names}"
            await hub.db(hub.store.audit, s.names[0] if len(s.names) == 1 and not s.more_names else "-", "login_throttled", None, detail)

    async def serve(self, ws: ServerConnection) -> None:
        """One browser connection, until it closes or is dropped."""
        screens = self.hub.screens
        if self._sweeper is None:
            self._sweeper = self.hub.spawn(self._sweep())
        link = BrowserLink(ws, self.hub.config.browser_queue)
        link.sender = self.hub.spawn(link.pump())
        screens.add(link)
        try:
            async for raw in ws:
                if link.dropped:
                    break
                await self._message(link, raw)
                if link.bad >= MAX_UNAUTHENTICATED_ERRORS and link.role is None:
                    await asyncio.sleep(0)  # let the error go out first
                    await _close_after_drain(link, 1008, "not authenticated")
                    break
        except ConnectionClosed:
            pass
        finally:
            screens.remove(link)
            if link.sender is not None and not link.dropped:
                link.sender.cancel()

    async def _message(self, link: BrowserLink, raw: str | bytes) -> None:
        reply = self.hub.screens.reply
        try:
            request = b.decode(raw)
        except p.ProtocolError as exc:
            if link.role is None:
                link.bad += 1
                await self._audit_refusal(link, "-", f"unauthenticated bad message: {exc.code}")
            reply(link, b.BrowserError(code=exc.code, message=exc.message, ref=b.ref_of(raw)))
            return
        try:
            if isinstance(request, b.Login):
                await self._login(link, request)
            elif isinstance(request, b.Resume):
                await self._resume(link, request)
            elif link.role is None:
                raise NotAuthenticated("log in first")
            elif not _holds(await self.hub.db(self.hub.store.session, link.token), link):
                await self._audit_refusal(link, link.user or "-", f"{request.TYPE}: session ended", getattr(request, "call_id", None))
                reply(link, b.BrowserError(code="not_authenticated", message="signed out: the session has ended", ref=request.ref))
                await self._sign_out(link, f"session ended, {request.TYPE} refused")
            elif not may(link.role, request.TYPE):
                raise Forbidden(f"a {link.role} may not {request.TYPE.replace('_', ' ')}")
            else:
                await self._act(link, request)
        except NotAuthenticated as exc:
            link.bad += 1
            await self._audit_refusal(link, link.user or "-", f"{request.TYPE}: {exc.code}")
            reply(link, b.BrowserError(code=exc.code, message=exc.message, ref=request.ref))
        except Forbidden as exc:
            await self._audit_refusal(link, link.user or "-", f"{request.TYPE} as {link.role}: {exc.message}", getattr(request, "call_id", None))
            reply(link, b.BrowserError(code=exc.code, message=exc.message, ref=request.ref))
        except BadRequest as exc:
            reply(link, b.BrowserError(code=exc.code, message=exc.message, ref=request.ref))
        except StoreError as exc:  # the store is unreachable or failed: this request is lost, the socket stays
            log.error("%s from %s failed in the store: %s", request.TYPE, link.user or "-", exc)
            reply(link, b.BrowserError(code="store_unavailable", message="the console's store failed; try again", ref=request.ref))

    async def _audit_refusal(self, link: BrowserLink, who: str, detail: str, call_id: str | None = None) -> None:
        hub = self.hub
        hub.stats.browser_refusals += 1
        await hub.db(hub.store.audit, who, "refused", call_id, f"{detail} (from {link.peer})")

    async def _login(self, link: BrowserLink, request: b.Login) -> None:
        hub = self.hub
        now = hub.clock()
        # reserved here, on the event loop before any await: concurrent guesses cannot all pass
        allowed = self.throttle.reserve(request.user, link.peer, now)
        hub.stats.login_throttle_evicted = self.throttle.evicted
        if not allowed:
            link.bad += 1
            hub.stats.logins_throttled += 1
            self.tally.count(link.peer, request.user, now)
            raise BadRequest("too many failed logins; try again later", code="too_many_attempts")
        found = await hub.db(hub.store.credentials, request.user)
        stored = found[1] if found else _dummy_hash()
        ok = await asyncio.get_running_loop().run_in_executor(self._auth_pool, verify_password, request.password, stored)
        if not (found and ok):
            link.bad += 1
            await hub.db(hub.store.audit, request.user[:64] or "-", "login_failed", None, f"from {link.peer}")
            raise BadRequest("wrong user name or password", code="bad_login")
        self.throttle.succeeded(request.user, link.peer, now)
        token, session = await hub.db(hub.store.create_session, request.user, hub.config.session_hours)
        await hub.db(hub.store.audit, session.user, "login", None, f"as {session.role} from {link.peer}")
        hub.screens.reply(link, b.SessionOpened(user=session.user, role=session.role, token=token, expires_at=iso(session.expires_at), ref=request.ref))
        await self._authenticated(link, session.user, session.role, token)

    async def _resume(self, link: BrowserLink, request: b.Resume) -> None:
        hub = self.hub
        for _ in range(RESUME_READS):
            ended = self._sessions_ended
            session = await hub.db(hub.store.session, request.token)
            if session is None:
                raise NotAuthenticated("session expired or unknown: log in again")
            if ended == self._sessions_ended:
                break
            # a session ended while this one was read (a logout in another tab, here or on another
            # replica): the answer may be stale, and that logout looked for this socket before it held
            # the token. Read again; from the last read to the sign-in below nothing else runs.
        else:
            raise NotAuthenticated("sessions kept ending while this one was read: resume again")
        hub.screens.reply(link, b.SessionOpened(user=session.user, role=session.role, token=request.token, expires_at=iso(session.expires_at), ref=request.ref))
        await self._authenticated(link, session.user, session.role, request.token)

    async def _authenticated(self, link: BrowserLink, user: str, role: str, token: str) -> None:
        self.hub.screens.sign_in(link, user, role, token)
        link.bad = 0
        self.hub.screens.reply(link, await self.hub.db(_snapshot, self.hub.store, user, role))
        if role in WATCHES_ALL_CALLS:
            self.hub.load.greet(link)

    async def _act(self, link: BrowserLink, r: b.BrowserRequest) -> None:
        hub = self.hub
        store, db = hub.store, hub.db
        publish, reply = hub.screens.publish, hub.screens.reply
        user = link.user
        if isinstance(r, b.Logout):
            token = link.token
            await db(store.end_session, token)
            self._sessions_ended += 1
            await db(store.audit, user, "logout", None, f"from {link.peer}")
            reply(link, b.Done(of=r.TYPE, ref=r.ref))
            hub.screens.sign_out(link)
            for other in [o for o in hub.screens.links if o.token == token]:  # the session's other tabs
                await self._sign_out(other, "logged out in another tab")
            if hub.cluster is not None:  # and its sockets on the other replicas, now rather than at their next sweep
                hub.cluster.sessions_changed()
        elif isinstance(r, b.CallDetailRequest):
            if link.role == "partner":
                current = await db(store.current_call_of, user)
                if current is None or current.id != r.call_id:
                    raise Forbidden("a partner may only see their own current call")
            detail = await db(store.call_detail, r.call_id)
            if detail is None:
                raise BadRequest(f"no call {r.call_id!r}", code="unknown_call")
            reply(link, b.CallDetail(detail=detail, ref=r.ref))
        elif isinstance(r, b.ListCalls):
            calls = await db(store.recent_calls, max(1, min(r.limit, 500)))
            reply(link, b.CallList(calls=tuple(calls), ref=r.ref))
        elif isinstance(r, b.AckAlert):
            alert, changed = await db(store.acknowledge_alert, r.alert_id, user)
            if changed:
                publish(b.AlertShown(alert=alert), call=None)
                publish(b.CallShown(call=await db(store.call, alert.call_id)), call=None)
            reply(link, b.Done(of=r.TYPE, ref=r.ref))
        elif isinstance(r, b.AuthorizeEnd):
            auth, agent = await db(store.authorize_end, r.call_id, user, r.reason)
            call = await db(store.call, r.call_id)
            publish(b.AuthorizationShown(authorization=auth), call=call)
            publish(b.CallShown(call=call), call=call)
            reply(link, b.Done(of=r.TYPE, ref=r.ref))
            await hub.agents.send_end_call(agent, auth)
        elif isinstance(r, b.NeedHelp):
            current = await db(store.current_call_of, user)
            help_ = await db(store.request_help, user, current.id if current else None, r.note)
            publish(b.HelpShown(help=help_), call=None, partner=user)
            reply(link, b.Done(of=r.TYPE, ref=r.ref))
        elif isinstance(r, b.AckHelp):
            help_ = await db(store.acknowledge_help, r.help_id, user)
            publish(b.HelpShown(help=help_), call=None, partner=help_.partner)
            reply(link, b.Done(of=r.TYPE, ref=r.ref))
        elif isinstance(r, b.CheckinDone):
            checkin = await db(store.checkin_done, r.checkin_id, user, r.note)
            publish(b.CheckinShown(checkin=checkin), call=None)
            reply(link, b.Done(of=r.TYPE, ref=r.ref))
        elif isinstance(r, b.ListUsers):
            reply(link, b.UserList(users=tuple(await db(store.list_users)), ref=r.ref))
        elif isinstance(r, b.AddUser):
            secret = await db(store.add_user, r.name, r.role)
            await db(store.audit, user, "user_added", None, f"{r.name} as {r.role}")
            reply(link, b.UserAdded(name=r.name, role=r.role, secret=secret, ref=r.ref))
        elif isinstance(r, (b.QaCalls, b.QaCall, b.QaMark, b.QaExport)):
            reply(link, await self.qa.handle(link, r))
        else:  # pragma: no cover - every request type is handled above
            raise BadRequest(f"{r.TYPE} is not handled", code="unexpected_message")


def _holds(session: Session | None, link: BrowserLink) -> bool:
    """Whether ``session`` (the store's, now) still gives ``link`` the rights it has."""
    return session is not None and session.user == link.user and session.role == link.role


async def _close_after_drain(link: BrowserLink, code: int, reason: str) -> None:
    await link.drain()
    await link.ws.close(code, reason)


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
            user=user, role=role, calls=(call,), levels=tuple(store.level_changes(call.id)),
            authorizations=tuple(store.authorizations(call.id)),
        )
    if role == "qa":
        return b.Snapshot(user=user, role=role, calls=tuple(store.recent_calls(50)))
    return b.Snapshot(user=user, role=role)


@functools.cache
def _dummy_hash() -> str:
    """A hash of a random password, verified against for unknown user names so
    a failed login takes the same time whether or not the name exists."""
    return hash_password(new_password())
