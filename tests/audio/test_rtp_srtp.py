"""SDES keys (RFC 4568 a=crypto) and libsrtp sessions through pylibsrtp."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audio.errors import RtpError
from audio.rtp.packet import RtpPacket, parse_rtp
from audio.rtp.srtp import SrtpKey, srtp_available

# RFC 4568 §9.1's example key (30 bytes once decoded).
RFC_KEY = "PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR"


@pytest.mark.parametrize("value", [
    f"1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|2^20",
    f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}",
    f"1  AES_CM_128_HMAC_SHA1_80   inline:{RFC_KEY}|1048576  ",
    f"1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY} UNENCRYPTED_SRTCP",
])
def test_sdes_values_parse(value):
    key = SrtpKey.from_sdes(value)
    assert key.suite == "AES_CM_128_HMAC_SHA1_80" and key.tag == 1
    assert key.master == base64.b64decode(RFC_KEY) and len(key.master) == 30


def test_the_32_bit_tag_suite_and_the_tag_number_are_kept():
    key = SrtpKey.from_sdes(f"7 AES_CM_128_HMAC_SHA1_32 inline:{RFC_KEY}")
    assert (key.tag, key.suite) == (7, "AES_CM_128_HMAC_SHA1_32")


@pytest.mark.parametrize("value", [
    "",
    "1 AES_CM_128_HMAC_SHA1_80",
    f"x AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}",
    f"1 AES_256_CM_HMAC_SHA1_80 inline:{RFC_KEY}",  # suite not supported
    f"1 AEAD_AES_128_GCM inline:{RFC_KEY}",
    f"1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|2^20|1:4",  # MKI
    f"1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|1:4",
    f"1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY};inline:{RFC_KEY}",  # two keys
    f"1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY} KDR=1",  # session parameter
    f"1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY} UNENCRYPTED_SRTP",
    "1 AES_CM_128_HMAC_SHA1_80 inline:not*base64",
    "1 AES_CM_128_HMAC_SHA1_80 inline:QUJD",  # 3 bytes
    f"1 AES_CM_128_HMAC_SHA1_80 uri:{RFC_KEY}",
    f"1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|forever",
])
def test_sdes_values_that_cannot_be_used_are_bad_crypto(value):
    with pytest.raises(RtpError) as caught:
        SrtpKey.from_sdes(value)
    assert caught.value.code == "bad_crypto"


def test_generated_keys_round_trip_through_sdes_and_hide_in_repr():
    key = SrtpKey.generate("AES_CM_128_HMAC_SHA1_32", tag=3)
    assert SrtpKey.from_sdes(key.to_sdes()) == key
    assert base64.b64encode(key.master).decode() not in repr(key)


def test_pylibsrtp_is_installed():
    assert srtp_available(), "pylibsrtp is a dependency (pyproject); SRTP is refused without it"


@pytest.mark.parametrize("suite", ["AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32"])
def test_libsrtp_sessions_from_a_key_protect_and_unprotect(suite):
    key = SrtpKey.generate(suite)
    sender, receiver = key.outbound(), key.inbound()
    packet = RtpPacket(0, 1, 160, 0xABCDEF, False, b"\x55" * 160)
    wire = sender.protect(packet.encode())
    assert len(wire) == 12 + 160 + (10 if suite.endswith("_80") else 4)
    assert wire[12:172] != packet.payload  # encrypted
    assert parse_rtp(receiver.unprotect(wire)) == packet
    with pytest.raises(Exception):
        SrtpKey.generate(suite).inbound().unprotect(sender.protect(RtpPacket(0, 2, 320, 0xABCDEF).encode()))  # the wrong key


@settings(max_examples=300)
@given(st.text(max_size=120) | st.builds(lambda a, b: f"{a} AES_CM_128_HMAC_SHA1_80 inline:{b}", st.text(max_size=5), st.text(max_size=60)))
def test_any_crypto_value_parses_or_is_bad_crypto(value):
    try:
        key = SrtpKey.from_sdes(value)
    except RtpError as exc:
        assert exc.code == "bad_crypto"
    else:
        assert len(key.master) == 30
