"""RTP media over real UDP sockets on 127.0.0.1: espeak-ng speech sent as PCMU/PCMA/SRTP packets,
some reordered, dropped, duplicated, late, with garbage and RTCP in between, into RtpStream and MediaCall."""

from __future__ import annotations

import asyncio
import struct

import numpy as np
import pytest

from audio.errors import RtpError
from audio.frames import AudioChunk
from audio.g711 import decode_alaw, decode_ulaw
from audio.notices import IngressNotice
from audio.rtp.call import MediaCall
from audio.rtp.packet import RtpPacket
from audio.rtp.sender import RtpSender, packetize, wav_samples
from audio.rtp.srtp import SrtpKey
from audio.rtp.stream import RtpStream
from speech import speak, write_pcm16

PCMU = {0: "PCMU/8000", 8: "PCMA/8000", 101: "telephone-event/8000"}
RTCP_RR = bytes([0x81, 201, 0, 7]) + struct.pack("!I", 0x1234) + bytes(24)  # receiver report, one block


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return speak("환불을 받고 싶어요 지난달 요금이 너무 많이 나왔어요", rate=8000)


async def collect(stream_or_call, into: list[AudioChunk]) -> None:
    source = stream_or_call.chunks() if isinstance(stream_or_call, RtpStream) else stream_or_call.audio()
    async for chunk in source:
        into.append(chunk)


def contiguous(chunks: list[AudioChunk]) -> tuple[int, np.ndarray]:
    for a, b in zip(chunks, chunks[1:]):
        assert b.start_sample == a.end_sample, f"gap or overlap at {a.end_sample}..{b.start_sample}"
    return chunks[0].start_sample, np.concatenate([c.samples for c in chunks])


def send_to_one_stream(wire: list, *, pace_ms: int, codecs=PCMU, srtp: SrtpKey | None = None) -> tuple[RtpStream, list[AudioChunk]]:
    """Open a customer stream, send ``wire`` to it, close it once the sender is done: the stream and every chunk it gave."""

    async def main():
        loop = asyncio.get_running_loop()
        stream = await RtpStream.open("127.0.0.1", speaker="customer", codecs=codecs, origin=loop.time(), srtp=srtp)
        chunks: list[AudioChunk] = []
        reader = asyncio.create_task(collect(stream, chunks))
        sender = await RtpSender.open("127.0.0.1", stream.port, srtp=srtp)
        await sender.send(wire, pace_ms=pace_ms)
        await asyncio.sleep(0.2)
        stream.close()
        await reader
        sender.close()
        return stream, chunks

    return asyncio.run(main())


def test_speech_with_reorder_loss_duplicates_garbage_and_rtcp_lands_at_the_right_call_samples(speech):
    packets = packetize(speech, codec="PCMU", ssrc=0xC0FFEE, first_sequence=65500, first_timestamp=2**32 - 4000)
    n = len(packets)
    dropped = {11, 12, 47}
    held_back = 30  # sent well after its place was played: late
    wire: list[RtpPacket | bytes] = []
    for k, p in enumerate(packets):
        if k in dropped or k == held_back:
            continue
        wire.append(p)
        if k in (5, 60):
            wire.append(p)  # duplicated by the network
        if k == 20:
            wire += [b"\x00\x01garbage", bytes([0x80, 0x00, 0x00]), bytes([0xA0, 0]) + bytes(10) + b"\x09"]  # 3 malformed
        if k == 25:
            wire.append(RTCP_RR)
        if k == 35:
            wire.append(RtpPacket(101, 0, 0, 0xC0FFEE, False, bytes([1, 0x8A, 0, 160])))  # a DTMF event (its own numbering)
            wire.append(RtpPacket(96, 1, 0, 0xC0FFEE, False, b"?" * 20))  # a payload type the SDP never offered
        if k == 40:
            wire.append(packets[held_back])
    for a in (50, 70):  # two swaps: each later packet arrives before its predecessor
        i = wire.index(packets[a])
        wire[i], wire[i + 1] = wire[i + 1], wire[i]

    async def main():
        loop = asyncio.get_running_loop()
        origin = loop.time()
        stream = await RtpStream.open("127.0.0.1", speaker="customer", codecs=PCMU, origin=origin)
        chunks: list[AudioChunk] = []
        reader = asyncio.create_task(collect(stream, chunks))
        await asyncio.sleep(0.25)
        sender = await RtpSender.open("127.0.0.1", stream.port)
        sent_at = loop.time()
        await sender.send(wire, pace_ms=5)
        await asyncio.sleep(0.2)
        stream.close()
        await asyncio.wait_for(reader, 5)
        sender.close()
        return stream, chunks, sent_at - origin, sender.sent

    stream, chunks, sent_s, datagrams = asyncio.run(main())
    start, audio = contiguous(chunks)
    assert abs(start - sent_s * 8000) < 8000 * 0.1  # the first packet sits where it arrived on the call's time line
    want = decode_ulaw(b"".join(bytes(160) if k in dropped or k == held_back else p.payload for k, p in enumerate(packets)))
    want[[i for k in sorted(dropped | {held_back}) for i in range(k * 160, k * 160 + 160)]] = 0
    assert len(audio) == n * 160
    np.testing.assert_array_equal(audio, want)  # every sample in its RTP place, the missing ones silent
    s = stream.stats
    assert s.packets == datagrams and s.malformed == 3 and s.rtcp == 1
    assert s.telephone_events == 1 and s.unknown_payload == 1
    assert s.duplicate == 2 and s.late == 1 and s.lost == len(dropped) and s.reordered >= 2
    assert s.concealed_samples == (len(dropped) + 1) * 160 and s.samples == n * 160
    assert s.resyncs == 0 and s.dropped_chunks == 0


