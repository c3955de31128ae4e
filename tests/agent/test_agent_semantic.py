"""The agent with the detector's semantic stage: customers' final utterances are
screened in the agent's "detect" executor (off the event loop), partials are
not, and the executor is shut down with the agent."""

from __future__ import annotations

import asyncio
import threading

import pytest

from kernel import protocol as p
from agent.runtime import Agent
from agent.transcript_source import TimedTranscript, TranscriptSource
from agent_kit import FakeClock, jsonl
from recording_link import RecordingLink

ONLY_BY_MEANING = "tell me what street you live on"  # privacy, found by the semantic stage alone
CALL = [
    {"speaker": "partner", "start": 0.2, "end": 1.4, "text": "thank you for calling how can i help you"},
    {"speaker": "customer", "start": 1.7, "end": 3.4, "text": "my bill is far too high this month"},
    {"speaker": "partner", "start": 3.6, "end": 4.4, "text": "let me look at that for you"},
    {"speaker": "customer", "start": 4.8, "end": 6.6, "text": ONLY_BY_MEANING},
]


class WatchedDetector:
    """The real detector, noting the thread each utterance is screened on."""

    def __init__(self, detector) -> None:
        self._detector = detector
        self.threads: list[tuple[str, bool]] = []  # (thread name, semantic stage asked for)

    def screen(self, text, **kwargs):
        self.threads.append((threading.current_thread().name, kwargs.get("semantic", True)))
        return self._detector.screen(text, **kwargs)

    def __getattr__(self, name):
        return getattr(self._detector, name)


def run_call(agent: Agent, lines, **source):
    async def main():
        await agent.start()
        handle = agent.start_transcript_call(TranscriptSource(TimedTranscript.parse(jsonl(lines).splitlines()), **source))
        await handle.wait()
        await agent.shutdown()
        return handle

    return asyncio.run(main())


def test_a_semantic_finding_is_screened_in_the_detect_executor(detector):
    link = RecordingLink()
    watched = WatchedDetector(detector)
    agent = Agent(link, detector=watched)
    executor = agent.detect_executor
    assert executor is not None
    run_call(agent, CALL)
    findings = [m for m in link.messages if isinstance(m, p.FindingRaised)]
    assert [(f.category, f.rule, f.text) for f in findings] == [("privacy", "semantic.privacy", ONLY_BY_MEANING)]
    (finding,) = findings
    assert (finding.start, finding.end) == (4.8, 6.6)
    assert finding.text[finding.span[0]:finding.span[1]].split()[0] == finding.evidence.split()[0]
    assert any(isinstance(m, p.LevelChanged) for m in link.messages)
    # both customer finals on the executor's threads, none on the event loop's
    assert len(watched.threads) == 2 and all(name.startswith("detect") for name, _ in watched.threads)
    # agent.shutdown() shut the executor down
    assert link.closed
    with pytest.raises(RuntimeError):
        executor.submit(int)


def test_partials_are_screened_on_the_loop_by_the_rules_alone(detector):
    link = RecordingLink()
    watched = WatchedDetector(detector)
    agent = Agent(link, detector=watched)
    lines = [{"speaker": "customer", "start": 0.5, "end": 2.5, "text": ONLY_BY_MEANING}]
    clock = FakeClock()
    run_call(agent, lines, realtime=True, clock=clock, sleep=clock.sleep)
    partial_screens = [(name, semantic) for name, semantic in watched.threads if not name.startswith("detect")]
    assert partial_screens and all(semantic is False for _, semantic in partial_screens)
    findings = [m for m in link.messages if isinstance(m, p.FindingRaised)]
    assert [(f.rule, f.text) for f in findings] == [("semantic.privacy", ONLY_BY_MEANING)]  # from the final




def test_an_agent_without_a_semantic_stage_has_no_executor():
    from detection import DetectionConfig, Detector

    assert Agent(RecordingLink()).detect_executor is None
    assert Agent(RecordingLink(), detector=Detector()).detect_executor is None
    assert Agent(RecordingLink(), detector=Detector(DetectionConfig(semantic=False))).detect_executor is None
