"""The recorder's SIP state machine, sans I/O: requests in, responses and call events out."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audio.sip.config import SipConfig
from audio.sip.dialog import T1, Ended, Offered, Peer, Send, SipCore, Updated
from audio.sip.message import header_params, parse_message
from audio.sip.sdp import parse_sdp
from sip_kit import invite, request, sdp

PEER = Peer("udp", ("127.0.0.1", 5070))


def sent(actions):
    return [parse_message(a.data) for a in actions if isinstance(a, Send)]


def events(actions):
    return [a for a in actions if not isinstance(a, Send)]


def offered(core, message=None, now=0.0):
    actions = core.receive((message or invite()).encode(), PEER, now)
    assert [r.status for r in sent(actions)] == [100]
    (event,) = events(actions)
    assert isinstance(event, Offered)
    return event.dialog


def answered(core, message=None):
    dialog = offered(core, message)
    (ok,) = sent(core.accept(dialog, {s.index: 40000 + 2 * s.index for s in dialog.streams}, 0.1))
    return dialog, ok


@pytest.fixture
def core():
    return SipCore(SipConfig(max_calls=2), contact=("127.0.0.1", 5060))


def test_siprec_invite_answered_recvonly_per_stream(core):
    dialog, ok = answered(core)
    assert dialog.kind == "siprec" and [s.speaker for s in dialog.streams] == ["customer", "partner"]
    assert dialog.partner == "sip:1001@pbx.example"
    assert ok.status == 200 and header_params(ok.get("To"))["tag"] == dialog.local_tag
    assert "+sip.srs" in ok.get("Contact")
    answer = parse_sdp(ok.body)
    assert [(m.port, m.label, m.direction) for m in answer.media] == [(40000, "1", "recvonly"), (40002, "2", "recvonly")]


def test_200_retransmitted_until_ack_then_quiet(core):
    dialog, ok = answered(core)
    assert sent(core.tick(0.1 + T1 / 2)) == []
    assert [r.status for r in sent(core.tick(0.1 + T1))] == [200]
    assert [r.status for r in sent(core.tick(0.1 + 3 * T1))] == [200]
    core.receive(request("ACK", to_tag=dialog.local_tag, cseq=1, branch="z9hG4bK-ack").encode(), PEER, 2.0)
    assert dialog.state == "confirmed"
    assert core.tick(10.0) == []


def test_no_ack_ends_the_call(core):
    dialog, _ = answered(core)
    actions = core.tick(40.0)
    assert [e.reason for e in events(actions)] == ["no_ack"] and core.counts["no_ack"] == 1


def test_retransmitted_invite_answered_from_the_transaction(core):
    dialog, ok = answered(core)
    actions = core.receive(invite().encode(), PEER, 0.3)
    assert events(actions) == [] and [r.status for r in sent(actions)] == [200]
    assert sent(actions)[0].body == ok.body and core.counts["retransmissions"] == 1


def test_reinvite_hold_and_metadata_update_answered_on_the_same_ports(core):
    dialog, ok = answered(core)
    held = sdp([(6000, "1", "inactive"), (6004, "2", "sendonly")])
    actions = core.receive(invite(to_tag=dialog.local_tag, cseq=2, branch="z9hG4bK-re", body_sdp=held).encode(), PEER, 1.0)
    (reply,) = sent(actions)
    assert reply.status == 200 and isinstance(events(actions)[0], Updated)
    answer = parse_sdp(reply.body)
    assert [(m.port, m.direction) for m in answer.media] == [(40000, "inactive"), (40002, "recvonly")]
    assert answer.origin.split()[2] == "2"  # the version went up
    assert dialog.held == {"customer"}
    resumed = core.receive(invite(to_tag=dialog.local_tag, cseq=3, branch="z9hG4bK-re2").encode(), PEER, 2.0)
    assert sent(resumed)[0].status == 200 and dialog.held == frozenset()


def test_bye_ends_and_its_retransmission_is_answered_not_reprocessed(core):
    dialog, _ = answered(core)
    bye = request("BYE", to_tag=dialog.local_tag, cseq=5).encode()
    actions = core.receive(bye, PEER, 1.0)
    assert [r.status for r in sent(actions)] == [200] and [type(e) for e in events(actions)] == [Ended]
    again = core.receive(bye, PEER, 1.5)
    assert [r.status for r in sent(again)] == [200] and events(again) == []
    assert core.live_calls == 0


def test_cancel_before_the_answer(core):
    dialog = offered(core)
    actions = core.receive(request("CANCEL", cseq=1, branch="z9hG4bK-1").encode(), PEER, 0.2)
    assert sorted((r.status, r.cseq[1]) for r in sent(actions)) == [(200, "CANCEL"), (487, "INVITE")]
    assert [e.reason for e in events(actions)] == ["cancelled"]
    assert core.accept(dialog, {0: 40000, 1: 40002}, 0.3) == []  # the media opened too late: nothing is sent


def test_requests_outside_a_dialog_get_481(core):
    for message in (request("BYE", to_tag="nope"), invite(to_tag="nope"), request("CANCEL", branch="z9hG4bK-none", cseq=1)):
        assert [r.status for r in sent(core.receive(message.encode(), PEER, 0.0))] == [481]
    assert core.counts["no_dialog"] == 3


def test_options_keepalive(core):
    (reply,) = sent(core.receive(request("OPTIONS").encode(), PEER, 0.0))
    assert reply.status == 200 and "INVITE" in reply.get("Allow")


def test_unsupported_codec_gets_488(core):
    actions = core.receive(invite(body_sdp=sdp(formats="18"), branch="z9hG4bK-g729").encode(), PEER, 0.0)
    assert [r.status for r in sent(actions)] == [488] and events(actions) == []


def test_over_max_calls_gets_503_with_retry_after(core):
    answered(core, invite(call_id="a"))
    answered(core, invite(call_id="b", branch="z9hG4bK-b"))
    (reply,) = sent(core.receive(invite(call_id="c", branch="z9hG4bK-c").encode(), PEER, 0.0))
    assert reply.status == 503 and reply.get("Retry-After") == "30" and core.counts["calls_refused"] == 1


def test_calls_still_being_screened_after_their_bye_count_against_max_calls():
    screening = [0]
    core = SipCore(SipConfig(max_calls=2), contact=("127.0.0.1", 5060), lingering=lambda: screening[0])
    answered(core, invite(call_id="a"))
    screening[0] = 1  # an ended call whose tail the agent is still screening
    (reply,) = sent(core.receive(invite(call_id="b", branch="z9hG4bK-b").encode(), PEER, 0.0))
    assert reply.status == 503
    screening[0] = 0
    offered(core, invite(call_id="c", branch="z9hG4bK-c"))


def test_malformed_but_answerable_gets_400_and_the_rest_is_dropped(core):
    broken_body = invite(meta=b"<recording><not-closed", branch="z9hG4bK-x").encode()
    assert [r.status for r in sent(core.receive(broken_body, PEER, 0.0))] == [400]
    no_cseq = b"INVITE sip:a SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKq\r\nFrom: <sip:a>;tag=1\r\nTo: <sip:b>\r\nCall-ID: q\r\n\r\n"
    assert [r.status for r in sent(core.receive(no_cseq, PEER, 0.0))] == [400]
    assert core.receive(b"\x00\x01garbage", PEER, 0.0) == []
    assert core.counts["malformed"] == 3 and core.counts["bad_request"] == 2 and core.live_calls == 0


def test_plain_sip_call_is_one_mixed_stream_of_the_dialed_extension(core):
    plain = invite(siprec=False, body_sdp=sdp([(6000, "x", "sendrecv")]), to="<sip:1001@127.0.0.1>", branch="z9hG4bK-plain")
    dialog, ok = answered(core, plain)
    assert dialog.kind == "sip" and dialog.partner == "1001"
    assert [s.speaker for s in dialog.streams] == ["customer"]
    assert dialog.notices[0][0] == "mixed_audio"
    assert "+sip.srs" not in ok.get("Contact") and parse_sdp(ok.body).media[0].direction == "recvonly"


def test_allow_from_drops_other_sources():
    core = SipCore(SipConfig(allow_from=("10.0.0.0/8",)), contact=("127.0.0.1", 5060))
    assert core.receive(invite().encode(), PEER, 0.0) == [] and core.counts["denied"] == 1


def test_transactions_are_bounded():
    core = SipCore(SipConfig(max_calls=1), contact=("127.0.0.1", 5060))
    for i in range(1000):
        core.receive(request("OPTIONS", branch=f"z9hG4bK-{i}").encode(), PEER, 0.0)
    assert len(core._transactions) <= core._max_transactions


_PIECES = st.sampled_from([
    b"INVITE sip:a SIP/2.0\r\n", b"BYE sip:a SIP/2.0\r\n", b"CANCEL sip:a SIP/2.0\r\n", b"ACK sip:a SIP/2.0\r\n",
    b"Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\n", b"From: <sip:a>;tag=1\r\n", b"To: <sip:b>;tag=x\r\n", b"To: <sip:b>\r\n",
    b"Call-ID: c\r\n", b"CSeq: 1 INVITE\r\n", b"CSeq: 2 BYE\r\n", b"Require: siprec\r\n", b"l: 3\r\n",
    b"c: multipart/mixed;boundary=b\r\n", b"c: application/sdp\r\n", b"\r\n", b"--b\r\n", b"v=0\r\n", b"m=audio 1 RTP/AVP 0\r\n",
    b"<recording>", b"\xff",
])


@given(st.lists(st.one_of(st.lists(_PIECES, max_size=25).map(b"".join), st.binary(max_size=300)), max_size=6))
@settings(max_examples=300, deadline=None)
def test_any_sequence_of_datagrams_is_answered_or_dropped_never_raises(datagrams):
    core = SipCore(SipConfig(max_calls=2), contact=("127.0.0.1", 5060))
    for i, data in enumerate(datagrams):
        for action in core.receive(data, PEER, float(i)):
            if isinstance(action, Send):
                assert parse_message(action.data).status in (100, 200, 400, 405, 481, 482, 487, 488, 503)
            elif isinstance(action, Offered):
                core.accept(action.dialog, {s.index: 40000 for s in action.dialog.streams}, float(i))
        core.tick(float(i) + 0.5)
    assert core.live_calls <= 2


def test_srtp_takes_the_first_usable_crypto_line_or_refuses_the_stream():
    from audio.sip.call import RtpMedia

    key = "inline:" + "A" * 40
    lines = [f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 {key}|2^20|1:4", f"a=crypto:2 AES_CM_128_HMAC_SHA1_32 {key}"]
    body = sdp([(6000, "1", "sendonly")], proto="RTP/SAVP").decode().replace("a=label:1", "\r\n".join(lines) + "\r\na=label:1").encode()
    core = SipCore(SipConfig(), contact=("127.0.0.1", 5060), srtp=RtpMedia._usable_key)
    dialog = offered(core, invite(body_sdp=body))
    assert dialog.streams[0].crypto.tag == 2  # the MKI line cannot be used
    plain = SipCore(SipConfig(), contact=("127.0.0.1", 5060))  # no SRTP at all
    assert [r.status for r in sent(plain.receive(invite(body_sdp=body).encode(), PEER, 0.0))] == [488]
