"""Plain SIP "listen" calls end to end: a real SIP user agent (baresip) dials
extension 1001 at `callshield agent --sip` and plays Korean speech as a PBX's
spy channel would; the agent transcribes the one mixed stream with the real
Vosk model into a real Console, as the customer's speech, for partner kim."""

from __future__ import annotations

import asyncio

from sip_kit import baresip_dials
from speech import KOREAN_CALL, speak, write_pcm16
from agent_process import agent_process, free_port


RATE = 8000


def test_a_plain_sip_call_from_baresip_is_transcribed_as_one_mixed_stream(tmp_path, ko_model_dir):
    wav = write_pcm16(tmp_path / "spy.wav", speak(KOREAN_CALL[1].text, rate=RATE), RATE)
    port, ua_port = free_port(), free_port()
    config = tmp_path / "callshield.toml"
    config.write_text('[siprec]\nhost = "127.0.0.1"\n[siprec.partners]\n"1001" = "kim"\n', encoding="utf-8")

    async def main():
        async with agent_process(tmp_path, ko_model_dir, ["--sip", f"127.0.0.1:{port}", "--recordings", str(tmp_path / "data" / "recordings")],
                                 ready="SIPREC and SIP calls accepted", config=config) as run:
            status, ua_log = await baresip_dials(f"sip:1001@127.0.0.1:{port}", wav, folder=tmp_path / "baresip", sip_port=ua_port, seconds=12)
            details = await run.ended_calls(1)
            code = await run.stop()
            return status, ua_log, code, details[0] if details else None, run.log

    status, ua_log, code, detail, log = asyncio.run(main())
    assert status == 0 and "Call established" in ua_log, ua_log
    assert detail is not None, "the call never ended in the console:\n" + log + ua_log
    assert code == 0, log
    row = detail["call"]
    assert (row["partner"], row["seat"], row["source"]) == ("kim", "1001", "sip")
    utterances = detail["utterances"]
    assert utterances and {u["speaker"] for u in utterances} == {"customer"}, utterances  # [siprec] mixed_speaker
    assert all(u["text"].strip() for u in utterances)
    assert "mixed_audio" in log  # the call notice saying how the mixed stream is screened