def test_mediacall_puts_two_streams_on_one_time_line_and_ends_on_bye(speech, tmp_path):
    customer_wav = write_pcm16(tmp_path / "customer.wav", speech, 8000)
    partner = speak("네 확인해 드리겠습니다", rate=8000)

    async def main():
        loop = asyncio.get_running_loop()
        origin = loop.time()
        notices: list[IngressNotice] = []
        streams = [await RtpStream.open("127.0.0.1", port_range=(30000, 30999), speaker=speaker, codecs=PCMU, origin=origin, on_notice=notices.append)
                   for speaker in ("customer", "partner")]
        call = MediaCall("call-1", streams, notify=notices.append)
        chunks: list[AudioChunk] = []
        reader = asyncio.create_task(collect(call, chunks))
        to_customer = await RtpSender.open("127.0.0.1", streams[0].port)
        to_partner = await RtpSender.open("127.0.0.1", streams[1].port)
        to_partner.send_raw(RTCP_RR)
        sent = {"customer": loop.time() - origin}
        customer = asyncio.create_task(to_customer.send(packetize(wav_samples(customer_wav), codec="PCMU"), pace_ms=10))
        await asyncio.sleep(0.5)
        sent["partner"] = loop.time() - origin
        await to_partner.send(packetize(partner, codec="PCMA", ssrc=2), pace_ms=10)
        await customer
        await asyncio.sleep(0.1)
        rtcp_port = await RtpSender.open("127.0.0.1", streams[1].port + 1)  # RTCP on port + 1 is counted there
        rtcp_port.send_raw(RTCP_RR)
        await asyncio.sleep(0.1)
        call.end("bye")
        await asyncio.wait_for(reader, 5)
        for s in (to_customer, to_partner, rtcp_port):
            s.close()
        return call, streams, chunks, sent, notices

    call, streams, chunks, sent, notices = asyncio.run(main())
    assert all(s.port % 2 == 0 and 30000 <= s.port < 30999 for s in streams)
    assert call.end_reason == "bye" and call.finished and call.speakers == ("customer", "partner")
    by = {sp: [c for c in chunks if c.speaker == sp] for sp in ("customer", "partner")}
    start_c, audio_c = contiguous(by["customer"])
    start_p, audio_p = contiguous(by["partner"])
    assert abs(start_c - sent["customer"] * 8000) < 800 and abs(start_p - sent["partner"] * 8000) < 800
    assert 0.4 * 8000 < start_p - start_c < 0.7 * 8000  # the partner spoke half a second into the call
    np.testing.assert_array_equal(audio_c[: len(speech)], decode_ulaw(b"".join(p.payload for p in packetize(speech)))[: len(speech)])
    np.testing.assert_array_equal(audio_p[: len(partner)], decode_alaw(b"".join(p.payload for p in packetize(partner, codec="PCMA")))[: len(partner)])
    stats = call.stats()
    assert stats["partner"].rtcp == 2 and stats["customer"].lost == 0
    assert call.samples_delivered() == {"customer": len(audio_c), "partner": len(audio_p)}
    assert not [n for n in notices if n.code != "rtp_resumed"]


