"""Media streams into the real agent, end to end: espeak-ng speech encoded to
mu-law, sent by clients written from the AudioHook and Twilio specifications
over real websockets, transcribed by the real Vosk engine (Korean model),
screened by the real detector; the console is a recorder in-process, and a
real Console for ``callshield agent --media-streams`` run as a subprocess."""

from __future__ import annotations

import asyncio
import base64
import sys
import uuid

import pytest

from kernel import protocol as p
from agent.media_streams import start_media_streams
from audio.media_streams import MediaStreamsConfig
from ingress_kit import make_agent, split_call
from media_clients import AudioHookClient, TwilioClient
from speech import KOREAN_CALL, call_samples
from agent_process import ROOT, agent_process, env_for, free_port

RATE = 8000
KEY = "genesys-integration-key"
SECRET = base64.b64encode(b"genesys client secret, 32 bytes!").decode()


@pytest.fixture(scope="module")
def short_call():
    """Partner greets, customer complains: (customer, partner) samples at 8 kHz."""
    stereo, _ = call_samples(KOREAN_CALL[:2], rate=RATE)
    return split_call(stereo)


def config(**kw) -> MediaStreamsConfig:
    return MediaStreamsConfig(**{"host": "127.0.0.1", "port": 0, "audiohook_keys": ((KEY, SECRET),), **kw})


def assert_both_speakers_right(link, call_id: str, call_seconds: float) -> None:
    utterances = link.of(p.UtteranceFinal, call_id)
    assert link.text(call_id, "customer").strip() and link.text(call_id, "partner").strip(), link.messages
    # the partner greets first (turn 1), the customer answers (turn 2): who said what is kept
    assert min(u.start for u in utterances if u.speaker == "partner") < min(u.start for u in utterances if u.speaker == "customer")
    assert all(0 <= u.start < u.end <= call_seconds + 0.5 for u in utterances)


def test_an_audiohook_call_is_transcribed_with_both_speakers_right(ko_model, ko_model_dir, executor, short_call):
    customer, partner = short_call
    conversation = str(uuid.uuid4())

    async def main():
        agent, link = make_agent(ko_model, ko_model_dir, executor, audio_queue_s=60.0)
        async with await start_media_streams(agent, config=config()) as ingress:
            client = await AudioHookClient(ingress.port, api_key=KEY, client_secret=SECRET).connect()
            await client.open(conversation, custom_config={"partner": "kim", "seat": "204"})
            half = len(customer) // 2 // 160 * 160
            await client.audio(customer[:half], partner[:half], speed=4.0)
            await client.ping()
            await client.audio(customer[half:], partner[half:], speed=4.0)
            await client.close()
            await agent.wait_calls()
            return link

    link = asyncio.run(main())
    [started] = link.of(p.CallStarted, conversation)
    assert (started.source, started.partner, started.seat, started.sample_rate) == ("audiohook", "kim", "204", RATE)
    assert link.of(p.CallEnded, conversation)[-1].reason == "hangup"
    assert_both_speakers_right(link, conversation, len(customer) / RATE)
    assert not [n for n in link.of(p.AgentNotice, conversation) if n.code in ("audio_dropped", "stream_summary")]


def test_an_audiohook_pause_shifts_the_rest_of_the_call_by_the_pause(ko_model, ko_model_dir, executor, short_call):
    customer, partner = short_call
    conversation = str(uuid.uuid4())
    cut = int(0.3 * RATE) // 160 * 160  # before the first word

    async def main():
        agent, link = make_agent(ko_model, ko_model_dir, executor, audio_queue_s=60.0)
        async with await start_media_streams(agent, config=config()) as ingress:
            client = await AudioHookClient(ingress.port, api_key=KEY, client_secret=SECRET).connect()
            await client.open(conversation)
            await client.audio(customer[:cut], partner[:cut], speed=4.0)
            await client.pause(5.0)
            await client.audio(customer[cut:], partner[cut:], speed=4.0)
            await client.close()
            await agent.wait_calls()
            return link

    link = asyncio.run(main())
    utterances = link.of(p.UtteranceFinal, conversation)
    assert utterances and min(u.start for u in utterances) >= 5.0 + cut / RATE - 0.1
    assert link.of(p.CallEnded, conversation)[-1].at >= 5.0 + len(customer) / RATE - 0.1


def test_a_twilio_call_is_transcribed_with_both_speakers_right(ko_model, ko_model_dir, executor, short_call):
    customer, partner = short_call

    async def main():
        agent, link = make_agent(ko_model, ko_model_dir, executor, audio_queue_s=60.0)
        async with await start_media_streams(agent, config=config(twilio_auth_token="twilio-token")) as ingress:
            client = await TwilioClient(ingress.port, auth_token="twilio-token").connect()
            await client.start(custom={"partner": "lee"})
            await client.both(customer, partner, speed=4.0)
            await client.stop()
            await agent.wait_calls()
            return link, client.call_sid

    link, call_sid = asyncio.run(main())
    [started] = link.of(p.CallStarted, call_sid)
    assert (started.source, started.partner) == ("twilio", "lee")
    assert_both_speakers_right(link, call_sid, len(customer) / RATE)


