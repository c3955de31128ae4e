"""SDP offers and answers, RFC 7865 metadata, and who is the customer in a recorded call."""

from __future__ import annotations

import pytest

from audio.sip.config import SipConfig
from audio.sip.message import SipError
from audio.sip.metadata import parse_metadata
from audio.sip.sdp import StreamAnswer, accepted_formats, build_answer, parse_sdp
from audio.sip.speakers import assign_speakers
from sip_kit import metadata, sdp


def test_offer_parsed_with_labels_directions_and_codecs():
    offer = parse_sdp(sdp(formats="0 8 101 18"))
    assert [(m.port, m.label, m.direction, m.address) for m in offer.media] == [(6000, "1", "sendonly", "127.0.0.1"), (6002, "2", "sendonly", "127.0.0.1")]
    first = offer.media[0]
    assert first.formats == (0, 8, 101, 18)
    assert first.encoding(18) == ("G729", 8000)  # static, no rtpmap
    assert accepted_formats(first, {"PCMU/8000", "pcma/8000", "telephone-event/8000"}) == (0, 8, 101)


def test_answer_keeps_order_labels_and_refuses_what_we_do_not_take():
    offer = parse_sdp(sdp() + b"m=video 7000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n")
    answer = parse_sdp(build_answer(offer, [StreamAnswer(40000, (0,)), StreamAnswer(40002, (8,), "inactive"), StreamAnswer(0)],
                                    address="10.1.1.1", session_id=5, version=2))
    assert [(m.kind, m.port, m.formats, m.label, m.direction) for m in answer.media] == [
        ("audio", 40000, (0,), "1", "recvonly"), ("audio", 40002, (8,), "2", "inactive"), ("video", 0, (96,), None, "sendrecv")]
    assert answer.address == "10.1.1.1" and answer.origin == "callshield 5 2 IN IP4 10.1.1.1"


@pytest.mark.parametrize("body", [b"", b"x=1\r\n", b"v=0\r\nm=audio\r\n", b"v=0\r\nm=audio 99999 RTP/AVP 0\r\n",
                                  b"v=0\r\nm=audio 1 RTP/AVP 300\r\n", b"v=0\r\nc=IN IP4\r\n", b"v=0\r\n" + b"m=audio 1 RTP/AVP 0\r\n" * 9,
                                  b"v=0\r\nbad line\r\n", b"\xff"])
def test_bad_sdp(body):
    with pytest.raises(SipError) as err:
        parse_sdp(body)
    assert err.value.code == "bad_sdp"


def test_metadata_rfc7865_form():
    meta = parse_metadata(metadata())
    assert [(p.id, p.aor, p.name, p.sends) for p in meta.participants] == [
        ("p1", "sip:+4930123456@carrier.example", "Caller", ("st1",)), ("p2", "sip:1001@pbx.example", "Callee", ("st2",))]
    assert meta.sender_of_label("2").aor == "sip:1001@pbx.example"


def test_metadata_draft_form_and_partial_update():
    draft = b"""<recording xmlns="urn:ietf:params:xml:ns:recording"><participant id="a" session="s"><aor>sip:555@x</aor><send>1</send></participant>
    <participant id="b"><aor>sip:2002@pbx</aor><send>2</send></participant><stream id="1"><label>1</label></stream><stream id="2"><label>2</label></stream></recording>"""
    meta = parse_metadata(draft)
    assert meta.sender_of_label("1").aor == "sip:555@x" and meta.sender_of_label("2").id == "b"
    update = parse_metadata(b"<recording><datamode>partial</datamode><participant id='b'><aor>sip:2003@pbx</aor></participant></recording>")
    merged = meta.merged(update)
    assert merged.sender_of_label("2").aor == "sip:2003@pbx" and not merged.partial


@pytest.mark.parametrize("body", [
    b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><recording>&b;</recording>',
    b"<recording><participant",  # not XML
    b"<other/>",
    b"<recording>" + b"<participant participant_id='p%d'/>" * 0 + b"x" * 40000 + b"</recording>",
])
def test_bad_metadata_refused(body):
    with pytest.raises(SipError) as err:
        parse_metadata(body)
    assert err.value.code == "bad_metadata"


def test_too_many_participants_refused():
    body = b"<recording>" + b"".join(b"<participant participant_id='p%d'/>" % i for i in range(20)) + b"</recording>"
    with pytest.raises(SipError):
        parse_metadata(body)


META = parse_metadata(metadata())


@pytest.mark.parametrize("config, labels, meta, speakers, partner", [
    (SipConfig(), ["1", "2"], META, ("customer", "partner"), "sip:1001@pbx.example"),
    (SipConfig(customer="callee"), ["1", "2"], META, ("partner", "customer"), "sip:+4930123456@carrier.example"),
    # the pattern wins over the direction: the partner's extension is 4 digits starting with 1
    (SipConfig(customer="callee", partner_pattern=r"1\d{3}"), ["1", "2"], META, ("customer", "partner"), "sip:1001@pbx.example"),
    (SipConfig(partner_pattern=r"sip:1001@pbx\.example"), ["2", "1"], META, ("partner", "customer"), "sip:1001@pbx.example"),
    # a pattern matching both (or neither) falls back to the direction
    (SipConfig(partner_pattern=r".*"), ["1", "2"], META, ("customer", "partner"), "sip:1001@pbx.example"),
    (SipConfig(), ["1", "2"], None, ("customer", "partner"), ""),
    (SipConfig(), ["1"], META, ("customer",), ""),
    (SipConfig(mixed_speaker="partner"), ["1"], META, ("partner",), "sip:+4930123456@carrier.example"),
])
def test_assign_speakers(config, labels, meta, speakers, partner):
    assignment = assign_speakers(config, labels, meta)
    assert assignment.speakers == speakers
    assert assignment.partner == partner


def test_config_section():
    config = SipConfig.from_section({"port": 5080, "partners": {"1001": "kim", "sip:2002@pbx": "lee"}, "allow_from": ["10.0.0.0/24"],
                                     "partner_pattern": r"1\d{3}"})
    assert config.partner_user("sip:1001@pbx", "1001") == "kim" and config.partner_user("SIP:2002@PBX") == "lee"
    assert config.allowed("10.0.0.7") and not config.allowed("10.0.1.7")
    for bad in ({"partners": {"1001": 5}}, {"allow_from": ["nope"]}, {"partner_pattern": "("}, {"transports": ["sctp"]},
                {"rtp_port_min": 10, "rtp_port_max": 5}, {"host": "0.0.0.0"}, {"nope": 1}):
        with pytest.raises(SipError) as err:
            SipConfig.from_section(bad)
        assert err.value.code == "bad_config"
