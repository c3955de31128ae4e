"""Live call ingress: Asterisk AudioSocket legs and sound devices, into the agent.

Both ingresses only call :meth:`agent.runtime.Agent.start_call`; the agent
runs each call as its own task on one shared model, so a slow or broken call
never stalls another.

- :func:`serve_audiosocket` runs an :class:`~audio.audiosocket.AudioSocketServer`:
  every paired call (customer leg + partner leg, or one leg after the pairing
  timeout) becomes an agent call with ``source_kind="audiosocket"`` whose
  control is the :class:`~audio.audiosocket.IncomingCall` (an authorized end
  plays the closing message and hangs up through Asterisk, if the agent is
  configured to). Ingress notices (a broken leg, an unpaired leg) reach the
  console as call notices.
- :func:`capture_devices` monitors one call from sound devices
  (``source_kind="device"``) until stopped; blocks dropped by the capture
  queue and PortAudio overflows are reported as ``audio_dropped`` notices.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Self

from agent.runtime import Agent, CallHandle
from audio.audiosocket.call import IncomingCall, IngressNotice
from audio.audiosocket.config import AudioSocketConfig
from audio.audiosocket.server import AudioSocketServer
from audio.device import DeviceCapture, DeviceConfig
from audio.errors import AudioError
from audio.frames import AudioChunk
from kernel.queues import DropOldestQueue

log = logging.getLogger("callshield.agent.ingress")

#: Maps an incoming AudioSocket call to (partner, seat); None means the agent's default.
Route = Callable[[IncomingCall], tuple[str | None, str | None]]


class IngressError(AudioError):
    """Every leg of a call broke (the call ends with reason ``error``; what arrived is kept)."""

    code = "ingress_error"


EARLY_NOTICES = 20
"""Notices kept per call that has not started yet (the oldest go, counted, and are reported when it starts)."""


class CallServer:
    """What every call server feeding an agent shares (AudioSocket here, SIP in
    :mod:`agent.sip_ingress`, media streams in :mod:`agent.media_streams`):
    its ``server`` (with ``start``, ``close`` and the bound ``port``), the
    running calls it started (:attr:`handles`, :attr:`calls`, by agent call
    id, removed when each ends, so a busy agent's memory does not grow with
    the calls it has served), and starting a call on the agent, where a
    refusal (shutting down, no model) is a ``call_refused`` notice.
    Subclasses set ``server`` and ``listening`` (what the start is logged as)."""

    server: Any
    listening = "calls"

    def __init__(self, agent: Agent, config: Any) -> None:
        self.agent = agent
        self.config = config
        self.handles: dict[str, CallHandle] = {}
        """Running agent calls started by this server, by the agent call id they started under (removed when the call ends)."""
        self.calls: dict[str, Any] = {}
        """The ingress's own call of each running agent call, keyed as :attr:`handles`."""

    @property
    def port(self) -> int:
        return self.server.port

    async def start(self) -> "Self":
        await self.server.start()
        log.info("%s listening on %s:%d", self.listening, self.config.host, self.port)
        return self

    async def close(self) -> None:
        """Stop accepting calls and close every connection; running calls end with what they have."""
        await self.server.close()

    async def __aenter__(self) -> "Self":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _start_call(self, call: Any, audio: AsyncIterator[AudioChunk], *, what: str, **call_args: Any) -> CallHandle | None:
        """Start ``call`` on the agent (``call_args`` as :meth:`Agent.start_call` takes
        them) and hold it until :meth:`_forget`; None, with a ``call_refused``
        notice, when the agent takes no call now (the caller releases ``call``)."""
        try:
            handle = self.agent.start_call(audio, **call_args)
        except RuntimeError as exc:  # shutting down, or no model
            self.agent.notice("call_refused", f"{what} call {call_args.get('call_id')} not monitored: {exc}")
            return None
        self.handles[handle.call_id] = handle
        self.calls[handle.call_id] = call
        return handle

    def _forget(self, handle: CallHandle) -> None:
        """The call is over: hold nothing of it (found by the id it started
        under: the agent may have renamed it since, see :meth:`Agent.start_call`)."""
        key = next(k for k, h in self.handles.items() if h is handle)
        del self.handles[key], self.calls[key]

    @staticmethod
    def wire_id(call: Any) -> str:
        """The id the ingress knows ``call`` by (the agent's may differ: ``<id>.2`` for a reused one)."""
        return call.call_id

    def _running(self, wire_id: str) -> CallHandle | None:
        """The newest running agent call of the ingress's call ``wire_id``."""
        for call_id, call in reversed(self.calls.items()):
            if self.wire_id(call) == wire_id:
                return self.handles[call_id]
        return None


def configured(config: Any, host: str | None, port: int | None) -> Any:
    """``config`` with ``host``/``port`` on top where given."""
    overrides = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    return dataclasses.replace(config, **overrides) if overrides else config


async def serve_until_shutdown(server: CallServer, started: Callable[[Any], Any] | None = None) -> None:
    """Run the started ``server`` until cancelled or its agent's shutdown is
    requested; then stop accepting and close every connection (the agent's own
    shutdown flushes the calls). ``started`` is called with the running server."""
    try:
        if started is not None:
            started(server)
        await server.agent.wait_shutdown_requested()
    finally:
        await server.close()


