"""The RTP packet parser (RFC 3550 §5.1, §5.3.1) and RTCP recognition (RFC 5761 §4)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audio.errors import RtpError
from audio.rtp.packet import RtpExtension, RtpPacket, is_rtcp, parse_rtp


def test_fixed_header_fields_by_hand():
    # V=2 P=0 X=0 CC=0 | M=1 PT=8 | seq 0xBEEF | ts 0x01020304 | ssrc 0xCAFEBABE | payload
    data = bytes([0x80, 0x88, 0xBE, 0xEF, 1, 2, 3, 4, 0xCA, 0xFE, 0xBA, 0xBE]) + b"\xd5" * 160
    packet = parse_rtp(data)
    assert (packet.payload_type, packet.marker, packet.sequence, packet.timestamp, packet.ssrc) == (8, True, 0xBEEF, 0x01020304, 0xCAFEBABE)
    assert packet.payload == b"\xd5" * 160 and packet.csrc == () and packet.extension is None


def test_csrc_extension_and_padding_are_taken_off_the_payload():
    csrc = struct.pack("!II", 11, 22)
    ext = struct.pack("!HH", 0xBEDE, 2) + b"\x10\xaa\x00\x00" + b"\x21\xbb\xcc\x00"
    padding = b"\x00\x00\x03"
    data = bytes([0x80 | 0x20 | 0x10 | 2, 0]) + struct.pack("!HII", 7, 1000, 99) + csrc + ext + b"voice" + padding
    packet = parse_rtp(data)
    assert packet.csrc == (11, 22)
    assert packet.extension == RtpExtension(0xBEDE, b"\x10\xaa\x00\x00\x21\xbb\xcc\x00")
    assert packet.payload == b"voice"


@pytest.mark.parametrize("data, code", [
    (b"", "truncated"),
    (bytes([0x80, 0]) + b"\0" * 9, "truncated"),  # 11 bytes
    (bytes([0x40, 0]) + b"\0" * 10 + b"x", "bad_version"),  # version 1
    (bytes([0x00, 0]) + b"\0" * 10, "bad_version"),  # version 0 (STUN-like)
    (bytes([0x83, 0]) + b"\0" * 10 + b"\0" * 8, "truncated"),  # CC=3 but only 2 CSRCs
    (bytes([0x90, 0]) + b"\0" * 10 + b"\xbe\xde", "truncated"),  # extension header cut
    (bytes([0x90, 0]) + b"\0" * 10 + b"\xbe\xde\x00\x02" + b"\0" * 7, "truncated"),  # extension body cut
    (bytes([0xA0, 0]) + b"\0" * 10 + b"abc\x00", "bad_padding"),  # padding count 0
    (bytes([0xA0, 0]) + b"\0" * 10 + b"abc\x05", "bad_padding"),  # padding longer than what follows the header
    (bytes([0xA0, 0]) + b"\0" * 10, "bad_padding"),  # P set, nothing after the header
])
def test_malformed_datagrams_raise_rtp_error_with_a_code(data, code):
    with pytest.raises(RtpError) as caught:
        parse_rtp(data)
    assert caught.value.code == code


def test_padding_may_take_the_whole_payload_and_an_empty_payload_is_well_formed():
    assert parse_rtp(bytes([0xA0, 0]) + b"\0" * 10 + b"\0\0\x03").payload == b""
    assert parse_rtp(bytes([0x80, 0]) + b"\0" * 10).payload == b""


@pytest.mark.parametrize("second", [200, 201, 202, 203, 204, 205, 206, 207, 192, 223])
def test_rtcp_packet_types_are_recognised(second):
    assert is_rtcp(bytes([0x81, second, 0, 7]) + b"\0" * 28)


@pytest.mark.parametrize("second", [0, 8, 0x80, 0x88, 101, 0xE5, 191, 224])
def test_rtp_payload_types_are_not_rtcp(second):
    assert not is_rtcp(bytes([0x80, second]) + b"\0" * 170)


def test_rtcp_needs_version_two_and_a_header():
    assert not is_rtcp(bytes([0x41, 200, 0, 1]))
    assert not is_rtcp(bytes([0x81, 200, 0]))


packets = st.builds(
    RtpPacket,
    payload_type=st.integers(0, 127),
    sequence=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    marker=st.booleans(),
    payload=st.binary(max_size=400),
    csrc=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15).map(tuple),
    extension=st.none() | st.builds(RtpExtension, st.integers(0, 0xFFFF), st.binary(max_size=40).map(lambda b: b[: len(b) - len(b) % 4])),
)


@given(packets, st.integers(0, 255))
def test_a_built_packet_parses_back_to_itself(packet, padding):
    assert parse_rtp(packet.encode(padding=padding)) == packet


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_any_bytes_parse_or_raise_rtp_error(data):
    try:
        packet = parse_rtp(data)
    except RtpError as exc:
        assert exc.code in {"truncated", "bad_version", "bad_padding"}
    else:
        assert isinstance(packet, RtpPacket) and len(packet.payload) <= len(data) - 12


@given(packets, st.integers(0, 255), st.data())
def test_any_cut_of_a_real_packet_parses_or_raises_rtp_error(packet, padding, data):
    wire = packet.encode(padding=padding)
    cut = data.draw(st.integers(0, len(wire)))
    try:
        parse_rtp(wire[:cut])
    except RtpError:
        pass
