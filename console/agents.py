"""The agents' side of the console: ``/ws/agent``.

Agents speak ``kernel/protocol.py``. After a good ``AgentHello`` the console
answers ``Welcome(last_seq)`` and any end-call authorizations the agent
missed while away; every durable event is stored (idempotently, by
``event_id``), fanned out to browsers if it is new, then acknowledged with
``Ack(seq)``. The events that waited on a link while the store worked are
stored in one transaction and acknowledged by one cumulative ``Ack`` (a group
commit, ``docs/console.md``). Partials are forwarded, never stored.

Refusals are answered, audited, and store nothing. A refused durable event is
never acknowledged: the ``error`` names its ``seq`` so the agent keeps it as
undelivered, and supervisors get a notice (one per agent and call).

With several replicas (``console/cluster.py``), an authorization for an
agent linked to another replica goes there through NATS, and the lost-call
watch leaves alone the calls of agents another live replica holds.

End of life: each live call's last sign of life is the latest of an event for
it, a heartbeat naming it, or its agent's link closing. :meth:`AgentLinks.sweep`
(every few seconds, and from tests with a moved clock) closes as lost the calls
silent for ``[console] agent_lost_seconds`` of console time. An agent that has
sent no heartbeat on its link (older than heartbeats) keeps its calls alive for
as long as it is linked.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from console import browser_protocol as b
from console.errors import BadRequest, ConsoleError, Forbidden, StoreError
from console.fanout import peer
from console.hub import Hub
from console.store import Authorization, Call, Recorded
from console.store.calls import RECORD_BATCH, DurableEvent
from console.qa import QaDesk
from kernel import protocol as p
from kernel.backoff import Backoff
from kernel.queues import DropOldestQueue, RecentSet

log = logging.getLogger("callshield.console")
_RNG = random.Random()

HELLO_TIMEOUT = 10.0
"""Seconds an agent has to send ``AgentHello`` after connecting."""
AGENT_INBOUND = tuple(t for t in p.AGENT_MESSAGES if t is not p.AgentHello)
Inbound = DurableEvent | p.PartialTranscript | p.Heartbeat
"""What an agent sends after its hello."""
LINK_INBOX = 256
"""Messages read from one agent's link and not handled yet, at most. While
the store records a run of events, the link goes on reading what the agent
sends, so the next run is what arrived meanwhile (up to ``RECORD_BATCH``
events in one transaction). When the inbox is full the reader waits, and the
agent's socket fills as before."""
HEARTBEAT_CALLS = 1000
"""Call ids of one heartbeat looked at (an agent monitors far fewer)."""
STORE_ERROR_CLOSE_S = 1.0
"""Seconds the console waits for an agent to answer the close of its link after a
store error, before dropping the connection. A busy agent's events queued unread
(the socket stops being read once 16 frames wait: websockets' ``max_queue``) hide
its answer, so the handshake cannot finish and would take websockets' default
``close_timeout`` of 10 s, during which the agent sends nothing: every event it
publishes meanwhile, alerts included, reached screens 10 s late
(``docs/deployment.md``, "The 10 s stall at 300 calls")."""
UNSHOWN_HELD = 64
"""Runs of events stored but not shown yet, held at most (:meth:`AgentLinks.show_held`).
Beyond it the oldest is dropped and its events counted (``events_unshown_dropped``):
they stay stored, so a browser's next snapshot shows their calls' levels and open
alerts, and the call's history (QA replay) their lines and findings."""
UNSHOWN_RETRY = Backoff(initial=0.25, maximum=4.0)
"""Waits between tries to show held runs while the store does not answer:
from 0.125 to 0.25 s at first, doubling, at most 4 s (jitter: up to half of each)."""
SUMMARY_TRIES = 3
"""Reads of a committed run's calls' summaries while its link is open, before
the run is held and the link closed."""
SUMMARY_RETRY = Backoff(initial=0.25, maximum=0.5)
"""Waits between those reads (0.375 to 0.75 s in all)."""