class AudioSocketIngress(CallServer):
    """An AudioSocket server feeding an agent. Prefer :func:`serve_audiosocket`;
    this class is for callers that need the bound :attr:`port` (tests, benches).

    It holds running calls only: when a call has ended (its agent call
    finished), its handle, its :class:`~audio.audiosocket.IncomingCall` and
    whatever it buffered are let go, so a busy agent's memory does not grow
    with the calls it has served. A leg whose UUID names a call this agent
    already monitored starts a new call under a distinct id (the agent's rule,
    see :meth:`agent.runtime.Agent.start_call`); the earlier call's record is
    never touched."""

    listening = "AudioSocket ingress"

    def __init__(self, agent: Agent, config: AudioSocketConfig, *, route: Route | None = None) -> None:
        super().__init__(agent, config)
        self.route = route
        self.server = AudioSocketServer(self._on_call, config, on_notice=self._on_notice)
        self.calls: dict[str, IncomingCall] = {}
        self._early: dict[str, DropOldestQueue[IngressNotice]] = {}

    # ---- notices

    def _on_notice(self, notice: IngressNotice) -> None:
        wire_id = notice.call_id
        if wire_id and self.server.waiting(wire_id) and (wire_id in self._early or len(self._early) < 1000):
            self._early.setdefault(wire_id, DropOldestQueue(EARLY_NOTICES)).put(notice)  # sent once the call has started
            return
        handle = self._running(wire_id) if wire_id else None
        if handle is not None:
            handle.session.notice(notice.code, notice.message)
            return
        for early in self._early_notices(wire_id):  # the call never started (or is over)
            self.agent.notice(early.code, early.message)
        self.agent.notice(notice.code, notice.message)

    def _early_notices(self, wire_id: str | None) -> list[IngressNotice]:
        early = self._early.pop(wire_id or "", None)
        if early is None:
            return []
        notices = list(early)
        if early.dropped:
            notices.append(IngressNotice("notices_dropped", f"call {wire_id}: {early.dropped} more ingress notice(s) before the call started, not kept", wire_id))
        return notices

    # ---- calls

    async def _on_call(self, call: IncomingCall) -> None:
        partner, seat = self.route(call) if self.route else (None, None)
        assert call.sample_rate is not None
        handle = self._start_call(call, _call_audio(call), what="AudioSocket", sample_rate=call.sample_rate, partner=partner, seat=seat,
                                  source_kind="audiosocket", control=call, call_id=call.call_id,
                                  ingress_ids={"audiosocket_uuid": call.call_id})
        try:
            if handle is not None:
                for notice in self._early_notices(call.call_id):
                    handle.session.notice(notice.code, notice.message)
                await handle.wait()
        finally:  # refused, over, or the agent stopped reading (shutdown): release Asterisk's legs too
            if handle is not None:
                self._forget(handle)
            for leg in call.legs.values():
                leg.close()


async def _call_audio(call: IncomingCall) -> AsyncIterator[AudioChunk]:
    async for chunk in call.audio():
        yield chunk
    if call.end_reason == "error":
        codes = sorted({leg.stats.error_code or "error" for leg in call.legs.values()})
        raise IngressError(f"the call's AudioSocket leg(s) broke ({', '.join(codes)}); what arrived before was kept", code=codes[0])


async def start_audiosocket(agent: Agent, host: str | None = None, port: int | None = None, *,
                            config: AudioSocketConfig | None = None, route: Route | None = None) -> AudioSocketIngress:
    """Start an AudioSocket server for ``agent`` and return it (``.port``, ``.close()``).
    ``host``/``port`` override ``config`` (default: ``AudioSocketConfig()``)."""
    return await AudioSocketIngress(agent, configured(config or AudioSocketConfig(), host, port), route=route).start()


async def serve_audiosocket(agent: Agent, host: str | None = None, port: int | None = None, *,
                            config: AudioSocketConfig | None = None, route: Route | None = None,
                            started: Callable[[AudioSocketIngress], Any] | None = None) -> None:
    """Serve AudioSocket calls into ``agent`` until cancelled or the agent's
    shutdown is requested (:func:`serve_until_shutdown`). ``started`` is called
    with the running ingress (its ``port`` is the bound port)."""
    await serve_until_shutdown(await start_audiosocket(agent, host, port, config=config, route=route), started)


async def capture_devices(agent: Agent, config: DeviceConfig | None = None, *, partner: str | None = None,
                          seat: str | None = None, call_id: str | None = None, stop: asyncio.Event | None = None,
                          duration_s: float | None = None, sd: Any = None) -> CallHandle:
    """Monitor one call from sound devices until ``stop`` is set, ``duration_s``
    seconds of audio were captured, or the agent shuts down; returns the
    finished call's handle. Raises :class:`~audio.device.DeviceError` (before
    any call starts) if the devices cannot be opened."""
    capture = DeviceCapture(config or DeviceConfig(), sd=sd)
    await capture.start()
    handle_box: list[CallHandle] = []

    async def audio() -> AsyncIterator[AudioChunk]:
        reported = 0
        limit = None if duration_s is None else int(duration_s * capture.sample_rate)
        async for chunk in capture.chunks():
            yield chunk
            lost = capture.dropped_blocks + capture.overflows
            if lost != reported and handle_box:
                handle_box[0].session.notice("audio_dropped", f"{lost - reported} sound-device block(s) lost (queue full or PortAudio overflow)", dropped=lost - reported)
                reported = lost
            if limit is not None and chunk.end_sample >= limit:
                capture.stop()

    try:
        handle = agent.start_call(audio(), sample_rate=capture.sample_rate, partner=partner, seat=seat,
                                  source_kind="device", call_id=call_id)
        handle_box.append(handle)
        waiters = {asyncio.ensure_future(handle.wait()), asyncio.ensure_future(agent.wait_shutdown_requested())}
        if stop is not None:
            waiters.add(asyncio.ensure_future(stop.wait()))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        capture.stop()
        await handle.wait()
        return handle
    finally:
        with contextlib.suppress(Exception):
            await capture.close()
