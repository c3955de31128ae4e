"""The media streams server over real websockets on 127.0.0.1, with clients
written from the AudioHook and Twilio specifications (media_clients.py).
The calls are collected by a plain handler here; the agent and the real
speech model are in test_media_streams_agent.py."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from audio.media_streams import MediaStreamsConfig, MediaStreamsServer
from audio.media_streams.server import REFUSAL_DELAY_S
from media_clients import AudioHookClient, TwilioClient

SECRET = base64.b64encode(b"a client secret of 32 bytes.....").decode()
KEY = "api-key-of-the-test-integration"


def config(**kw) -> MediaStreamsConfig:
    return MediaStreamsConfig(**{"host": "127.0.0.1", "port": 0, "audiohook_keys": ((KEY, SECRET), ("unsigned-key", "")),
                                 "open_timeout_s": 2.0, **kw})


class Collected:
    """An ``on_call`` that reads every call to its end, keeping its chunks."""

    def __init__(self) -> None:
        self.calls: list = []
        self.chunks: dict[str, list] = {}
        self.errors: dict[str, str] = {}
        self.done = asyncio.Event()

    async def __call__(self, call) -> None:
        self.calls.append(call)
        self.chunks[call.call_id] = got = []
        try:
            async for chunk in call.audio():
                got.append(chunk)
        except Exception as exc:
            self.errors[call.call_id] = getattr(exc, "code", repr(exc))
        self.done.set()

    def audio(self, call_id: str, speaker: str) -> np.ndarray:
        """The speaker's samples laid on the call's time line (zeros in gaps)."""
        chunks = [c for c in self.chunks[call_id] if c.speaker == speaker]
        end = max(c.end_sample for c in chunks)
        out = np.zeros(end, dtype=np.int16)
        for c in chunks:
            out[c.start_sample:c.end_sample] = c.samples
        return out


def tone(freq: float, seconds: float, amplitude: int = 8000) -> np.ndarray:
    t = np.arange(int(seconds * 8000)) / 8000
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def run(coro_fn, **kw):
    async def main():
        collected = Collected()
        notices = []
        async with MediaStreamsServer(collected, config(**kw), on_notice=notices.append) as server:
            result = await coro_fn(server, collected)
            for _ in range(100):
                if not server.running:
                    break
                await asyncio.sleep(0.02)
        return collected, server, notices, result

    return asyncio.run(main())


async def audiohook(server) -> AudioHookClient:
    """An AudioHook client connected with the test integration's key and secret."""
    return await AudioHookClient(server.port, api_key=KEY, client_secret=SECRET).connect()


def g711(samples: np.ndarray) -> np.ndarray:
    from audio.g711 import decode_ulaw, encode_ulaw

    return decode_ulaw(encode_ulaw(samples))


# --------------------------------------------------------------------------- AudioHook


def test_an_audiohook_session_opens_streams_both_channels_pauses_and_closes():
    customer, partner = tone(440, 1.0), tone(880, 1.0)
    conversation = str(uuid.uuid4())

    async def session(server, collected):
        client = await audiohook(server)
        opened = await client.open(conversation, custom_config={"partner": "kim", "seat": "204"})
        await client.audio(customer[:4000], partner[:4000])
        pong = await client.ping()
        await client.pause(2.5)
        await client.audio(customer[4000:], partner[4000:])
        closed = await client.close()
        await asyncio.wait_for(collected.done.wait(), 5)
        return client, opened, pong, closed

    collected, server, notices, (client, opened, pong, closed) = run(session)
    assert opened["type"] == "opened" and opened["seq"] == 1 and opened["clientseq"] == 1 and opened["id"] == client.session_id
    assert opened["parameters"]["media"] == [{"type": "audio", "format": "PCMU", "channels": ["external", "internal"], "rate": 8000}]
    assert opened["parameters"]["startPaused"] is False
    assert (pong["type"], pong["seq"], pong["clientseq"]) == ("pong", 2, 2)
    assert (closed["type"], closed["seq"], closed["clientseq"]) == ("closed", 3, 5)
    [call] = collected.calls
    assert (call.call_id, call.source_kind, call.partner, call.seat, call.sample_rate) == (conversation, "audiohook", "kim", "204", 8000)
    assert call.end_reason == "hangup" and conversation not in collected.errors
    assert not call.stats.problems and call.stats.lost_samples == 0 and call.dropped_chunks == 0
    assert call.stats.paused_samples == 20000
    # external = customer, internal = partner; the pause is a 2.5 s gap of silence on the time line
    got_customer, got_partner = collected.audio(conversation, "customer"), collected.audio(conversation, "partner")
    assert len(got_customer) == len(got_partner) == 8000 + 20000
    assert np.array_equal(got_customer[:4000], g711(customer[:4000])) and np.array_equal(got_partner[:4000], g711(partner[:4000]))
    assert not got_customer[4000:24000].any()
    assert np.array_equal(got_customer[24000:], g711(customer[4000:])) and np.array_equal(got_partner[24000:], g711(partner[4000:]))
    assert server.refused == {} and server.calls == 1