def test_srtp_stream_decrypts_and_counts_forgeries_and_replays(speech):
    key = SrtpKey.from_sdes(SrtpKey.generate("AES_CM_128_HMAC_SHA1_80").to_sdes())
    packets = packetize(speech[:8000], codec="PCMU", ssrc=0x5A5A)

    outbound = key.outbound()  # a protector of our own, to replay and forge datagrams by hand
    protected = [outbound.protect(p.encode()) for p in packets]
    wire: list[bytes] = []
    for k, data in enumerate(protected):
        wire.append(data)
        if k == 10:
            wire.append(data)  # replayed
        if k == 20:
            forged = protected[21]
            wire.append(forged[:-1] + bytes([forged[-1] ^ 1]))  # the next packet, tag forged: authentication fails
        if k == 30:
            wire.append(packets[31].encode())  # plain RTP on an SRTP stream
    stream, chunks = send_to_one_stream(wire, pace_ms=5, srtp=key)
    _, audio = contiguous(chunks)
    np.testing.assert_array_equal(audio, decode_ulaw(b"".join(p.payload for p in packets)))
    s = stream.stats
    assert s.duplicate == 1 and s.malformed == 2 and s.lost == 0 and s.concealed_samples == 0


def test_a_silent_stream_is_reported_flushed_and_kept_open(speech):
    packets = packetize(speech[:4000], codec="PCMU")

    async def main():
        loop = asyncio.get_running_loop()
        notices: list[IngressNotice] = []
        stream = await RtpStream.open("127.0.0.1", speaker="partner", codecs=PCMU, origin=loop.time(), on_notice=notices.append,
                                      silence_timeout_s=0.8, flush_after_s=0.15, call_id="held")
        chunks: list[AudioChunk] = []
        reader = asyncio.create_task(collect(stream, chunks))
        sender = await RtpSender.open("127.0.0.1", stream.port)
        await sender.send(packets[:10], pace_ms=2)
        # the held 60 ms come out without waiting for more packets, long before the silence notice
        await until(lambda: sum(len(c.samples) for c in chunks) == 10 * 160)
        codes_when_flushed = [n.code for n in notices]
        await until(lambda: notices)
        await sender.send(packets[10:], pace_ms=2)
        await asyncio.sleep(0.3)
        stream.close()
        await reader
        sender.close()
        return stream, chunks, codes_when_flushed, notices

    stream, chunks, codes_when_flushed, notices = asyncio.run(main())
    assert codes_when_flushed == []
    assert [n.code for n in notices] == ["rtp_silent", "rtp_resumed"] and notices[0].call_id == "held" and notices[0].speaker == "partner"
    assert sum(len(c.samples) for c in chunks) >= len(packets) * 160  # packets after the hold were still taken
    assert stream.stats.received == len(packets)


