"""Websocket media streams (Genesys AudioHook, Twilio Media Streams) into the agent.

:class:`MediaStreamsIngress` runs a :class:`~audio.media_streams.MediaStreamsServer`;
every opened stream becomes an agent call with ``source_kind="audiohook"`` or
``"twilio"``, under the platform's call id (AudioHook ``conversationId``,
Twilio ``callSid``), partner and seat as the stream named them (AudioHook
``customConfig``, Twilio ``customParameters``; else the agent's defaults, or
what ``route`` says). These streams cannot hang up a call: the control is
None, so an authorized end is shown to the partner and logged, and the PBX
side acts on it.

The call's ingress notices (bad input, counted) reach the console as call
notices; at the end a ``stream_summary`` notice says what the stream counted
when anything was lost, dropped or malformed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from agent.ingress import CallServer, configured, serve_until_shutdown
from agent.runtime import Agent
from audio.notices import IngressNotice
from audio.media_streams import MediaStreamsConfig, MediaStreamsServer, StreamCall

log = logging.getLogger("callshield.agent.media_streams")

#: Maps an opened stream's call to (partner, seat); None keeps what the stream said (or the agent's default).
Route = Callable[[StreamCall], tuple[str | None, str | None]]


class MediaStreamsIngress(CallServer):
    """A media streams server feeding an agent. Prefer :func:`serve_media_streams`;
    this class is for callers that need the bound :attr:`port` (tests, benches).
    It holds running calls only (:attr:`handles`, :attr:`calls`, removed when each ends)."""

    def __init__(self, agent: Agent, config: MediaStreamsConfig, *, route: Route | None = None, clock: Callable[[], float] | None = None) -> None:
        super().__init__(agent, config)
        self.route = route
        extra = {"clock": clock} if clock is not None else {}
        self.server = MediaStreamsServer(self._on_call, config, on_notice=self._on_notice, **extra)
        self.calls: dict[str, StreamCall] = {}

    @property
    def listening(self) -> str:
        return f"media streams (AudioHook {self.config.audiohook_path or 'off'}, Twilio {self.config.twilio_path or 'off'})"

    def _on_notice(self, notice: IngressNotice) -> None:
        self.agent.notice(notice.code, notice.message)

    async def _on_call(self, call: StreamCall) -> None:
        partner, seat = self.route(call) if self.route else (None, None)
        handle = self._start_call(call, call.audio(), what=call.source_kind, sample_rate=call.sample_rate, partner=partner or call.partner,
                                  seat=seat or call.seat, source_kind=call.source_kind, control=None, call_id=call.call_id,
                                  ingress_ids=_ids(call))
        if handle is None:
            call.end("refused")
            return
        call.attach_notices(lambda notice: handle.session.notice(notice.code, notice.message))
        try:
            await handle.wait()
        finally:
            s = call.stats
            if s.lost_samples or s.problems or call.dropped_chunks:
                handle.session.notice("stream_summary", f"{call.source_kind} stream: {call.summary()}", dropped=call.dropped_chunks)
            self._forget(handle)


_IDS = {"audiohook": {"conversation": "audiohook_conversation_id", "session": "audiohook_session_id", "organization": "audiohook_organization_id"},
         "twilio": {"stream": "twilio_stream_sid", "account": "twilio_account_sid"}}
"""The stream's details the phone system knows the call by, as ``ingress_ids`` (the end-call webhook carries them)."""


def _ids(call: StreamCall) -> dict[str, str]:
    names = _IDS.get(call.source_kind, {})
    ids = {names[k]: v for k, v in call.details.items() if k in names and v}
    if call.source_kind == "twilio":
        ids["twilio_call_sid"] = call.call_id
    return ids


async def start_media_streams(agent: Agent, host: str | None = None, port: int | None = None, *,
                              config: MediaStreamsConfig | None = None, route: Route | None = None,
                              clock: Callable[[], float] | None = None) -> MediaStreamsIngress:
    """Start a media streams server for ``agent`` and return it (``.port``, ``.close()``).
    ``host``/``port`` override ``config`` (default: ``MediaStreamsConfig()``)."""
    return await MediaStreamsIngress(agent, configured(config or MediaStreamsConfig(), host, port), route=route, clock=clock).start()


async def serve_media_streams(agent: Agent, host: str | None = None, port: int | None = None, *,
                              config: MediaStreamsConfig | None = None, route: Route | None = None,
                              started: Callable[[MediaStreamsIngress], Any] | None = None) -> None:
    """Serve media streams into ``agent`` until cancelled or the agent's shutdown
    is requested; then stop accepting and close every stream."""
    await serve_until_shutdown(await start_media_streams(agent, host, port, config=config, route=route), started)
