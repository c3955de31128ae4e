"""The SIP server: UDP and TCP sockets around the sans-I/O :class:`~audio.sip.dialog.SipCore`.

Every datagram (UDP) or framed message (TCP, RFC 3261 section 18.3:
framed by ``Content-Length``) goes to the core with the peer it came from and
the loop's clock; what the core returns is done here: responses are sent back
(UDP: to the address and port the request came from; TCP: on its
connection), an offered call gets its RTP streams opened
(:class:`SipMedia`) and is answered, then handed to ``on_call`` as a
:class:`~audio.sip.call.SipCall`; an ended call's media is closed.

A malformed message is answered (400) or dropped by the core, counted
(:attr:`SipServer.counts`) and logged; a TCP stream that cannot be framed
any more is closed. Nothing one peer sends reaches another call: each
``on_call`` runs as its own task, and an error in it or in the core is
caught, counted and reported as a notice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from audio.notices import IngressNotice, NoticeSink
from audio.errors import AudioError
from audio.sip.call import SipCall
from audio.sip.config import SipConfig
from audio.sip.dialog import Action, Dialog, Ended, Offered, Peer, Send, SipCore, Updated
from audio.sip.message import MAX_MESSAGE, SipError, StreamFramer

log = logging.getLogger("callshield.audio.sip")

CallHandler = Callable[[SipCall], Awaitable[None]]

TICK_S = 0.1
"""How often retransmissions and timeouts are looked at, seconds."""
LOG_EVERY_S = 10.0
"""Malformed messages are logged at most once per this many seconds (all are counted)."""
MAX_UNSENT = 1 << 20
"""Bytes of responses a TCP peer may leave unread before its connection is closed."""
MAX_CONNECTIONS_EXTRA = 16
"""TCP connections beyond ``2 * max_calls`` are refused (closed at once, counted)."""


class SipMedia(Protocol):
    """Opens the RTP side of an offered call (:class:`audio.sip.call.RtpMedia` is the real one)."""

    supported_codecs: frozenset[str]
    srtp: Callable[[str], bool] | None
    """Whether an ``a=crypto`` value can be decrypted (None: no SRTP at all)."""

    async def open(self, dialog: Dialog, notify: NoticeSink) -> SipCall: ...


class SipServer:
    """SIPREC and plain SIP calls in; each accepted call to ``on_call``.

    Use as ``async with SipServer(...) as server:``; ``server.port`` is the
    bound port (the same for UDP and TCP; useful with port 0)."""

    def __init__(self, on_call: CallHandler, config: SipConfig, *, on_notice: NoticeSink | None = None,
                 media: SipMedia | None = None) -> None:
        if media is None:
            from audio.sip.call import RtpMedia

            media = RtpMedia(config)
        self.config = config
        self.media = media
        self._on_call = on_call
        self._on_notice = on_notice
        self.core: SipCore | None = None
        self.calls: dict[str, SipCall] = {}
        """Calls answered and not ended yet, by dialog id."""
        self.handed: dict[str, SipCall] = {}
        """Calls handed to ``on_call`` that it has not returned from (ended ones count against max_calls until then)."""
        self.port = config.port
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.base_events.Server | None = None
        self._connections: dict[int, asyncio.StreamWriter] = {}
        self._next_connection = 0
        self._tasks: set[asyncio.Task] = set()
        self._ticker: asyncio.Task | None = None
        self._logged_at: float | None = None
        self.extra: dict[str, int] = {"internal_errors": 0, "connections_refused": 0, "unframeable_streams": 0, "media_failed": 0}

    @property
    def counts(self) -> dict[str, int]:
        """The core's counters (requests, malformed, 400s, 481s, ...) and the server's own."""
        return {**(self.core.counts if self.core else {}), **self.extra}

    # ---- life

    async def start(self) -> "SipServer":
        loop = asyncio.get_running_loop()
        port = self.config.port
        if "udp" in self.config.transports:
            self._udp, _ = await loop.create_datagram_endpoint(lambda: _Datagrams(self), local_addr=(self.config.host, port))
            port = self._udp.get_extra_info("sockname")[1]
        if "tcp" in self.config.transports:
            try:
                self._tcp = await asyncio.start_server(self._connection, self.config.host, port, limit=MAX_MESSAGE)
            except OSError:
                if self._udp is not None:
                    self._udp.close()
                raise
            port = self._tcp.sockets[0].getsockname()[1]
        self.port = port
        self.core = SipCore(self.config, contact=(self.config.media_address or self.config.host, port),
                            supported_codecs=self.media.supported_codecs, srtp=self.media.srtp, lingering=self._lingering)
        self._ticker = asyncio.create_task(self._tick(), name="sip-timers")
        return self

    async def close(self) -> None:
        """Stop listening; every call's media closes (its audio ends with what arrived)."""
        if self._ticker is not None:
            self._ticker.cancel()
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
        for writer in list(self._connections.values()):
            with contextlib.suppress(Exception):
                writer.close()
        for call in list(self.calls.values()):
            call.end("closed")
        self.calls.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._tcp is not None:
            with contextlib.suppress(Exception):
                await self._tcp.wait_closed()

    async def __aenter__(self) -> "SipServer":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- input

    def receive(self, data: bytes, peer: Peer) -> None:
        """A datagram, from the UDP protocol."""
        self._run(lambda now: self.core.receive(data, peer, now), data)

    def _run(self, step: Callable[[float], list[Action]], data: Any = None) -> None:
        if self.core is None:
            return
        before, refused = self.core.counts["malformed"], self.core.counts["calls_refused"]
        try:
            actions = step(asyncio.get_running_loop().time())
        except Exception as exc:  # a bug must not take the server down
            self.extra["internal_errors"] += 1
            log.exception("SIP: internal error on a message (%s)", type(exc).__name__)
            self._notify(IngressNotice("sip_internal_error", f"SIP message not handled: {type(exc).__name__}: {exc}"))
            return
        if self.core.counts["malformed"] != before:
            self._log_malformed(data)
        now_refused = self.core.counts["calls_refused"]
        if now_refused != refused and (refused == 0 or now_refused // 100 != refused // 100):  # the first, then one per hundred
            self._notify(IngressNotice("over_capacity", f"{now_refused} SIP call(s) refused with 503: {self.config.max_calls} calls "
                                                        f"running ([siprec] max_calls)"))
        self._perform(actions)

    def _log_malformed(self, data: Any) -> None:
        """Log a malformed message, at most one line per :data:`LOG_EVERY_S` (the count says how many)."""
        now = asyncio.get_running_loop().time()
        if self._logged_at is not None and now - self._logged_at < LOG_EVERY_S:
            return
        self._logged_at = now
        preview = bytes(data[:60]) if isinstance(data, (bytes, bytearray)) else str(data)[:60]
        log.warning("SIP: malformed message dropped or answered 400 (%d so far), latest: %r", self.core.counts["malformed"], preview)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        address = writer.get_extra_info("peername")[:2]
        if len(self._connections) >= 2 * self.config.max_calls + MAX_CONNECTIONS_EXTRA or not self.config.allowed(address[0]):
            self.extra["connections_refused"] += 1
            writer.close()
            return
        self._next_connection += 1
        peer = Peer("tcp", (address[0], address[1]), self._next_connection)
        self._connections[peer.connection] = writer
        framer = StreamFramer()
        try:
            while data := await reader.read(MAX_MESSAGE):
                try:
                    messages = framer.feed(data)
                except SipError as exc:
                    self.extra["unframeable_streams"] += 1
                    self.core.counts["malformed"] += 1
                    log.warning("SIP over TCP from %s:%d closed: %s", *address, exc.message)
                    return
                for message in messages:
                    if isinstance(message, SipError):
                        continue
                    self._run(lambda now, m=message: self.core.handle(m, peer, now), message)
        except (ConnectionError, OSError):
            pass
        finally:
            self._connections.pop(peer.connection, None)
            with contextlib.suppress(Exception):
                writer.close()

    # ---- output

    def _perform(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Send):
                self._send(action)
            elif isinstance(action, Offered):
                self._spawn(self._open(action.dialog), f"sip-open-{action.dialog.id}")
            elif isinstance(action, Updated):
                call = self.calls.get(action.dialog.id)
                if call is not None:
                    call.updated()
            elif isinstance(action, Ended):
                call = self.calls.pop(action.dialog.id, None)
                if call is not None:
                    call.end(action.reason)

    def _send(self, send: Send) -> None:
        peer = send.peer
        try:
            if peer.transport == "udp":
                if self._udp is not None:
                    self._udp.sendto(send.data, peer.address)
            else:
                writer = self._connections.get(peer.connection)
                if writer is not None and not writer.is_closing():
                    if writer.transport.get_write_buffer_size() > MAX_UNSENT:  # a peer that does not read its responses
                        self.extra["connections_refused"] += 1
                        writer.close()
                        return
                    writer.write(send.data)
        except (OSError, RuntimeError) as exc:
            log.warning("SIP: could not send to %s: %s", peer.address, exc)

    def _lingering(self) -> int:
        """Calls whose dialog ended while ``on_call`` still has them (the agent screening their tail)."""
        return sum(1 for call_id in self.handed if not self.core.has_dialog(call_id))

    def _notify(self, notice: IngressNotice) -> None:
        if self._on_notice is not None:
            with contextlib.suppress(Exception):
                self._on_notice(notice)

    def _spawn(self, coro, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _open(self, dialog: Dialog) -> None:
        loop = asyncio.get_running_loop()
        try:
            call = await self.media.open(dialog, self._notify)
        except (AudioError, OSError) as exc:
            self.extra["media_failed"] += 1
            message = exc.message if isinstance(exc, AudioError) else str(exc)
            self._notify(IngressNotice("media_failed", f"call {dialog.id} refused: its RTP could not be opened: {message}", dialog.id))
            self._perform(self.core.refuse(dialog, 503, loop.time(), "No media port", retry_after=30))
            return
        actions = self.core.accept(dialog, call.ports, loop.time(), crypto=call.crypto)
        if not actions:  # cancelled while the media opened
            call.end(dialog.end_reason or "cancelled")
            return
        self.calls[dialog.id] = call
        self._perform(actions)
        self.handed[dialog.id] = call
        try:
            await self._on_call(call)
        except Exception as exc:  # one call's failure never reaches another
            self._notify(IngressNotice("call_failed", f"call {dialog.id}: {type(exc).__name__}: {exc}", dialog.id))
        finally:
            self.handed.pop(dialog.id, None)
            if self.calls.get(dialog.id) is call:  # the consumer is gone: release the media too
                del self.calls[dialog.id]
                self._perform(self.core.end(dialog, "consumer_gone"))
            call.end(call.end_reason or "closed")
            call.consumer_gone()

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(TICK_S)
            self._run(self.core.tick)
            timeout = self.config.media_timeout_s
            if timeout:
                now = loop.time()
                for call in list(self.calls.values()):
                    if call.silent_for(now) > timeout:
                        self._notify(IngressNotice("media_timeout", f"call {call.id}: no RTP for {timeout:g} s; the call is ended", call.id))
                        self._run(lambda _now, d=call.dialog: self.core.end(d, "media_timeout"))


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, server: SipServer) -> None:
        self.server = server

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.server.receive(data, Peer("udp", (addr[0], addr[1])))

    def error_received(self, exc: Exception) -> None:  # ICMP port unreachable and the like
        log.debug("SIP UDP error: %s", exc)
