"""End of life of a call and who owns it (issue 13 #5, #14), over real
websockets with a real SQLite file and a console clock moved by the test.

- A call whose agent is gone (link closed, or heartbeats no longer naming it)
  closes as lost after ``[console] agent_lost_seconds`` of console time, and
  reopens when its agent comes back with it (docs/console.md, "Calls whose
  agent is gone").
- An agent's events for a call another agent claimed first are refused with
  their ``seq``, never acknowledged, and shown to supervisors (the claimant
  cannot take the notice's place first).

The console's own watch (which sweeps every few seconds of wall time) is
stopped: each test calls ``AgentLinks.sweep()`` itself, at the console times
it chooses.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random

import pytest

from agent.link import Backoff, ConsoleLink
from console.config import ConsoleConfig
from console_kit import FakeClock, open_agent, open_browser, running_console
from kernel import protocol as p
from kernel.errors import ConfigError

FAST = Backoff(initial=0.02, maximum=0.1, jitter=0.5)
STARTED_AT = "2025-03-01T09:00:00.000Z"


def _call_started(call_id: str, partner: str = "ann", seat: str = "12") -> dict:
    return dict(call_id=call_id, partner=partner, seat=seat, source="transcript", started_at=STARTED_AT)


def _utterance(call_id: str, text: str = "i will break your neck") -> dict:
    return dict(call_id=call_id, speaker="customer", start=3.0, end=5.0, text=text)


@contextlib.asynccontextmanager
async def _console(tmp_path, **config):
    """A running console on a :class:`FakeClock` whose periodic sweep is
    stopped, so that only the test's sweeps run."""
    async with running_console(tmp_path, clock=FakeClock(), **config) as console:
        watch = getattr(console.agents, "_watch", None)  # None before issue 13 #5: no watch, no sweep
        if watch is not None:
            watch.cancel()
        yield console


async def _lost_at_the_limit(console, call_id: str):
    """From the call's last sign of life: a sweep 1 s before the limit keeps
    it, one 1 s after it loses it (once). Returns the lost call."""
    clock, limit = console.clock, console.config.agent_lost_seconds
    clock.advance(seconds=limit - 1)
    assert await console.agents.sweep() == []
    call = await _call(console, call_id)
    assert call.ended_at is None and call.end_reason is None
    clock.advance(seconds=2)
    assert await console.agents.sweep() == [call_id]
    assert await console.agents.sweep() == []
    return await _call(console, call_id)


