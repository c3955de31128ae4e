"""The SIP server on real sockets (UDP and TCP on 127.0.0.1) with real RTP streams
(audio/rtp): INVITE, RTP on both streams, re-INVITE on hold, BYE; TCP framing;
malformed SIP and RTP floods leave the server and the other call serving."""

from __future__ import annotations

import asyncio

import numpy as np

from audio.rtp import RtpSender, packetize
from audio.sip.config import SipConfig
from audio.sip.message import StreamFramer
from audio.sip.sdp import parse_sdp
from audio.sip.server import SipServer
from sip_kit import Calls, UdpPeer, answered as _answered, invite, request, sdp, tone


def server_config(**kw) -> SipConfig:
    return SipConfig(**{"host": "127.0.0.1", "port": 0, "jitter_ms": 40, **kw})


def test_a_siprec_call_over_udp_with_rtp_hold_and_bye():
    notices = []

    async def main():
        calls = Calls()
        async with SipServer(calls, server_config(), on_notice=notices.append) as server:
            transport, peer = await UdpPeer.open(server.port)
            ok, ports = await _answered(transport, peer, invite())
            tag = ok.get("To").split("tag=")[1]
            transport.sendto(request("ACK", to_tag=tag, cseq=1, branch="z9hG4bK-ack").encode())
            assert ports[0] != ports[1] and all(ports)
            customer, partner = tone(1.0, 300), tone(1.0, 500)
            async with await RtpSender.open("127.0.0.1", ports[0]) as a, await RtpSender.open("127.0.0.1", ports[1]) as b:
                await asyncio.gather(a.send(packetize(customer, codec="PCMU")), b.send(packetize(partner, codec="PCMA", payload_type=8, ssrc=7)))
            held = sdp([(6000, "1", "inactive"), (6002, "2", "sendonly")])
            transport.sendto(invite(to_tag=tag, cseq=2, branch="z9hG4bK-hold", body_sdp=held).encode())
            reinvite_ok = await peer.expect(200)
            assert [m.port for m in parse_sdp(reinvite_ok.body).media] == ports  # same ports
            transport.sendto(request("BYE", to_tag=tag, cseq=3, branch="z9hG4bK-bye").encode())
            bye_ok = await peer.expect(200)
            assert bye_ok.cseq == (3, "BYE")
            (call_id,) = calls.calls
            await asyncio.wait_for(calls.done[call_id].wait(), 5)
            transport.close()
            return calls.calls[call_id], calls.audio[call_id], server.counts

    call, audio, counts = asyncio.run(main())
    assert call.kind == "siprec" and call.end_reason == "bye"
    # every sample sent arrived (20 ms packets: 1 s = 8000 samples per stream)
    assert audio == {"customer": 8000, "partner": 8000}
    assert [n.code for n in notices if n.code == "on_hold"] == ["on_hold"]
    assert counts["malformed"] == 0 and counts["calls_offered"] == 1


def test_sip_over_tcp_framed_by_content_length_however_split():
    async def main():
        calls = Calls()
        async with SipServer(calls, server_config(transports=("tcp",))) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            wire = request("OPTIONS", branch="z9hG4bK-o").encode() + invite(call_id="tcp-call").encode()
            for i in range(0, len(wire), 97):  # split mid-header and mid-body
                writer.write(wire[i:i + 97])
                await writer.drain()
                await asyncio.sleep(0)
            framer, got = StreamFramer(), []
            while not any(m.status == 200 and m.cseq[1] == "INVITE" for m in got):
                got += framer.feed(await asyncio.wait_for(reader.read(65535), 5))
            writer.close()
            return [(m.status, m.cseq[1]) for m in got]

    assert asyncio.run(main()) == [(200, "OPTIONS"), (100, "INVITE"), (200, "INVITE")]


def test_garbage_sip_and_an_rtp_flood_leave_the_server_and_the_call_serving():
    async def main():
        calls = Calls()
        async with SipServer(calls, server_config()) as server:
            transport, peer = await UdpPeer.open(server.port)
            ok, ports = await _answered(transport, peer, invite(call_id="flooded"))
            rng = np.random.default_rng(1)
            for i in range(300):  # SIP garbage, half of it answerable
                transport.sendto(rng.bytes(int(rng.integers(1, 1500))))
                transport.sendto(b"INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK%d\r\nCSeq: x\r\n\r\n" % i)
                await asyncio.sleep(0.001)  # paced: loopback UDP drops bursts beyond the socket buffers
            async with await RtpSender.open("127.0.0.1", ports[0]) as flood, await RtpSender.open("127.0.0.1", ports[1]) as voice:
                await asyncio.gather(flood.send([rng.bytes(int(rng.integers(0, 300))) for _ in range(2000)], pace_ms=None),
                                     voice.send(packetize(tone(0.5, 400))))
            transport.sendto(request("OPTIONS", branch="z9hG4bK-alive").encode())
            alive = await peer.expect(200, "OPTIONS")
            tag = ok.get("To").split("tag=")[1]
            transport.sendto(request("BYE", call_id="flooded", to_tag=tag, cseq=2, branch="z9hG4bK-bye").encode())
            await peer.expect(200, "BYE")
            await asyncio.wait_for(calls.done["flooded"].wait(), 5)
            transport.close()
            bad = [m for m in peer.skipped if m.status == 400]
            return alive, calls.audio["flooded"], server.counts, calls.calls["flooded"].media.stats(), bad

    alive, audio, counts, stats, bad = asyncio.run(main())
    assert len(bad) == 300  # each answerable one answered 400, the rest dropped
    assert alive.cseq[1] == "OPTIONS"
    assert audio["partner"] == 4000  # the voice on the other stream was not touched
    assert counts["malformed"] == 600 and counts["bad_request"] == 300 and counts["internal_errors"] == 0
    assert stats["customer"].malformed > 0


