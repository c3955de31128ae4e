"""The agent records its calls into the console's recordings directory: a real
agent runtime and a real console over a real websocket; the real detector
decides which call is flagged (only the speech model is replaced by a script,
the words being beside the point here)."""

from __future__ import annotations

import asyncio
import random

import numpy as np
from qa_kit import get, running_console, tone_call

from agent.link import Backoff, ConsoleLink
from agent.recording import AgentRecording
from kernel.retention import RetentionPolicy
from agent.runtime import Agent
from audio.frames import AudioChunk
from kernel.recordings import sha256_file
from models.transcript import Utterance


class ScriptedTranscriber:
    """Says one customer utterance once the audio has passed its end."""

    def __init__(self, text: str, start: float, end: float) -> None:
        self.utterance = Utterance("customer", start, end, text)
        self.said = False

    async def push(self, chunk: AudioChunk):
        if not self.said and chunk.speaker == "customer" and chunk.end >= self.utterance.end:
            self.said = True
            return [self.utterance]
        return []

    async def flush(self):
        return []


async def line(seconds: float):
    customer, partner = tone_call(seconds)
    for start in range(0, len(customer), 160):
        yield AudioChunk("customer", customer[start:start + 160], 8000, start)
        yield AudioChunk("partner", partner[start:start + 160], 8000, start)
        if start % 1600 == 0:
            await asyncio.sleep(0)


def test_agent_records_keeps_flagged_and_drops_unflagged_audio(tmp_path):
    async def scenario():
        async with running_console(tmp_path) as console:
            rec_dir = console.config.recordings_dir
            recording = AgentRecording(rec_dir, RetentionPolicy())
            assert await recording.recover() == []
            scripts = iter([ScriptedTranscriber("i will break your neck", 1.0, 2.0), ScriptedTranscriber("thank you for your help", 1.0, 2.0)])
            link = ConsoleLink(console.url, agent_id="agent-1", token=console.tokens["agent-1"], backoff=Backoff(initial=0.02, maximum=0.1),
                               rng=random.Random(1))
            agent = Agent(link, model=object(), loudness=False, transcriber_factory=lambda *a: next(scripts), tap_factories=[recording.tap])
            await agent.start()
            try:
                flagged = agent.start_call(line(3.0), sample_rate=8000, source_kind="audiosocket", partner="ann", lossless=True)
                await flagged.wait()
                quiet = agent.start_call(line(3.0), sample_rate=8000, source_kind="audiosocket", partner="bob", lossless=True)
                await quiet.wait()
                await link.drain(timeout=10)
            finally:
                await agent.shutdown()
                recording.close()

            async with asyncio.timeout(10):
                while await console.db(console.store.recording, flagged.call_id) is None:
                    await asyncio.sleep(0.02)
            row = await console.db(console.store.recording, flagged.call_id)
            wav = rec_dir / row["path"]
            assert row["sha256"] == sha256_file(wav) and abs(row["duration"] - 3.0) < 1e-6
            assert (await console.db(console.store.call_detail, flagged.call_id))["findings"][0]["category"] == "threat"
            # the quiet call's audio went when it ended; its call and transcript stay
            assert await console.db(console.store.recording, quiet.call_id) is None
            assert sorted(p.name for p in rec_dir.iterdir()) == sorted([wav.name, wav.name + ".json"])
            assert (await console.db(console.store.call_detail, quiet.call_id))["utterances"][0]["text"] == "thank you for your help"

            # and QA can play what the agent recorded
            from qa_kit import open_browser
            qa = await open_browser(console)
            token = (await qa.login("quinn"))["token"]
            await qa.close()
            status, _, body = await asyncio.to_thread(get, console.port, f"/recordings/{flagged.call_id}.wav", {"Authorization": f"Bearer {token}"})
            assert status == 200 and body == wav.read_bytes()
            data = np.frombuffer(body[44:], dtype="<i2").reshape(-1, 2)
            customer, partner = tone_call(3.0)
            assert (data[:, 0] == customer).all() and (data[:, 1] == partner).all()

    asyncio.run(scenario())
