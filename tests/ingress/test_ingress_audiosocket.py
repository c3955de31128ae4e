"""AudioSocket framing and the pairing server, driven by a fake Asterisk (no speech engine here)."""

from __future__ import annotations

import asyncio
import uuid as uuidlib

import numpy as np
import pytest

from audio.audiosocket import (
    AUDIO_RATES,
    DTMF_KEPT,
    AudioSocketConfig,
    AudioSocketError,
    AudioSocketServer,
    Frame,
    FrameDecoder,
    IncomingCall,
    Kind,
    LegPairing,
    encode_audio,
    encode_frame,
    encode_hangup,
    encode_uuid,
)
from fake_asterisk import frame, leg_uuid, play_leg
from speech import write_pcm16

RATE = 8000


def tone(seconds: float, rate: int = RATE, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (8000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


class Collector:
    """on_call handler that drains each call's audio and keeps what it got."""

    def __init__(self, *, end_after_s: float | None = None, closing=None) -> None:
        self.done: asyncio.Queue = asyncio.Queue()
        self.chunks: dict[str, list] = {}
        self.end_after_s = end_after_s
        self.closing = closing

    async def __call__(self, call: IncomingCall) -> None:
        got = self.chunks.setdefault(call.call_id, [])
        ender = None
        if self.end_after_s is not None:
            async def end_later():
                await asyncio.sleep(self.end_after_s)
                await call.end_call(self.closing)
            ender = asyncio.create_task(end_later())
        async for chunk in call.audio():
            got.append(chunk)
        if ender is not None:
            await ender
        await self.done.put(call)

    def samples(self, call_id: str, speaker: str) -> int:
        return sum(len(c.samples) for c in self.chunks[call_id] if c.speaker == speaker)


def config(**kw) -> AudioSocketConfig:
    base = dict(host="127.0.0.1", port=0, pair_timeout_s=1.0, uuid_timeout_s=2.0, idle_timeout_s=5.0)
    base.update(kw)
    return AudioSocketConfig(**base)


# --------------------------------------------------------------------------- framing


def test_frames_encode_as_asterisk_expects():
    assert encode_hangup() == b"\x00\x00\x00"
    u = uuidlib.UUID("0123456789abcdef0123456789abcd00")
    assert encode_uuid(str(u)) == b"\x01\x00\x10" + u.bytes
    pcm = np.array([1, -2, 300], dtype=np.int16)
    assert encode_audio(pcm, 8000) == b"\x10\x00\x06" + pcm.astype("<i2").tobytes()
    assert encode_audio(pcm, 16000)[0] == 0x12
    assert encode_frame(0x03, b"5") == b"\x03\x00\x015"
    with pytest.raises(ValueError):
        encode_frame(0x10, bytes(70000))


def test_audio_types_carry_the_documented_rates():
    assert dict(AUDIO_RATES) == {0x10: 8000, 0x11: 12000, 0x12: 16000, 0x13: 24000, 0x14: 32000, 0x15: 44100, 0x16: 48000, 0x17: 96000, 0x18: 192000}
    assert Frame(0x16, b"").sample_rate == 48000 and Frame(0x03, b"1").sample_rate is None


def test_decoder_reassembles_frames_split_anywhere():
    u = uuidlib.uuid4()
    stream = encode_uuid(u) + encode_audio(tone(0.04), 8000) + frame(0x03, b"7") + encode_hangup()
    decoder = FrameDecoder()
    frames = []
    for i in range(0, len(stream), 7):
        frames += decoder.feed(stream[i:i + 7])
    decoder.close()
    assert [f.kind for f in frames] == [Kind.UUID, Kind.AUDIO, Kind.DTMF, Kind.HANGUP]
    assert frames[0].payload == u.bytes and len(frames[1].payload) == 640


@pytest.mark.parametrize("raw", [
    frame(0x42, b"xx"),          # unknown type
    frame(0x01, bytes(15)),      # UUID of the wrong length
    frame(0x10, bytes(321)),     # odd number of PCM bytes
    frame(0x00, b"x"),           # hang-up with a payload
    frame(0x03, b"12"),          # two DTMF digits in one frame
    frame(0xFF, b"ab"),          # error code longer than a byte
])
def test_bad_frames_are_refused_with_a_code(raw):
    with pytest.raises(AudioSocketError) as err:
        FrameDecoder().feed(raw)
    assert err.value.code == "bad_frame"


def test_a_stream_cut_inside_a_frame_is_truncated():
    decoder = FrameDecoder()
    assert decoder.feed(encode_audio(tone(0.02), 8000)[:100]) == []
    with pytest.raises(AudioSocketError) as err:
        decoder.close()
    assert err.value.code == "truncated_frame"


def test_the_decoder_checks_a_header_before_waiting_for_its_payload_and_stays_broken():
    decoder = FrameDecoder(max_payload=640)
    assert decoder.feed(encode_audio(tone(0.02), 8000)) != [] and decoder.frames == 1
    with pytest.raises(AudioSocketError) as err:
        decoder.feed(b"\x10\x02\x82")  # announces 642 bytes: refused at the header, nothing waited for
    assert err.value.code == "bad_frame" and "limit" in err.value.message and decoder.malformed == 1
    with pytest.raises(AudioSocketError):
        decoder.feed(encode_hangup())  # framing is lost: the stream stays refused
    assert decoder.frames == 1 and decoder.malformed == 1


def test_frames_before_a_malformed_one_are_handed_out_first():
    decoder = FrameDecoder()
    decoder.receive(encode_uuid(uuidlib.uuid4()) + encode_audio(tone(0.02), 8000) + frame(0x42, b"x"))
    frames = iter(decoder)
    assert next(frames).kind == Kind.UUID and next(frames).kind == Kind.AUDIO
    with pytest.raises(AudioSocketError) as err:
        next(frames)
    assert err.value.code == "bad_frame" and decoder.buffered == 4


def test_the_server_counts_malformed_frames():
    async def main():
        handler = Collector()
        async with AudioSocketServer(handler, config(pairing="customer_only")) as server:
            result = await play_leg(server.port, uuidlib.uuid4(), tone(0.1), speed=0, tail=frame(0x10, bytes(5)))
            call = await asyncio.wait_for(handler.done.get(), 10)
            return server.malformed_frames, call, handler, result

    malformed, call, handler, result = asyncio.run(main())
    assert malformed == 1 and call.legs["customer"].stats.error_code == "bad_frame"
    assert handler.samples(call.call_id, "customer") == result.sent_samples == 800


def test_calls_beyond_max_calls_are_refused_at_once_and_counted():
    async def main():
        handler = Collector()
        async with AudioSocketServer(handler, config(pairing="customer_only", max_calls=2)) as server:
            running = [asyncio.create_task(play_leg(server.port, uuidlib.uuid4(), tone(1.0), speed=1.0)) for _ in range(2)]
            while server.calls_started < 2:
                await asyncio.sleep(0.01)
            refused = await asyncio.wait_for(play_leg(server.port, uuidlib.uuid4(), tone(1.0), speed=1.0), 5)
            await asyncio.gather(*running)
            calls = [await asyncio.wait_for(handler.done.get(), 10) for _ in range(2)]
            await asyncio.wait_for(play_leg(server.port, uuidlib.uuid4(), tone(0.1)), 5)  # room again once they ended
            calls.append(await asyncio.wait_for(handler.done.get(), 10))
            return server, refused, calls

    server, refused, calls = asyncio.run(main())
    assert server.calls_refused == 1 and server.calls_started == 3 and len(calls) == 3
    notices = [n for n in server.notices if n.code == "over_capacity"]
    assert len(notices) == 1 and "max_calls" in notices[0].message and notices[0].call_id not in {c.call_id for c in calls}
    assert refused.sent_samples < 8000  # cut off, not monitored


def test_a_flood_past_max_calls_is_reported_in_a_few_notices_and_every_refusal_counted():
    async def main():
        release = asyncio.Event()

        async def hold(call: IncomingCall) -> None:
            async for _ in call.audio():
                pass
            await release.wait()

        async with AudioSocketServer(hold, config(pairing="customer_only", max_calls=1)) as server:
            await play_leg(server.port, uuidlib.uuid4(), tone(0.1))
            while server.running_calls < 1:
                await asyncio.sleep(0.01)
            flood = [uuidlib.uuid4() for _ in range(250)]
            for i in range(0, len(flood), 10):  # fewer at once than the unnamed-connection bound (2 * max_calls + 16)
                await asyncio.gather(*(play_leg(server.port, u, tone(0.02)) for u in flood[i:i + 10]))
            while server.calls_refused < len(flood):
                await asyncio.sleep(0.01)
            during = [n for n in server.notices if n.code == "over_capacity"]
            release.set()
            while server.running_calls:
                await asyncio.sleep(0.01)
            await play_leg(server.port, uuidlib.uuid4(), tone(0.1))
            while server.calls_started < 2:
                await asyncio.sleep(0.01)
            return server, flood, during

    server, flood, during = asyncio.run(asyncio.wait_for(main(), 60))
    notices = [n for n in server.notices if n.code == "over_capacity"]
    assert server.calls_refused == 250
    # the first refusal names its call; then one notice per 100 more; the rest summed up when a call is accepted again
    assert [n.call_id for n in during[:1]] == [str(flood[0])]
    assert len(during) == 3 and all("100 more call(s) refused" in n.message for n in during[1:])
    assert len(notices) == 4 and "49 more call(s) refused" in notices[-1].message and "capacity again" in notices[-1].message
    assert str(flood[-1]) in notices[-1].message  # the latest refused calls are named
    reported = 1 + sum(int(n.message.split(" more call")[0]) for n in notices[1:])
    assert reported == server.calls_refused


def test_a_call_still_being_screened_after_its_hang_up_counts_towards_max_calls():
    async def main():
        release = asyncio.Event()
        finished = []

        async def slow_screening(call: IncomingCall) -> None:  # the agent still transcribes after the legs hung up
            async for _ in call.audio():
                pass
            await release.wait()
            finished.append(call.call_id)

        async with AudioSocketServer(slow_screening, config(pairing="customer_only", max_calls=1)) as server:
            await play_leg(server.port, uuidlib.uuid4(), tone(0.1))
            while server.running_calls < 1 or server.calls_started < 1:
                await asyncio.sleep(0.01)
            await play_leg(server.port, uuidlib.uuid4(), tone(0.1))  # the first call's legs are gone, its screening is not
            while server.calls_refused + server.calls_started < 2:  # the server has taken the second call one way or the other
                await asyncio.sleep(0.01)
            refused = server.calls_refused
            release.set()
            while server.running_calls:
                await asyncio.sleep(0.01)
            await play_leg(server.port, uuidlib.uuid4(), tone(0.1))
            while len(finished) < 2:
                await asyncio.sleep(0.01)
            return refused, server.calls_started

    refused, started = asyncio.run(asyncio.wait_for(main(), 20))
    assert (refused, started) == (1, 2)


def test_connections_that_never_name_a_call_are_bounded():
    async def main():
        async with AudioSocketServer(Collector(), config(pairing="customer_only", max_calls=1, uuid_timeout_s=5.0)) as server:
            silent = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(2 * 1 + 16)]
            await asyncio.sleep(0.1)
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            closed = await asyncio.wait_for(reader.read(), 2) == b""
            for _, w in silent + [(reader, writer)]:
                w.close()
            return server, closed

    server, closed = asyncio.run(main())
    assert closed and server.connections_refused == 1
    assert [n.code for n in server.notices if n.code == "over_capacity"] == ["over_capacity"]


def test_pairing_convention():
    pairing = LegPairing()
    call = uuidlib.uuid4()
    key_c, who_c = pairing.leg_of(leg_uuid(call, "customer").bytes)
    key_p, who_p = pairing.leg_of(leg_uuid(call, "partner").bytes)
    assert key_c == key_p == call.bytes[:15] and (who_c, who_p) == ("customer", "partner")
    assert pairing.call_id(key_c) == str(leg_uuid(call, "customer"))
    assert LegPairing.leg_uuid(call, "partner") == leg_uuid(call, "partner")
    with pytest.raises(AudioSocketError) as err:
        pairing.leg_of(call.bytes[:15] + b"\x07")
    assert err.value.code == "bad_uuid"
    assert LegPairing("customer_only").leg_of(call.bytes) == (call.bytes, "customer")


def test_config_section_is_checked():
    assert AudioSocketConfig.from_section({"port": 9999, "pair_timeout_s": 1}).pair_timeout_s == 1.0
    for bad in ({"port": "x"}, {"nope": 1}, {"pairing": "random"}, {"queue_frames": 0}):
        with pytest.raises(AudioSocketError) as err:
            AudioSocketConfig.from_section(bad)
        assert err.value.code == "bad_config"


# --------------------------------------------------------------------------- the server


def test_two_legs_of_a_call_become_one_call_with_every_sample():
    async def main():
        handler = Collector()
        async with AudioSocketServer(handler, config()) as server:
            call_uuid = uuidlib.uuid4()
            customer, partner = tone(1.0, freq=300), tone(0.7, freq=600)
            rc, rp = await asyncio.gather(
                play_leg(server.port, leg_uuid(call_uuid, "customer"), customer, speed=4),
                play_leg(server.port, leg_uuid(call_uuid, "partner"), partner, speed=4, tail=b""),
            )
            call = await asyncio.wait_for(handler.done.get(), 10)
            assert server.calls_started == 1 and handler.done.empty()
            return call, handler, rc, rp, list(server.notices)

    call, handler, rc, rp, notices = asyncio.run(main())
    assert call.call_id == str(leg_uuid(uuidlib.UUID(call.call_id), "customer"))
    assert set(call.speakers) == {"customer", "partner"} and call.sample_rate == 8000
    assert handler.samples(call.call_id, "customer") == rc.sent_samples == 8000
    assert handler.samples(call.call_id, "partner") == rp.sent_samples == 5600
    chunks = handler.chunks[call.call_id]
    for speaker in ("customer", "partner"):
        mine = [c for c in chunks if c.speaker == speaker]
        assert all(a.end_sample == b.start_sample for a, b in zip(mine, mine[1:]))  # one gapless time line per leg
        got = np.concatenate([c.samples for c in mine])
        assert np.array_equal(got, tone(1.0, freq=300) if speaker == "customer" else tone(0.7, freq=600))
    assert call.end_reason == "hangup"
    assert all(leg.stats.samples_delivered == leg.stats.samples_received for leg in call.legs.values())
    assert not notices, notices


def test_a_leg_without_partner_starts_alone_after_the_pair_timeout():
    async def main():
        handler = Collector()
        async with AudioSocketServer(handler, config(pair_timeout_s=0.3)) as server:
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            result = await play_leg(server.port, leg_uuid(uuidlib.uuid4(), "customer"), tone(1.0), speed=2)
            call = await asyncio.wait_for(handler.done.get(), 10)
            return call, handler, result, list(server.notices), loop.time() - t0

    call, handler, result, notices, took = asyncio.run(main())
    assert call.speakers == ("customer",)
    assert handler.samples(call.call_id, "customer") == result.sent_samples == 8000
    assert [n.code for n in notices] == ["leg_unpaired"] and "partner" in notices[0].message


def test_dtmf_is_recorded_with_its_audio_time():
    async def main():
        handler = Collector()
        async with AudioSocketServer(handler, config(pairing="customer_only")) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(frame(0x01, uuidlib.uuid4().bytes) + encode_audio(tone(0.1), 8000) + frame(0x03, b"5") + encode_hangup())
            await writer.drain()
            call = await asyncio.wait_for(handler.done.get(), 10)
            writer.close()
            return call

    call = asyncio.run(main())
    assert list(call.legs["customer"].stats.dtmf) == [("5", 800)] and call.legs["customer"].stats.dtmf_dropped == 0


def test_a_dtmf_flood_keeps_the_latest_digits_and_counts_the_rest():
    pressed = [(str(i % 10), (i + 1) * 160) for i in range(1000)]  # a digit after each 20 ms frame

    async def main():
        handler = Collector()
        async with AudioSocketServer(handler, config(pairing="customer_only")) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(frame(0x01, uuidlib.uuid4().bytes) + b"".join(encode_audio(tone(0.02), 8000) + frame(0x03, digit.encode()) for digit, _ in pressed) + encode_hangup())
            await writer.drain()
            call = await asyncio.wait_for(handler.done.get(), 10)
            writer.close()
            return call

    stats = asyncio.run(main()).legs["customer"].stats
    assert list(stats.dtmf) == pressed[-DTMF_KEPT:] and stats.dtmf_dropped == len(pressed) - DTMF_KEPT
    assert stats.end_reason == "hangup" and stats.samples_received == 160 * len(pressed)


BAD_ENDINGS = {
    "bad_frame/unknown type": (frame(0x42, b"hello"), "bad_frame"),
    "bad_frame/odd length": (frame(0x10, bytes(5)), "bad_frame"),
    "bad_frame/hangup with payload": (frame(0x00, b"x"), "bad_frame"),
    "bad_frame/dtmf length": (frame(0x03, b""), "bad_frame"),
    "truncated_frame/in header": (b"\x10\x01", "truncated_frame"),
    "truncated_frame/in payload": (b"\x10\x01\x40" + bytes(100), "truncated_frame"),
    "asterisk_error": (frame(0xFF, b"\x02"), "asterisk_error"),
    "unsupported_rate/96k": (frame(0x17, bytes(3840)), "unsupported_rate"),
    "unsupported_rate/12k": (frame(0x11, bytes(480)), "unsupported_rate"),
    "rate_mismatch": (frame(0x12, bytes(640)), "rate_mismatch"),
    "bad_frame/second uuid": (frame(0x01, uuidlib.uuid4().bytes), "bad_frame"),
}


@pytest.mark.parametrize("name", list(BAD_ENDINGS))
def test_a_broken_leg_ends_its_call_keeping_its_audio_and_the_server_serves_the_next_call(name):
    tail, code = BAD_ENDINGS[name]

    async def main():
        handler = Collector()
        async with AudioSocketServer(handler, config(pair_timeout_s=0.2)) as server:
            bad = await play_leg(server.port, leg_uuid(uuidlib.uuid4(), "customer"), tone(0.5), speed=0, tail=tail)
            broken = await asyncio.wait_for(handler.done.get(), 10)
            good = await play_leg(server.port, leg_uuid(uuidlib.uuid4(), "customer"), tone(0.3), speed=0)
            fine = await asyncio.wait_for(handler.done.get(), 10)
            return handler, bad, broken, good, fine, list(server.notices)

    handler, bad, broken, good, fine, notices = asyncio.run(main())
    assert handler.samples(broken.call_id, "customer") == bad.sent_samples == 4000  # nothing before the fault is lost
    assert broken.end_reason == "error" and broken.legs["customer"].stats.error_code == code
    assert code in [n.code for n in notices if n.call_id == broken.call_id]
    assert handler.samples(fine.call_id, "customer") == good.sent_samples == 2400 and fine.end_reason == "hangup"


@pytest.mark.parametrize("opening, code", [
    (frame(0x10, bytes(320)), "no_uuid"),                                   # audio before any UUID
    (frame(0x01, uuidlib.uuid4().bytes[:15] + b"\x09"), "bad_uuid"),        # outside the pairing convention
    (b"\x01\x00", "truncated_frame"),                                       # dropped inside the first header
    (b"", "no_uuid"),                                                       # connected and closed at once
])
def test_connections_that_never_name_a_call_are_refused_and_serving_goes_on(opening, code):
    async def main():
        handler = Collector()
        async with AudioSocketServer(handler, config(pair_timeout_s=0.2)) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(opening)
            await writer.drain()
            writer.close()
            good = await play_leg(server.port, leg_uuid(uuidlib.uuid4(), "customer"), tone(0.2), speed=0)
            fine = await asyncio.wait_for(handler.done.get(), 10)
            await asyncio.sleep(0.05)
            return handler, good, fine, list(server.notices), server.calls_started

    handler, good, fine, notices, started = asyncio.run(main())
    assert code in [n.code for n in notices if n.call_id is None]
    assert started == 1 and handler.samples(fine.call_id, "customer") == good.sent_samples


def test_a_silent_connection_is_refused_after_the_uuid_timeout():
    async def main():
        handler = Collector()
        async with AudioSocketServer(handler, config(uuid_timeout_s=0.2)) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            await asyncio.sleep(0.5)
            closed = reader.at_eof() or (await asyncio.wait_for(reader.read(), 1)) == b""
            writer.close()
            return closed, list(server.notices)

    closed, notices = asyncio.run(main())
    assert closed and [n.code for n in notices] == ["no_uuid"]


def test_a_duplicate_leg_is_refused_and_the_call_goes_on():
    async def main():
        handler = Collector()
        async with AudioSocketServer(handler, config()) as server:
            call_uuid = uuidlib.uuid4()
            first, second, partner = await asyncio.gather(
                play_leg(server.port, leg_uuid(call_uuid, "customer"), tone(0.6), speed=3),
                play_leg(server.port, leg_uuid(call_uuid, "customer"), tone(0.2), speed=0, hangup=False),
                play_leg(server.port, leg_uuid(call_uuid, "partner"), tone(0.6), speed=3),
            )
            call = await asyncio.wait_for(handler.done.get(), 10)
            return handler, call, first, list(server.notices)

    handler, call, first, notices = asyncio.run(main())
    assert "duplicate_leg" in [n.code for n in notices]
    assert handler.samples(call.call_id, "customer") == first.sent_samples == 4800


def test_end_call_plays_the_closing_message_paced_then_hangs_up_both_legs(tmp_path):
    closing = write_pcm16(tmp_path / "closing.wav", tone(0.5, rate=16000, freq=500), 16000)  # converted to the call's 8 kHz

    async def main():
        handler = Collector(end_after_s=0.3, closing=closing)
        async with AudioSocketServer(handler, config()) as server:
            call_uuid = uuidlib.uuid4()
            rc, rp = await asyncio.gather(
                play_leg(server.port, leg_uuid(call_uuid, "customer"), tone(5.0), speed=1),
                play_leg(server.port, leg_uuid(call_uuid, "partner"), tone(5.0), speed=1),
            )
            call = await asyncio.wait_for(handler.done.get(), 10)
            return call, rc, rp

    call, rc, rp = asyncio.run(main())
    audio = rc.frames_of(0x10)
    assert len(audio) == 25 and all(len(f.payload) == 320 for f in audio)  # 0.5 s in 20 ms slin frames
    span = audio[-1].at - audio[0].at
    assert 0.35 < span < 0.9, span  # paced at about real time (24 frame gaps of 20 ms), not dumped at once
    assert rc.received[-1].kind == 0x00 and rc.server_hung_up and rc.received[-1].at >= audio[-1].at
    assert [f.kind for f in rp.received] == [0x00]  # the partner hears nothing, only the hang-up
    assert rc.sent_samples < 5 * 8000 and rp.sent_samples < 5 * 8000  # the fake Asterisk stopped when hung up
    assert call.end_reason == "authorized_end" and call.closing_frames_sent == 25


def test_end_call_without_a_message_only_hangs_up():
    async def main():
        handler = Collector(end_after_s=0.2, closing=None)
        async with AudioSocketServer(handler, config(pairing="customer_only")) as server:
            rc = await play_leg(server.port, uuidlib.uuid4(), tone(3.0), speed=1)
            call = await asyncio.wait_for(handler.done.get(), 10)
            return call, rc

    call, rc = asyncio.run(main())
    assert [f.kind for f in rc.received] == [0x00] and call.end_reason == "authorized_end"


def test_an_unreadable_closing_message_is_a_clear_error(tmp_path):
    bad = tmp_path / "closing.wav"
    bad.write_bytes(b"not a wav at all")

    async def main():
        result = {}

        async def handler(call):
            try:
                await call.end_call(bad)
            except AudioSocketError as exc:
                result["code"] = exc.code
                await call.end_call(None)  # the caller may still hang up without a message
            async for _ in call.audio():
                pass

        async with AudioSocketServer(handler, config(pairing="customer_only")) as server:
            rc = await play_leg(server.port, uuidlib.uuid4(), tone(2.0), speed=2)
        return result, rc

    result, rc = asyncio.run(main())
    assert result == {"code": "bad_closing_message"} and [f.kind for f in rc.received] == [0x00]


def test_twenty_concurrent_calls_lose_no_audio():
    async def main():
        handler = Collector()
        # the legs pair well inside the window; 2 s left a leg alone once on a CI run (forty
        # connections at once beside the rest of the suite), which is not what this test is about
        async with AudioSocketServer(handler, config(pair_timeout_s=10.0)) as server:
            plays = []
            for n in range(20):
                call_uuid = uuidlib.uuid4()
                plays.append(play_leg(server.port, leg_uuid(call_uuid, "customer"), tone(1.0 + n / 20), speed=4))
                plays.append(play_leg(server.port, leg_uuid(call_uuid, "partner"), tone(0.5 + n / 40), speed=4))
            results = await asyncio.gather(*plays)
            calls = [await asyncio.wait_for(handler.done.get(), 10) for _ in range(20)]
            return handler, results, calls, list(server.notices)

    handler, results, calls, notices = asyncio.run(main())
    assert not notices, notices
    assert sum(handler.samples(c.call_id, s) for c in calls for s in ("customer", "partner")) == sum(r.sent_samples for r in results)
    for call in calls:
        for speaker, leg in call.legs.items():
            assert leg.stats.samples_received == leg.stats.samples_delivered == handler.samples(call.call_id, speaker)


def test_a_leg_silent_on_the_wire_is_ended_after_the_idle_timeout_keeping_its_audio():
    async def main():
        handler = Collector()
        async with AudioSocketServer(handler, config(pairing="customer_only", idle_timeout_s=0.3)) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(frame(0x01, uuidlib.uuid4().bytes) + encode_audio(tone(0.2), 8000))
            await writer.drain()
            call = await asyncio.wait_for(handler.done.get(), 5)
            writer.close()
            return call, handler

    call, handler = asyncio.run(main())
    assert call.legs["customer"].stats.error_code == "idle" and handler.samples(call.call_id, "customer") == 1600


def test_a_slow_consumer_makes_the_leg_wait_and_loses_nothing():
    """The call's hand-off is bounded and lossless; dropping (counted) is the agent session's job."""

    async def main():
        got = []
        done = asyncio.Event()

        async def slow(call):
            async for chunk in call.audio():
                got.append(chunk)
                await asyncio.sleep(0.002)
            done.set()

        async with AudioSocketServer(slow, config(pairing="customer_only", queue_frames=5, idle_timeout_s=0.3)) as server:
            result = await play_leg(server.port, uuidlib.uuid4(), tone(2.0), speed=0)
            await asyncio.wait_for(done.wait(), 10)
            return got, result, list(server.notices)

    got, result, notices = asyncio.run(main())
    assert sum(len(c.samples) for c in got) == result.sent_samples == 16000 and not notices, notices
    assert all(a.end_sample == b.start_sample for a, b in zip(got, got[1:]))


def test_a_handler_that_stops_reading_never_leaves_a_leg_waiting():
    async def main():
        calls = []

        async def leaves_at_once(call):
            calls.append(call)

        async with AudioSocketServer(leaves_at_once, config(pairing="customer_only", queue_frames=5)) as server:
            result = await play_leg(server.port, uuidlib.uuid4(), tone(2.0), speed=0)
            for _ in range(100):  # the leg reads on to the hang-up instead of waiting for room
                if calls and calls[0].finished:
                    break
                await asyncio.sleep(0.02)
            return result, calls[0]

    result, call = asyncio.run(main())
    assert result.sent_samples == 16000 and call.finished and call.legs["customer"].stats.end_reason == "hangup"