@dataclass(frozen=True)
class Unshown:
    """A run of an agent's events committed to the store whose calls' summaries
    could not be read after the commit: held to be fanned out once they can."""

    agent: str
    events: tuple[DurableEvent, ...]
    recorded: tuple[Recorded, ...]


class AgentLinks:
    """The connected agents (one socket per agent id) and the live calls' owners."""

    def __init__(self, hub: Hub, qa: QaDesk) -> None:
        self.hub = hub
        self.qa = qa
        self.connected: dict[str, ServerConnection] = {}
        self._owners: dict[str, str] = {}  # live call id -> agent, for partials
        self._since: datetime = hub.clock()  # console time the watch began (reset at start)
        self._call_heard: dict[str, datetime] = {}  # call id -> last event or heartbeat naming it
        self._link_closed: dict[str, datetime] = {}  # agent -> when its last link closed (forgotten by sweep once stale)
        self._beating: set[str] = set()  # agents whose current link sends heartbeats
        self._watch: asyncio.Task | None = None
        self._unshown: deque[Unshown] = deque()
        self._showing = asyncio.Lock()  # one fan-out of held runs at a time, in their order
        self._retrying: asyncio.Task | None = None

    def start(self) -> None:
        """Begin watching for calls whose agent is gone (checked every few seconds)."""
        self._since = self.hub.clock()
        if self._watch is None:
            self._watch = self.hub.spawn(self._watch_calls())

    async def _watch_calls(self) -> None:
        period = min(5.0, self.hub.config.agent_lost_seconds / 4)
        while True:
            await asyncio.sleep(period)
            try:
                await self.sweep()
            except ConsoleError as exc:  # the store closing or unreachable (StoreError) among them
                log.error("checking for lost calls failed: %s", exc)

    async def sweep(self) -> list[str]:
        """Close as lost every live call silent for ``agent_lost_seconds``; returns their ids."""
        hub = self.hub
        now = hub.clock()
        limit = timedelta(seconds=hub.config.agent_lost_seconds)
        lost = []
        calls = await hub.db(hub.store.open_calls)
        open_ids = {call.id for call in calls}
        for call_id, heard in list(self._call_heard.items()):  # forget calls that ended long enough ago
            if call_id not in open_ids and now - heard > limit:
                del self._call_heard[call_id]
        open_agents = {call.agent for call in calls}
        for agent, closed in list(self._link_closed.items()):  # and agents (also those a gone peer held) with no call left
            if agent not in open_agents and now - closed > limit:
                del self._link_closed[agent]
        for call in calls:
            agent = call.agent
            if agent in self.connected and agent not in self._beating:
                continue  # an agent without heartbeats: alive while linked
            if agent not in self.connected and hub.cluster is not None and hub.cluster.held_elsewhere(agent):
                continue  # linked to another live replica: its calls are that replica's to watch
            last = max(self._call_heard.get(call.id, self._since), self._link_closed.get(agent, self._since), self._since)
            if now - last < limit:
                continue
            why = "its agent's link closed" if agent not in self.connected else "its agent's heartbeats stopped naming it"
            done = await hub.db(hub.store.lose_call, call.id, f"{why}, no sign of it for {(now - last).total_seconds():.0f} s")
            if done is None:
                continue
            call, notice = done
            lost.append(call.id)
            self._owners.pop(call.id, None)
            self._call_heard.pop(call.id, None)
            log.warning("call %s of agent %s lost: %s", call.id, agent, why)
            hub.screens.publish(b.CallShown(call=call), call=call)
            hub.screens.publish(b.NoticeShown(notice=notice), call=None)
        return lost

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
        self._beating.discard(agent)
        hub.stats.agents_connected += 1
        if previous is not None and previous is not ws:
            hub.spawn(previous.close(1000, "replaced by a new connection of the same agent"))
        try:
            await ws.send(p.encode(p.Welcome(agent_id=agent, last_seq=last_seq)))
            for auth in await hub.db(hub.store.pending_authorizations, agent):
                await ws.send(p.encode(_end_call(auth)))
            await self.show_held(agent)  # what the agent's last link stored and could not show, before what it sends now
            taken: RecentSet[str] = RecentSet(TAKEN_REMEMBERED)  # per link: the agent's next link sends the renamed call
            inbox: DropOldestQueue[str | bytes] = DropOldestQueue(LINK_INBOX)
            reader = asyncio.create_task(_read(ws, inbox))
            try:
                while (raw := await inbox.get()) is not None:
                    raws = [raw]
                    while inbox and len(raws) < RECORD_BATCH:
                        raws.append(inbox.get_nowait())
                    await self._messages(ws, agent, raws, taken)
            finally:
                reader.cancel()
        except ConnectionClosed:
            pass
        except StoreError as exc:  # nothing unstored was acknowledged: the agent resends after reconnecting
            log.error("store error on agent %s's link: %s", agent, exc)
            hub.stats.agent_links_store_errors += 1
            ws.close_timeout = STORE_ERROR_CLOSE_S  # a busy agent's answer to the close is never read: do not wait 10 s for it
            await ws.close(1011, "console store error")
        finally:
            if self.connected.get(agent) is ws:
                del self.connected[agent]
                self._beating.discard(agent)
                self._link_closed[agent] = hub.clock()

    async def send_end_call(self, agent: str, auth: Authorization) -> None:
        """Tell the owning agent: through its link here, else (several replicas)
        through the replica holding it; if none does, it gets it when it links again."""
        frame = p.encode(_end_call(auth))
        if await self.deliver_end_call(agent, frame):
            return
        cluster = self.hub.cluster
        if cluster is not None:
            await cluster.send_end_call(agent, frame.encode("utf-8"))

    async def deliver_end_call(self, agent: str, frame: str | bytes) -> bool:
        """Send an ``end_call`` frame to ``agent`` if it is linked here; whether it was.
        A frame from another replica is checked to be one first."""
        ws = self.connected.get(agent)
        if ws is None:
            return False
        if isinstance(frame, bytes):
            try:
                frame = p.encode(p.decode(frame, allowed=(p.EndCallAuthorized,)))
            except p.ProtocolError as exc:
                log.error("an authorization for agent %s from another replica is not one (%s): not sent", agent, exc.message)
                return False
        try:
            await ws.send(frame)
        except ConnectionClosed:
            return False
        return True

    def peer_gone(self, agents: frozenset[str]) -> None:
        """Another replica holding ``agents`` stopped being heard: their calls are
        watched here from now, as if their links had closed now."""
        now = self.hub.clock()
        for agent in agents:
            if agent not in self.connected:
                self._link_closed[agent] = now

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

    async def _messages(self, ws: ServerConnection, agent: str, raws: list[str | bytes], taken: RecentSet[str]) -> None:
        """Messages the agent sent, read and waiting (at most ``RECORD_BATCH``),
        handled in their order: runs of durable events together
        (:meth:`_record_run`), anything else alone (:meth:`_message`)."""
        messages = [_decoded(raw) for raw in raws]
        start = 0
        while start < len(messages):
            end = start
            while end < len(messages) and self._joins_run(agent, messages[end], taken):
                end += 1
            if end > start:
                start += await self._record_run(ws, agent, messages[start:end], taken)
            else:
                await self._message(ws, agent, messages[start], taken)
                start += 1

    def _joins_run(self, agent: str, message: Inbound | p.ProtocolError, taken: RecentSet[str]) -> bool:
        """Whether ``message`` is stored (or shown) with the durable events
        around it: a durable event, or a partial of a call known to be this
        agent's; not a heartbeat, nor anything of a call refused as taken."""
        call_id = getattr(message, "call_id", None)
        if call_id is not None and call_id in taken:
            return False
        return p.is_durable(message) or (isinstance(message, p.PartialTranscript) and self._owners.get(call_id) == agent)

    async def _record_run(self, ws: ServerConnection, agent: str, run: list[Inbound], taken: RecentSet[str]) -> int:
        """Store a run's durable events in one transaction (a group commit),
        fan out what is new, show its partials in their place, and acknowledge
        the last event stored with one ``Ack``: every event is still stored
        before the ack that covers it. At an event refused, the events before
        it are acknowledged and the refusal answered; what follows it is left
        to the caller, since the refusal may change what it means (a
        ``call_started`` refused as taken). Returns how many of the run's
        messages were handled, the refused one counted (at least one)."""
        hub = self.hub
        events = [m for m in run if p.is_durable(m)]
        recorded: list[Recorded] = []
        refused = None
        if events:
            recorded, refused = await hub.db(hub.store.store_events, agent, events)
            hub.stats.event_runs += 1
            recorded = await self._with_calls(agent, events[:len(recorded)], recorded)
        handled = stored = 0
        last_seq = None
        reopened: list[Call] = []
        for message in run:
            if isinstance(message, p.PartialTranscript):
                self._show_partial(message)
            elif stored < len(recorded):
                reopened += self._stored(agent, message, recorded[stored])
                stored += 1
                last_seq = message.seq
            else:
                break
            handled += 1
        await self._resend_authorizations(agent, reopened)
        if last_seq is not None:
            await ws.send(p.encode(p.Ack(seq=last_seq)))
        if refused is not None:
            await self._refused_durable(ws, agent, run[handled], refused, taken)
            handled += 1
        await asyncio.sleep(0)  # let the browsers' senders run between runs
        return handled

    async def _message(self, ws: ServerConnection, agent: str, message: Inbound | p.ProtocolError, taken: RecentSet[str]) -> None:
        """One message that joins no run: a frame that is not a message, a
        heartbeat, anything of a call refused as taken, a partial of a call
        not known to be this agent's yet."""
        hub = self.hub
        if isinstance(message, p.ProtocolError):
            hub.stats.agent_refusals += 1
            await ws.send(p.encode(p.Refused(code=message.code, message=message.message)))
            return
        if isinstance(message, p.Heartbeat):
            await self._heartbeat(ws, agent, message, taken)
            return
        if message.call_id in taken:
            # The agent's new call under a used id: its events that followed the
            # refused call_started (sent before the refusal reached the agent)
            # are refused the same way, never added to the stored call.
            if isinstance(message, p.PartialTranscript):
                hub.stats.partials_refused += 1
                return
            await self._refused_event(ws, agent, message, BadRequest(f"call {message.call_id!r} is taken: this event belongs to the new call refused under it",
                                                                     code=p.CALL_ID_TAKEN))
            return
        owner = self._owners.get(message.call_id)  # a partial: every durable event of a call not taken joins a run
        if owner is None:
            owner = await hub.db(hub.store.call_owner, message.call_id)
        if owner != agent:
            await self._refused_event(ws, agent, message, Forbidden(f"call {message.call_id!r} is not this agent's", code="not_your_call"))
            return
        self._show_partial(message)
        await asyncio.sleep(0)  # let the browsers' senders run between bursts of partials

    def _show_partial(self, message: p.PartialTranscript) -> None:
        self.hub.stats.partials_forwarded += 1
        self.hub.screens.publish(b.PartialShown(call_id=message.call_id, speaker=message.speaker, start=message.start, text=message.text),
                                 call=None, supervisors=True)

    async def _with_calls(self, agent: str, events: list[DurableEvent], recorded: list[Recorded]) -> list[Recorded]:
        """What a committed run recorded, with its calls' summaries, read
        again while the link is open (:data:`SUMMARY_TRIES`): the agent cannot
        take its next events to another replica meanwhile, so they are shown
        in order. If the summaries still cannot be read, the run is held for
        :meth:`show_held` and the store error goes on (the link closes
        unacknowledged; the agent's next ``Welcome`` covers what was stored,
        so it is never resent)."""
        if not recorded:
            return recorded
        hub = self.hub
        failures = 0
        while True:
            try:
                return await hub.db(hub.store.with_calls, events, recorded)
            except StoreError:
                failures += 1
                if failures == SUMMARY_TRIES:
                    self._hold(Unshown(agent, tuple(events), tuple(recorded)))
                    raise
            await asyncio.sleep(SUMMARY_RETRY.delay(failures - 1, _RNG))

    def _hold(self, run: Unshown) -> None:
        hub = self.hub
        while len(self._unshown) >= UNSHOWN_HELD:
            dropped = self._unshown.popleft()
            new = sum(one.new for one in dropped.recorded)
            hub.stats.events_unshown_dropped += new
            log.error("%d stored events of agent %s will not be shown live (more than %d runs wait): they stay stored, in the calls' history",
                      new, dropped.agent, UNSHOWN_HELD)
        self._unshown.append(run)
        if self._retrying is None or self._retrying.done():
            self._retrying = hub.spawn(self._show_held_soon())

    async def _show_held_soon(self) -> None:
        """Show the held runs as soon as the store answers, whether or not
        their agents link again (one may have gone to another replica)."""
        attempt = 0
        while self._unshown:
            await asyncio.sleep(UNSHOWN_RETRY.delay(attempt, _RNG))
            try:
                await self.show_held()
            except ConsoleError as exc:  # StoreError, or the store closed (the console stopping)
                if exc.code == "store_closed":
                    return
                attempt += 1
                log.error("%d stored events wait to be shown: %s", sum(len(h.events) for h in self._unshown), exc)

    async def show_held(self, agent: str | None = None) -> None:
        """Fan out, in their order, the runs stored and not shown for want of
        their calls' summaries (:meth:`_with_calls`): ``agent``'s, or
        everyone's. Called before an agent's link reads anything (for that
        agent: its order is what matters), and soon after a run is held,
        trying again while the store does not answer (:data:`UNSHOWN_RETRY`).
        Raises :class:`StoreError` while the summaries still cannot be read."""
        if not self._unshown and not self._showing.locked():  # (locked: a run being shown is out of the deque)
            return
        hub = self.hub
        shown: list[tuple[str, list[Call]]] = []
        try:
            async with self._showing:
                while (held := next((h for h in self._unshown if agent is None or h.agent == agent), None)) is not None:
                    self._unshown.remove(held)  # out while its summaries are read: never dropped for room meanwhile
                    try:
                        recorded = await hub.db(hub.store.with_calls, held.events, held.recorded)
                    except BaseException:
                        self._unshown.appendleft(held)  # before its agent's later runs, which come after it
                        raise
                    new = sum(one.new for one in recorded)
                    reopened = [call for message, one in zip(held.events, recorded) for call in self._stored(held.agent, message, one)]
                    hub.stats.events_shown_late += new
                    log.warning("%d events of agent %s shown late: stored before a store error hid them", new, held.agent)
                    shown.append((held.agent, reopened))
        finally:
            for who, reopened in shown:  # outside the lock: an agent linked nowhere makes this wait
                await self._resend_authorizations(who, reopened)

    def _stored(self, agent: str, message: DurableEvent, recorded: Recorded) -> list[Call]:
        """An event stored (or found stored: a resend): the call heard, a lost
        call reopened, what is new fanned out. Returns the call it reopened,
        if any, whose pending authorizations the caller resends
        (:meth:`_resend_authorizations`) once the whole run is shown."""
        hub = self.hub
        if getattr(message, "call_id", None) is not None:
            self._call_heard[message.call_id] = hub.clock()
        if recorded.reopened is not None:
            self._show_reopened(agent, recorded.reopened)
        if recorded.new:
            hub.stats.events_stored += 1
            self._fan_out(message, recorded)
        else:
            hub.stats.events_duplicate += 1
        return [recorded.reopened] if recorded.reopened is not None else []

    async def _refused_durable(self, ws: ServerConnection, agent: str, message: DurableEvent, exc: ConsoleError, taken: RecentSet[str]) -> None:
        """A durable event the store refused: answered, never acknowledged (a
        later ack may pass over it; the error's ``seq`` tells the agent)."""
        hub = self.hub
        await self._refused_event(ws, agent, message, exc)
        if exc.code == p.CALL_ID_TAKEN:
            # Not an events_refused notice: the agent renames the call and
            # sends it again, and tells supervisors itself (call_id_reused).
            taken.add(message.call_id)
            log.warning("agent %s started a new call under the used id %s: refused (call_id_taken), the agent renames it",
                        agent, message.call_id)
            return
        notice = await hub.db(hub.store.refusal_notice, agent, message, exc)
        if notice is not None:
            hub.screens.publish(b.NoticeShown(notice=notice), call=None)

    async def _refused_event(self, ws: ServerConnection, agent: str, message: DurableEvent | p.PartialTranscript, exc: ConsoleError) -> None:
        hub = self.hub
        hub.stats.agent_refusals += 1
        call_id = getattr(message, "call_id", None)
        seq = getattr(message, "seq", None)
        what = f"{message.TYPE} seq {seq}" if seq is not None else message.TYPE
        await hub.db(hub.store.audit, f"agent:{agent}", "refused", None, f"{what} for call {call_id!r}: {exc.code}")
        await ws.send(p.encode(p.Refused(code=exc.code, message=exc.message, seq=seq)))

    async def _heartbeat(self, ws: ServerConnection, agent: str, beat: p.Heartbeat, taken: RecentSet[str]) -> None:
        """The agent is alive with ``beat.calls``: they stay live (lost ones
        reopen), except ids refused as taken on this link (the agent's new call
        under them is not the stored call)."""
        hub = self.hub
        self._beating.add(agent)
        hub.load.heard(agent, beat.partials_dropped)
        ids = [c for c in beat.calls[:HEARTBEAT_CALLS] if isinstance(c, str) and c not in taken]
        owned, reopened = await hub.db(hub.store.calls_heard, agent, ids)
        now = hub.clock()
        for call_id in owned:
            self._call_heard[call_id] = now
        for call in reopened:
            self._show_reopened(agent, call)
        await self._resend_authorizations(agent, reopened)

    def _show_reopened(self, agent: str, call: Call) -> None:
        """A lost call's agent is back with it: show it live again."""
        hub = self.hub
        self._owners[call.id] = agent
        self._call_heard[call.id] = hub.clock()
        log.info("call %s of agent %s reopened: the agent is back with it", call.id, agent)
        hub.screens.publish(b.CallShown(call=call), call=call)

    async def _resend_authorizations(self, agent: str, reopened: list[Call]) -> None:
        """Send again the pending authorizations of the calls ``reopened``
        (authorized while they were lost)."""
        if not reopened:
            return
        ids = {call.id for call in reopened}
        for auth in await self.hub.db(self.hub.store.pending_authorizations, agent):
            if auth.call_id in ids:
                await self.send_end_call(agent, auth)

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
            self._call_heard.pop(message.call_id, None)
            publish(b.CallShown(call=call), call=call)
            self.hub.spawn(self.qa.call_ended(message.call_id))
        elif isinstance(message, (p.AgentNotice, p.EndCallWebhookOutcome)):
            publish(b.NoticeShown(notice=rec.record), call=None)
        if rec.checkin:
            publish(b.CheckinShown(checkin=rec.checkin), call=None)


def _decoded(raw: str | bytes) -> Inbound | p.ProtocolError:
    """An agent's frame as its message, or the error that says why it is not one."""
    try:
        return p.decode(raw, allowed=AGENT_INBOUND)
    except p.ProtocolError as exc:
        return exc


async def _read(ws: ServerConnection, inbox: DropOldestQueue[str | bytes]) -> None:
    """Read an agent's messages into ``inbox`` (waiting for room, never
    dropping) until its link closes; then close the inbox."""
    try:
        async for raw in ws:
            await inbox.put_wait(raw)
    except ConnectionClosed:
        pass
    finally:
        inbox.close()


TAKEN_REMEMBERED = 1000
"""Call ids one agent link remembers as refused ``call_id_taken`` (the oldest are forgotten first):
its later events under them, sent before the agent renamed the call, are refused too."""


def _end_call(auth: Authorization) -> p.EndCallAuthorized:
    return p.EndCallAuthorized(call_id=auth.call_id, authorization_id=auth.id, by=auth.by, reason=auth.reason, authorized_at=auth.authorized_at)
