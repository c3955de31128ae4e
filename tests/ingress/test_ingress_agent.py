"""AudioSocket and sound devices into the real agent: real Vosk (Korean model),
real detector, real TCP on 127.0.0.1, a fake Asterisk per leg. The console
link is replaced by a recorder (the link has its own tests)."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid as uuidlib

import numpy as np
import pytest

from kernel import protocol as p
from agent.ingress import capture_devices, serve_audiosocket, start_audiosocket
from audio.audiosocket import AudioSocketConfig
from audio.device import DeviceConfig
from fake_asterisk import frame, leg_uuid, play_leg
from ingress_kit import Routed, make_agent, split_call
from speech import KOREAN_CALL, call_samples, speak, write_call, write_pcm16

RATE = 8000


@pytest.fixture(scope="module")
def short_call():
    """Partner greets, customer complains: (customer, partner) samples at 8 kHz."""
    stereo, _ = call_samples(KOREAN_CALL[:2], rate=RATE)
    return split_call(stereo)


class CountingTap:
    """Counts every sample the agent reads from a call's source, per speaker."""

    seen: dict = {}

    def __init__(self, info) -> None:
        self.counts = CountingTap.seen.setdefault(info.call_id, {"customer": 0, "partner": 0})

    def push(self, chunk) -> None:
        self.counts[chunk.speaker] += len(chunk.samples)

    async def close(self) -> None:
        pass


def config(**kw) -> AudioSocketConfig:
    return AudioSocketConfig(**{"host": "127.0.0.1", "port": 0, "pair_timeout_s": 1.0, **kw})


def test_both_legs_of_a_call_are_transcribed_by_the_agent(ko_model, ko_model_dir, executor, short_call):
    customer, partner = short_call

    async def main():
        agent, link = make_agent(ko_model, ko_model_dir, executor, audio_queue_s=60.0)
        routed = Routed()
        async with await start_audiosocket(agent, config=config(), route=routed) as ingress:
            call = uuidlib.uuid4()
            sent = await asyncio.gather(
                play_leg(ingress.port, leg_uuid(call, "customer"), customer, speed=1.5),
                play_leg(ingress.port, leg_uuid(call, "partner"), partner, speed=1.5),
            )
            await agent.wait_calls()
            call_id = str(leg_uuid(call, "customer"))
            return link, call_id, sent, routed.calls[call_id]

    link, call_id, sent, call = asyncio.run(main())
    started = link.of(p.CallStarted, call_id)
    assert len(started) == 1 and started[0].source == "audiosocket" and started[0].sample_rate == RATE
    assert link.text(call_id, "customer").strip() and link.text(call_id, "partner").strip(), link.messages
    utterances = link.of(p.UtteranceFinal, call_id)
    assert min(u.start for u in utterances if u.speaker == "partner") < min(u.start for u in utterances if u.speaker == "customer")
    assert link.of(p.CallEnded, call_id)[-1].reason == "hangup"
    assert call.legs["customer"].stats.samples_received == sent[0].sent_samples and call.legs["partner"].stats.samples_received == sent[1].sent_samples
    assert not [n for n in link.of(p.AgentNotice, call_id) if n.code == "audio_dropped"]
    assert all(leg.stats.samples_delivered == leg.stats.samples_received for leg in call.legs.values())