def test_max_calls_refused_with_503():
    notices = []

    async def main():
        async with SipServer(Calls(), server_config(max_calls=1), on_notice=notices.append) as server:
            transport, peer = await UdpPeer.open(server.port)
            await _answered(transport, peer, invite(call_id="one"))
            transport.sendto(invite(call_id="two", branch="z9hG4bK-two").encode())
            busy = await peer.expect(503)
            transport.close()
            return busy

    busy = asyncio.run(main())
    assert busy.get("Retry-After") == "30"
    assert [n.code for n in notices] == ["over_capacity"]


def test_a_call_whose_rtp_stops_and_whose_bye_is_lost_ends_after_media_timeout():
    notices = []

    async def main():
        calls = Calls()
        async with SipServer(calls, server_config(media_timeout_s=0.6), on_notice=notices.append) as server:
            transport, peer = await UdpPeer.open(server.port)
            ok, ports = await _answered(transport, peer, invite(call_id="silent"))
            async with await RtpSender.open("127.0.0.1", ports[0]) as a:
                await a.send(packetize(tone(0.4, 300)))
            await asyncio.wait_for(calls.done["silent"].wait(), 5)  # no BYE is ever sent
            transport.close()
            return calls.calls["silent"], calls.audio["silent"], server.core.live_calls

    call, audio, live = asyncio.run(main())
    assert call.end_reason == "media_timeout" and live == 0
    assert audio["customer"] == 3200
    assert [n.code for n in notices if n.code == "media_timeout"] == ["media_timeout"]


def test_srtp_streams_offered_with_sdes_are_decrypted():
    from audio.rtp import SrtpKey

    keys = [SrtpKey.generate("AES_CM_128_HMAC_SHA1_80", 1), SrtpKey.generate("AES_CM_128_HMAC_SHA1_32", 1)]
    offer = sdp(proto="RTP/SAVP").decode().split("\r\n")
    for key, label in zip(keys, ("a=label:1", "a=label:2")):
        offer.insert(offer.index(label), f"a=crypto:{key.to_sdes()}")
    offer = "\r\n".join(offer).encode()

    async def main():
        calls = Calls()
        async with SipServer(calls, server_config()) as server:
            transport, peer = await UdpPeer.open(server.port)
            ok, ports = await _answered(transport, peer, invite(call_id="srtp", body_sdp=offer))
            answer = parse_sdp(ok.body)
            async with await RtpSender.open("127.0.0.1", ports[0], srtp=keys[0]) as a, \
                    await RtpSender.open("127.0.0.1", ports[1], srtp=keys[1]) as b:
                await asyncio.gather(a.send(packetize(tone(0.4, 300))), b.send(packetize(tone(0.4, 500), ssrc=9)))
            tag = ok.get("To").split("tag=")[1]
            transport.sendto(request("BYE", call_id="srtp", to_tag=tag, cseq=2, branch="z9hG4bK-bye").encode())
            await peer.expect(200, "BYE")
            await asyncio.wait_for(calls.done["srtp"].wait(), 5)
            transport.close()
            return answer, calls.audio["srtp"]

    answer, audio = asyncio.run(main())
    assert [(m.proto, m.crypto[0].suite, m.crypto[0].tag) for m in answer.media] == [
        ("RTP/SAVP", "AES_CM_128_HMAC_SHA1_80", 1), ("RTP/SAVP", "AES_CM_128_HMAC_SHA1_32", 1)]
    assert all(m.crypto[0].key_params != f"inline:{k.to_sdes().split('inline:')[1]}" for m, k in zip(answer.media, keys))  # our own keys
    assert audio == {"customer": 3200, "partner": 3200}


def test_a_call_still_being_screened_after_its_bye_holds_its_place_under_max_calls():
    async def main():
        done = asyncio.Event()

        async def slow(call) -> None:  # reads the audio, then "screens" until released
            async for _ in call.audio():
                pass
            await done.wait()

        async with SipServer(slow, server_config(max_calls=1)) as server:
            transport, peer = await UdpPeer.open(server.port)
            ok, _ = await _answered(transport, peer, invite(call_id="first"))
            tag = ok.get("To").split("tag=")[1]
            transport.sendto(request("BYE", call_id="first", to_tag=tag, cseq=2, branch="z9hG4bK-bye").encode())
            await peer.expect(200, "BYE")
            transport.sendto(invite(call_id="second", branch="z9hG4bK-2").encode())
            busy = await peer.expect(503, "INVITE")
            done.set()
            await asyncio.sleep(0.1)
            transport.sendto(invite(call_id="third", branch="z9hG4bK-3").encode())
            third = await peer.expect(200, "INVITE")
            transport.close()
            return busy, third

    busy, third = asyncio.run(main())
    assert busy.status == 503 and third.call_id == "third"
