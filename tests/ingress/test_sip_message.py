"""The sans-I/O SIP parser: bounds, compact forms, folding, Content-Length, multipart bodies, streams."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audio.sip.message import (
    MAX_HEADER_LINE,
    MAX_HEADERS,
    MAX_MESSAGE,
    SipError,
    SipMessage,
    StreamFramer,
    body_parts,
    multipart,
    name_addr,
    parse_message,
    response,
    split_list,
    uri_user,
)
from sip_kit import invite, metadata, sdp

OPTIONS = (b"OPTIONS sip:srs@10.0.0.1 SIP/2.0\r\nv: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKa\r\n"
           b"f: <sip:ping@sbc>;tag=1\r\nt: <sip:srs@10.0.0.1>\r\ni: abc@sbc\r\nCSeq: 7 OPTIONS\r\n"
           b"Subject: a folded\r\n  header\r\n\tvalue\r\nl: 0\r\n\r\n")


def test_compact_forms_are_expanded_and_folded_lines_joined():
    message = parse_message(OPTIONS)
    assert message.method == "OPTIONS" and message.uri == "sip:srs@10.0.0.1"
    assert message.call_id == "abc@sbc"
    assert message.get("via").startswith("SIP/2.0/UDP")
    assert message.get("Subject") == "a folded header value"
    assert message.cseq == (7, "OPTIONS")
    assert message.branch == "z9hG4bKa"


def test_round_trip_and_content_length_honoured():
    original = invite()
    wire = original.encode()
    parsed = parse_message(wire + b"trailing garbage after the body")
    assert parsed.body == original.body
    assert parsed.method == "INVITE" and parsed.get("Require") == "siprec"


def test_short_body_is_truncated():
    wire = invite().encode()
    with pytest.raises(SipError) as err:
        parse_message(wire[:-10])
    assert err.value.code == "truncated"


@pytest.mark.parametrize("wire, code", [
    (b"HELLO\r\n\r\n", "bad_message"),
    (b"INVITE sip:x SIP/3.0\r\n\r\n", "bad_message"),
    (b"INVITE sip:x SIP/2.0\r\nno colon here\r\n\r\n", "bad_message"),
    (b"INVITE sip:x SIP/2.0\r\nContent-Length: -1\r\n\r\n", "bad_message"),
    (b"INVITE sip:x SIP/2.0\r\nVia: x\r\n", "truncated"),
    (b"INVITE sip:x SIP/2.0\r\n" + b"X-A: 1\r\n" * (MAX_HEADERS + 1) + b"\r\n", "too_many_headers"),
    (b"INVITE sip:x SIP/2.0\r\nX-A: " + b"a" * MAX_HEADER_LINE + b"\r\n\r\n", "header_too_long"),
    (b"INVITE sip:x SIP/2.0\r\nX-A: a\r\n" + b" b" * MAX_HEADER_LINE + b"\r\n\r\n", "header_too_long"),
    (b"INVITE sip:x SIP/2.0\r\n\r\n" + b"x" * MAX_MESSAGE, "too_large"),
    (b"INVITE sip:x SIP/2.0\r\nVia: \xff\xfe\r\n\r\n", "bad_message"),
])
def test_malformed_messages_raise_sip_error(wire, code):
    with pytest.raises(SipError) as err:
        parse_message(wire)
    assert err.value.code == code


def test_bad_cseq_is_refused():
    message = parse_message(b"BYE sip:x SIP/2.0\r\nCSeq: one BYE\r\n\r\n")
    with pytest.raises(SipError):
        message.cseq


def test_multipart_body_split_at_its_boundary():
    parts = body_parts(invite())
    assert [p.content_type for p in parts] == ["application/sdp", "application/rs-metadata+xml"]
    assert parts[0].body == sdp()
    assert parts[1].body == metadata()


def test_multipart_with_quoted_boundary_and_preamble():
    body = (b"preamble\r\n--b1\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n\r\n--b1\r\n"
            b"Content-Type: application/rs-metadata+xml\r\nContent-Disposition: recording-session\r\n\r\n<recording/>\r\n--b1--\r\n")
    message = SipMessage("INVITE", "sip:x", headers=(("Content-Type", 'multipart/mixed; boundary="b1"'),), body=body)
    parts = body_parts(message)
    assert [(p.content_type, p.body) for p in parts] == [("application/sdp", b"v=0\r\n"), ("application/rs-metadata+xml", b"<recording/>")]


def test_multipart_without_its_boundary_is_bad_body():
    message = SipMessage("INVITE", "sip:x", headers=(("Content-Type", "multipart/mixed;boundary=zz"),), body=b"v=0\r\n")
    with pytest.raises(SipError) as err:
        body_parts(message)
    assert err.value.code == "bad_body"


def test_name_addr_uri_user_and_lists():
    value = name_addr('"Kim, Agent" <sip:1001@pbx;user=phone>;tag=xyz')
    assert (value.display, value.uri, value.tag, value.user) == ("Kim, Agent", "sip:1001@pbx;user=phone", "xyz", "1001")
    assert uri_user("tel:+4930123;phone-context=x") == "+4930123"
    assert split_list('"a,b" <sip:x>, <sip:y,z>, c') == ['"a,b" <sip:x>', "<sip:y,z>", "c"]


def test_response_copies_the_transaction_headers_and_adds_a_tag():
    request = parse_message(OPTIONS)
    reply = parse_message(response(request, 200, to_tag="t1").encode())
    assert reply.status == 200 and reply.reason == "OK"
    assert reply.get("To") == "<sip:srs@10.0.0.1>;tag=t1"
    assert reply.lines("Via") == request.lines("Via") and reply.get("CSeq") == "7 OPTIONS"


def test_stream_framer_cuts_by_content_length_however_split():
    wire = b"\r\n\r\n" + invite().encode() + OPTIONS + invite(call_id="second").encode()
    for step in (1, 7, 100, len(wire)):
        framer = StreamFramer()
        out = []
        for i in range(0, len(wire), step):
            out += framer.feed(wire[i:i + step])
        assert [m.method for m in out] == ["INVITE", "OPTIONS", "INVITE"]
        assert out[2].call_id == "second" and out[0].body == invite().body


def test_stream_framer_needs_content_length_and_is_bounded():
    with pytest.raises(SipError) as err:
        StreamFramer().feed(b"OPTIONS sip:x SIP/2.0\r\nCall-ID: a\r\n\r\n")
    assert err.value.code == "no_content_length"
    framer = StreamFramer()
    with pytest.raises(SipError) as err:
        for _ in range(MAX_MESSAGE // 1000 + 2):
            framer.feed(b"x" * 1000)
    assert err.value.code == "too_large"


def test_multipart_helper_round_trips():
    content_type, body = multipart([("application/sdp", b"v=0\r\n"), ("text/plain", b"hi")])
    message = SipMessage("INVITE", "sip:x", headers=(("Content-Type", content_type),), body=body)
    assert [(p.content_type, p.body) for p in body_parts(message)] == [("application/sdp", b"v=0\r\n"), ("text/plain", b"hi")]


_SIPISH = st.lists(st.sampled_from([
    b"INVITE sip:a SIP/2.0\r\n", b"SIP/2.0 200 OK\r\n", b"Via: SIP/2.0/UDP h;branch=z\r\n", b"l: 5\r\n", b"Content-Length: 99999999\r\n",
    b"c: multipart/mixed;boundary=b\r\n", b"--b\r\n", b"--b--\r\n", b" folded\r\n", b"\r\n", b"\r\n\r\n", b":", b"\xff", b"CSeq: 1 INVITE\r\n",
]), max_size=30).map(b"".join)


@given(st.one_of(st.binary(max_size=2000), _SIPISH))
@settings(max_examples=500, deadline=None)
def test_any_bytes_parse_or_raise_sip_error(data):
    try:
        message = parse_message(data)
    except SipError:
        return
    try:
        body_parts(message)
        message.cseq
    except SipError:
        pass
    framer = StreamFramer()
    try:
        for item in framer.feed(data):
            assert isinstance(item, SipMessage)
    except SipError:
        pass
