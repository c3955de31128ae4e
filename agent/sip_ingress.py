"""SIP calls into the agent: SIPREC recording sessions from an SBC, plain SIP "listen" calls from a PBX.

:class:`SipIngress` runs an :class:`~audio.sip.server.SipServer`; every call
it answers becomes an agent call (``source_kind="siprec"`` or ``"sip"``,
8 kHz) with:

- ``partner``: the console user ``[siprec] partners`` maps the partner's AoR
  or extension to (SIPREC: from the metadata; plain SIP: the extension
  dialed), else the agent's default (with a ``partner_unmapped`` notice);
- ``seat``: the partner's extension (the AoR's user part), else the agent's default;
- ``control=None``: neither a recording session nor a listen call can hang
  up the call it records (an authorized end is the agent's business: its
  end-call webhook, where configured).

How the speakers were chosen, a mixed stream, a stream refused, hold and
resume, RTP going silent: each is a call notice on the console.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from agent.runtime import Agent, CallHandle
from audio.notices import IngressNotice
from audio.frames import AudioChunk
from audio.sip.call import SipCall
from audio.sip.config import SipConfig
from audio.sip.message import uri_user
from audio.sip.server import SipServer

log = logging.getLogger("callshield.agent.sip")


class SipIngress:
    """A SIP recording server feeding an agent. Prefer :func:`serve_sip`; this
    class is for callers that need the bound :attr:`port` or the server's
    :attr:`counts` (tests, benches). It holds running calls only."""

    def __init__(self, agent: Agent, config: SipConfig, *, server: Callable[..., SipServer] = SipServer) -> None:
        self.agent = agent
        self.config = config
        self.server = server(self._on_call, config, on_notice=self._on_notice)
        self.handles: dict[str, CallHandle] = {}
        """Running agent calls, by SIP call id (removed when the call ends)."""
        self.calls: dict[str, SipCall] = {}

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def counts(self) -> dict[str, int]:
        return self.server.counts

    async def start(self) -> "SipIngress":
        await self.server.start()
        log.info("SIP ingress listening on %s:%d (%s)", self.config.host, self.port, "/".join(self.config.transports))
        return self

    async def close(self) -> None:
        """Stop listening; running calls end with what they have."""
        await self.server.close()

    async def __aenter__(self) -> "SipIngress":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _on_notice(self, notice: IngressNotice) -> None:
        handle = self.handles.get(notice.call_id or "")
        if handle is not None:
            handle.session.notice(notice.code, notice.message)
        else:
            self.agent.notice(notice.code, notice.message)  # not (or no longer) a call the console knows

    async def _on_call(self, call: SipCall) -> None:
        extension = uri_user(call.partner) if ":" in call.partner else call.partner
        partner = self.config.partner_user(call.partner, extension)
        try:
            handle = self.agent.start_call(
                _call_audio(call), sample_rate=call.sample_rate, partner=partner, seat=extension or None,
                source_kind=call.kind, control=None, call_id=call.id,
                ingress_ids={"sip_call_id": call.dialog.sip_call_id, "sip_caller": call.dialog.caller, "sip_callee": call.dialog.callee},
            )
        except RuntimeError as exc:  # shutting down, or no model
            self.agent.notice("call_refused", f"SIP call {call.id} not monitored: {exc}")
            call.end("refused")
            return
        key = call.id
        self.handles[key], self.calls[key] = handle, call
        try:
            for code, message in call.dialog.notices:
                handle.session.notice(code, message)
            if partner is None:
                who = call.partner or "no partner identity in the call"
                handle.session.notice("partner_unmapped", f"call {call.id}: partner {who} is not in [siprec] partners; "
                                                          f"the call is shown for the default partner")
            await handle.wait()
        finally:
            del self.handles[key], self.calls[key]
            call.end("closed")


async def _call_audio(call: SipCall) -> AsyncIterator[AudioChunk]:
    async for chunk in call.audio():
        yield chunk


async def start_sip(agent: Agent, config: SipConfig, *, host: str | None = None, port: int | None = None) -> SipIngress:
    """Start a SIP server for ``agent`` and return it (``.port``, ``.close()``)."""
    overrides = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    if overrides:
        config = dataclasses.replace(config, **overrides)
    return await SipIngress(agent, config).start()


async def serve_sip(agent: Agent, config: SipConfig, *, started: Callable[[SipIngress], Any] | None = None) -> None:
    """Serve SIP calls into ``agent`` until cancelled or the agent's shutdown is requested."""
    ingress = await start_sip(agent, config)
    try:
        if started is not None:
            started(ingress)
        await agent.wait_shutdown_requested()
    finally:
        await ingress.close()
