"""G.711 mu-law / A-law against the reference tables and against sox."""

from __future__ import annotations

import numpy as np
import pytest
from audio_kit import sox

from audio.g711 import decode_alaw, decode_ulaw, encode_alaw, encode_ulaw
from audio.wav import read_wav
from speech import write_pcm16

LAWS = {"mu-law": (encode_ulaw, decode_ulaw), "a-law": (encode_alaw, decode_alaw)}


def _data_bytes(path) -> bytes:
    raw = path.read_bytes()
    at = raw.index(b"data")
    size = int.from_bytes(raw[at + 4:at + 8], "little")
    return raw[at + 8:at + 8 + size]


def _every_int16() -> np.ndarray:
    return np.arange(-32768, 32768, dtype=np.int32).astype(np.int16)


def test_known_code_points():
    # mu-law: 0xFF and 0x7F are +0 and -0, 0x80 / 0x00 the extremes (+-32124).
    assert decode_ulaw(bytes([0xFF, 0x7F, 0x80, 0x00])).tolist() == [0, 0, 32124, -32124]
    # A-law: 0xD5 / 0x55 are the smallest levels (+-8), 0xAA / 0x2A the extremes (+-32256).
    assert decode_alaw(bytes([0xD5, 0x55, 0xAA, 0x2A])).tolist() == [8, -8, 32256, -32256]
    assert encode_ulaw(np.array([0, 32767, -32768], dtype=np.int16)) == bytes([0xFF, 0x80, 0x00])
    assert encode_alaw(np.array([0, 32767, -32768], dtype=np.int16)) == bytes([0xD5, 0xAA, 0x2A])


@pytest.mark.parametrize("law", LAWS)
def test_every_code_round_trips(law):
    encode, decode = LAWS[law]
    codes = bytes(range(256))
    again = encode(decode(codes))
    if law == "mu-law":  # 0x7F is mu-law's negative zero; zero encodes as 0xFF
        assert again[0x7F] == 0xFF
        again = again[:0x7F] + bytes([0x7F]) + again[0x80:]
    assert again == codes


@pytest.mark.parametrize("law", LAWS)
def test_encoding_error_stays_within_one_quantization_step(law):
    encode, decode = LAWS[law]
    x = _every_int16()
    y = decode(encode(x)).astype(np.int32)
    levels = np.unique(decode(bytes(range(256))).astype(np.int32))
    step = np.diff(levels)
    # the step of the interval each sample falls in
    idx = np.clip(np.searchsorted(levels, x.astype(np.int32)) - 1, 0, len(step) - 1)
    inside = (x >= levels[0]) & (x <= levels[-1])
    assert np.all(np.abs(y - x)[inside] <= step[idx][inside])
    assert np.abs(y - x).max() <= 1100  # clipping at the top of the range
    assert np.all(np.sign(y[np.abs(x) > 64]) == np.sign(x[np.abs(x) > 64]))


@pytest.mark.parametrize("law", LAWS)
def test_decoder_agrees_exactly_with_sox(tmp_path, law):
    """sox encodes a full-range ramp and decodes it back; our decoder must give the very same samples."""
    _, decode = LAWS[law]
    ramp = _every_int16()[::7]
    write_pcm16(tmp_path / "ramp.wav", ramp, 8000)
    sox(tmp_path / "ramp.wav", "-e", law, "-b", "8", tmp_path / "law.wav")
    sox(tmp_path / "law.wav", "-e", "signed-integer", "-b", "16", tmp_path / "back.wav")
    _, sox_decoded = read_wav(tmp_path / "back.wav")
    ours = decode(_data_bytes(tmp_path / "law.wav"))
    assert ours.dtype == np.int16 and len(ours) == len(ramp)
    np.testing.assert_array_equal(ours, sox_decoded[:, 0])


@pytest.mark.parametrize("law", LAWS)
def test_encoder_agrees_with_sox_within_one_level(tmp_path, law):
    """sox rounds to 14/13 bits before the reference algorithm, which truncates: at most one level apart."""
    encode, decode = LAWS[law]
    ramp = _every_int16()[::3]
    write_pcm16(tmp_path / "ramp.wav", ramp, 8000)
    sox(tmp_path / "ramp.wav", "-e", law, "-b", "8", tmp_path / "law.wav")
    theirs = np.frombuffer(_data_bytes(tmp_path / "law.wav"), dtype=np.uint8)
    ours = np.frombuffer(encode(ramp), dtype=np.uint8)
    assert np.mean(ours == theirs) > 0.9
    levels = np.unique(decode(bytes(range(256))))
    rank = {int(v): i for i, v in enumerate(levels)}
    ours_rank = np.array([rank[int(v)] for v in decode(ours)])
    theirs_rank = np.array([rank[int(v)] for v in decode(theirs)])
    assert np.abs(ours_rank - theirs_rank).max() <= 1


def test_inputs_bytes_arrays_and_shapes():
    codes = bytes([1, 2, 3, 250])
    expected = decode_ulaw(codes)
    np.testing.assert_array_equal(decode_ulaw(bytearray(codes)), expected)
    np.testing.assert_array_equal(decode_ulaw(np.frombuffer(codes, dtype=np.uint8)), expected)
    np.testing.assert_array_equal(decode_ulaw(memoryview(codes)), expected)
    assert decode_alaw(b"").shape == (0,) and encode_alaw(np.zeros(0, np.int16)) == b""
    stereo = np.array([[1000, -1000], [2000, -2000]], dtype=np.int16)
    assert encode_ulaw(stereo) == encode_ulaw(stereo.reshape(-1))  # interleaved order kept
    with pytest.raises(TypeError):
        decode_alaw(np.zeros(4, dtype=np.float32))
