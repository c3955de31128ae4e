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

import logging
from collections.abc import Callable
from typing import Any

from agent.ingress import CallServer, configured, serve_until_shutdown
from agent.runtime import Agent
from audio.notices import IngressNotice
from audio.sip.call import SipCall
from audio.sip.config import SipConfig
from audio.sip.message import uri_user
from audio.sip.server import SipServer

log = logging.getLogger("callshield.agent.sip")


class SipIngress(CallServer):
    """A SIP recording server feeding an agent. Prefer :func:`serve_sip`; this
    class is for callers that need the bound :attr:`port` or the server's
    :attr:`counts` (tests, benches). It holds running calls only."""

    @property
    def listening(self) -> str:
        return f"SIP ingress ({'/'.join(self.config.transports)})"

    def __init__(self, agent: Agent, config: SipConfig, *, server: Callable[..., SipServer] = SipServer) -> None:
        super().__init__(agent, config)
        self.server = server(self._on_call, config, on_notice=self._on_notice)
        self.calls: dict[str, SipCall] = {}

    @staticmethod
    def wire_id(call: SipCall) -> str:
        return call.id

    @property
    def counts(self) -> dict[str, int]:
        return self.server.counts

    def _on_notice(self, notice: IngressNotice) -> None:
        handle = self._running(notice.call_id) if notice.call_id else None
        if handle is not None:
            handle.session.notice(notice.code, notice.message)
        else:
            self.agent.notice(notice.code, notice.message)  # not (or no longer) a call the console knows

    async def _on_call(self, call: SipCall) -> None:
        extension = uri_user(call.partner) if ":" in call.partner else call.partner
        partner = self.config.partner_user(call.partner, extension)
        handle = self._start_call(call, call.audio(), what="SIP", sample_rate=call.sample_rate, partner=partner, seat=extension or None,
                                  source_kind=call.kind, control=None, call_id=call.id,
                                  ingress_ids={"sip_call_id": call.dialog.sip_call_id, "sip_caller": call.dialog.caller,
                                               "sip_callee": call.dialog.callee})
        if handle is None:
            call.end("refused")
            return
        try:
            for code, message in call.dialog.notices:
                handle.session.notice(code, message)
            if partner is None:
                who = call.partner or "no partner identity in the call"
                handle.session.notice("partner_unmapped", f"call {call.id}: partner {who} is not in [siprec] partners; "
                                                          f"the call is shown for the default partner")
            await handle.wait()
        finally:
            self._forget(handle)
            call.end("closed")


async def start_sip(agent: Agent, config: SipConfig, *, host: str | None = None, port: int | None = None) -> SipIngress:
    """Start a SIP server for ``agent`` and return it (``.port``, ``.close()``)."""
    return await SipIngress(agent, configured(config, host, port)).start()


async def serve_sip(agent: Agent, config: SipConfig, *, started: Callable[[SipIngress], Any] | None = None) -> None:
    """Serve SIP calls into ``agent`` until cancelled or the agent's shutdown is requested."""
    await serve_until_shutdown(await start_sip(agent, config), started)
