"""Property tests of the AudioSocket frame decoder (sans-I/O, no sockets).

Whatever bytes a PBX sends, split wherever TCP splits them, the decoder
hands out whole frames or refuses with ``AudioSocketError``: it never raises
anything else, never holds more than one partial frame beside one chunk, and
gives the same answer however the stream was split.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audio.audiosocket.frames import AUDIO_RATES, HEADER, MAX_PAYLOAD, Frame, FrameDecoder, Kind, encode_frame
from audio.errors import AudioSocketError

_VALID_FRAMES = st.one_of(
    st.just(Frame(Kind.HANGUP)),
    st.binary(min_size=16, max_size=16).map(lambda raw: Frame(Kind.UUID, raw)),
    st.binary(min_size=1, max_size=1).map(lambda raw: Frame(Kind.DTMF, raw)),
    st.binary(max_size=1).map(lambda raw: Frame(Kind.ERROR, raw)),
    st.tuples(st.sampled_from(sorted(AUDIO_RATES)), st.integers(0, 400)).flatmap(
        lambda kind_len: st.binary(min_size=2 * kind_len[1], max_size=2 * kind_len[1]).map(lambda raw: Frame(kind_len[0], raw))),
)


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given offsets (taken modulo its length, sorted)."""
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:])]


def _decode(chunks: list[bytes], max_payload: int = MAX_PAYLOAD) -> tuple[list[Frame], str | None, int]:
    """The frames, the error code (None, or ``bad_frame``/``truncated_frame``) and the most bytes held."""
    decoder = FrameDecoder(max_payload)
    frames: list[Frame] = []
    most_held = 0
    try:
        for chunk in chunks:
            decoder.receive(chunk)
            most_held = max(most_held, decoder.buffered)
            frames.extend(decoder)
        decoder.close()
    except AudioSocketError as exc:
        assert exc.code in ("bad_frame", "truncated_frame")
        with pytest.raises(AudioSocketError):  # broken stays broken (bad_frame), or still truncated
            decoder.close()
        return frames, exc.code, most_held
    assert decoder.buffered == 0
    return frames, None, most_held


@given(st.lists(_VALID_FRAMES, max_size=12), st.lists(st.integers(0, 10_000), max_size=20))
@settings(max_examples=300, deadline=None)
def test_valid_frames_come_out_whole_however_the_stream_is_split(frames, cuts):
    wire = b"".join(f.encode() for f in frames)
    decoded, error, _ = _decode(_split(wire, cuts))
    assert error is None
    assert decoded == frames


@given(st.binary(max_size=600), st.lists(st.integers(0, 10_000), max_size=20), st.integers(0, MAX_PAYLOAD))
@settings(max_examples=400, deadline=None)
def test_any_bytes_decode_the_same_whole_or_split_and_stay_bounded(wire, cuts, max_payload):
    whole = _decode([wire], max_payload)
    chunks = _split(wire, cuts)
    split = _decode(chunks, max_payload)
    assert split[:2] == whole[:2]
    # At most one partial frame (header + payload within the limit) beside the chunk just received.
    biggest_chunk = max((len(c) for c in chunks), default=0)
    assert split[2] <= HEADER.size + max_payload + biggest_chunk


def _lawful(kind: int, length: int) -> bool:
    """The AudioSocket protocol's own rule, written apart from the decoder's."""
    if kind in AUDIO_RATES:
        return length % 2 == 0
    return {Kind.HANGUP: length == 0, Kind.UUID: length == 16, Kind.DTMF: length == 1, Kind.ERROR: length <= 1}.get(kind, False)


@given(st.lists(_VALID_FRAMES, min_size=1, max_size=6), st.integers(0, 0xFF), st.integers(0, MAX_PAYLOAD), st.binary(max_size=40))
@settings(max_examples=300, deadline=None)
def test_frames_before_a_malformed_header_are_handed_out_and_nothing_after(frames, kind, length, tail):
    good = b"".join(f.encode() for f in frames)
    decoded, error, _ = _decode([good + HEADER.pack(kind, length) + tail])
    assert decoded[:len(frames)] == frames
    if _lawful(kind, length):
        assert error in (None, "truncated_frame") or len(decoded) > len(frames)
    else:
        assert (error, decoded) == ("bad_frame", frames)


def test_a_frame_over_the_limit_is_refused_before_its_payload_arrives():
    decoder = FrameDecoder(max_payload=640)
    decoder.receive(HEADER.pack(Kind.AUDIO, 642))
    with pytest.raises(AudioSocketError) as info:
        list(decoder)
    assert info.value.code == "bad_frame" and decoder.malformed == 1
    assert FrameDecoder(max_payload=640).feed(encode_frame(Kind.AUDIO, b"\0" * 640)) == [Frame(Kind.AUDIO, b"\0" * 640)]
