"""The agent's link to the console: one websocket that survives console restarts.

What it promises (``docs/protocol.md``, "Delivery"):

- Durable messages (call started/ended, utterances, findings, level changes,
  notices) go into an *outbox* and stay there until the console acknowledges
  them (:class:`~kernel.protocol.Ack` is cumulative). After a reconnect the
  console's :class:`~kernel.protocol.Welcome` says the highest ``seq`` it has
  stored; everything after it is resent, in order. The console deduplicates on
  ``event_id``, so a message stored just before a crash is never shown twice.
  The outbox is never trimmed: an alert is never dropped to save memory.
- Partial transcripts are ephemeral: a bounded queue, oldest dropped (and
  counted) when full; dropped while disconnected; never resent.
- ``seq`` across agent restarts: numbers given before the first ``Welcome`` of
  a link are provisional. At the first ``Welcome`` the link renumbers what it
  holds from ``last_seq + 1`` (nothing was sent yet, so nothing is mistaken
  for stored). On a later ``Welcome`` whose ``last_seq`` is at or beyond the
  next number this link would give (another process used this agent id
  meanwhile), it renumbers the same way; otherwise it drops what the console
  has stored and resends the rest.
- Refusals: an ``error`` naming a ``seq`` means the console refused that
  durable event (e.g. a call another agent owns). It is logged as an error,
  counted once (``LinkStats.undelivered``, however often it is resent and
  refused again) and kept in :attr:`ConsoleLink.undelivered`
  once a later ack passes it: never counted as acknowledged. Unless an ack
  passes it, it stays in the outbox and is resent after a reconnect.
- A new call under a used id: a ``call_started`` refused as ``call_id_taken``
  goes to ``on_call_id_taken`` (the agent picks a new id), and
  :meth:`ConsoleLink.rename_call` rewrites that call's held events to the new
  id and sends them again after the rest (docs/protocol.md, "Delivery" 6).
- Heartbeats: while linked, every ``heartbeat_s`` seconds (and right after
  each ``Welcome``) the link sends :class:`~kernel.protocol.Heartbeat` with the
  ids ``live_calls()`` returns whose ``call_started`` the console has
  acknowledged, so the console can tell a live call from one whose agent died
  (it closes those as lost, and reopens them if we return).
- Reconnects back off exponentially with jitter (``Backoff``); a refused
  token ends the link with :class:`LinkRefused` (retrying would not help).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import ssl as ssl_module
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from kernel.backoff import Backoff
from kernel import protocol
from kernel.errors import CallshieldError
from kernel.protocol import CALL_ID_TAKEN, HEARTBEAT_S, Ack, AgentHello, CallStarted, EndCallAuthorized, Heartbeat, PartialTranscript, Refused, Welcome
from kernel.queues import DropOldestQueue

log = logging.getLogger("callshield.agent.link")

AGENT_PATH = "/ws/agent"

FLAPPING_S = 2.0
"""A link that closes sooner than this after its console welcomed it waits a backoff delay before the next console."""


class LinkError(CallshieldError):
    """The console could not be reached (after the allowed attempts)."""

    code = "console_unreachable"


class LinkRefused(LinkError):
    """The console refused this agent (bad or revoked token, unknown agent)."""

    code = "agent_refused"


@dataclass
class LinkStats:
    """Counters for the console and benchmarks (counts, not rates)."""

    connects: int = 0
    failed_connects: int = 0
    sent: int = 0
    resent: int = 0
    acked: int = 0
    partials_sent: int = 0
    partials_dropped: int = 0
    refused: int = 0
    undelivered: int = 0
    renumbered: int = 0
    heartbeats: int = 0
    failovers: int = 0
    """Moves to the next console of several because the one tried was unreachable."""
    renamed_calls: int = 0
    renamed_events: int = 0


@dataclass
class _Entry:
    order: int  # publish order, across durable and ephemeral messages
    message: Any
    sent: bool = False  # sent at least once (a second send counts as a resend)
    refused: str = ""  # the console's refusal ("code: message"), if it refused this event


OnAuthorization = Callable[[EndCallAuthorized], Awaitable[None] | None]
OnCallIdTaken = Callable[[str], None]


def console_urls(url: str | Sequence[str]) -> tuple[str, ...]:
    """The agent websocket URLs of one console or several (a comma-separated
    string or a list), each ``ws://`` or ``wss://``, ``/ws/agent`` appended
    where no path is given; a bad one is a :class:`LinkError`."""
    given = url.split(",") if isinstance(url, str) else list(url)
    urls = []
    for one in (u.strip() for u in given):
        if not one:
            continue
        if not one.startswith(("ws://", "wss://")):
            raise LinkError(f"console URL must start with ws:// or wss://: {one!r}", code="bad_console_url")
        rest = one.split("://", 1)[1]
        urls.append(one if "/" in rest.rstrip("/") else one.rstrip("/") + AGENT_PATH)
    if not urls:
        raise LinkError("no console URL given", code="bad_console_url")
    return tuple(dict.fromkeys(urls))


class ConsoleLink:
    """The agent's end of the agent <-> console websocket.

    ``url``: the console's base URL (``ws://host:port``); ``/ws/agent`` is
    appended unless the URL already has a path. Several consoles (replicas
    sharing one store), comma-separated or as a list: the link stays with the
    one it reached, and when that one is gone it tries the next, in order,
    going round (a backoff delay after each full round that reached none). What
    the console it left had not acknowledged is resent to the next one, which
    deduplicates by ``event_id``. ``max_attempts``: connection
    attempts in a row before giving up with :class:`LinkError` (None: retry
    forever, what a long-running agent wants). ``on_authorization`` is called
    for every :class:`EndCallAuthorized` the console sends. ``live_calls``
    returns the ids of the calls being monitored, for heartbeats (every
    ``heartbeat_s`` seconds). ``on_call_id_taken(call_id)`` is called when
    the console refuses a ``call_started`` with ``call_id_taken`` (a new call
    under a used id); it gives the call a new id and calls :meth:`rename_call`
    (without it, that refusal is like any other).
    """

    def __init__(
        self,
        url: str | Sequence[str],
        *,
        agent_id: str,
        token: str,
        site: str = "",
        backoff: Backoff = Backoff(),
        partial_limit: int = 200,
        max_attempts: int | None = None,
        on_authorization: OnAuthorization | None = None,
        rng: random.Random | None = None,
        open_timeout: float = 5.0,
        ssl: ssl_module.SSLContext | None = None,
        live_calls: Callable[[], Iterable[str]] | None = None,
        heartbeat_s: float = HEARTBEAT_S,
        on_call_id_taken: OnCallIdTaken | None = None,
    ) -> None:
        self.urls = console_urls(url)
        """The consoles to link to, in order of preference (replicas sharing one store)."""
        self._at = 0  # index in urls of the console tried now
        self.agent_id = agent_id
        self._token = token
        self.site = site
        self.backoff = backoff
        self.partial_limit = partial_limit
        self.max_attempts = max_attempts
        self.on_authorization = on_authorization
        self._rng = rng or random.Random()
        self._open_timeout = open_timeout
        self._ssl = ssl
        self.stats = LinkStats()
        self.live_calls = live_calls
        self.heartbeat_s = heartbeat_s
        self.on_call_id_taken = on_call_id_taken
        self.undelivered: deque[tuple[Any, str]] = deque(maxlen=1000)
        """Durable messages the console refused, with its reason (the latest 1000)."""

        self._outbox: deque[_Entry] = deque()
        self._unsent = 0  # index in _outbox of the first entry not sent on this connection
        self._partials: DropOldestQueue[_Entry] = DropOldestQueue(partial_limit)
        self._order = 0
        self._next_seq = 1
        self._moved: set[int] = set()  # seqs of events renamed and sent again under new seqs (this connection)
        self._welcomed_once = False
        self.console_last_seq: int | None = None

        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._connected = asyncio.Event()
        self._stopped = asyncio.Event()
        self.failure: CallshieldError | None = None
        self._task: asyncio.Task | None = None
        self._callbacks: set[asyncio.Task] = set()
        self._ws = None
        self._closing = False

    # ------------------------------------------------------------------ public

    @property
    def url(self) -> str:
        """The console the link is with now, or tries next."""
        return self.urls[self._at]

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def pending(self) -> int:
        """Durable messages not yet acknowledged by the console."""
        return len(self._outbox)

    @property
    def held(self) -> list[Any]:
        """The durable messages not yet acknowledged, in the order they are sent."""
        return [entry.message for entry in self._outbox]

    @property
    def next_seq(self) -> int:
        return self._next_seq

    def start(self) -> None:
        """Start connecting (as a task the link keeps); returns at once."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"link:{self.agent_id}")

    def publish(self, message: Any) -> Any:
        """Queue ``message`` for the console; returns it as sent.

        A durable message gets its ``seq`` here (the value it carries is
        ignored) and stays queued until acknowledged. A partial transcript is
        sent if the link is up and the queue has room, else dropped and counted.
        """
        self._order += 1
        if isinstance(message, PartialTranscript):
            if not self.connected:
                self.stats.partials_dropped += 1
                return message
            if self._partials.put(_Entry(self._order, message)) is not None:
                self.stats.partials_dropped += 1
        elif protocol.is_durable(message):
            message = dataclasses.replace(message, seq=self._next_seq)
            self._next_seq += 1
            self._outbox.append(_Entry(self._order, message))
            self._idle.clear()
        else:
            raise TypeError(f"the agent does not send {type(message).__name__} on its own")
        self._wake.set()
        return message

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait for the console's Welcome; raises the link's failure if it gave up."""
        await self._until_or_stopped(self._connected, timeout)
        if not self.connected:
            raise self.failure or LinkError("the console link was closed")

    async def wait_stopped(self) -> None:
        """Wait until the link has stopped (it gave up, see :attr:`failure`, or was closed)."""
        await self._stopped.wait()

    async def drain(self, timeout: float | None = None) -> None:
        """Wait until the console has acknowledged every durable message.

        Raises the link's failure (:class:`LinkError`, :class:`LinkRefused`) if
        it gave up, and ``TimeoutError`` after ``timeout`` seconds.
        """
        await self._until_or_stopped(self._idle, timeout)
        if self._outbox:
            raise self.failure or LinkError(f"the console link closed with {len(self._outbox)} message(s) unacknowledged")

    async def close(self, grace: float = 0.0) -> None:
        """Wait up to ``grace`` seconds for outstanding acks, then disconnect."""
        if grace > 0 and self._task is not None and not self._stopped.is_set():
            try:
                await self.drain(grace)
            except (TimeoutError, LinkError):
                log.warning("closing the console link with %d message(s) unacknowledged", len(self._outbox))
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for task in list(self._callbacks):
            task.cancel()
        await asyncio.gather(*self._callbacks, return_exceptions=True)
        self._stopped.set()

    async def _until_or_stopped(self, event: asyncio.Event, timeout: float | None) -> None:
        """Wait until ``event`` is set or the link has stopped (``TimeoutError`` after ``timeout`` s)."""
        async with asyncio.timeout(timeout):
            waiter = asyncio.ensure_future(event.wait())
            stopper = asyncio.ensure_future(self._stopped.wait())
            try:
                await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                stopper.cancel()

    # ------------------------------------------------------------------ connection

    async def _run(self) -> None:
        failures = 0
        try:
            while not self._closing:
                try:
                    ws = await connect(
                        self.url,
                        open_timeout=self._open_timeout,
                        max_size=protocol.MAX_MESSAGE_BYTES,
                        proxy=None,
                        ssl=self._ssl if self.url.startswith("wss://") else None,
                        compression=None,
                    )
                except InvalidStatus as exc:
                    status = exc.response.status_code
                    if status in (401, 403):
                        raise LinkRefused(f"console at {self.url} refused agent {self.agent_id!r} (HTTP {status})") from exc
                    failures = await self._failed(failures, f"HTTP {status}")
                    continue
                except InvalidURI as exc:
                    raise LinkError(f"bad console URL {self.url!r}", code="bad_console_url") from exc
                except (OSError, TimeoutError, InvalidHandshake) as exc:
                    failures = await self._failed(failures, _reason(exc))
                    continue
                self._ws = ws
                began = asyncio.get_running_loop().time()
                try:
                    if await self._session(ws):
                        failures = 0
                    else:
                        failures = await self._failed(failures, "no welcome")
                        continue
                finally:
                    self._ws = None
                    self._connected.clear()
                    await ws.close()
                if self._closing:
                    break
                lasted = asyncio.get_running_loop().time() - began
                if len(self.urls) > 1:  # the console we were with went away: the next one now
                    self._at = (self._at + 1) % len(self.urls)
                    self.stats.failovers += 1
                    log.warning("console link closed after %.1f s; moving to %s", lasted, self.url)
                if len(self.urls) == 1 or lasted < FLAPPING_S:  # never a tight loop of welcomes and drops
                    await asyncio.sleep(self.backoff.delay(0, self._rng))
        except CallshieldError as exc:
            self.failure = exc  # raised to whoever waits on the link (drain, wait_connected)
            log.debug("console link stopped: %s", exc)
        finally:
            self._stopped.set()

    async def _failed(self, failures: int, reason: str) -> int:
        """One more attempt failed: move on to the next console; after a whole
        round of them failed, wait (backing off) before the next round."""
        failures += 1
        self.stats.failed_connects += 1
        failed = self.url
        if self.max_attempts is not None and failures >= self.max_attempts:
            where = failed if len(self.urls) == 1 else f"{failed} (and {len(self.urls) - 1} other console(s))"
            raise LinkError(f"console at {where} unreachable after {failures} attempt(s): {reason}")
        self._at = (self._at + 1) % len(self.urls)
        if len(self.urls) > 1 and failures % len(self.urls):
            self.stats.failovers += 1
            log.warning("console at %s unreachable (%s); trying %s", failed, reason, self.url)
            return failures
        delay = self.backoff.delay(failures // len(self.urls) - 1, self._rng)
        log.info("console at %s unreachable (%s); retrying %s in %.2f s", failed, reason, self.url, delay)
        await asyncio.sleep(delay)
        return failures

    async def _session(self, ws) -> bool:
        """One connection: hello, welcome, then send and receive until it drops.
        Returns False when the console closed before welcoming us."""
        try:
            await ws.send(protocol.encode(AgentHello(self.agent_id, self._token, self.site)))
            raw = await asyncio.wait_for(ws.recv(), self._open_timeout)
        except (ConnectionClosed, TimeoutError, OSError):
            return False
        try:
            first = protocol.decode(raw, allowed=protocol.CONSOLE_MESSAGES)
        except protocol.ProtocolError as exc:
            log.warning("console sent a bad first message: %s", exc)
            return False
        if isinstance(first, Refused):
            raise LinkRefused(f"console refused agent {self.agent_id!r}: {first.message}", code=first.code)
        if not isinstance(first, Welcome):
            log.warning("console sent %s before welcome", first.TYPE)
            return False
        self._welcome(first)
        self.stats.connects += 1
        self._connected.set()
        log.info("connected to console %s (last_seq %d)", self.url, first.last_seq)
        sender = asyncio.create_task(self._send_loop(ws), name=f"link-send:{self.agent_id}")
        receiver = asyncio.create_task(self._receive_loop(ws), name=f"link-recv:{self.agent_id}")
        beater = asyncio.create_task(self._heartbeat_loop(ws), name=f"link-beat:{self.agent_id}")
        try:
            done, _ = await asyncio.wait({sender, receiver, beater}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sender.cancel()
            receiver.cancel()
            beater.cancel()
            results = await asyncio.gather(sender, receiver, beater, return_exceptions=True)
        for result in results:
            if isinstance(result, CallshieldError):
                raise result
            if isinstance(result, Exception) and not isinstance(result, (ConnectionClosed, OSError, asyncio.CancelledError)):
                log.error("console link failed: %r", result)
        return True

    def _welcome(self, welcome: Welcome) -> None:
        last = welcome.last_seq
        self.console_last_seq = last
        if not self._welcomed_once or last >= self._next_seq:
            # Fresh link (or another process used our id): nothing we hold was
            # stored under these numbers. Number it after what the console has.
            self._renumber(last + 1)
            self._welcomed_once = True
        else:
            self._acked(last)
        self._unsent = 0
        self._moved.clear()  # refusals of the last connection's events never come now
        self._partials.clear()
        self._wake.set()

    def _renumber(self, first: int) -> None:
        for i, entry in enumerate(self._outbox):
            entry.message = dataclasses.replace(entry.message, seq=first + i)
        self.stats.renumbered += len(self._outbox)
        self._next_seq = first + len(self._outbox)

    def _acked(self, seq: int) -> None:
        popped = 0
        while self._outbox and self._outbox[0].message.seq <= seq:
            entry = self._outbox.popleft()
            popped += 1
            if entry.refused:
                self.undelivered.append((entry.message, entry.refused))
            else:
                self.stats.acked += 1
        self._unsent = max(0, self._unsent - popped)
        if not self._outbox:
            self._idle.set()

    async def _send_loop(self, ws) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while True:
                durable = self._outbox[self._unsent] if self._unsent < len(self._outbox) else None
                partial = self._partials.peek()
                if durable is None and partial is None:
                    break
                if partial is not None and (durable is None or partial.order < durable.order):
                    self._partials.get_nowait()
                    await ws.send(protocol.encode(partial.message))
                    self.stats.partials_sent += 1
                    continue
                self._unsent += 1
                await ws.send(protocol.encode(durable.message))
                if durable.sent:
                    self.stats.resent += 1
                durable.sent = True
                self.stats.sent += 1

    async def _receive_loop(self, ws) -> None:
        async for raw in ws:
            try:
                message = protocol.decode(raw, allowed=protocol.CONSOLE_MESSAGES)
            except protocol.ProtocolError as exc:
                log.warning("ignoring a bad message from the console: %s", exc)
                continue
            if isinstance(message, Ack):
                self._acked(message.seq)
            elif isinstance(message, EndCallAuthorized):
                self._authorized(message)
            elif isinstance(message, Refused):
                self.stats.refused += 1
                if message.seq is not None:
                    self._refused(message)
                else:
                    log.warning("console refused a message: %s (%s)", message.message, message.code)

    def _refused(self, refusal: Refused) -> None:
        """The console refused one durable event: never count it as delivered.
        A ``call_started`` refused as ``call_id_taken`` is handed to
        ``on_call_id_taken`` instead (the call is renamed and sent again)."""
        if refusal.code == CALL_ID_TAKEN and refusal.seq in self._moved:
            log.debug("console refused seq %d (call_id_taken): already sent again under the call's new id", refusal.seq)
            return
        entry = next((e for e in self._outbox if e.message.seq == refusal.seq), None)
        if (refusal.code == CALL_ID_TAKEN and entry is not None and isinstance(entry.message, CallStarted)
                and self.on_call_id_taken is not None):
            log.warning("console refused call %s: %s (call_id_taken); renaming the call", entry.message.call_id, refusal.message)
            try:
                self.on_call_id_taken(entry.message.call_id)
            except Exception:  # a bug there must not take the link down: the refusal then counts as any other
                log.exception("renaming call %s failed", entry.message.call_id)
            if refusal.seq in self._moved:  # renamed: the call's events go again under its new id
                return
        if entry is None or not entry.refused:  # an event, not each refusal of its resends, is counted
            self.stats.undelivered += 1
        what = f"{entry.message.TYPE} for call {getattr(entry.message, 'call_id', None)}" if entry else "an event"
        log.error("console refused %s (seq %d), NOT delivered: %s (%s)", what, refusal.seq, refusal.message, refusal.code)
        if entry is not None:
            entry.refused = f"{refusal.code}: {refusal.message}"

    def rename_call(self, old: str, new: str) -> int:
        """Rewrite the held events of call ``old`` (its ``call_started`` and
        everything after it not yet acknowledged) to call ``new`` and send them
        again, in order, after what is held (new seqs). Event ids
        ``old:...`` become ``new:...`` (others are unique already). Their
        refusals under the old seqs, still on the way, are then ignored.
        Returns how many events were rewritten."""
        kept: deque[_Entry] = deque()
        moved: list[_Entry] = []
        unsent = self._unsent
        for i, entry in enumerate(self._outbox):
            if getattr(entry.message, "call_id", None) != old:
                kept.append(entry)
                continue
            moved.append(entry)
            if i < self._unsent:
                unsent -= 1
        if not moved:
            return 0
        self._outbox, self._unsent = kept, unsent
        for entry in moved:
            message = entry.message
            self._moved.add(message.seq)
            event_id = message.event_id
            if event_id.startswith(old + ":"):
                event_id = new + event_id[len(old):]
            self._order += 1
            self._outbox.append(_Entry(self._order, dataclasses.replace(message, seq=self._next_seq, call_id=new, event_id=event_id)))
            self._next_seq += 1
        self.stats.renamed_calls += 1
        self.stats.renamed_events += len(moved)
        self._wake.set()
        return len(moved)

    def _unconfirmed_starts(self) -> set[str]:
        """Calls whose ``call_started`` the console has not acknowledged yet."""
        return {e.message.call_id for e in self._outbox if isinstance(e.message, CallStarted)}

    async def _heartbeat_loop(self, ws) -> None:
        """Tell the console which calls we are monitoring, now and every ``heartbeat_s``
        seconds: those whose start it has acknowledged (a call's id may yet be
        refused as taken; naming it would keep the stored call of that id alive)."""
        while True:
            calls: tuple[str, ...] = ()
            if self.live_calls is not None:
                unconfirmed = self._unconfirmed_starts()
                calls = tuple(c for c in self.live_calls() if c not in unconfirmed)
            await ws.send(protocol.encode(Heartbeat(calls=calls, partials_dropped=self.stats.partials_dropped)))
            self.stats.heartbeats += 1
            await asyncio.sleep(self.heartbeat_s)

    def _authorized(self, message: EndCallAuthorized) -> None:
        if self.on_authorization is None:
            return
        result = self.on_authorization(message)
        if asyncio.iscoroutine(result):
            task = asyncio.get_running_loop().create_task(result, name=f"authorization:{message.call_id}")
            self._callbacks.add(task)
            task.add_done_callback(self._callbacks.discard)


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
