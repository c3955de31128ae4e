"""RTP payloads to 8 kHz audio: PCMU/PCMA against sox's raw .ul/.al files, G.722 through libg722, the codec map."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from audio_kit import sox

from audio.errors import RtpError
from audio.g711 import decode_alaw, decode_ulaw
from audio.rtp.codecs import AUDIO_CODECS, SUPPORTED, PayloadDecoder, codec_name, encode_g722
from audio.rtp.sender import STATIC_TYPES, encode_payloads, packetize
from audio.wav import read_wav
from speech import speak, write_pcm16


@pytest.fixture(scope="module")
def speech_8k() -> np.ndarray:
    return speak("안녕하세요 고객센터입니다", rate=8000)


@pytest.mark.parametrize("codec, raw, reference", [("PCMU", "ul", decode_ulaw), ("PCMA", "al", decode_alaw)])
def test_sox_encoded_raw_payloads_decode_as_sox_decodes_them(tmp_path, speech_8k, codec, raw, reference):
    """sox writes the raw G.711 bytes an RTP payload carries (.ul/.al); cut into 20 ms
    payloads, our decoder must give exactly the samples sox decodes from the same bytes."""
    wav = write_pcm16(tmp_path / "speech.wav", speech_8k, 8000)
    sox(wav, "-t", raw, "-r", "8000", "-c", "1", tmp_path / f"speech.{raw}")
    sox("-t", raw, "-r", "8000", "-c", "1", tmp_path / f"speech.{raw}", "-e", "signed-integer", "-b", "16", tmp_path / "back.wav")
    encoded = (tmp_path / f"speech.{raw}").read_bytes()
    _, by_sox = read_wav(tmp_path / "back.wav")
    decoder = PayloadDecoder({STATIC_TYPES[codec]: f"{codec}/8000"})
    ours = np.concatenate([decoder.decode(STATIC_TYPES[codec], encoded[i:i + 160]) for i in range(0, len(encoded), 160)])
    np.testing.assert_array_equal(ours, by_sox[:, 0])
    np.testing.assert_array_equal(ours, reference(encoded))


@pytest.mark.parametrize("codec", ["PCMU", "PCMA"])
def test_our_packets_carry_what_sox_would_encode_within_one_level(tmp_path, speech_8k, codec):
    raw = {"PCMU": "ul", "PCMA": "al"}[codec]
    wav = write_pcm16(tmp_path / "speech.wav", speech_8k, 8000)
    sox(wav, "-t", raw, "-r", "8000", "-c", "1", tmp_path / f"speech.{raw}")
    by_sox = (tmp_path / f"speech.{raw}").read_bytes()
    ours = b"".join(p.payload for p in packetize(speech_8k, codec=codec))[: len(by_sox)]
    decode = decode_ulaw if codec == "PCMU" else decode_alaw
    a, b = decode(ours).astype(np.int32), decode(by_sox).astype(np.int32)
    step = np.maximum(np.abs(b) // 16, 8)  # a quantization level at that magnitude, loosely
    assert np.all(np.abs(a - b) <= 2 * step)


def test_g722_payloads_decode_to_the_speech_they_carry(speech_8k):
    decoder = PayloadDecoder({9: "G722/8000"})
    payloads = encode_payloads(speech_8k, "G722")
    assert {len(p) for p in payloads} == {160}  # 20 ms at 64 kbit/s; the RTP clock counts 8000 per second
    out = np.concatenate([decoder.decode(9, p) for p in payloads])
    assert len(out) == len(payloads) * 160
    x = speech_8k.astype(np.float64)
    lag = max(range(40), key=lambda k: float(np.dot(x[: len(x) - 40], out[k:len(x) - 40 + k])))
    corr = np.corrcoef(x[: len(x) - 40], out[lag:len(x) - 40 + lag])[0, 1]
    assert corr > 0.9, f"G.722 round trip correlates {corr:.2f} at lag {lag}"


def test_g722_state_is_per_sender_and_reset_starts_it_fresh(speech_8k):
    encoded = encode_g722(speech_8k[:1600])
    decoder = PayloadDecoder({9: "G722/8000"})
    first = decoder.decode(9, encoded)
    decoder.reset()
    assert np.array_equal(decoder.decode(9, encoded), first)  # the same bytes from a fresh state: the same audio


def test_supported_names_what_the_sdp_answer_may_keep():
    assert {"PCMU/8000", "PCMA/8000", "telephone-event/8000", "CN/8000"} <= SUPPORTED
    assert "G722/8000" in SUPPORTED and "G722/8000" in AUDIO_CODECS
    assert "telephone-event/8000" not in AUDIO_CODECS


@pytest.mark.parametrize("value, name", [
    ("PCMU/8000", "PCMU/8000"), ("pcmu/8000", "PCMU/8000"), ("PCMA/8000/1", "PCMA/8000"),
    ("telephone-event/8000", "telephone-event/8000"), ("TELEPHONE-EVENT/8000", "telephone-event/8000"),
    ("g722/8000", "G722/8000"), ("opus/48000/2x", None), ("L16/8000/2", None), ("PCMU", None), ("/8000", None),
    ("opus/48000", "opus/48000"),
])
def test_rtpmap_names_are_normalised(value, name):
    if name is None:
        with pytest.raises(RtpError) as caught:
            codec_name(value)
        assert caught.value.code == "bad_codec"
    else:
        assert codec_name(value) == name


def test_a_codec_map_with_an_unsupported_codec_or_type_is_refused():
    for codecs in ({96: "opus/48000/2"}, {0: "PCMU/16000"}, {128: "PCMU/8000"}, {-1: "PCMA/8000"}):
        with pytest.raises(RtpError) as caught:
            PayloadDecoder(codecs)
        assert caught.value.code == "bad_codec"


def test_payload_kinds():
    decoder = PayloadDecoder({0: "PCMU/8000", 101: "telephone-event/8000", 13: "CN/8000", 98: "pcma/8000"})
    assert [decoder.kind(pt) for pt in (0, 98, 101, 13, 8, 96)] == ["audio", "audio", "event", "comfort_noise", None, None]
    assert decoder.samples(0, b"\xff" * 240) == 240


@given(st.text(max_size=40))
def test_any_rtpmap_value_is_named_or_bad_codec(value):
    try:
        name = codec_name(value)
    except RtpError as exc:
        assert exc.code == "bad_codec"
    else:
        assert "/" in name
