"""The AudioSocket TCP server: reads each leg with the frame decoder, pairs the legs of a call, hands out calls.

Each TCP connection carries one direction of one call (a *leg*); the first
frame names the leg with a 16-byte UUID. The server pairs the customer leg
and the partner leg of the same call into one
:class:`~audio.audiosocket.call.IncomingCall` (the UUID convention is in
``docs/asterisk.md`` and :class:`~audio.audiosocket.config.LegPairing`).

Bytes are parsed by the one sans-I/O :class:`~audio.audiosocket.frames.FrameDecoder`
(bounded: at most one partial frame of at most 65535 payload bytes, plus one
read). A broken leg (unknown frame type, wrong length, a connection dropped
mid-frame, an Asterisk error frame) ends that leg only, with a notice; what it
delivered so far stays delivered, the call's audio iterator ends normally when
no leg is left, and the server goes on serving other calls. Malformed frames
are counted (:attr:`AudioSocketServer.malformed_frames`).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid as uuidlib
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

from audio.audiosocket.call import IncomingCall, IngressNotice, Leg, NoticeSink
from audio.audiosocket.config import AudioSocketConfig, LegPairing
from audio.audiosocket.frames import ASTERISK_ERRORS, HEADER, MAX_PAYLOAD, Frame, FrameDecoder, Kind
from audio.errors import AudioSocketError
from kernel.queues import DropOldestQueue

READ_BYTES = MAX_PAYLOAD + HEADER.size
"""Bytes asked of the socket per read: one largest frame."""

CallHandler = Callable[[IncomingCall], Awaitable[None]]


class RefusalEpisode:
    """What to say about calls refused at ``max_calls``, without a notice per call.

    A flood of calls past capacity would otherwise raise a notice per call
    (thousands a minute on a supervisor's screen). An episode runs from the
    first refusal to the next call accepted: its first refusal is reported
    with the call's id, then one notice per :attr:`EVERY` refusals, and when
    a call is accepted again, one summary of the refusals not yet reported,
    naming the latest :attr:`NAMED` call ids. Every refused call is counted
    (``AudioSocketServer.calls_refused``) and reported in some notice."""

    EVERY = 100
    NAMED = 10

    def __init__(self) -> None:
        self.unreported = 0
        self.latest: deque[str] = deque(maxlen=self.NAMED)
        self.active = False

    def refused(self, call_id: str, running: int) -> str | None:
        """A call was refused: the notice to raise now, or None (counted for a later one)."""
        if not self.active:
            self.active = True
            return f"call {call_id} refused: {running} calls running ([audiosocket] max_calls)"
        self.latest.append(call_id)
        self.unreported += 1
        return self._summary("still at capacity") if self.unreported >= self.EVERY else None

    def accepting(self) -> str | None:
        """A call was accepted: the episode's summary, if refusals are unreported."""
        self.active = False
        return self._summary("capacity again") if self.unreported else None

    def _summary(self, state: str) -> str:
        n, self.unreported = self.unreported, 0
        named = ", ".join(self.latest)
        self.latest.clear()
        return f"{n} more call(s) refused at [audiosocket] max_calls ({state}); latest: {named}"


class AudioSocketServer:
    """TCP server for Asterisk AudioSocket legs; hands each paired call to ``on_call``.

    A call is handed out once both legs are connected (or ``pair_timeout_s``
    after the first, with a ``leg_unpaired`` notice) and its first audio frame
    has arrived (the sample rate is then known). A leg that arrives after its
    call was handed out joins the live call (``late_leg`` notice). ``on_call``
    runs as its own task per call; an exception in it is reported as a
    notice and never reaches other calls.

    Use as ``async with AudioSocketServer(...) as server:``; ``server.port`` is
    the bound port (useful with port 0).
    """

    def __init__(
        self,
        on_call: CallHandler,
        config: AudioSocketConfig = AudioSocketConfig(),
        *,
        on_notice: NoticeSink | None = None,
        io_executor: Executor | None = None,
    ) -> None:
        self.config = config
        self.pairing = LegPairing(config.pairing)
        self._on_call = on_call
        self._on_notice = on_notice
        self._owns_io = io_executor is None
        self._io = io_executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="audiosocket-io")
        self._server: asyncio.base_events.Server | None = None
        self._port: int | None = None
        self._pending: dict[bytes, IncomingCall] = {}
        self._tasks: set[asyncio.Task] = set()
        self._calls: set[IncomingCall] = set()
        self._waiting: set[IncomingCall] = set()  # calls being paired, not handed out yet
        self.notices: DropOldestQueue[IngressNotice] = DropOldestQueue(1000)
        """The latest notices (bounded: the oldest go, counted), also passed to ``on_notice``."""
        self.calls_started = 0
        self.calls_refused = 0
        """New calls refused because ``max_calls`` were running (``over_capacity``)."""
        self._refusals = RefusalEpisode()
        self.connections_refused = 0
        """Connections closed at once because too many had not named their call yet."""
        self._unnamed = 0  # connections that have not sent their UUID yet
        self.malformed_frames = 0
        """Malformed frames met on every connection (each ended its leg with ``bad_frame``)."""

    # ---- lifecycle

    async def start(self) -> "AudioSocketServer":
        self._server = await asyncio.start_server(self._connection, self.config.host, self.config.port, limit=MAX_PAYLOAD + HEADER.size)
        self._port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def port(self) -> int:
        """The bound TCP port (the real one when the config asked for port 0)."""
        assert self._port is not None, "server not started"
        return self._port

    async def close(self) -> None:
        """Stop accepting, end every leg, wait for call handlers, release the executor."""
        if self._server is not None:
            self._server.close()
        for call in list(self._calls) + list(self._pending.values()):
            for leg in call.legs.values():
                leg.close()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=10)
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
        if self._owns_io:
            self._io.shutdown(wait=False)

    async def __aenter__(self) -> "AudioSocketServer":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def serve_forever(self) -> None:
        assert self._server is not None
        await self._server.serve_forever()

    async def wait_idle(self) -> None:
        """Wait until no call is being paired and every handed-out call's ``on_call`` has returned."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    @property
    def running_calls(self) -> int:
        """Calls being paired or monitored: until ``on_call`` returns, which for
        the agent is when the call's audio is transcribed and screened, after
        its legs hung up (what ``max_calls`` bounds)."""
        return len(self._waiting) + len(self._calls)

    def waiting(self, call_id: str) -> bool:
        """Whether a call with this id has legs connected but is not handed out yet
        (its notices are about a call that is still to start)."""
        return any(call.call_id == call_id for call in self._waiting)

    # ---- internals

    def _notify(self, notice: IngressNotice) -> None:
        self.notices.put(notice)
        if self._on_notice is not None:
            try:
                self._on_notice(notice)
            except Exception:  # a notice sink must never break ingress
                pass

    def _spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        if self._unnamed >= 2 * self.config.max_calls + 16:
            self.connections_refused += 1
            if self.connections_refused == 1 or self.connections_refused % 100 == 0:  # one notice per hundred, not per connection
                self._notify(IngressNotice("over_capacity", f"{self.connections_refused} connection(s) refused: {self._unnamed} open without a UUID"))
            with contextlib.suppress(Exception):
                writer.close()
            return
        decoder = FrameDecoder()
        self._unnamed += 1
        try:
            first = await asyncio.wait_for(self._next_frame(reader, decoder), self.config.uuid_timeout_s or None)
            if first is None:
                raise AudioSocketError(f"connection from {peer} closed before sending a UUID", code="no_uuid")
            if first.kind != Kind.UUID:
                raise AudioSocketError(f"connection from {peer} began with frame type 0x{first.kind:02x}, not a UUID", code="no_uuid")
            key, speaker = self.pairing.leg_of(first.payload)
        except (AudioSocketError, asyncio.TimeoutError, ConnectionError, OSError) as exc:
            if isinstance(exc, asyncio.TimeoutError):
                exc = AudioSocketError(f"connection from {peer} sent no UUID within {self.config.uuid_timeout_s} s", code="no_uuid")
            elif not isinstance(exc, AudioSocketError):
                exc = AudioSocketError(f"connection from {peer} failed: {exc}", code="truncated_frame")
            self._notify(IngressNotice(exc.code, exc.message))
            with contextlib.suppress(Exception):
                writer.close()
            return
        finally:
            self._unnamed -= 1
        leg = Leg(uuidlib.UUID(bytes=first.payload), speaker, reader, writer, decoder)
        call = self._pending.get(key)
        if call is None and self.running_calls >= self.config.max_calls:
            self.calls_refused += 1
            call_id = self.pairing.call_id(key)
            if (message := self._refusals.refused(call_id, self.running_calls)) is not None:
                self._notify(IngressNotice("over_capacity", message, call_id, speaker))
            leg.close()
            return
        if call is None:
            if (message := self._refusals.accepting()) is not None:
                self._notify(IngressNotice("over_capacity", message))
            call = IncomingCall(key=key, call_id=self.pairing.call_id(key), queue_frames=self.config.queue_frames, notify=self._notify, io_executor=self._io)
            self._pending[key] = call
            self._waiting.add(call)
            self._spawn(self._hand_out(call), f"audiosocket-pair-{call.call_id}")
        try:
            call._attach(leg)
        except AudioSocketError as exc:
            self._notify(IngressNotice(exc.code, exc.message, call.call_id, speaker))
            leg.close()
            return
        if call._handed_out:
            self._notify(IngressNotice("late_leg", f"call {call.call_id}: {speaker} leg joined after the call started", call.call_id, speaker))
        # The reader runs in this connection's own task (the one asyncio gave us).
        await self._read_leg(call, leg)

    async def _next_frame(self, reader: asyncio.StreamReader, decoder: FrameDecoder) -> Frame | None:
        """The next validated frame off ``reader``, or None at a clean end of
        stream (between frames). Raises ``bad_frame`` (counted) or ``truncated_frame``."""
        try:
            while (frame := decoder.next_frame()) is None:
                data = await reader.read(READ_BYTES)
                if not data:
                    decoder.close()
                    return None
                decoder.receive(data)
        except AudioSocketError as exc:
            if exc.code == "bad_frame":
                self.malformed_frames += 1
            raise
        return frame

    async def _read_leg(self, call: IncomingCall, leg: Leg) -> None:
        try:
            async with asyncio.timeout(None) as deadline:  # one timer, moved on at every frame
                await self._read_frames(call, leg, deadline)
        except asyncio.TimeoutError:
            call._leg_ended(leg, "error", AudioSocketError(f"no frame for {self.config.idle_timeout_s} s", code="idle"))
        except AudioSocketError as exc:
            call._leg_ended(leg, "error", exc)
        except (ConnectionError, OSError) as exc:
            call._leg_ended(leg, "error", AudioSocketError(f"connection lost: {exc}", code="truncated_frame"))
        except asyncio.CancelledError:
            call._leg_ended(leg, "closed")
            raise
        finally:
            if not leg.done.is_set():
                call._leg_ended(leg, "closed")
            if call.finished and self._pending.get(call.key) is call:
                del self._pending[call.key]

    async def _read_frames(self, call: IncomingCall, leg: Leg, deadline: asyncio.Timeout) -> None:
        idle = self.config.idle_timeout_s or None
        loop = asyncio.get_running_loop()
        while True:
            if idle is not None:
                deadline.reschedule(loop.time() + idle)
            frame = await self._next_frame(leg.reader, leg.decoder)
            if frame is None:
                call._leg_ended(leg, "closed")
                return
            if frame.sample_rate is not None:
                deadline.reschedule(None)  # waiting for the consumer is not silence on the wire
                await call._accept_audio(leg, frame)
            elif frame.kind == Kind.HANGUP:
                call._leg_ended(leg, "hangup")
                return
            elif frame.kind == Kind.DTMF:
                leg.stats.heard_dtmf(frame.payload.decode("ascii", "replace"), (leg.offset or 0) + leg.stats.samples_received)
            elif frame.kind == Kind.ERROR:
                code = frame.payload[0] if frame.payload else 0
                what = ASTERISK_ERRORS.get(code, "no code" if not frame.payload else f"code 0x{code:02x}")
                raise AudioSocketError(f"Asterisk reported an error ({what})", code="asterisk_error")
            elif frame.kind == Kind.UUID and frame.payload != leg.uuid.bytes:
                raise AudioSocketError("a second, different UUID frame in the middle of a leg", code="bad_frame")

    async def _hand_out(self, call: IncomingCall) -> None:
        try:
            await self._pair(call)
        finally:
            self._waiting.discard(call)
        if call.sample_rate is None:  # every leg ended before any audio
            if self._pending.get(call.key) is call:
                del self._pending[call.key]
            self._notify(IngressNotice("empty_call", f"call {call.call_id} ended before any audio arrived", call.call_id))
            return
        call._handed_out = True
        self.calls_started += 1
        self._calls.add(call)
        try:
            await self._on_call(call)
        except Exception as exc:  # one call's failure never reaches another
            self._notify(IngressNotice("call_failed", f"call {call.call_id}: {type(exc).__name__}: {exc}", call.call_id))
            for leg in call.legs.values():
                leg.close()
        finally:
            call._consumer_gone()
            self._calls.discard(call)

    async def _pair(self, call: IncomingCall) -> None:
        """Wait for the other leg (up to ``pair_timeout_s``) and for the call's first audio."""
        if self.config.pairing != "customer_only":
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(call._paired.wait(), self.config.pair_timeout_s)
            if len(call.legs) == 1:
                only = next(iter(call.legs))
                other = "partner" if only == "customer" else "customer"
                self._notify(IngressNotice("leg_unpaired", f"call {call.call_id}: no {other} leg within {self.config.pair_timeout_s} s; monitoring the {only} alone", call.call_id, only))
        await call._rate_known.wait()
