"""A call under an id the console already has from an earlier process of this
agent (a PBX reusing a UUID across an agent restart): the console refuses its
start as ``call_id_taken``; the agent renames the call (``<id>.2``), sends its
held events again under the new id, renames its recording, and reports
``call_id_reused``. The stored call of that id is never touched.

Units: the link's rewrite of held events, the agent's answer to the refusal,
the recording's rename (real files). Components: a real Console and real
agents, the earlier process's call ended, lost or still live."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random

import numpy as np
import pytest

from agent.call import CallIds
from agent.link import Backoff, ConsoleLink
from agent.recording import AgentRecording, RecordingTap
from agent.runtime import Agent
from agent_kit import THREAT_CALL, Watcher, until
from audio.frames import AudioChunk
from console.config import ConsoleConfig
from console.server import Console
from kernel import protocol as p
from kernel.clock import utc_now
from kernel.recordings import read_sidecar, recording_name
from kernel.retention import RetentionPolicy
from models.transcript import Utterance

FAST = Backoff(initial=0.02, maximum=0.1, jitter=0.5)
PASSWORD = "supervisor-password-1"
STARTED = "2025-03-01T10:00:00.000Z"
TAKEN = "call 'X' (started 2025-03-01T09:00:00.000Z) ended at 2025-03-01T09:00:10.000Z: a new call cannot start under its id"


async def _said(lines: list[dict]):
    for line in lines:
        yield Utterance(line["speaker"], line["start"], line["end"], line["text"])


def _link(url: str = "ws://127.0.0.1:9", agent_id: str = "floor-1", token: str = "t") -> ConsoleLink:
    return ConsoleLink(url, agent_id=agent_id, token=token, backoff=FAST, rng=random.Random(3))


# --------------------------------------------------------------------------- units: the link


def test_the_link_rewrites_a_calls_held_events_to_the_new_id_and_sends_them_again_after_the_rest():
    link = _link()
    held = [
        link.publish(p.CallStarted(seq=0, event_id="X:r1:1", call_id="X", partner="ann", seat="4", source="audiosocket", started_at="t")),
        link.publish(p.CallStarted(seq=0, event_id="Y:r2:1", call_id="Y", partner="bob", seat="5", source="audiosocket", started_at="t")),
        link.publish(p.UtteranceFinal(seq=0, event_id="X:r1:2", call_id="X", speaker="customer", start=1.0, end=2.0, text="hello")),
        link.publish(p.AgentNotice(seq=0, event_id="notice:abc", code="note", message="about X", call_id="X")),
        link.publish(p.UtteranceFinal(seq=0, event_id="Y:r2:2", call_id="Y", speaker="customer", start=1.0, end=2.0, text="other")),
    ]
    link._unsent = 3  # the first three were sent on this connection (their answers not back yet)
    assert link.rename_call("X", "X.2") == 3
    assert [(m.seq, m.call_id, m.event_id) for m in link.held] == [
        (2, "Y", "Y:r2:1"), (5, "Y", "Y:r2:2"),
        (6, "X.2", "X.2:r1:1"), (7, "X.2", "X.2:r1:2"), (8, "X.2", "notice:abc"),
    ]
    assert link.held[2] == dataclasses.replace(held[0], seq=6, call_id="X.2", event_id="X.2:r1:1")  # nothing else changed
    assert link._unsent == 1  # of what is held, only Y's start went out; X.2's events go (again) in order
    assert (link.stats.renamed_calls, link.stats.renamed_events) == (1, 3)
    assert link.rename_call("Z", "Z.2") == 0 and link.next_seq == 9

    # The console's refusals of X's events under their old seqs, still on the way, are no loss.
    for seq in (1, 3):
        link._refused(p.Refused(code=p.CALL_ID_TAKEN, message="taken", seq=seq))
    assert link.stats.undelivered == 0 and len(link.held) == 5


def test_a_call_started_refused_as_taken_goes_to_the_handler_other_refusals_do_not():
    link = _link()
    asked: list[str] = []
    link.on_call_id_taken = lambda call_id: (asked.append(call_id), link.rename_call(call_id, call_id + ".2"))
    start = link.publish(p.CallStarted(seq=0, event_id="X:r:1", call_id="X", partner="ann", seat="4", source="wav", started_at="t"))
    said = link.publish(p.UtteranceFinal(seq=0, event_id="W:r:2", call_id="W", speaker="customer", start=1.0, end=2.0, text="hi"))
    link._refused(p.Refused(code="not_your_call", message="another agent's", seq=start.seq))
    assert asked == [] and link.stats.undelivered == 1  # as before: refused, held, counted once
    link._refused(p.Refused(code=p.CALL_ID_TAKEN, message="taken", seq=said.seq))  # not a start: nothing to rename
    assert asked == [] and link.stats.undelivered == 2
    link._refused(p.Refused(code=p.CALL_ID_TAKEN, message="taken", seq=start.seq))
    assert asked == ["X"] and [m.call_id for m in link.held] == ["W", "X.2"] and link.stats.undelivered == 2


# --------------------------------------------------------------------------- units: the agent


def test_the_agent_renames_a_running_call_refused_as_taken_and_reports_it():
    async def main():
        link = _link()
        agent = Agent(link)  # the link is not started: what the call publishes stays held
        gate = asyncio.Event()

        async def call():
            yield Utterance("customer", 0.2, 1.0, "my bill is far too high")
            await gate.wait()
            for line in THREAT_CALL[2:]:
                yield Utterance(line["speaker"], line["start"], line["end"], line["text"])

        handle = agent.start_transcript_call(call(), partner="ann", call_id="X")
        await until(lambda: any(m.TYPE == "utterance" for m in link.held))
        start = link.held[0]
        assert (start.TYPE, start.call_id) == ("call_started", "X")
        link._refused(p.Refused(code=p.CALL_ID_TAKEN, message=TAKEN, seq=start.seq))  # what the receive loop does with the console's answer

        assert handle.call_id == "X.2" and list(agent.calls) == ["X.2"] and "X" in agent.call_ids
        gate.set()
        await handle.wait()
        held = link.held
        assert {m.call_id for m in held} == {"X.2"}
        assert [m.seq for m in held] == sorted(m.seq for m in held) and held[0].seq > start.seq
        assert [m.TYPE for m in held[:3]] == ["call_started", "utterance", "notice"] and held[-1].TYPE == "call_ended"
        assert all(m.event_id.startswith("X.2:") for m in held) and len({m.event_id for m in held}) == len(held)
        reused = held[2]
        assert reused.code == "call_id_reused"
        assert reused.message.startswith("Call id X came again after this agent restarted: the console already has a call under that id: "
                                         "this call is monitored as X.2, and call X's record and recording are unchanged.")
        assert any(m.TYPE == "level" and m.level == "alert" for m in held)  # the rest of the call went on, under its new id
        assert agent.start_transcript_call(_said([]), call_id="X").call_id == "X.3"  # neither X nor X.2 is given again
        await agent.wait_calls()
        await agent.shutdown(grace=0)

    asyncio.run(main())


def test_an_ended_calls_held_events_are_renamed_too_and_its_id_asked_again_takes_the_next_number():
    async def main():
        link = _link()
        agent = Agent(link)
        handle = agent.start_transcript_call(_said(THREAT_CALL), partner="ann", call_id="X")
        await handle.wait()  # a short call, over before the console answered (it was down)
        first = link.held[0]
        link._refused(p.Refused(code=p.CALL_ID_TAKEN, message=TAKEN, seq=first.seq))
        held = link.held
        assert {m.call_id for m in held} == {"X.2"} and held[0].TYPE == "call_started"
        assert [m.TYPE for m in held[-2:]] == ["call_ended", "notice"] and held[-1].code == "call_id_reused"
        assert held[-1].event_id.startswith("notice:")
        # The console has X.2 too (an agent restarted twice): the same call renames on.
        link._refused(p.Refused(code=p.CALL_ID_TAKEN, message="taken", seq=held[0].seq))
        assert {m.call_id for m in link.held} == {"X.3"} and "X.3 came" not in link.held[-1].message
        assert link.held[-1].message.startswith("Call id X came again") and "monitored as X.3" in link.held[-1].message
        await agent.shutdown(grace=0)

    asyncio.run(main())


# --------------------------------------------------------------------------- units: the recording


def _chunks(seconds: float, rate: int = 8000):
    n = int(seconds * rate)
    tone = (np.sin(np.arange(n) * 0.05) * 8000).astype(np.int16)
    for speaker in ("customer", "partner"):
        yield AudioChunk(speaker=speaker, start_sample=0, samples=tone, sample_rate=rate)


class _Flagged:
    findings = 1


def _tap(tmp_path, call_id: str) -> RecordingTap:
    tap = RecordingTap(call_id, tmp_path, RetentionPolicy(keep_unflagged_audio=True), clock=utc_now, call_started_at=STARTED)
    tap.attach(_Flagged())
    return tap


def test_a_recording_renamed_during_its_call_is_finished_under_the_new_name(tmp_path):
    async def main():
        tap = _tap(tmp_path, "X")
        for chunk in _chunks(0.5):
            tap.push(chunk)
        assert tap.rename("X.2") is None  # nothing moves while it is being written
        await tap.close()
        return tap

    tap = asyncio.run(main())
    assert sorted(f.name for f in tmp_path.iterdir()) == ["X.2.wav", "X.2.wav.json"]
    facts = read_sidecar(tmp_path / "X.2.wav.json")
    assert (facts["call_id"], facts["file"], facts["sha256"]) == ("X.2", "X.2.wav", tap.info.sha256)
    assert tap.info.path == tmp_path / "X.2.wav"


def test_a_recording_renamed_after_its_call_moves_with_its_sidecar_and_never_over_another(tmp_path):
    async def main():
        tap = _tap(tmp_path, "X")
        for chunk in _chunks(0.5):
            tap.push(chunk)
        await tap.close()
        before = (tmp_path / "X.wav").read_bytes()
        await tap.rename("X.2")
        moved = (tmp_path / "X.2.wav").read_bytes()

        other = _tap(tmp_path, "Y")
        for chunk in _chunks(0.3):
            other.push(chunk)
        await other.close()
        (tmp_path / "Y.2.wav").write_bytes(b"another call's recording")
        await other.rename("Y.2")  # the name is taken: the file stays where it is
        return before, moved, tap

    before, moved, tap = asyncio.run(main())
    assert moved == before and not (tmp_path / "X.wav").exists() and not (tmp_path / "X.wav.json").exists()
    facts = read_sidecar(tmp_path / "X.2.wav.json")
    assert (facts["call_id"], facts["file"], facts["finalized_at"]) == ("X.2", "X.2.wav", tap.finalized_at)
    assert (facts["call_started_at"], facts["sha256"]) == (STARTED, tap.info.sha256)  # the same call, the same bytes
    assert (tmp_path / "Y.2.wav").read_bytes() == b"another call's recording" and not (tmp_path / "Y.2.wav.json").exists()
    assert read_sidecar(tmp_path / "Y.wav.json")["call_id"] == "Y"


def test_an_agents_recordings_at_start_up_are_ids_in_use(tmp_path):
    (tmp_path / recording_name("X")).write_bytes(b"")

    async def main():
        recording = AgentRecording(tmp_path, RetentionPolicy())
        try:
            await recording.recover()
            ids = CallIds()
            return recording.recorded("X"), recording.recorded("Y"), ids.take("X", set(), recording.recorded)
        finally:
            recording.close()

    assert asyncio.run(main()) == (True, False, ("X.2", "X"))


# --------------------------------------------------------------------------- components: a real console


async def _console(tmp_path):
    console = Console(ConsoleConfig(data_dir=tmp_path / "data", host="127.0.0.1", port=0))
    await console.start()
    token = await console.db(console.store.add_user, "floor-1", "agent")
    await console.db(console.store.add_user, "sup", "supervisor", PASSWORD)
    return console, token


def _record(detail) -> str:
    """Everything stored about a call, to compare before and after."""
    return json.dumps(dataclasses.asdict(detail), sort_keys=True, default=str)


@pytest.mark.parametrize("earlier", ["ended", "lost", "live"])
def test_a_call_under_the_id_of_an_earlier_processs_call_is_monitored_as_id_2(tmp_path, earlier):
    """The earlier process's call X ended, was lost, or is still live (the
    process died a moment ago); a new process of the same agent runs a call
    that the PBX calls X again, and it ends before the console answers (the
    link starts after it). It is stored as X.2, with every utterance and alert;
    X is unchanged; supervisors see call_id_reused, never events_refused."""

    async def main():
        console, token = await _console(tmp_path)
        try:
            first_link = _link(console.url, token=token)
            first = Agent(first_link)
            await first.start()
            gate = asyncio.Event()

            async def earlier_call():
                for line in THREAT_CALL[:2]:
                    yield Utterance(line["speaker"], line["start"], line["end"], line["text"])
                if earlier != "ended":
                    await gate.wait()  # the process dies in the middle of the call

            handle = first.start_transcript_call(earlier_call(), partner="ann", call_id="X")
            if earlier == "ended":
                await handle.wait()
            await until(lambda: first_link.stats.acked >= (4 if earlier == "ended" else 3))  # start, two utterances (, end)
            await first_link.close()  # the earlier process is gone (its task is cancelled with the loop below)
            if earlier == "lost":
                assert await console.db(console.store.lose_call, "X", "test: its agent is gone") is not None
            before = await console.db(console.store.call_detail, "X")
            screen = await Watcher(console.url, "sup", PASSWORD).open()

            link = _link(console.url, token=token)  # the agent restarted: a new process, the same agent id
            agent = Agent(link)
            second = agent.start_transcript_call(_said(THREAT_CALL), partner="ann", call_id="X")
            await second.wait()
            await agent.start()
            await link.drain(timeout=20)
            await until(lambda: any(m["type"] == "notice" and m["notice"]["code"] == "call_id_reused" for m in screen.messages))
            after = await console.db(console.store.call_detail, "X")
            renamed = await console.db(console.store.call_detail, "X.2")
            audit = await console.db(console.store.audit_entries, action="refused")
            await screen.close()
            await agent.shutdown(grace=0)
            gate.set()
            await first.shutdown(grace=0)
            return before, after, renamed, link, second, screen, audit
        finally:
            await console.stop()

    before, after, renamed, link, second, screen, audit = asyncio.run(main())
    assert _record(after) == _record(before)  # the earlier call: not one field, word or alert more
    assert second.call_id == "X.2"
    assert [u.text for u in renamed.utterances] == [line["text"] for line in THREAT_CALL]
    assert [a.level for a in renamed.alerts][:1] == ["alert"] and renamed.call.end_reason == "end_of_file"
    assert (renamed.call.agent, renamed.call.partner) == ("floor-1", "ann")
    assert link.stats.undelivered == 0 and link.pending == 0 and link.stats.renamed_calls == 1
    notices = [m["notice"] for m in screen.messages if m["type"] == "notice"]
    assert [n["code"] for n in notices] == ["call_id_reused"] and notices[0]["call_id"] == "X.2"
    assert "Call id X came again after this agent restarted" in notices[0]["message"]
    # the console audited each refusal: the start, and X's events that followed it before the agent renamed the call
    assert audit[0].detail.startswith("call_started seq ") and audit[0].who == "agent:floor-1"
    assert all(a.detail.endswith(" for call 'X': call_id_taken") for a in audit)
