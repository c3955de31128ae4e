"""What an AudioSocket call leaves behind once it has ended: nothing in the
agent's memory, and nothing a later call can change. Real Vosk (Korean
model), real TCP on 127.0.0.1, a fake Asterisk per leg, the real recorder."""

from __future__ import annotations

import asyncio
import gc
import uuid as uuidlib
import weakref
from datetime import datetime, timezone

import numpy as np
import pytest

from agent.ingress import start_audiosocket
from agent.recording import recording_taps
from audio.audiosocket import AudioSocketConfig
from fake_asterisk import frame, leg_uuid, play_leg
from ingress_kit import make_agent
from kernel import protocol as p
from kernel.recordings import recording_name, sidecar_path
from kernel.retention import RetentionPolicy
from speech import speak

RATE = 8000
CLOCK = lambda: datetime(2026, 1, 1, tzinfo=timezone.utc)  # noqa: E731


@pytest.fixture(scope="module")
def phrase():
    silence = np.zeros(RATE // 5, dtype=np.int16)
    return np.concatenate([silence, speak("환불해 주세요", rate=RATE), silence])


def config(**kw) -> AudioSocketConfig:
    return AudioSocketConfig(**{"host": "127.0.0.1", "port": 0, "pair_timeout_s": 0.5, **kw})


async def two_legs(port: int, call: uuidlib.UUID, customer: np.ndarray) -> None:
    """Both legs of one call, live at the same time (paced: one leg cannot end before the other connects)."""
    await asyncio.gather(play_leg(port, leg_uuid(call, "customer"), customer, speed=4),
                         play_leg(port, leg_uuid(call, "partner"), np.zeros(len(customer), dtype=np.int16), speed=4))


def test_ended_calls_leave_nothing_behind_in_the_agent(ko_model, ko_model_dir, executor, phrase, tmp_path):
    """Freed as soon as each call ends, by reference counting alone: the cyclic
    collector is off (it runs too rarely to keep a busy agent's memory flat:
    a recognizer's memory is not counted by it)."""
    held: list[weakref.ref] = []  # what each call held: its AudioSocket call, its session, its recognizers

    def watch(info):
        class Watch:
            def attach(self, session):
                held.extend([weakref.ref(session), weakref.ref(session.transcriber)])

            def push(self, chunk):
                pass

            async def close(self):
                pass
        return Watch()

    def route(call):
        held.append(weakref.ref(call))
        return None, None

    async def main():
        agent, link = make_agent(ko_model, ko_model_dir, executor, audio_queue_s=60.0)
        agent.tap_factories += [watch, recording_taps(tmp_path, RetentionPolicy(keep_unflagged_audio=True), clock=CLOCK)]
        async with await start_audiosocket(agent, config=config(), route=route) as ingress:
            for _ in range(2):  # six good calls, three at a time
                await asyncio.gather(*(two_legs(ingress.port, uuidlib.uuid4(), phrase) for _ in range(3)))
            # a call whose leg breaks (its notices reach the call), and one that ends before any audio
            await play_leg(ingress.port, leg_uuid(uuidlib.uuid4(), "customer"), phrase, tail=frame(0x42, b"garbage"))
            await play_leg(ingress.port, leg_uuid(uuidlib.uuid4(), "customer"), phrase[:0])
            await agent.wait_calls()
            await ingress.server.wait_idle()
            left = dict(handles=dict(ingress.handles), calls=dict(ingress.calls), early=dict(ingress._early),
                        agent=dict(agent.calls), pending=dict(ingress.server._pending))
            alive = [ref() for ref in held if ref() is not None]
            return link, left, len(held), alive

    gc.collect()
    gc.disable()
    try:
        link, left, watched, alive = asyncio.run(main())
    finally:
        gc.enable()
    assert watched == 7 * 3, [(n.code, n.message) for n in link.of(p.AgentNotice)]  # every monitored call was watched
    assert left == dict(handles={}, calls={}, early={}, agent={}, pending={})
    assert alive == []  # sessions, recognizers and AudioSocket calls were freed
    assert len(list(tmp_path.glob("*.wav.json"))) == 7  # (each call was recorded)
    assert len(link.of(p.CallEnded)) == 7
    assert {"leg_unpaired", "bad_frame", "empty_call"} <= {n.code for n in link.of(p.AgentNotice)}


def test_a_reused_call_uuid_starts_a_new_call_and_the_ended_call_is_untouched(ko_model, ko_model_dir, executor, phrase, tmp_path):
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    policy = RetentionPolicy(keep_unflagged_audio=True)
    call = uuidlib.uuid4()
    call_id = str(leg_uuid(call, "customer"))
    wav = recordings / recording_name(call_id)

    infos = []

    class InfoTap:
        """Keeps each call's CallInfo."""

        def __init__(self, info):
            infos.append(info)

        def push(self, chunk):
            pass

        async def close(self):
            pass

    async def main():
        agent, link = make_agent(ko_model, ko_model_dir, executor, audio_queue_s=60.0)
        agent.tap_factories += [recording_taps(recordings, policy, clock=CLOCK), InfoTap]
        async with await start_audiosocket(agent, config=config()) as ingress:
            await two_legs(ingress.port, call, phrase)
            await agent.wait_calls()
            before = (list(link.messages), wav.read_bytes(), sidecar_path(wav).read_bytes())
            await two_legs(ingress.port, call, phrase[: len(phrase) // 2])  # Asterisk sends the same UUIDs again
            await agent.wait_calls()
            after = ([m for m in link.messages if getattr(m, "call_id", None) == call_id], wav.read_bytes(), sidecar_path(wav).read_bytes())
            return link, before, after

    link, before, after = asyncio.run(main())
    first = [m for m in before[0] if getattr(m, "call_id", None) == call_id]
    assert first[0].TYPE == "call_started" and first[-1].TYPE == "call_ended" and link.text(call_id, "customer").strip()
    assert after == (first, before[1], before[2])  # no event, no audio, no sidecar changed for the ended call
    new_id = f"{call_id}.2"
    assert [m.TYPE for m in link.of(p.CallStarted, new_id)] == ["call_started"] and link.of(p.CallEnded, new_id)[-1].reason == "hangup"
    reused = [n for n in link.of(p.AgentNotice, new_id) if n.code == "call_id_reused"]
    assert len(reused) == 1 and call_id in reused[0].message and new_id in reused[0].message
    # the phone system's id stays the UUID Asterisk sent (an end-call webhook finds the call by it)
    assert [(i.call_id, dict(i.ingress_ids)) for i in infos] == [(call_id, {"audiosocket_uuid": call_id}), (new_id, {"audiosocket_uuid": call_id})]
    second = recordings / recording_name(new_id)
    assert sidecar_path(second).exists() and second.read_bytes() != before[1]