async def _until(predicate, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


async def _dies(console, agent) -> None:
    """``agent`` (a console_kit Agent) closes its link; returns once the console has seen it close."""
    await agent.close()
    await _until(lambda: agent.agent_id not in console.agents.connected)


async def _signed_in(console, user: str):
    """A browser socket signed in as ``user``; its snapshot is ``.seen[-1]``."""
    page = await open_browser(console)
    await page.login(user)
    return page


async def _call(console, call_id: str):
    return await console.db(console.store.call, call_id)


async def _audit(console, action: str):
    return await console.db(console.store.audit_entries, action=action)


@contextlib.asynccontextmanager
async def _linked(console, agent: str = "agent-1", **kwargs):
    """The agent's real :class:`ConsoleLink` to the console, started, closed at the end."""
    link = ConsoleLink(console.url, agent_id=agent, token=console.tokens[agent], backoff=FAST, rng=random.Random(7), **kwargs)
    link.start()
    try:
        yield link
    finally:
        await link.close()


_probes = itertools.count(1)


async def _beats_heard(link: ConsoleLink) -> None:
    """Wait until the console has handled a heartbeat built after this call
    (so it names exactly the calls ``live_calls()`` returns now)."""
    sent = link.stats.heartbeats
    await _until(lambda: link.stats.heartbeats >= sent + 2)  # beat sent+1 may have been built before
    # The console handles one link's messages in order: once a durable event
    # sent after that heartbeat is acknowledged, the heartbeat has been handled.
    link.publish(p.AgentNotice(seq=0, event_id=f"probe-{next(_probes)}", code="probe", message="probe"))
    await link.drain(timeout=5)


# --------------------------------------------------------------------------- #5: a gone agent's call


def test_call_of_an_agent_whose_link_closed_is_lost_after_the_limit_and_reopens_when_it_returns(tmp_path):
    async def main():
        async with _console(tmp_path) as console:
            clock = console.clock
            assert console.config.agent_lost_seconds == 60
            sup = await _signed_in(console, "sup")
            ann = await _signed_in(console, "ann")
            agent = await open_agent(console)
            await agent.send(agent.event(p.CallStarted, **_call_started("call-1")))
            said = agent.event(p.UtteranceFinal, **_utterance("call-1"))
            await agent.send(said)

            clock.advance(seconds=10)
            await _dies(console, agent)  # the agent dies: its link closing is the call's last sign of life

            call = await _lost_at_the_limit(console, "call-1")  # 61 s after the link closed (71 s after the last event)
            assert call.ended_at == "2025-03-01T09:01:11.000Z" and call.end_reason == "lost"
            [lost] = await _audit(console, "call_lost")
            assert (lost.who, lost.call_id) == ("agent:agent-1", "call-1")
            assert lost.detail == "its agent's link closed, no sign of it for 61 s"

            shown = await sup.expect("call", call__id="call-1", call__end_reason="lost")
            assert shown["call"]["ended_at"] == "2025-03-01T09:01:11.000Z"
            notice = (await sup.expect("notice", notice__code="monitoring_lost"))["notice"]
            assert notice["call_id"] == "call-1" and notice["agent"] == "agent-1"
            assert notice["message"].startswith("Monitoring lost on ann's call (seat 12): its agent's link closed")
            await ann.expect("call", call__id="call-1", call__end_reason="lost")  # the partner's screen is told too
            assert not any(m["type"] == "notice" for m in ann.seen)  # the notice is for supervisors

            # The partner's next call (on another agent) is her current call, also once it has ended.
            other = await open_agent(console, "agent-2")
            await other.send(other.event(p.CallStarted, **_call_started("call-2", seat="14")))
            assert await _partner_snapshot_calls(console) == ["call-2"]
            clock.advance(seconds=30)
            await other.send(other.event(p.CallEnded, call_id="call-2", at=30.0, reason="hangup"))
            await ann.expect("call", call__id="call-2", call__end_reason="hangup")
            assert await _partner_snapshot_calls(console) == ["call-2"]
            assert (await console.db(console.store.current_call_of, "ann")).id == "call-2"

            # A supervisor who signs in later sees the lost call, marked, among the live ones (for an hour).
            later = await _signed_in(console, "sup")
            snapshot = later.seen[-1]
            assert [(c["id"], c["end_reason"]) for c in snapshot["calls"]] == [("call-1", "lost")]
            clock.advance(hours=1)
            hour_later = await _signed_in(console, "sup")
            assert hour_later.seen[-1]["calls"] == []

            # The agent comes back and resends the event it had not seen acknowledged: the call reopens.
            back = await open_agent(console)
            back.seq = itertools.count(said.seq + 1)  # its next events number on
            await back.send(said)
            call = await _call(console, "call-1")
            assert call.ended_at is None and call.end_reason is None
            [reopened] = await _audit(console, "call_reopened")
            assert (reopened.who, reopened.call_id) == ("agent:agent-1", "call-1")
            await sup.expect("call", call__id="call-1", call__ended_at=None)
            detail = await console.db(console.store.call_detail, "call-1")
            assert [u.text for u in detail.utterances] == ["i will break your neck"]  # the resend stored nothing twice
            assert [c.id for c in await console.db(console.store.open_calls)] == ["call-1"]

            # and it ends as usual
            await back.send(back.event(p.CallEnded, call_id="call-1", at=90.0, reason="hangup"))
            assert (await _call(console, "call-1")).end_reason == "hangup"
            assert len(await _audit(console, "call_lost")) == 1
            for peer in (sup, ann, other, later, hour_later, back):
                await peer.close()

    asyncio.run(main())


async def _partner_snapshot_calls(console, partner: str = "ann") -> list[str]:
    """The call ids of the snapshot a partner gets on signing in (her current call)."""
    page = await _signed_in(console, partner)
    try:
        return [c["id"] for c in page.seen[-1]["calls"]]
    finally:
        await page.close()


def test_a_linked_agent_without_heartbeats_keeps_its_call_live_until_its_link_closes(tmp_path):
    async def main():
        async with _console(tmp_path, agent_lost_seconds=25) as console:
            clock = console.clock
            old = await open_agent(console)  # speaks the protocol as before heartbeats: never sends one
            await old.send(old.event(p.CallStarted, **_call_started("call-o")))
            clock.advance(minutes=10)
            assert await console.agents.sweep() == []
            assert (await _call(console, "call-o")).ended_at is None

            await _dies(console, old)
            call = await _lost_at_the_limit(console, "call-o")  # the configured limit (25 s), not the default, counts
            assert call.end_reason == "lost" and call.ended_at == "2025-03-01T09:10:26.000Z"

    asyncio.run(main())


# --------------------------------------------------------------------------- heartbeats of the real link


def test_heartbeats_of_the_real_link_keep_a_call_live_lose_it_when_they_stop_naming_it_and_reopen_it(tmp_path):
    async def main():
        async with _console(tmp_path) as console:
            clock = console.clock
            sup = await _signed_in(console, "sup")
            live = {"call-h"}
            async with _linked(console, live_calls=lambda: sorted(live), heartbeat_s=0.01) as link:
                link.publish(p.CallStarted(seq=0, event_id="h-start", **_call_started("call-h")))
                await link.drain(timeout=5)

                # Only heartbeats name the call from now on: it stays live long after its last event.
                for _ in range(3):
                    clock.advance(seconds=50)
                    await _beats_heard(link)
                clock.advance(seconds=50)  # 200 s after the call's last event, 50 s after a heartbeat named it
                assert await console.agents.sweep() == []
                assert (await _call(console, "call-h")).ended_at is None
                await _beats_heard(link)  # named at this console time: the last sign of life from here on

                # The agent no longer has the call (e.g. restarted without it): heartbeats go on, without it.
                live.clear()
                await _beats_heard(link)
                call = await _lost_at_the_limit(console, "call-h")
                assert call.end_reason == "lost" and call.ended_at is not None
                [lost] = await _audit(console, "call_lost")
                assert lost.call_id == "call-h" and lost.detail == "its agent's heartbeats stopped naming it, no sign of it for 61 s"
                await sup.expect("call", call__id="call-h", call__end_reason="lost")
                await sup.expect("notice", notice__code="monitoring_lost", notice__call_id="call-h")
                assert link.stats.connects == 1  # the link never dropped: heartbeats alone decided

                # Heartbeats name it again: it reopens, and stays live while they do.
                live.add("call-h")
                await _beats_heard(link)
                call = await _call(console, "call-h")
                assert call.ended_at is None and call.end_reason is None
                [reopened] = await _audit(console, "call_reopened")
                assert (reopened.who, reopened.call_id) == ("agent:agent-1", "call-h")
                await sup.expect("call", call__id="call-h", call__ended_at=None)
                clock.advance(seconds=50)
                await _beats_heard(link)
                clock.advance(seconds=50)
                assert await console.agents.sweep() == []
                assert len(await _audit(console, "call_lost")) == 1

    asyncio.run(main())


def test_heartbeats_of_another_agent_do_not_keep_a_call_live(tmp_path):
    async def main():
        async with _console(tmp_path) as console:
            owner = await open_agent(console)
            await owner.send(owner.event(p.CallStarted, **_call_started("call-1")))
            await _dies(console, owner)
            async with _linked(console, "agent-2", live_calls=lambda: ["call-1"], heartbeat_s=0.01) as other:
                console.clock.advance(seconds=61)
                await _beats_heard(other)
                assert await console.agents.sweep() == ["call-1"]
                await _beats_heard(other)  # naming it does not reopen another agent's call
                assert (await _call(console, "call-1")).end_reason == "lost"
                assert await _audit(console, "call_reopened") == []

    asyncio.run(main())


# --------------------------------------------------------------------------- #14: a pre-claimed call id


def test_events_for_a_call_another_agent_claimed_are_refused_with_their_seq_and_never_acknowledged(tmp_path, caplog):
    async def main():
        async with _console(tmp_path) as console:
            sup = await _signed_in(console, "sup")
            thief = await open_agent(console, "agent-2")
            await thief.send(thief.event(p.CallStarted, **_call_started("call-x", partner="bob", seat="7")))
            await sup.expect("call", call__id="call-x")
            before = await console.db(console.store.counts)

            async with _linked(console) as link:  # the real owner of call-x
                started = link.publish(p.CallStarted(seq=0, event_id="x-start", **_call_started("call-x")))
                said = link.publish(p.UtteranceFinal(seq=0, event_id="x-said", **_utterance("call-x")))
                await _until(lambda: link.stats.refused == 2)
                await asyncio.sleep(0.1)  # room for a wrong ack to arrive
                assert link.stats.acked == 0 and link.pending == 2  # refused: not acknowledged, still held
                assert link.stats.undelivered == 2 and list(link.undelivered) == []

                # Held, they are resent after a reconnect, refused again, and still counted once each.
                await console.agents.connected["agent-1"].close()
                await _until(lambda: link.stats.refused == 4)
                assert (link.stats.connects, link.stats.resent) == (2, 2)
                assert link.stats.undelivered == 2 and link.stats.acked == 0 and link.pending == 2

                own = link.publish(p.CallStarted(seq=0, event_id="a-start", **_call_started("call-a")))
                await link.drain(timeout=5)  # its ack passes over the two refused events
                assert link.stats.acked == 1 and link.stats.undelivered == 2 and link.stats.refused == 4
                assert [(m.seq, m.event_id) for m, _ in link.undelivered] == [(started.seq, "x-start"), (said.seq, "x-said")]
                assert [reason for _, reason in link.undelivered] == ["not_your_call: call 'call-x' belongs to another agent"] * 2
                errors = [r.getMessage() for r in caplog.records if r.name == "callshield.agent.link" and r.levelno == logging.ERROR]
                assert errors == [
                    f"console refused call_started for call call-x (seq {started.seq}), NOT delivered: call 'call-x' belongs to another agent (not_your_call)",
                    f"console refused utterance for call call-x (seq {said.seq}), NOT delivered: call 'call-x' belongs to another agent (not_your_call)",
                ] * 2

                # Supervisors are told, once for this agent and call.
                notice = (await sup.expect("notice", notice__code="events_refused"))["notice"]
                assert notice["agent"] == "agent-1" and notice["call_id"] == "call-x"
                assert "Agent agent-1 sent call_started for call call-x, which agent agent-2 owns" in notice["message"]
                await sup.expect("call", call__id="call-a")
                assert [m["notice"]["code"] for m in sup.seen if m["type"] == "notice"] == ["events_refused"]
                audit = await _audit(console, "refused")
                assert [(a.who, a.detail) for a in audit] == [
                    ("agent:agent-1", f"call_started seq {started.seq} for call 'call-x': not_your_call"),
                    ("agent:agent-1", f"utterance seq {said.seq} for call 'call-x': not_your_call"),
                ] * 2

                # The claimant's call is untouched; the owner's other call was stored.
                call = await _call(console, "call-x")
                assert (call.agent, call.partner, call.seat, call.ended_at) == ("agent-2", "bob", "7", None)
                assert (await console.db(console.store.call_detail, "call-x")).utterances == ()
                after = await console.db(console.store.counts)
                assert after["notices"] == before["notices"] + 1 and after["utterances"] == before["utterances"]
                assert (await _call(console, "call-a")).agent == "agent-1" and own.seq == said.seq + 1
            await thief.close()
            await sup.close()

    caplog.set_level(logging.ERROR, logger="callshield.agent.link")
    asyncio.run(main())


# --------------------------------------------------------------------------- configuration


def test_agent_lost_seconds_defaults_to_a_minute_and_must_cover_two_heartbeats(tmp_path):
    assert p.HEARTBEAT_S == 10.0
    assert ConsoleConfig(data_dir=tmp_path).agent_lost_seconds == 60.0
    assert ConsoleConfig.from_table({}, data_dir=tmp_path).agent_lost_seconds == 60.0
    assert ConsoleConfig.from_table({"agent_lost_seconds": 20}, data_dir=tmp_path).agent_lost_seconds == 20
    too_short = "[console] agent_lost_seconds must be at least 20 (twice the agents' heartbeat interval)"
    for seconds in (19.9, 19, 0, -60):
        with pytest.raises(ConfigError) as refused:
            ConsoleConfig.from_table({"agent_lost_seconds": seconds}, data_dir=tmp_path)
        assert str(refused.value) == too_short
    with pytest.raises(ConfigError) as refused:  # the file reader refuses NaN first; the config itself too
        ConsoleConfig(data_dir=tmp_path, agent_lost_seconds=float("nan"))
    assert str(refused.value) == too_short


def test_the_claimant_cannot_silence_the_supervisors_notice_of_the_owners_refused_events(tmp_path):
    """A hostile agent that pre-claims a call id and stores a notice under the
    event id the console would use for its refusal notice still cannot hide
    the owner's refused events from supervisors."""

    async def main():
        async with _console(tmp_path) as console:
            sup = await _signed_in(console, "sup")
            thief = await open_agent(console, "agent-2")
            await thief.send(thief.event(p.CallStarted, **_call_started("call-x", partner="bob")))
            for squat in ("refused:agent-1:call-x", "lost:call-x:2025-03-01T09:01:01.000Z"):
                await thief.send(p.AgentNotice(seq=next(thief.seq), event_id=squat, code="note", message="nothing here", call_id="call-x"))
            owner = await open_agent(console, "agent-1")
            refused = owner.event(p.CallStarted, **_call_started("call-x"))
            await owner.send(refused, ack=False)
            assert (await owner.expect("error"))["seq"] == refused.seq
            notice = (await sup.expect("notice", timeout=2, notice__code="events_refused"))["notice"]
            assert (notice["agent"], notice["call_id"]) == ("agent-1", "call-x")
            await owner.send(owner.event(p.UtteranceFinal, **_utterance("call-x")), ack=False)
            await owner.expect("error")
            await sup.nothing("notice", wait=0.2)  # still one per agent and call
            assert "ack" not in [m["type"] for m in owner.seen]

            await _dies(console, thief)  # the claimant's own call is lost as any other
            console.clock.advance(seconds=61)
            assert await console.agents.sweep() == ["call-x"]
            await sup.expect("notice", notice__code="monitoring_lost", notice__call_id="call-x")
            await owner.close()
            await sup.close()

    asyncio.run(main())