def test_a_mono_audiohook_offer_is_the_customer_alone():
    conversation = str(uuid.uuid4())

    async def session(server, collected):
        client = await audiohook(server)
        opened = await client.open(conversation, media=[{"type": "audio", "format": "L16", "channels": ["external", "internal"], "rate": 8000},
                                                        {"type": "audio", "format": "PCMU", "channels": ["external"], "rate": 8000}])
        await client.audio(tone(300, 0.5))
        await client.close()
        await asyncio.wait_for(collected.done.wait(), 5)
        return opened

    collected, _, _, opened = run(session)
    assert opened["parameters"]["media"] == [{"type": "audio", "format": "PCMU", "channels": ["external"], "rate": 8000}]
    assert {c.speaker for c in collected.chunks[conversation]} == {"customer"}
    assert len(collected.audio(conversation, "customer")) == 4000


@pytest.mark.parametrize("client_kw, reason", [
    ({"api_key": "no-such-key", "client_secret": SECRET}, "unknown API key"),
    ({"api_key": KEY, "client_secret": base64.b64encode(b"the wrong secret").decode()}, "does not match"),
    ({"api_key": KEY, "client_secret": SECRET, "tamper": True}, "does not match"),
    ({"api_key": KEY, "client_secret": None}, "not signed"),
    ({"api_key": KEY, "client_secret": SECRET, "created": 1641013200}, "too old"),
])
def test_a_wrong_api_key_or_signature_is_refused_before_the_upgrade(client_kw, reason, caplog):
    async def attempt(server, collected):
        started = time.monotonic()
        with pytest.raises(InvalidStatus) as refused:
            await AudioHookClient(server.port, **client_kw).connect()
        return refused.value.response.status_code, time.monotonic() - started

    with caplog.at_level("WARNING"):
        collected, server, notices, (status, took) = run(attempt)
    assert status == 401 and took >= REFUSAL_DELAY_S  # answered after the fixed delay, whatever failed
    assert server.refused["unauthorized"] == 1 and not collected.calls and server.streams == 0
    assert reason in caplog.text and reason in notices[0].message
    assert SECRET not in caplog.text and "wrong secret" not in caplog.text


def test_a_replayed_signed_request_is_refused_and_an_unsigned_key_may_connect(caplog):
    async def attempt(server, collected):
        nonce = "a-nonce-used-only-once-1234"
        first = await AudioHookClient(server.port, api_key=KEY, client_secret=SECRET, nonce=nonce, session_id=str(uuid.uuid4())).connect()
        with pytest.raises(InvalidStatus) as replay:
            await AudioHookClient(server.port, api_key=KEY, client_secret=SECRET, nonce=nonce).connect()
        unsigned = await AudioHookClient(server.port, api_key="unsigned-key", client_secret=None).connect()
        opened = await unsigned.open(str(uuid.uuid4()))
        await unsigned.close()
        await first.ws.close()
        return replay.value.response.status_code, opened

    with caplog.at_level("WARNING"):
        _, server, _, (status, opened) = run(attempt)
    assert status == 401 and server.refused["unauthorized"] == 1 and "nonce already used" in caplog.text
    assert opened["type"] == "opened" and server.streams == 2


