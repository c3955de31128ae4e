"""Alerts while the customer is still speaking: the session screens customer
partials (paced timed transcripts and the transcriber's) and publishes stable
findings before the utterance ends; the final does not repeat them."""

from __future__ import annotations

import asyncio
import random

import numpy as np

from kernel import protocol as p
from agent.link import Backoff, ConsoleLink
from agent.runtime import Agent
from agent.call import CallInfo
from agent.session import CallSession
from agent.transcript_source import TimedTranscript, TranscriptSource
from agent_kit import FakeClock, TinyConsole, jsonl
from audio.frames import AudioChunk
from detection import CallScreen, DetectionConfig, Detector
from models.transcript import Partial, Utterance, Word

THREAT = "i know where you live and you will regret this"
CALL = [
    {"speaker": "partner", "start": 0.2, "end": 1.4, "text": "thank you for calling how can i help you"},
    {"speaker": "customer", "start": 1.7, "end": 3.4, "text": "my bill is far too high this month"},
    {"speaker": "customer", "start": 3.9, "end": 6.6, "text": THREAT},
]
THREAT_END = 6.6




def paced(lines, clock: FakeClock) -> TranscriptSource:
    return TranscriptSource(TimedTranscript.parse(jsonl(lines).splitlines()), realtime=True, clock=clock, sleep=clock.sleep)


def run_paced(lines, config: DetectionConfig | None = None):
    """Run a paced transcript call; every durable message with the audio time it was published at."""
    clock = FakeClock()
    source = paced(lines, clock)
    published: list[tuple[float, object]] = []

    def publish(message):
        if not isinstance(message, p.PartialTranscript):
            published.append((round(clock.now - 50.0, 3), message))  # the source starts at once, at 50.0

    async def main():
        info = CallInfo("c1", "kim", "1", "transcript", 0, "2026-11-30T00:00:00.000Z")
        session = CallSession(info, publish=publish, screen=CallScreen(Detector(), config))
        await session.run_transcript(source, duration=source.duration)
        return session

    session = asyncio.run(main())
    return published, session


def test_paced_transcript_publishes_the_threat_before_the_utterance_ends():
    published, session = run_paced(CALL)
    findings = [(t, m) for t, m in published if isinstance(m, p.FindingRaised)]
    assert [m.category for _, m in findings] == ["threat"]
    at, finding = findings[0]
    assert at < THREAT_END and finding.end < THREAT_END  # published while the customer is still speaking
    assert at == finding.end  # at the audio time the partial was released
    assert finding.text == "i know where you live and" and finding.start == 3.9
    assert finding.text[finding.span[0]:finding.span[1]] == finding.evidence == "i know where you live"
    levels = [(t, m) for t, m in published if isinstance(m, p.LevelChanged)]
    assert levels and levels[0][0] == at and levels[0][1].at == finding.end
    finals = [(t, m) for t, m in published if isinstance(m, p.UtteranceFinal) and m.text == THREAT]
    assert finals and finals[0][0] == THREAT_END
    assert published.index(findings[0]) < published.index(finals[0])
    assert session.findings == 1  # the final did not raise it again
    assert isinstance(published[-1][1], p.CallEnded) and published[-1][1].at == THREAT_END


def test_screen_partials_off_waits_for_the_final():
    published, session = run_paced(CALL, DetectionConfig(screen_partials=False))
    findings = [(t, m) for t, m in published if isinstance(m, p.FindingRaised)]
    assert [(t, m.category, m.text, m.end) for t, m in findings] == [(THREAT_END, "threat", THREAT, THREAT_END)]


def test_partner_partials_are_not_screened_in_a_session():
    lines = [{"speaker": "partner", "start": 0.5, "end": 3.2, "text": THREAT},
             {"speaker": "customer", "start": 3.5, "end": 4.5, "text": "ok thank you"}]
    published, session = run_paced(lines)
    assert not any(isinstance(m, (p.FindingRaised, p.LevelChanged)) for _, m in published)
    assert session.findings == 0 and session.level == "none"


def test_an_agent_over_a_real_link_sends_the_early_finding_ahead_of_the_utterance():
    async def main():
        console = await TinyConsole().start()
        link = ConsoleLink(console.url, agent_id="agent-1", token="good", backoff=Backoff(initial=0.02, maximum=0.1), rng=random.Random(3))
        agent = Agent(link)
        await agent.start()
        lines = [dict(CALL[2], start=0.1, end=1.0)]  # the threat, spoken fast: paced replay in about a second
        handle = agent.start_transcript_call(TranscriptSource(TimedTranscript.parse(jsonl(lines).splitlines()), realtime=True))
        await handle.wait()
        await agent.link.drain(timeout=10)
        got = [console.stored.by_event[e] for e in console.stored.order]
        partials = list(console.partials)
        await agent.shutdown()
        await console.stop()
        return got, partials

    got, partials = asyncio.run(main())
    kinds = [m.TYPE for m in got]
    assert kinds.index("finding") < kinds.index("utterance") and kinds.count("finding") == 1
    finding = next(m for m in got if isinstance(m, p.FindingRaised))
    assert finding.category == "threat" and finding.end < 1.0 and THREAT.startswith(finding.text)
    assert any(m.text == finding.text for m in partials)  # the screen showed the words the alert quotes


class ScriptedTranscriber:
    """Stands in for Vosk to isolate the session: returns scripted results per
    pushed chunk (the real transcriber's partials are tested in tests/models)."""

    def __init__(self, script: dict[int, list]) -> None:
        self.script = script
        self.pushed = 0

    async def push(self, chunk):
        self.pushed += 1
        return self.script.get(self.pushed, [])

    async def flush(self):
        return []


def test_audio_path_partials_raise_findings_dated_by_the_audio_fed():
    words = THREAT.split()
    final = Utterance("customer", 0.1, 2.9, THREAT, tuple(Word(w, 0.1 + i * 0.3, 0.4 + i * 0.3, 1.0) for i, w in enumerate(words)))
    script = {  # one 0.1 s chunk per push: partials every 0.3 s, as the transcriber throttles them
        12: [Partial("customer", 0.1, "i know where you")],
        15: [Partial("customer", 0.1, "i know where you live")],
        18: [Partial("customer", 0.1, "i know where you live and")],
        21: [Partial("partner", 0.5, "i know where you live and you")],
        30: [final],
    }
    published = []

    async def chunks():
        for k in range(32):
            yield AudioChunk("customer", np.zeros(800, dtype=np.int16), 8000, k * 800)

    async def main():
        info = CallInfo("c1", "kim", "1", "device", 8000, "2026-11-30T00:00:00.000Z")
        session = CallSession(info, publish=published.append, screen=CallScreen(Detector()),
                              transcriber=ScriptedTranscriber(script), lossless=True)
        await session.run_audio(chunks())
        return session

    session = asyncio.run(main())
    findings = [m for m in published if isinstance(m, p.FindingRaised)]
    assert [(f.category, f.text, f.start, f.end) for f in findings] == [("threat", "i know where you live and", 0.1, 1.8)]
    assert published.index(findings[0]) < next(i for i, m in enumerate(published) if isinstance(m, p.UtteranceFinal))
    assert session.findings == 1
