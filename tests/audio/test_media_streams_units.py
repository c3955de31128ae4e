"""Units of the websocket media streams: signatures against the specifications'
test vectors, the structured-field parser, the AudioHook and Twilio sessions
(sans I/O), the call's time line and the ``[media_streams]`` section."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import uuid

import numpy as np
import pytest

from audio.errors import MediaStreamError
from audio.g711 import decode_ulaw, encode_ulaw
from audio.media_streams import AudioHookSession, MediaStreamsConfig, StreamCall, TwilioStream
from audio.media_streams.audiohook import format_duration, parse_duration
from audio.media_streams.call import Step
from audio.media_streams.signatures import (
    NonceCache,
    SignedRequest,
    parse_dictionary,
    serialize_inner_list,
    twilio_signature,
    verify_audiohook,
    verify_twilio,
)

# --------------------------------------------------------------------------- AudioHook signature: the spec's example request

SPEC_KEY = "SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh"
SPEC_SECRET = base64.b64decode("TXlTdXBlclNlY3JldEtleVRlbGxOby0xITJAMyM0JDU=")
SPEC_HEADERS = {
    "host": "audiohook.example.com",
    "audiohook-organization-id": "d7934305-0972-4844-938e-9060eef73d05",
    "audiohook-correlation-id": "e160e428-53e2-487c-977d-96989bf5c99d",
    "audiohook-session-id": "30b0e395-84d3-4570-ac13-9a62d8f514c0",
    "x-api-key": SPEC_KEY,
    "signature": "sig1=:NZBwyBHRRyRoeLqy1IzOa9VYBuI8TgMFt2GRDkDuJh4=:",
    "signature-input": 'sig1=("@request-target" "@authority" "audiohook-organization-id" "audiohook-session-id" '
                       '"audiohook-correlation-id" "x-api-key");keyid="SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh";'
                       'nonce="VGhpc0lzQVVuaXF1ZU5vbmNl";alg="hmac-sha256";created=1641013200;expires=3282026430',
}
SPEC_TARGET = "/api/v1/voicebiometrics/ws"
SPEC_NOW = 1641013202


def spec_request(**changes) -> SignedRequest:
    return SignedRequest("GET", changes.pop("target", SPEC_TARGET), {**SPEC_HEADERS, **changes})


def test_the_audiohook_specification_example_request_verifies():
    assert verify_audiohook(spec_request(), {SPEC_KEY: SPEC_SECRET}, now=SPEC_NOW, max_age_s=10) == SPEC_KEY


@pytest.mark.parametrize("changes, now, reason", [
    ({"audiohook-session-id": "30b0e395-84d3-4570-ac13-9a62d8f514c1"}, SPEC_NOW, "does not match"),
    ({"host": "evil.example.com"}, SPEC_NOW, "does not match"),
    ({"target": "/api/v1/other"}, SPEC_NOW, "does not match"),
    ({"signature": "sig1=:NZBwzBHRRyRoeLqy1IzOa9VYBuI8TgMFt2GRDkDuJh4=:"}, SPEC_NOW, "does not match"),
    ({"x-api-key": "another-key"}, SPEC_NOW, "keyid is not the X-API-KEY"),
    ({"x-api-key": "unknown-key"}, SPEC_NOW, "unknown API key"),
    ({}, SPEC_NOW + 60, "too old"),
    ({}, 1641013200 - 60, "in the future"),
    ({"signature-input": SPEC_HEADERS["signature-input"].replace("expires=3282026430", "expires=1641013201")}, SPEC_NOW, "expired"),
    ({"signature-input": SPEC_HEADERS["signature-input"].replace(' "x-api-key"', "")}, SPEC_NOW, "does not cover x-api-key"),
    ({"signature-input": SPEC_HEADERS["signature-input"].replace("hmac-sha256", "rsa-pss-sha512")}, SPEC_NOW, "not hmac-sha256"),
    ({"signature-input": SPEC_HEADERS["signature-input"].replace(';nonce="VGhpc0lzQVVuaXF1ZU5vbmNl"', "")}, SPEC_NOW, "no nonce"),
    ({"signature-input": "sig1=(\"@request-target\""}, SPEC_NOW, "malformed"),
    ({"signature": "sig2=:NZBwyBHRRyRoeLqy1IzOa9VYBuI8TgMFt2GRDkDuJh4=:"}, SPEC_NOW, "no Signature sig1"),
])
def test_a_changed_audiohook_request_is_refused_with_its_reason(changes, now, reason):
    with pytest.raises(MediaStreamError) as refused:
        verify_audiohook(spec_request(**changes), {SPEC_KEY: SPEC_SECRET, "another-key": b"x"}, now=now, max_age_s=10)
    assert refused.value.code == "unauthorized" and reason in refused.value.message
    assert "TXlTdXBl" not in refused.value.message


def test_the_wrong_client_secret_fails_and_a_nonce_is_taken_once():
    with pytest.raises(MediaStreamError, match="does not match"):
        verify_audiohook(spec_request(), {SPEC_KEY: b"wrong"}, now=SPEC_NOW, max_age_s=10)
    nonces = NonceCache()
    verify_audiohook(spec_request(), {SPEC_KEY: SPEC_SECRET}, now=SPEC_NOW, max_age_s=10, nonces=nonces)
    with pytest.raises(MediaStreamError, match="already used"):
        verify_audiohook(spec_request(), {SPEC_KEY: SPEC_SECRET}, now=SPEC_NOW + 1, max_age_s=10, nonces=nonces)
    assert not nonces.seen("VGhpc0lzQVVuaXF1ZU5vbmNl", until=SPEC_NOW + 100, now=SPEC_NOW + 60)  # expired: forgotten


def test_unsigned_requests_pass_only_for_a_key_without_a_client_secret():
    unsigned = {k: v for k, v in SPEC_HEADERS.items() if k not in ("signature", "signature-input")}
    request = SignedRequest("GET", SPEC_TARGET, unsigned)
    assert verify_audiohook(request, {SPEC_KEY: b""}, now=SPEC_NOW, max_age_s=10) == SPEC_KEY
    with pytest.raises(MediaStreamError, match="not signed"):
        verify_audiohook(request, {SPEC_KEY: SPEC_SECRET}, now=SPEC_NOW, max_age_s=10)


def independent_hmac_sha256_signature(base: str, key: bytes) -> bytes:
    return hmac.new(key, base.encode(), hashlib.sha256).digest()


def test_the_signature_base_is_the_rfc_one_line_per_component():
    """Against the base written out by hand as the RFC (and the Genesys forum's worked example) shows it."""
    by_hand = "\n".join([
        '"@request-target": /api/v1/voicebiometrics/ws',
        '"@authority": audiohook.example.com',
        '"audiohook-organization-id": d7934305-0972-4844-938e-9060eef73d05',
        '"audiohook-session-id": 30b0e395-84d3-4570-ac13-9a62d8f514c0',
        '"audiohook-correlation-id": e160e428-53e2-487c-977d-96989bf5c99d',
        '"x-api-key": SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh',
        '"@signature-params": ' + SPEC_HEADERS["signature-input"][len("sig1="):],
    ])
    assert base64.b64encode(independent_hmac_sha256_signature(by_hand, SPEC_SECRET)).decode() == "NZBwyBHRRyRoeLqy1IzOa9VYBuI8TgMFt2GRDkDuJh4="
    parsed = parse_dictionary(SPEC_HEADERS["signature-input"])["sig1"]
    assert serialize_inner_list(parsed) == SPEC_HEADERS["signature-input"][len("sig1="):]


def test_the_rfc_9421_b_2_5_hmac_example_verifies_with_the_same_base_rules():
    """RFC 9421 appendix B.2.5 (HMAC-SHA256 with the shared test key)."""
    key = base64.b64decode("uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ==")
    from audio.media_streams.signatures import signature_base

    request = SignedRequest("POST", "/foo?param=Value&Pet=dog", {"host": "example.com", "date": "Tue, 20 Apr 2021 02:07:55 GMT",
                                                                 "content-type": "application/json"})
    covered = parse_dictionary('sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret"')["sig-b25"]
    digest = hmac.new(key, signature_base(request, covered).encode(), hashlib.sha256).digest()
    assert base64.b64encode(digest).decode() == "pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8="


@pytest.mark.parametrize("text", ['a=("x"', "a=:not base64!:", 'a="unterminated', "a=(1 2", "=1", "a=1,", 'a="\\x"', "a=" + "x" * 5000])
def test_malformed_structured_fields_are_value_errors(text):
    with pytest.raises(ValueError):
        parse_dictionary(text)


# --------------------------------------------------------------------------- Twilio signature: the documentation's example


def test_the_twilio_documentation_example_signature():
    params = {"CallSid": "CA1234567890ABCDE", "Caller": "+12349013030", "Digits": "1234", "From": "+12349013030", "To": "+18005551212"}
    assert twilio_signature("12345", "https://mycompany.com/myapp.php?foo=1&bar=2", params) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


def test_a_twilio_upgrade_is_checked_against_the_url_alone():
    url = "wss://callshield.example.com/twilio"
    good = base64.b64encode(hmac.new(b"token", url.encode(), hashlib.sha1).digest()).decode()
    verify_twilio("token", url, good)
    for signature in (None, "", good[:-2] + "x=", "\u00e9"):
        with pytest.raises(MediaStreamError):
            verify_twilio("token", url, signature)
    with pytest.raises(MediaStreamError):
        verify_twilio("token", url + "?x=1", good)


# --------------------------------------------------------------------------- AudioHook session


SESSION = str(uuid.uuid4())
ORG = str(uuid.uuid4())


def client(kind: str, seq: int, position: float = 0.0, **parameters) -> str:
    return json.dumps({"version": "2", "id": SESSION, "type": kind, "seq": seq, "serverseq": 0,
                       "position": format_duration(position), "parameters": parameters})


def opened_session(channels=("external", "internal")) -> AudioHookSession:
    session = AudioHookSession(SESSION, ORG)
    step = session.receive_text(client("open", 1, organizationId=ORG, conversationId=str(uuid.uuid4()),
                                       participant={"id": str(uuid.uuid4()), "ani": "+1", "aniName": "", "dnis": "+2"},
                                       media=[{"type": "audio", "format": "PCMU", "channels": list(channels), "rate": 8000}]))
    assert step.opened is not None and not step.problems
    return session


def test_durations_round_trip_and_garbage_is_refused():
    assert parse_duration("PT1.25S") == 1.25 and parse_duration("PT0S") == 0 and parse_duration("PT.5S") == 0.5
    assert format_duration(1.25) == "PT1.25S" and format_duration(2) == "PT2S"
    for bad in ("1.25", "PT-1S", "PTS", "PT1M", None, 5, "PT1.5S " * 3):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_stereo_pcmu_is_split_external_customer_internal_partner_on_the_time_line():
    session = opened_session()
    customer, partner = np.arange(-800, 800, 10, dtype=np.int16), np.arange(800, -800, -10, dtype=np.int16)
    frame = encode_ulaw(np.stack([customer, partner], axis=1))
    step = session.receive_audio(frame)
    (s1, a1, t1), (s2, a2, t2) = step.chunks
    assert (s1, s2, t1, t2) == ("customer", "partner", 0, 0)
    assert np.array_equal(a1, decode_ulaw(encode_ulaw(customer))) and np.array_equal(a2, decode_ulaw(encode_ulaw(partner)))
    assert session.receive_audio(frame).chunks[0][2] == 160


def test_channels_in_the_other_order_still_map_by_name():
    session = opened_session(("internal", "external"))
    frame = encode_ulaw(np.array([[1000, -1000]] * 4, dtype=np.int16))
    speakers = {speaker: samples[0] for speaker, samples, _ in session.receive_audio(frame).chunks}
    assert speakers["partner"] > 0 > speakers["customer"]


def test_pause_and_discarded_leave_gaps_one_silence_one_loss():
    session = opened_session()
    session.receive_audio(bytes(320))  # 160 samples per channel
    assert session.receive_text(client("paused", 2, 0.02)).problems == []
    step = session.receive_text(client("resumed", 3, 0.02, start="PT0.02S", discarded="PT1.5S"))
    assert (step.paused_samples, step.lost_samples) == (12000, 0)
    step = session.receive_text(client("discarded", 4, 0.02, start="PT0.02S", discarded="PT0.1S"))
    assert (step.paused_samples, step.lost_samples) == (0, 800)
    assert session.receive_audio(bytes(2)).chunks[0][2] == 160 + 12000 + 800


def test_a_position_ahead_of_the_audio_is_lost_audio_skipped_over():
    session = opened_session()
    session.receive_audio(bytes(320))
    step = session.receive_text(client("ping", 2, 0.5))
    assert step.lost_samples == 4000 - 160 and step.problems[0][0] == "bad_position"
    assert session.receive_audio(bytes(2)).chunks[0][2] == 4000


@pytest.mark.parametrize("text, code", [
    ("{", "bad_json"), ("[]", "bad_json"), ('"x"', "bad_json"), ("[" * 100000 + "]" * 100000, "bad_json"),
    (json.dumps({"type": "ping"}), "bad_message"),
    (client("ping", 2).replace('"version": "2"', '"version": "1"'), "bad_message"),
    (client("ping", 2).replace('"PT0S"', '"0"'), "bad_message"),
    (client("frobnicate", 2), "unknown_message"),
    (client("ping", 2).replace(SESSION, str(uuid.uuid4())), "bad_message"),
    (client("resumed", 2, start="PT0S", discarded="soon"), "bad_message"),
])
def test_bad_audiohook_messages_are_problems_not_errors(text, code):
    session = opened_session()
    step = session.receive_text(text)
    assert [c for c, _ in step.problems] == [code] and session.state == "active"


def test_seq_gaps_are_counted_and_resynchronized():
    session = opened_session()
    assert [c for c, _ in session.receive_text(client("ping", 5)).problems] == ["bad_seq"]
    assert session.receive_text(client("ping", 6)).problems == []


def test_open_without_pcmu_is_answered_with_no_media_and_audio_then_is_dropped():
    session = AudioHookSession(SESSION)
    step = session.receive_text(client("open", 1, organizationId=ORG, conversationId=str(uuid.uuid4()), participant={},
                                       media=[{"type": "audio", "format": "L16", "channels": ["external"], "rate": 8000}]))
    assert step.opened is None and step.replies[0]["parameters"]["media"] == []
    assert [c for c, _ in session.receive_audio(bytes(10)).problems] == ["bad_frame"]


def test_audio_before_open_is_dropped_and_close_is_answered_once():
    session = AudioHookSession(SESSION)
    assert [c for c, _ in session.receive_audio(bytes(10)).problems] == ["bad_frame"]
    step = session.receive_text(client("close", 1, reason="end"))
    assert step.closed and step.replies[0]["type"] == "closed"
    assert not session.receive_text(client("close", 2, reason="end")).closed


# --------------------------------------------------------------------------- Twilio stream


def twilio(event: str, n: int, **body) -> str:
    return json.dumps({"event": event, "sequenceNumber": str(n), "streamSid": "MZ1", **body})


START = {"accountSid": "AC1", "streamSid": "MZ1", "callSid": "CA1", "tracks": ["inbound", "outbound"],
         "customParameters": {"partner": "kim", "seat": "3", "x": 5},
         "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}


def started(customer_track: str = "inbound") -> TwilioStream:
    stream = TwilioStream(customer_track)
    stream.receive_text(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
    step = stream.receive_text(twilio("start", 1, start=START))
    assert step.opened.call_sid == "CA1" and step.opened.name("partner") == "kim" and not step.problems
    assert "x" not in step.opened.custom_parameters
    return stream


def media(n: int, track: str, chunk: int, timestamp: int, samples: np.ndarray) -> str:
    return twilio("media", n, media={"track": track, "chunk": str(chunk), "timestamp": str(timestamp),
                                     "payload": base64.b64encode(encode_ulaw(samples)).decode()})


def test_twilio_media_lands_at_its_timestamp_per_track():
    stream = started()
    tone = (np.sin(np.arange(160) / 3) * 5000).astype(np.int16)
    [(speaker, samples, start)] = stream.receive_text(media(2, "inbound", 1, 0, tone)).chunks
    assert (speaker, start) == ("customer", 0) and np.array_equal(samples, decode_ulaw(encode_ulaw(tone)))
    assert stream.receive_text(media(3, "outbound", 1, 0, tone)).chunks[0][:1] == ("partner",)
    assert stream.receive_text(media(4, "inbound", 2, 20, tone)).chunks[0][2] == 160
    assert stream.receive_text(media(5, "inbound", 3, 39, tone)).chunks[0][2] == 320  # a ms early: never overlaps


def test_the_outbound_track_may_be_the_customer():
    stream = started("outbound")
    assert stream.receive_text(media(2, "outbound", 1, 0, np.zeros(160, np.int16))).chunks[0][0] == "customer"


@pytest.mark.parametrize("text, code", [
    ("nope", "bad_json"), ("{}", "bad_json"),
    (twilio("media", 2, media={"track": "inbound", "chunk": "1", "timestamp": "0", "payload": "!!!"}), "bad_payload"),
    (twilio("media", 2, media={"track": "sideways", "chunk": "1", "timestamp": "0", "payload": ""}), "bad_message"),
    (twilio("media", 2, media={"track": "inbound", "chunk": "1", "timestamp": "-3", "payload": ""}), "bad_message"),
    (twilio("media", 2), "bad_message"),
    (twilio("teleport", 2), "unknown_message"),
    (json.dumps({"event": "media", "sequenceNumber": "2", "streamSid": "MZ-other", "media": {}}), "bad_message"),
    (twilio("start", 2, start=START), "bad_message"),
])
def test_bad_twilio_messages_are_problems_not_errors(text, code):
    stream = started()
    assert [c for c, _ in stream.receive_text(text).problems] == [code] and stream.state == "started"


def test_a_start_that_is_not_mulaw_8000_opens_no_call():
    stream = TwilioStream()
    step = stream.receive_text(twilio("start", 1, start={**START, "mediaFormat": {"encoding": "audio/l16", "sampleRate": 16000}}))
    assert step.opened is None and step.problems[0][0] == "bad_message"
    assert [c for c, _ in stream.receive_text(media(2, "inbound", 1, 0, np.zeros(160, np.int16))).problems] == ["bad_frame"]


def test_dtmf_is_counted_never_kept_and_stop_ends():
    stream = started()
    assert stream.receive_text(twilio("dtmf", 2, dtmf={"track": "inbound_track", "digit": "7"})).problems == []
    assert stream.dtmf == 1 and "7" not in repr(vars(stream))
    assert stream.receive_text(twilio("stop", 3, stop={"accountSid": "AC1", "callSid": "CA1"})).closed


# --------------------------------------------------------------------------- the call


def test_a_stream_call_drops_the_oldest_chunk_when_full_and_counts_it():
    async def main():
        call = StreamCall(call_id="c", source_kind="twilio", sample_rate=8000, queue_chunks=2)
        for i in range(3):
            call.deliver("customer", np.full(160, i, np.int16), i * 160)
        call.apply(Step(problems=[("bad_json", "x"), ("bad_json", "y")], paused_samples=8000, lost_samples=80))
        call.end("hangup")
        return call, [c.start_sample async for c in call.audio()]

    call, starts = asyncio.run(main())
    assert starts == [160, 320] and call.dropped_chunks == 1
    assert call.stats.samples_received["customer"] == 480 and call.stats.samples_delivered["customer"] == 320
    assert call.stats.problems["bad_json"] == 2
    assert "paused 1.0 s" in call.summary() and "lost 0.01 s" in call.summary() and "bad_json x2" in call.summary()


def test_a_lost_stream_raises_after_its_last_chunk():
    async def main():
        call = StreamCall(call_id="c", source_kind="audiohook", sample_rate=8000, queue_chunks=4)
        call.deliver("partner", np.zeros(80, np.int16), 0)
        call.end("stream_lost")
        got = []
        with pytest.raises(MediaStreamError) as lost:
            async for chunk in call.audio():
                got.append(chunk)
        return got, lost.value.code

    got, code = asyncio.run(main())
    assert len(got) == 1 and code == "stream_lost"


# --------------------------------------------------------------------------- [media_streams]


def test_the_section_reads_keys_inline_and_from_a_file_and_hides_secrets(tmp_path):
    secret = base64.b64encode(b"s3cret-bytes").decode()
    keys_file = tmp_path / "keys.toml"
    keys_file.write_text(f'"file-key" = "{secret}"\n"open-key" = ""\n')
    token_file = tmp_path / "token"
    token_file.write_text("tok-from-file\n")
    config = MediaStreamsConfig.from_section({"audiohook_keys": {"inline-key": secret}, "audiohook_keys_file": str(keys_file),
                                              "twilio_auth_token_file": str(token_file), "twilio_customer_track": "outbound"})
    assert config.api_keys() == {"inline-key": b"s3cret-bytes", "file-key": b"s3cret-bytes", "open-key": b""}
    assert config.auth_token() == "tok-from-file"
    assert secret not in repr(config) and "inline-key" not in repr(config)
    assert secret not in repr(MediaStreamsConfig(twilio_auth_token=secret))


@pytest.mark.parametrize("table, words", [
    ({"audiohook_keys": {"k": "not base64!"}}, "not base64"),
    ({"audiohook_keys": ["k"]}, "table of API key"),
    ({"twilio_customer_track": "both"}, "inbound, outbound"),
    ({"twilio_path": "/same", "audiohook_path": "/same"}, "differ"),
    ({"twilio_url": "https://x"}, "wss://"),
    ({"max_calls": 0}, "at least 1"),
    ({"port": 70000}, "0..65535"),
    ({"no_such": 1}, "unknown key"),
])
def test_bad_settings_are_one_line_config_errors(table, words):
    with pytest.raises(MediaStreamError) as bad:
        MediaStreamsConfig.from_section(table)
    assert bad.value.code == "bad_config" and words in bad.value.message and "[media_streams]" in bad.value.message


def test_an_unreadable_keys_file_is_a_config_error_naming_the_file(tmp_path):
    config = MediaStreamsConfig.from_section({"audiohook_keys_file": str(tmp_path / "missing.toml")})
    with pytest.raises(MediaStreamError, match="missing.toml"):
        config.api_keys()
