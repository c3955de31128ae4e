"""The agents' side of the console: ``/ws/agent``.

Agents speak ``kernel/protocol.py``. After a good ``AgentHello`` the console
answers ``Welcome(last_seq)`` and any end-call authorizations the agent
missed while away; every durable event is stored (idempotently, by
``event_id``), fanned out to browsers if it is new, then acknowledged with
``Ack(seq)``. Partials are forwarded, never stored. Refusals are answered,
audited, and change nothing.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from console import browser_protocol as b
from console.errors import BadRequest, ConsoleError, Forbidden
from console.fanout import peer
from console.hub import Hub
from console.store import Authorization, Recorded
from console.store.calls import DurableEvent
from console.qa import QaDesk
from kernel import protocol as p

log = logging.getLogger("callshield.console")

HELLO_TIMEOUT = 10.0
"""Seconds an agent has to send ``AgentHello`` after connecting."""
AGENT_INBOUND = tuple(t for t in p.AGENT_MESSAGES if t is not p.AgentHello)


class AgentLinks:
    """The connected agents (one socket per agent id) and the live calls' owners."""

    def __init__(self, hub: Hub, qa: QaDesk) -> None:
        self.hub = hub
        self.qa = qa
        self.connected: dict[str, ServerConnection] = {}
        self._owners: dict[str, str] = {}  # live call id -> agent, for partials

    async def serve(self, ws: ServerConnection) -> None:
        """One agent connection, from its hello until it closes."""
        hub = self.hub
        try:
            raw = await asyncio.wait_for(ws.recv(), HELLO_TIMEOUT)
            hello = p.decode(raw, allowed=(p.AgentHello,))
        except (asyncio.TimeoutError, ConnectionClosed):
            return
        except p.ProtocolError as exc:
            await self._refuse(ws, None, "not_authenticated", f"the first message must be a valid agent_hello ({exc.message})")
            return
        last_seq = await hub.db(hub.store.check_agent, hello.agent_id, hello.token, hello.site)
        if last_seq is None:
            await self._refuse(ws, hello.agent_id, "bad_token", f"unknown agent or wrong token for {hello.agent_id!r}")
            return
        agent = hello.agent_id
        previous = self.connected.get(agent)
        self.connected[agent] = ws
        hub.stats.agents_connected += 1
        if previous is not None and previous is not ws:
            hub.spawn(previous.close(1000, "replaced by a new connection of the same agent"))
        try:
            await ws.send(p.encode(p.Welcome(agent_id=agent, last_seq=last_seq)))
            for auth in await hub.db(hub.store.pending_authorizations, agent):
                await ws.send(p.encode(_end_call(auth)))
            async for raw in ws:
                await self._message(ws, agent, raw)
        except ConnectionClosed:
            pass
        except sqlite3.Error as exc:  # nothing unstored was acknowledged: the agent resends after reconnecting
            log.error("store error on agent %s's link: %s", agent, exc)
            await ws.close(1011, "console store error")
        finally:
            if self.connected.get(agent) is ws:
                del self.connected[agent]

    async def send_end_call(self, agent: str, auth: Authorization) -> None:
        """Tell the owning agent, if connected (else it gets it when it reconnects)."""
        ws = self.connected.get(agent)
        if ws is not None:
            try:
                await ws.send(p.encode(_end_call(auth)))
            except ConnectionClosed:
                pass

    async def _refuse(self, ws: ServerConnection, agent: str | None, code: str, message: str) -> None:
        hub = self.hub
        hub.stats.agent_refusals += 1
        who = f"agent:{agent}" if agent else "-"
        await hub.db(hub.store.audit, who, "agent_refused", None, f"{code}: {message} (from {peer(ws)})")
        try:
            await ws.send(p.encode(p.Refused(code=code, message=message)))
            await ws.close(1008, code)
        except ConnectionClosed:
            pass

    async def _message(self, ws: ServerConnection, agent: str, raw: str | bytes) -> None:
        hub = self.hub
        try:
            message = p.decode(raw, allowed=AGENT_INBOUND)
        except p.ProtocolError as exc:
            hub.stats.agent_refusals += 1
            await ws.send(p.encode(p.Refused(code=exc.code, message=exc.message)))
            return
        if isinstance(message, p.PartialTranscript):
            owner = self._owners.get(message.call_id)
            if owner is None:
                owner = await hub.db(hub.store.call_owner, message.call_id)
            if owner != agent:
                await self._refused_event(ws, agent, message, Forbidden(f"call {message.call_id!r} is not this agent's", code="not_your_call"))
                return
            hub.stats.partials_forwarded += 1
            hub.screens.publish(b.PartialShown(call_id=message.call_id, speaker=message.speaker, start=message.start, text=message.text), call=None, supervisors=True)
            await asyncio.sleep(0)  # let the browsers' senders run between bursts of partials
            return
        try:
            recorded: Recorded = await hub.db(hub.store.record_event, agent, message)
        except (Forbidden, BadRequest) as exc:
            await self._refused_event(ws, agent, message, exc)
            await ws.send(p.encode(p.Ack(seq=message.seq)))  # a resend would be refused again
            return
        if recorded.new:
            hub.stats.events_stored += 1
            self._fan_out(message, recorded)
        else:
            hub.stats.events_duplicate += 1
        await ws.send(p.encode(p.Ack(seq=message.seq)))

    async def _refused_event(self, ws: ServerConnection, agent: str, message: DurableEvent | p.PartialTranscript, exc: ConsoleError) -> None:
        hub = self.hub
        hub.stats.agent_refusals += 1
        call_id = getattr(message, "call_id", None)
        await hub.db(hub.store.audit, f"agent:{agent}", "refused", None, f"{message.TYPE} for call {call_id!r}: {exc.code}")
        await ws.send(p.encode(p.Refused(code=exc.code, message=exc.message)))

    def _fan_out(self, message: object, rec: Recorded) -> None:
        publish = self.hub.screens.publish
        call = rec.call
        if isinstance(message, p.CallStarted):
            self._owners[message.call_id] = call.agent
            publish(b.CallShown(call=call), call=call)
        elif isinstance(message, p.UtteranceFinal):
            publish(b.UtteranceShown(utterance=rec.record), call=None)
        elif isinstance(message, p.FindingRaised):
            publish(b.FindingShown(finding=rec.record), call=None)
        elif isinstance(message, p.LevelChanged):
            publish(b.LevelShown(level=rec.record), call=call)
            publish(b.CallShown(call=call), call=call)
            if rec.alert:
                publish(b.AlertShown(alert=rec.alert), call=None)
        elif isinstance(message, p.CallEnded):
            self._owners.pop(message.call_id, None)
            publish(b.CallShown(call=call), call=call)
            self.hub.spawn(self.qa.call_ended(message.call_id))
        elif isinstance(message, p.AgentNotice):
            publish(b.NoticeShown(notice=rec.record), call=None)
        if rec.checkin:
            publish(b.CheckinShown(checkin=rec.checkin), call=None)


def _end_call(auth: Authorization) -> p.EndCallAuthorized:
    return p.EndCallAuthorized(call_id=auth.call_id, authorization_id=auth.id, by=auth.by, reason=auth.reason, authorized_at=auth.authorized_at)
