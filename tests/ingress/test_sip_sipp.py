"""The SIP server against SIPp (Debian ``sip-tester``), driven by the committed
scenarios in tests/ingress/sipp: a SIPREC session with two RTP streams (one
played by SIPp from a pcap), a re-INVITE on hold and a BYE, over UDP and TCP;
the refusals (400, 488, 481, garbage) while a call goes on."""

from __future__ import annotations

import asyncio

import pytest

from audio.sip.config import SipConfig
from audio.sip.server import SipServer
from sip_kit import Calls, run_sipp, tone, write_call_pcaps


@pytest.fixture(scope="module")
def pcaps(tmp_path_factory):
    """Two seconds of one tone per speaker (the end-to-end test plays speech)."""
    return write_call_pcaps(tmp_path_factory.mktemp("sipp"), tone(2.0, 300), tone(2.0, 500))


@pytest.mark.parametrize("transport", ["u1", "t1"])
def test_sipp_siprec_session_with_both_streams_hold_and_bye(pcaps, transport):
    notices = []

    async def main():
        calls = Calls()
        async with SipServer(calls, SipConfig(host="127.0.0.1", port=0), on_notice=notices.append) as server:
            status, errors = await run_sipp("siprec_call.xml", server.port, cwd=pcaps, transport=transport, duration_ms=2600)
            await asyncio.sleep(0.3)
            return status, errors, calls, server.counts

    status, errors, calls, counts = asyncio.run(main())
    assert status == 0, errors
    (call,) = calls.calls.values()
    assert call.kind == "siprec" and call.end_reason == "bye" and call.partner == "sip:1001@pbx.example"
    assert calls.audio[call.id] == {"customer": 16000, "partner": 16000}  # every packet of both pcaps
    stats = call.media.stats()
    assert stats["customer"].lost == 0 and stats["partner"].lost == 0
    assert ("on_hold", "customer") in [(n.code, n.speaker) for n in notices]
    assert counts["calls_offered"] == 1 and counts["reinvites"] == 1 and counts["bye"] == 1 and counts["malformed"] == 0


def test_sipp_refusals_while_a_call_goes_on(pcaps):
    async def main():
        calls = Calls()
        async with SipServer(calls, SipConfig(host="127.0.0.1", port=0)) as server:
            call, refusals = await asyncio.gather(
                run_sipp("siprec_call.xml", server.port, cwd=pcaps, duration_ms=2600),
                run_sipp("refusals.xml", server.port, cwd=pcaps, calls=40, rate=40),
            )
            await asyncio.sleep(0.3)
            return call, refusals, calls, server.counts

    call, refusals, calls, counts = asyncio.run(main())
    assert call[0] == 0, call[1]
    assert refusals[0] == 0, refusals[1]
    (audio,) = calls.audio.values()
    assert audio == {"customer": 16000, "partner": 16000}
    assert counts["bad_request"] == 40 and counts["not_acceptable"] == 40 and counts["no_dialog"] == 40
    assert counts["malformed"] == 80 and counts["options"] == 80 and counts["internal_errors"] == 0