def test_an_authorized_end_plays_the_closing_message_and_hangs_up(ko_model, ko_model_dir, executor, short_call, tmp_path):
    customer, partner = short_call
    closing = write_pcm16(tmp_path / "closing.wav", speak("통화를 종료합니다", rate=16000), 16000)

    async def main():
        agent, link = make_agent(ko_model, ko_model_dir, executor, hangup_on_authorization=True, closing_message=closing)
        async with await start_audiosocket(agent, config=config()) as ingress:
            call = uuidlib.uuid4()
            call_id = str(leg_uuid(call, "customer"))

            async def supervisor():
                while call_id not in agent.calls:
                    await asyncio.sleep(0.05)
                await asyncio.sleep(1.0)
                await link.on_authorization(p.EndCallAuthorized(call_id=call_id, authorization_id="a1", by="sup", reason="abuse", authorized_at="2026-01-01T00:00:00Z"))

            results = await asyncio.gather(
                play_leg(ingress.port, leg_uuid(call, "customer"), customer, speed=1),
                play_leg(ingress.port, leg_uuid(call, "partner"), partner, speed=1),
                supervisor(),
            )
            await agent.wait_calls()
            return link, call_id, results[0], results[1]

    link, call_id, rc, rp = asyncio.run(main())
    audio = rc.frames_of(0x10)
    closing_samples = sum(len(f.payload) // 2 for f in audio)
    assert 0 <= closing_samples - len(speak("통화를 종료합니다", rate=RATE)) < 160 and all(len(f.payload) == 320 for f in audio)
    assert (audio[-1].at - audio[0].at) > 0.6 * len(audio) * 0.02  # paced, not dumped
    assert rc.received[-1].kind == 0x00 and rp.received[-1].kind == 0x00 and not rp.frames_of(0x10)
    assert rc.sent_samples < len(customer)  # Asterisk stopped sending: the call really ended
    assert link.of(p.CallEnded, call_id)[-1].reason == "authorized_end"
    assert "call_hung_up" in [n.code for n in link.of(p.AgentNotice, call_id)]


def test_a_broken_leg_ends_the_call_keeping_its_utterances_and_the_next_call_is_served(ko_model, ko_model_dir, executor, short_call):
    customer, _ = short_call
    spoken = customer[: int(np.flatnonzero(customer)[-1]) + RATE]  # the complaint and a second of silence

    async def main():
        agent, link = make_agent(ko_model, ko_model_dir, executor, audio_queue_s=60.0)
        async with await start_audiosocket(agent, config=config(pair_timeout_s=0.3)) as ingress:
            broken = uuidlib.uuid4()
            await play_leg(ingress.port, leg_uuid(broken, "customer"), spoken, speed=0, tail=frame(0x42, b"garbage"))
            await agent.wait_calls()
            fine = uuidlib.uuid4()
            await play_leg(ingress.port, leg_uuid(fine, "customer"), spoken, speed=0)
            await agent.wait_calls()
            return link, str(leg_uuid(broken, "customer")), str(leg_uuid(fine, "customer"))

    link, broken_id, fine_id = asyncio.run(main())
    assert link.text(broken_id, "customer").strip()  # transcribed before the fault, kept
    assert {"leg_unpaired", "bad_frame"} <= {n.code for n in link.of(p.AgentNotice, broken_id)}
    assert link.of(p.CallEnded, broken_id)[-1].reason == "error"
    assert link.text(fine_id, "customer").strip()
    assert link.of(p.CallEnded, fine_id)[-1].reason == "hangup"


def test_twenty_concurrent_calls_on_one_model_lose_no_audio(ko_model, ko_model_dir, executor):
    phrase = speak("환불해 주세요", rate=RATE)
    CountingTap.seen.clear()

    async def main():
        agent, link = make_agent(ko_model, ko_model_dir, executor, audio_queue_s=120.0)
        agent.tap_factories.append(CountingTap)
        routed = Routed()
        # Both legs of a call connect together; under load (CI) the second has come more than
        # 3 s after the first, and a leg alone past pair_timeout_s starts the call by itself
        # (tested apart). This test is about audio, so the pairing waits as long as it must.
        async with await start_audiosocket(agent, config=config(pair_timeout_s=30.0), route=routed) as ingress:
            silence = np.zeros(int(RATE * 0.3), dtype=np.int16)
            customer = np.concatenate([silence, phrase, silence])
            partner = np.zeros(len(customer) + RATE // 2, dtype=np.int16)  # the partner listens

            async def call_in(n: int, call: uuidlib.UUID):
                await asyncio.sleep(n * 0.03)  # staggered, overlapping starts
                return await asyncio.gather(
                    play_leg(ingress.port, leg_uuid(call, "customer"), customer, speed=3),
                    play_leg(ingress.port, leg_uuid(call, "partner"), partner, speed=3),
                )

            calls = [uuidlib.uuid4() for _ in range(20)]
            ids = [str(leg_uuid(call, "customer")) for call in calls]
            results = [leg for pair in await asyncio.gather(*(call_in(n, c) for n, c in enumerate(calls))) for leg in pair]
            await agent.wait_calls()
            return link, ids, results, routed

    link, ids, results, routed = asyncio.run(main())
    assert len(routed.calls) == 20 and not [n for n in link.of(p.AgentNotice) if n.code == "audio_dropped"]
    for i, call_id in enumerate(ids):
        sent_customer, sent_partner = results[2 * i].sent_samples, results[2 * i + 1].sent_samples
        assert CountingTap.seen[call_id] == {"customer": sent_customer, "partner": sent_partner}  # every sample reached the agent
        assert link.text(call_id, "customer").strip()
        assert link.of(p.CallEnded, call_id)[-1].reason == "hangup"
    # (The texts are not compared across calls: Vosk decodes the same audio slightly
    # differently when one model serves concurrent recognizers; alphacep/vosk-api#660.)


def test_a_call_captured_from_a_pulseaudio_device_is_monitored(pulse_sink, ko_model, ko_model_dir, executor, tmp_path):
    wav = tmp_path / "call.wav"
    # 2 s of silence first: the player starts before the device opens, and opening may take a moment
    turns = [dataclasses.replace(KOREAN_CALL[0], pause_before=2.0), KOREAN_CALL[1]]
    spans = write_call(wav, turns, rate=16000)

    async def main():
        agent, link = make_agent(ko_model, ko_model_dir, executor, audio_queue_s=60.0)
        player = pulse_sink.play(wav)
        stop = asyncio.Event()

        async def stop_after_playing():
            await asyncio.get_running_loop().run_in_executor(None, player.wait)
            await asyncio.sleep(0.5)
            stop.set()

        stopper = asyncio.create_task(stop_after_playing())
        handle = await capture_devices(agent, DeviceConfig(stereo="pulse", sample_rate=16000), partner="kim", seat="12", stop=stop)
        await stopper
        return link, handle, player.returncode

    link, handle, rc = asyncio.run(main())
    call_id = handle.call_id
    started = link.of(p.CallStarted, call_id)[0]
    assert rc == 0 and (started.source, started.partner, started.seat, started.sample_rate) == ("device", "kim", "12", 16000)
    assert link.text(call_id, "customer").strip() and link.text(call_id, "partner").strip(), link.messages
    assert link.of(p.CallEnded, call_id)[-1].at >= spans[-1][2] - spans[0][1]  # at least the speech (playing may start before the device opens)
    assert handle.session.queue.dropped == 0 and not [n for n in link.of(p.AgentNotice, call_id) if n.code == "audio_dropped"]


def test_serve_audiosocket_serves_until_the_agent_shuts_down(ko_model, ko_model_dir, executor, short_call):
    customer, _ = short_call

    async def main():
        agent, link = make_agent(ko_model, ko_model_dir, executor, audio_queue_s=60.0)
        ready: asyncio.Queue = asyncio.Queue()
        routed = Routed()
        server = asyncio.create_task(serve_audiosocket(agent, "127.0.0.1", 0, config=AudioSocketConfig(pairing="customer_only"),
                                                       route=routed, started=ready.put_nowait))
        ingress = await asyncio.wait_for(ready.get(), 5)
        leg = await play_leg(ingress.port, uuidlib.uuid4(), customer[: RATE // 2], speed=0)
        await agent.wait_calls()
        agent.request_shutdown()
        await asyncio.wait_for(server, 5)
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", ingress.port)
        await agent.shutdown()
        return link, leg, routed

    link, leg, routed = asyncio.run(main())
    (call_id,) = routed.calls
    assert routed.calls[call_id].legs["customer"].stats.samples_received == leg.sent_samples
    assert link.of(p.CallEnded, call_id)[-1].reason == "hangup"