def test_a_twilio_stream_that_drops_mid_call_ends_the_call_keeping_what_was_said(ko_model, ko_model_dir, executor, short_call):
    customer, partner = short_call

    async def main():
        agent, link = make_agent(ko_model, ko_model_dir, executor, audio_queue_s=60.0)
        async with await start_media_streams(agent, config=config()) as ingress:
            client = await TwilioClient(ingress.port).connect()
            await client.start()
            await client.both(customer, partner, speed=4.0)
            await client.ws.close()  # no stop
            await agent.wait_calls()
            return link, client.call_sid

    link, call_sid = asyncio.run(main())
    assert link.of(p.CallEnded, call_sid)[-1].reason == "error"
    assert "stream_lost" in {n.code for n in link.of(p.AgentNotice, call_sid)}
    assert link.text(call_sid, "customer").strip() and link.text(call_sid, "partner").strip()


def test_agent_command_serves_media_streams_into_a_real_console(tmp_path, ko_model_dir, short_call):
    """``callshield agent --media-streams`` with keys from the config file: an
    AudioHook call and a Twilio call reach a real Console, both speakers right."""

    customer, partner = short_call
    port = free_port()
    keys = tmp_path / "audiohook-keys.toml"
    keys.write_text(f'"{KEY}" = "{SECRET}"\n')
    conf = tmp_path / "callshield.toml"
    conf.write_text(f'[media_streams]\naudiohook_keys_file = "{keys}"\ntwilio_customer_track = "inbound"\n')
    conversation = str(uuid.uuid4())

    async def main():
        async with agent_process(tmp_path, ko_model_dir, ["--media-streams", f"127.0.0.1:{port}"],
                                 ready="media streams accepted", config=conf) as run:
            hook = await AudioHookClient(port, api_key=KEY, client_secret=SECRET).connect()
            await hook.open(conversation, custom_config={"partner": "kim", "seat": "12"})
            twilio = await TwilioClient(port).connect()
            await twilio.start(custom={"partner": "lee", "seat": "13"})

            async def audiohook_call():
                await hook.audio(customer, partner, speed=4.0)
                await hook.close()

            async def twilio_call():
                await twilio.both(customer, partner, speed=4.0)
                await twilio.stop()

            await asyncio.gather(audiohook_call(), twilio_call())
            details = {d["call"]["id"]: d for d in await run.ended_calls(2)}
            status = await run.stop()
            return status, details, twilio.call_sid, run.log

    status, details, call_sid, log = asyncio.run(main())
    assert status == 0, log
    assert set(details) == {conversation, call_sid}, log
    for call_id, (partner_name, seat, source) in {conversation: ("kim", "12", "audiohook"), call_sid: ("lee", "13", "twilio")}.items():
        row = details[call_id]["call"]
        assert (row["partner"], row["seat"], row["source"]) == (partner_name, seat, source)
        utterances = details[call_id]["utterances"]
        assert {u["speaker"] for u in utterances} == {"customer", "partner"}, utterances
        assert min(u["start"] for u in utterances if u["speaker"] == "partner") < min(u["start"] for u in utterances if u["speaker"] == "customer")
    assert SECRET not in log


def test_agent_command_refuses_a_bad_media_streams_address_or_section(tmp_path):
    import subprocess

    def agent(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "cli", *args], cwd=ROOT, env=env_for(tmp_path), capture_output=True, text=True, timeout=60)

    out = agent("agent", "--console", "ws://127.0.0.1:9", "--token", "t", "--media-streams", "127.0.0.1:wss")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == ["callshield: error: --media-streams wants [HOST:]PORT, not '127.0.0.1:wss'"]
    conf = tmp_path / "bad.toml"
    conf.write_text('[media_streams]\ntwilio_customer_track = "caller"\n')
    out = agent("--config", str(conf), "agent", "--console", "ws://127.0.0.1:9", "--token", "t", "--media-streams", "9094")
    assert out.returncode == 2 and "[media_streams] twilio_customer_track must be one of inbound, outbound" in out.stderr


def test_a_streams_ids_go_to_the_end_call_webhook_by_the_names_the_docs_give():
    from agent.media_streams import _ids
    from audio.media_streams import StreamCall

    twilio = StreamCall(call_id="CA123", source_kind="twilio", sample_rate=RATE, queue_chunks=8,
                        details={"stream": "MZ9", "account": "AC1", "tracks": "inbound,outbound"})
    hook = StreamCall(call_id="conv-1", source_kind="audiohook", sample_rate=RATE, queue_chunks=8,
                      details={"conversation": "conv-1", "session": "s-2", "organization": ""})
    assert _ids(twilio) == {"twilio_call_sid": "CA123", "twilio_stream_sid": "MZ9", "twilio_account_sid": "AC1"}
    assert _ids(hook) == {"audiohook_conversation_id": "conv-1", "audiohook_session_id": "s-2"}
    docs = (ROOT / "docs" / "end-call-webhook.md").read_text(encoding="utf-8")
    assert all(f"`{name}`" in docs for name in [*_ids(twilio), *_ids(hook)])