def test_bad_audiohook_input_is_counted_and_the_call_goes_on():
    conversation = str(uuid.uuid4())
    customer = tone(500, 1.0)

    async def session(server, collected):
        client = await audiohook(server)
        await client.open(conversation)
        await client.audio(customer[:2000], customer[:2000])
        await client.ws.send("{not json")
        await client.ws.send(json.dumps([1, 2, 3]))
        await client.send("dance", {})  # unknown type
        await client.send("ping", {}, seq=99)  # wrong seq: still answered
        pong = await client.receive()
        client.seq = 99
        await client.ws.send(b"\x01\x02\x03")  # not whole stereo samples: the last byte dropped
        client.samples += 1
        await client.ws.send(b"x" * 70000)  # over max_message_bytes: dropped
        await client.audio(customer[2000:], customer[2000:])
        closed = await client.close()
        await asyncio.wait_for(collected.done.wait(), 5)
        return pong, closed

    collected, _, notices, (pong, closed) = run(session, max_message_bytes=65536)
    assert pong["type"] == "pong" and closed["type"] == "closed"
    [call] = collected.calls
    assert dict(call.stats.problems) == {"bad_json": 2, "unknown_message": 1, "bad_seq": 1, "bad_frame": 1, "oversized": 1}
    assert call.end_reason == "hangup"
    assert len(collected.audio(conversation, "customer")) == 8000 + 1  # the one whole sample of the odd frame kept
    kept: list = []
    call.attach_notices(kept.append)  # the first of each code, kept until someone listens
    assert [n.code for n in kept] == ["bad_json", "unknown_message", "bad_seq", "bad_frame", "oversized"]


def test_an_audiohook_client_that_disconnects_mid_call_ends_it_keeping_the_audio():
    conversation = str(uuid.uuid4())

    async def session(server, collected):
        client = await audiohook(server)
        await client.open(conversation)
        await client.audio(tone(600, 0.5), tone(700, 0.5))
        await client.ws.close()  # no close transaction
        await asyncio.wait_for(collected.done.wait(), 5)

    collected, server, _, _ = run(session)
    [call] = collected.calls
    assert call.end_reason == "stream_lost" and collected.errors[conversation] == "stream_lost"
    assert len(collected.audio(conversation, "customer")) == 4000
    assert server.running == 0


def test_an_organization_id_that_differs_from_the_header_is_disconnected_unauthorized():
    async def session(server, collected):
        client = await audiohook(server)
        client.organization_id = str(uuid.uuid4())  # the open message names another organization than the signed header
        answer = await client.open(str(uuid.uuid4()))
        closed = await client.close()
        return answer, closed

    collected, _, _, (answer, closed) = run(session)
    assert answer["type"] == "disconnect" and answer["parameters"]["reason"] == "unauthorized"
    assert closed["type"] == "closed" and not collected.calls


def test_more_streams_than_max_calls_are_refused_with_503():
    async def streams(server, collected):
        first = await audiohook(server)
        await first.open(str(uuid.uuid4()))
        with pytest.raises(InvalidStatus) as refused:
            await TwilioClient(server.port).connect()
        await first.close()
        return refused.value.response.status_code

    _, server, notices, status = run(streams, max_calls=1)
    assert status == 503 and server.refused["over_capacity"] == 1 and notices[0].code == "over_capacity"


def test_an_unknown_path_is_404_and_a_silent_connection_is_closed_after_open_timeout():
    async def attempt(server, collected):
        with pytest.raises(InvalidStatus) as missing:
            await connect(f"ws://127.0.0.1:{server.port}/elsewhere")
        silent = await TwilioClient(server.port).connect()
        await asyncio.wait_for(silent.ws.wait_closed(), 5)
        return missing.value.response.status_code, silent.ws.close_code

    _, server, _, (status, code) = run(attempt, open_timeout_s=0.5)
    assert status == 404 and code == 1008 and server.problems["open_timeout"] == 1


# --------------------------------------------------------------------------- Twilio


def test_a_twilio_stream_with_both_tracks_is_the_customer_inbound_and_the_partner_outbound():
    inbound, outbound = tone(440, 1.0), tone(660, 1.0)

    async def stream(server, collected):
        client = await TwilioClient(server.port, auth_token="twilio-auth-token").connect()
        await client.start(custom={"partner": "lee", "seat": "7"})
        await client.both(inbound, outbound)
        await client.stop()
        await asyncio.wait_for(collected.done.wait(), 5)
        return client

    collected, server, _, client = run(stream, twilio_auth_token="twilio-auth-token")
    [call] = collected.calls
    assert (call.call_id, call.source_kind, call.partner, call.seat) == (client.call_sid, "twilio", "lee", "7")
    assert call.end_reason == "hangup" and not call.stats.problems
    assert np.array_equal(collected.audio(client.call_sid, "customer"), g711(inbound))
    assert np.array_equal(collected.audio(client.call_sid, "partner"), g711(outbound))


