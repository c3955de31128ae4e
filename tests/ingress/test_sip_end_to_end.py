"""`callshield agent --siprec` end to end: SIPp places a SIPREC session whose two
RTP streams carry Korean speech (espeak-ng), the agent transcribes them with the
real Vosk model and a real Console stores the call with both speakers right,
the partner mapped from the metadata's AoR through [siprec] partners."""

from __future__ import annotations

import asyncio

from ingress_kit import split_call
from sip_kit import run_sipp, write_call_pcaps
from speech import KOREAN_CALL, call_samples
from agent_process import agent_process, free_port


RATE = 8000


def test_a_siprec_call_from_sipp_is_transcribed_into_the_console_with_both_speakers_right(tmp_path, ko_model_dir):
    stereo, spans = call_samples(KOREAN_CALL[:2], rate=RATE)  # partner greets, then the customer complains
    customer, partner = split_call(stereo)
    write_call_pcaps(tmp_path, customer, partner)
    port = free_port()
    config = tmp_path / "callshield.toml"
    config.write_text('[siprec]\nhost = "127.0.0.1"\nrtp_port_min = 41000\nrtp_port_max = 41999\n'
                      'partner_pattern = "1[0-9]{3}"\n[siprec.partners]\n"1001" = "kim"\n', encoding="utf-8")

    async def main():
        async with agent_process(tmp_path, ko_model_dir, ["--siprec", f"127.0.0.1:{port}", "--recordings", str(tmp_path / "data" / "recordings")],
                                 ready="SIPREC and SIP calls accepted", config=config) as run:
            status, errors = await run_sipp("siprec_call.xml", port, cwd=tmp_path, duration_ms=int(len(customer) / RATE * 1000) + 500)
            details = await run.ended_calls(1)
            code = await run.stop()
            return status, errors, code, details[0] if details else None, run.log

    status, errors, code, detail, log = asyncio.run(main())
    assert status == 0, errors
    assert detail is not None, "the call never ended in the console:\n" + log
    assert code == 0, log
    row = detail["call"]
    assert (row["partner"], row["seat"], row["source"]) == ("kim", "1001", "siprec")
    utterances = detail["utterances"]
    assert {u["speaker"] for u in utterances} == {"customer", "partner"}, utterances
    # both speakers right: each utterance lies within a turn of the speaker it is given to
    # (the time line starts when the call is answered, a fraction of a second before the RTP)
    for u in utterances:
        assert any(s == u["speaker"] and start - 1.0 <= u["start"] <= end + 1.0 for s, start, end in spans), (u, spans)
        assert u["text"].strip()
    first = {speaker: min(u["start"] for u in utterances if u["speaker"] == speaker) for speaker in ("customer", "partner")}
    assert first["partner"] < first["customer"]  # the partner's greeting came first, on the callee's stream
