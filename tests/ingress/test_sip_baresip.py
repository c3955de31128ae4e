"""Plain SIP "listen" calls end to end: a real SIP user agent (baresip) dials
extension 1001 at `callshield agent --sip` and plays Korean speech as a PBX's
spy channel would; the agent transcribes the one mixed stream with the real
Vosk model into a real Console, as the customer's speech, for partner kim."""

from __future__ import annotations

import asyncio
import signal
import sys

from sip_kit import baresip_dials
from speech import KOREAN_CALL, speak, write_pcm16
from test_ingress_agent_command import ROOT, _wait_for_line, env_for, free_port

from console.config import ConsoleConfig
from console.server import Console

RATE = 8000


def test_a_plain_sip_call_from_baresip_is_transcribed_as_one_mixed_stream(tmp_path, ko_model_dir):
    wav = write_pcm16(tmp_path / "spy.wav", speak(KOREAN_CALL[1].text, rate=RATE), RATE)
    port, ua_port = free_port(), free_port()
    config = tmp_path / "callshield.toml"
    config.write_text('[siprec]\nhost = "127.0.0.1"\n[siprec.partners]\n"1001" = "kim"\n', encoding="utf-8")

    async def main():
        console = Console(ConsoleConfig(data_dir=tmp_path / "data", host="127.0.0.1", port=0))
        await console.start()
        token = await console.db(console.store.add_user, "floor-1", "agent")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cli", "--config", str(config), "agent", "--console", console.url, "--token", token,
            "--agent-id", "floor-1", "--model", str(ko_model_dir), "--sip", f"127.0.0.1:{port}",
            "--recordings", str(tmp_path / "data" / "recordings"),
            cwd=ROOT, env=env_for(tmp_path), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        seen: list[str] = []
        try:
            await _wait_for_line(proc.stderr, "SIPREC and SIP calls accepted", 60, seen)
            status, ua_log = await baresip_dials(f"sip:1001@127.0.0.1:{port}", wav, folder=tmp_path / "baresip", sip_port=ua_port, seconds=12)
            detail = None
            for _ in range(300):
                calls = await console.db(console.store.recent_calls, 10)
                if calls and calls[0].get("ended_at"):
                    detail = await console.db(console.store.call_detail, calls[0]["id"])
                    break
                await asyncio.sleep(0.1)
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(proc.wait(), 60)
            seen.append((await proc.stderr.read()).decode())
            return status, ua_log, code, detail, "".join(seen)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            await console.stop()

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