async def until(condition, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


def test_a_flood_without_a_consumer_is_bounded_and_counted_and_the_stream_goes_on():
    async def main():
        loop = asyncio.get_running_loop()
        notices: list[IngressNotice] = []
        stream = await RtpStream.open("127.0.0.1", speaker="customer", codecs=PCMU, origin=loop.time(), queue_chunks=50, on_notice=notices.append)
        sender = await RtpSender.open("127.0.0.1", stream.port)
        flood = packetize(np.zeros(8000 * 40, dtype=np.int16), codec="PCMU")  # 2000 packets, nobody reading
        junk = [bytes([0x80 | (k % 64), k % 256]) + bytes(k % 40) for k in range(500)]
        await sender.send([x for pair in zip(flood, junk + [b"\x00"] * (len(flood) - len(junk))) for x in pair], pace_ms=None)
        await asyncio.sleep(0.3)
        held = len(stream._queue)
        stats = stream.stats
        chunks: list[AudioChunk] = []
        reader = asyncio.create_task(collect(stream, chunks))
        tail = packetize(np.full(1600, 1000, dtype=np.int16), codec="PCMU", first_sequence=len(flood), first_timestamp=len(flood) * 160)
        await sender.send(tail, pace_ms=2)
        await asyncio.sleep(0.2)
        stream.close()
        await reader
        sender.close()
        return stream, held, stats, chunks, notices, sender.sent - len(tail)

    stream, held, stats, chunks, notices, flooded = asyncio.run(main())
    assert held <= 50
    assert stats.dropped_chunks > 0 and stats.dropped_chunks + held == stats.chunks
    assert stats.malformed > 0 and stats.packets > flooded * 0.8  # UDP may lose some in the kernel, not most
    assert any(n.code == "rtp_audio_dropped" for n in notices)
    assert stream.stats.received > stats.received  # still receiving after the flood
    assert any(np.any(c.samples != 0) for c in chunks[-10:])  # the tail's tone arrived


def test_a_new_sender_mid_stream_is_adopted(speech):
    first = packetize(speech[:8000], codec="PCMU", ssrc=1, first_sequence=100)
    second = packetize(speech[8000:16000], codec="PCMU", ssrc=2, first_sequence=9, first_timestamp=77)

    stream, chunks = send_to_one_stream(first + second, pace_ms=5)
    _, audio = contiguous(chunks)  # the new sender's audio follows on, not on top of, the old one's
    assert len(audio) >= (len(first) + len(second)) * 160
    assert stream.stats.ssrc_changes == 1 and stream.stats.stray == 0


def test_bad_settings_are_refused_before_binding():
    async def main():
        loop = asyncio.get_running_loop()
        for kw, code in ((dict(codecs={96: "opus/48000/2"}), "bad_codec"), (dict(port_range=(40001, 40001)), "bad_config"),
                         (dict(jitter_ms=-1), "bad_config")):
            with pytest.raises(RtpError) as caught:
                await RtpStream.open("127.0.0.1", **{"speaker": "customer", "codecs": PCMU, "origin": loop.time(), **kw})
            assert caught.value.code == code
        taken = await RtpStream.open("127.0.0.1", port_range=(41000, 41001), speaker="customer", codecs=PCMU, origin=loop.time())
        with pytest.raises(RtpError) as caught:
            await RtpStream.open("127.0.0.1", port_range=(41000, 41001), speaker="partner", codecs=PCMU, origin=loop.time())
        assert caught.value.code == "no_port"
        taken.close()

    asyncio.run(main())


@pytest.mark.parametrize("codec, payload_type, rtpmap", [("PCMA", 98, "pcma/8000"), ("PCMU", 0, "PCMU/8000"), ("G722", 9, "G722/8000")])
def test_codecs_by_payload_type_from_the_sdp(speech, codec, payload_type, rtpmap):
    packets = packetize(speech[:16000], codec=codec, payload_type=payload_type)

    stray = RtpPacket(8 if payload_type != 8 else 0, 5000, 0, 1, False, b"\xd5" * 160)  # a payload type not in the SDP
    stream, chunks = send_to_one_stream(packets + [stray], pace_ms=2, codecs={payload_type: rtpmap})
    _, audio = contiguous(chunks)
    x = speech[:16000].astype(np.float64)
    lag = max(range(40), key=lambda k: float(np.dot(x[:15000], audio[k:15000 + k])))
    assert np.corrcoef(x[:15000], audio[lag:15000 + lag])[0, 1] > 0.9  # the speech came through the codec
    assert stream.stats.unknown_payload == 1 and stream.stats.received == len(packets)


def test_a_reinvite_moving_a_speaker_to_a_new_port_keeps_one_time_line(speech):
    first = packetize(speech[:4000], codec="PCMU", ssrc=1)
    second = packetize(speech[4000:8000], codec="PCMU", ssrc=1, first_sequence=len(first), first_timestamp=4000)

    async def main():
        loop = asyncio.get_running_loop()
        origin = loop.time()
        notices: list[IngressNotice] = []
        old = await RtpStream.open("127.0.0.1", speaker="customer", codecs=PCMU, origin=origin)
        call = MediaCall("call-2", [old], notify=notices.append)
        chunks: list[AudioChunk] = []
        reader = asyncio.create_task(collect(call, chunks))
        async with await RtpSender.open("127.0.0.1", old.port) as sender:
            await sender.send(first, pace_ms=20)
        new = await RtpStream.open("127.0.0.1", speaker="customer", codecs=PCMU, origin=origin)
        call.add_stream(new)
        async with await RtpSender.open("127.0.0.1", new.port) as sender:
            await sender.send(second, pace_ms=20)
        await asyncio.sleep(0.1)
        call.end("bye")
        call.end("timeout")  # the first reason stays
        await asyncio.wait_for(reader, 5)
        late = await RtpStream.open("127.0.0.1", speaker="partner", codecs=PCMU, origin=origin)
        call.add_stream(late)  # after the end: closed at once
        return call, old, new, late, chunks, notices

    call, old, new, late, chunks, notices = asyncio.run(main())
    assert old.closed and new.closed and late.closed and call.finished and call.end_reason == "bye"
    assert [n.code for n in notices] == ["stream_replaced"] and notices[0].call_id == "call-2"
    for a, b in zip(chunks, chunks[1:]):
        assert b.start_sample >= a.end_sample  # one time line, in order
    assert call.stats()["customer"].received == len(first) + len(second)
    assert sum(len(c.samples) for c in chunks) == (len(first) + len(second)) * 160