def test_the_customer_track_is_configurable():
    async def stream(server, collected):
        client = await TwilioClient(server.port).connect()
        await client.start()
        await client.both(tone(440, 0.2), tone(660, 0.2))
        await client.stop()
        await asyncio.wait_for(collected.done.wait(), 5)
        return client

    collected, _, _, client = run(stream, twilio_customer_track="outbound")
    assert np.array_equal(collected.audio(client.call_sid, "customer"), g711(tone(660, 0.2)))


def test_a_twilio_upgrade_with_a_wrong_signature_is_refused_with_403():
    async def attempt(server, collected):
        statuses = []
        for token, url in (("not-the-token", None), ("twilio-auth-token", "wss://elsewhere.example.com/twilio"), (None, None)):
            with pytest.raises(InvalidStatus) as refused:
                await TwilioClient(server.port, auth_token=token, signed_url=url).connect()
            statuses.append(refused.value.response.status_code)
        good = await TwilioClient(server.port, auth_token="twilio-auth-token", signed_url="wss://callshield.example.com/twilio").connect()
        await good.ws.close()
        return statuses

    _, server, _, statuses = run(attempt, twilio_auth_token="twilio-auth-token", twilio_url="wss://callshield.example.com")
    assert statuses == [403, 403, 403] and server.refused["unauthorized"] == 3 and server.streams == 1


def test_bad_twilio_input_is_counted_and_the_call_goes_on():
    inbound = tone(440, 0.4)

    async def stream(server, collected):
        client = await TwilioClient(server.port).connect()
        await client.start()
        await client.media("inbound", inbound[:1600])
        await client.send({"event": "media", "media": {"track": "inbound", "chunk": "99", "timestamp": "200", "payload": "@@not base64@@"}})
        await client.ws.send("[]")
        await client.send({"event": "wave"})
        await client.send({"event": "mark", "mark": {"name": "nobody asked"}})
        await client.send({"event": "dtmf", "dtmf": {"track": "inbound_track", "digit": "5"}})
        await client.ws.send(b"\x00\x01")
        client.sequence += 5  # a gap in sequenceNumber
        client.chunks["inbound"] += 1  # chunk 3 never arrives: lost
        client.sent["inbound"] += 160
        await client.media("inbound", inbound[1760:])
        await client.stop()
        await asyncio.wait_for(collected.done.wait(), 5)
        return client

    collected, _, _, client = run(stream)
    [call] = collected.calls
    assert dict(call.stats.problems) == {"bad_payload": 1, "bad_json": 1, "unknown_message": 1, "unexpected_mark": 1, "bad_frame": 1, "bad_seq": 2}
    assert call.stats.lost_samples == 160 and call.end_reason == "hangup"
    got = collected.audio(client.call_sid, "customer")
    assert np.array_equal(got[:1600], g711(inbound[:1600])) and not got[1600:1760].any() and np.array_equal(got[1760:], g711(inbound[1760:]))


def test_a_message_beyond_four_times_the_limit_closes_the_connection_1009_keeping_the_call():
    conversation = str(uuid.uuid4())

    async def session(server, collected):
        client = await audiohook(server)
        await client.open(conversation)
        await client.audio(tone(440, 0.2), tone(550, 0.2))
        await client.ws.send(b"\xff" * 2000)  # over max_message_bytes, under 4x: dropped
        await client.ws.send(b"\xff" * 5000)  # over 4x: the library closes the connection
        await asyncio.wait_for(client.ws.wait_closed(), 5)
        await asyncio.wait_for(collected.done.wait(), 5)
        return client.ws.close_code

    collected, server, _, code = run(session, max_message_bytes=1024)
    [call] = collected.calls
    assert code == 1009 and call.end_reason == "stream_lost" and call.stats.problems["oversized"] == 1
    assert len(collected.audio(conversation, "customer")) == 1600 and server.running == 0
