"""Call sessions in the agent: real Vosk on a recorded call, a timed transcript
with a threat through the real detector, isolation, drops, authorizations, shutdown."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import numpy as np
import pytest

from kernel import protocol as p
from agent.link import Backoff, ConsoleLink
from agent.runtime import Agent
from agent.settings import AgentSettings
from agent.transcript_source import TimedTranscript, TranscriptSource
from agent_kit import THREAT_CALL, TinyConsole, jsonl, types_of, until
from audio.errors import AudioError
from audio.frames import AudioChunk
from models.decoding import DecodingPlan
from models.transcriber import SharedModel
from speech import KOREAN_CALL, write_call

FAST = Backoff(initial=0.02, maximum=0.1)


def link_to(console: TinyConsole) -> ConsoleLink:
    return ConsoleLink(console.url, agent_id="agent-1", token="good", backoff=FAST, rng=random.Random(3))


def events(console: TinyConsole, call_id: str | None = None) -> list:
    out = [console.stored.by_event[e] for e in console.stored.order]
    return [m for m in out if call_id is None or getattr(m, "call_id", None) == call_id]


def audio_time(message) -> float:
    if isinstance(message, p.CallStarted):
        return 0.0
    if isinstance(message, (p.UtteranceFinal, p.FindingRaised)):
        return message.end
    return getattr(message, "at", 0.0)


class NullTranscriber:
    """Stands in for Vosk where a test is about the session, not the words."""

    async def push(self, chunk):
        return []

    async def flush(self):
        return []


def transcript_source(lines, **kwargs) -> TranscriptSource:
    return TranscriptSource(TimedTranscript.parse(jsonl(lines).splitlines()), **kwargs)


@pytest.fixture(scope="module")
def korean_call(tmp_path_factory, ko_model, ko_model_dir):
    """A short two-speaker call at the phone rate, G.711 mu-law, made by espeak-ng and sox."""
    path = tmp_path_factory.mktemp("calls") / "call.wav"
    spans = write_call(path, KOREAN_CALL[:2], rate=8000, encoding="mu-law")
    return path, spans


def test_recorded_call_through_the_real_model_gives_events_in_audio_order(korean_call, ko_model, ko_model_dir):
    from audio.wav import WavSource
    from models.transcriber import SharedModel, recognizer_executor

    path, spans = korean_call

    async def main():
        console = await TinyConsole().start()
        executor = recognizer_executor(2)
        agent = Agent(link_to(console), model=SharedModel(ko_model, ko_model_dir), recognizer_executor=executor)
        await agent.start()
        source = WavSource(path)
        handle = agent.start_call(source, sample_rate=source.sample_rate, partner="kim", seat="12", source_kind="wav", lossless=True)
        await handle.wait()
        await agent.link.drain(timeout=30)
        got = events(console, handle.call_id)
        await agent.shutdown()
        executor.shutdown()
        await console.stop()
        return got

    got = asyncio.run(main())
    kinds = types_of(got)
    assert kinds[0] == "call_started" and kinds[-1] == "call_ended"
    started, ended = got[0], got[-1]
    assert (started.partner, started.seat, started.source, started.sample_rate) == ("kim", "12", "wav", 8000)
    assert ended.reason == "end_of_file"
    call_length = spans[-1][2] + 0.8  # write_call's tail
    assert ended.at == pytest.approx(call_length, abs=0.05)
    utterances = [m for m in got if isinstance(m, p.UtteranceFinal)]
    assert {u.speaker for u in utterances} == {"customer", "partner"}
    for u in utterances:
        assert u.text.strip() and u.words
        speaker_spans = [(s, e) for who, s, e in spans if who == u.speaker]
        assert any(s - 0.5 <= u.start and u.end <= e + 0.5 for s, e in speaker_spans), (u, spans)
    assert all(isinstance(m, (p.CallStarted, p.UtteranceFinal, p.CallEnded)) for m in got), kinds  # no drops, no errors
    for speaker in ("customer", "partner"):
        ends = [u.end for u in utterances if u.speaker == speaker]
        assert ends == sorted(ends)
    assert [m.seq for m in got] == sorted(m.seq for m in got)


def test_transcript_with_a_threat_gives_findings_and_levels_in_order():
    async def main():
        console = await TinyConsole().start()
        agent = Agent(link_to(console))
        await agent.start()
        handle = agent.start_transcript_call(transcript_source(THREAT_CALL), partner="kim")
        await handle.wait()
        await agent.link.drain(timeout=10)
        got = events(console, handle.call_id)
        await agent.shutdown()
        await console.stop()
        return got, handle

    got, handle = asyncio.run(main())
    kinds = types_of(got)
    assert kinds[0] == "call_started" and kinds[-1] == "call_ended"
    assert got[0].source == "transcript" and got[0].sample_rate == 0
    assert got[-1].reason == "end_of_file" and got[-1].at == 7.4
    assert kinds.count("utterance") == len(THREAT_CALL)
    findings = [m for m in got if isinstance(m, p.FindingRaised)]
    categories = [f.category for f in findings]
    assert "insult" in categories and "threat" in categories
    assert not any(f.text == "my bill is far too high this month" for f in findings), "anger at a bill is not harassment"
    levels = [m for m in got if isinstance(m, p.LevelChanged)]
    assert levels and levels[0].previous == "none"
    assert any(level.level in ("alert", "end_call_recommended") for level in levels)
    for before, after in zip(levels, levels[1:]):
        assert after.previous == before.level
    # every finding follows its utterance; the sequence is in audio-time order
    for finding in findings:
        at = got.index(finding)
        assert any(isinstance(m, p.UtteranceFinal) and m.text == finding.text for m in got[:at])
    times = [audio_time(m) for m in got]
    assert times == sorted(times)
    assert handle.session.level == levels[-1].level


def test_one_failing_call_does_not_stall_the_others():
    class BrokenLine:
        """Audio that fails after half a second, like a dead PBX stream."""

        def __aiter__(self):
            return self._chunks()

        async def _chunks(self):
            for k in range(25):
                yield AudioChunk("customer", np.zeros(160, dtype=np.int16), 8000, k * 160)
                await asyncio.sleep(0)
            raise AudioError("the line went dead", code="stream_lost")

    async def main():
        console = await TinyConsole().start()
        agent = Agent(link_to(console), model=object(), transcriber_factory=lambda *a: NullTranscriber())
        broken = agent.start_call(BrokenLine(), sample_rate=8000, source_kind="audiosocket", partner="lee")
        fine = agent.start_transcript_call(transcript_source(THREAT_CALL), partner="kim")
        await agent.start()
        await asyncio.gather(broken.wait(), fine.wait())
        await agent.link.drain(timeout=10)
        out = events(console, broken.call_id), events(console, fine.call_id)
        await agent.shutdown()
        await console.stop()
        return out

    broken_events, fine_events = asyncio.run(main())
    assert types_of(broken_events) == ["call_started", "notice", "call_ended"]
    assert broken_events[1].code == "stream_lost" and "line went dead" in broken_events[1].message
    assert broken_events[2].reason == "error" and broken_events[2].at == pytest.approx(0.5)
    assert types_of(fine_events)[-1] == "call_ended" and fine_events[-1].reason == "end_of_file"
    assert any(isinstance(m, p.FindingRaised) for m in fine_events)


def test_a_slow_transcriber_drops_oldest_audio_and_says_so():
    from agent.call import CallInfo
    from agent.session import CallSession

    class SlowTranscriber:
        def __init__(self):
            self.heard = 0

        async def push(self, chunk):
            self.heard += 1
            await asyncio.sleep(0.002)
            return []

        async def flush(self):
            return []

    async def burst():
        for k in range(200):
            yield AudioChunk("customer", np.zeros(160, dtype=np.int16), 8000, k * 160)

    published = []

    async def main():
        info = CallInfo("c1", "kim", "1", "device", 8000, "2026-11-30T00:00:00.000Z")
        transcriber = SlowTranscriber()
        from detection.call import CallScreen
        from detection.detector import Detector

        session = CallSession(info, publish=published.append, screen=CallScreen(Detector()), transcriber=transcriber, audio_queue_chunks=10)
        await session.run_audio(burst())
        return transcriber

    transcriber = asyncio.run(main())
    notices = [m for m in published if isinstance(m, p.AgentNotice) and m.code == "audio_dropped"]
    dropped = sum(n.dropped for n in notices)
    assert dropped > 0 and dropped + transcriber.heard == 200
    assert isinstance(published[-1], p.CallEnded) and published[-1].at == pytest.approx(4.0)


class Line:
    """A live line: sends silence until hung up; its control records what the agent asked."""

    def __init__(self) -> None:
        self.hung_up = asyncio.Event()
        self.calls: list = []

    async def end_call(self, closing_message):
        self.calls.append(closing_message)
        self.hung_up.set()

    def __aiter__(self):
        return self._chunks()

    async def _chunks(self):
        k = 0
        while not self.hung_up.is_set():
            yield AudioChunk("customer", np.zeros(160, dtype=np.int16), 8000, k * 160)
            k += 1
            await asyncio.sleep(0.005)


def _agent_with_null_transcriber(console, settings=None, **kwargs) -> Agent:
    """An agent whose calls are isolated from Vosk (their audio is not transcribed)."""
    return Agent(link_to(console), settings=settings, model=object(), loudness=False, transcriber_factory=lambda *a: NullTranscriber(), **kwargs)


def _start_line(agent: Agent, line: Line):
    return agent.start_call(line, sample_rate=8000, source_kind="audiosocket", control=line, partner="kim")


@pytest.mark.parametrize("hangup", [True, False])
def test_end_call_authorization_hangs_up_only_when_configured(tmp_path, hangup):
    closing = tmp_path / "closing.wav"
    settings = AgentSettings(hangup_on_authorization=hangup, closing_message=closing)

    async def main():
        console = await TinyConsole().start()
        agent = _agent_with_null_transcriber(console, settings)
        await agent.start()
        await agent.link.wait_connected(timeout=10)
        line = Line()
        handle = _start_line(agent, line)
        await until(lambda: handle.session.audio_end > 0.1)
        auth = p.EndCallAuthorized(call_id=handle.call_id, authorization_id="auth-1", by="lee", reason="threats", authorized_at="2026-11-30T00:00:00.000Z")
        await console.send_all(auth)
        await console.send_all(auth)  # resent after a reconnect: acted on once
        if hangup:
            await asyncio.wait_for(handle.wait(), 10)
        else:
            await asyncio.sleep(0.3)
            assert not handle.done
            handle.stop("hangup")
            await handle.wait()
        await agent.link.drain(timeout=10)
        got = events(console, handle.call_id)
        await agent.shutdown()
        await console.stop()
        return line, got

    line, got = asyncio.run(main())
    if hangup:
        assert line.calls == [closing]
        assert types_of(got)[-2:] == ["notice", "call_ended"]
        assert got[-2].code == "call_hung_up" and "lee" in got[-2].message
        assert got[-1].reason == "authorized_end"
    else:
        assert line.calls == []
        assert got[-1].reason == "hangup"


@pytest.mark.parametrize("sources", [(), ("audiosocket",)])
def test_a_call_with_its_own_control_gets_the_webhook_only_when_its_source_is_listed(sources):
    """By default the end-call webhook is for calls the agent cannot hang up; a
    site may list a source to have its calls' ends sent too (besides the hang-up)."""
    from webhook_receiver import SECRET, Receiver

    from agent.end_call_webhook import EndCallWebhookSettings

    async def main(receiver):
        console = await TinyConsole().start()
        agent = _agent_with_null_transcriber(console, AgentSettings(hangup_on_authorization=True),
                                             end_call_webhook=EndCallWebhookSettings(url=receiver.url, secret=SECRET, sources=sources))
        await agent.start()
        await agent.link.wait_connected(timeout=10)
        line = Line()
        handle = _start_line(agent, line)
        await until(lambda: handle.session.audio_end > 0.1)
        await console.send_all(p.EndCallAuthorized(call_id=handle.call_id, authorization_id="auth-1", by="lee", reason="threats",
                                                   authorized_at="2026-11-30T00:00:00.000Z"))
        await asyncio.wait_for(handle.wait(), 10)
        await agent.end_call_webhook.idle(10)
        await agent.link.drain(timeout=10)
        got = events(console, handle.call_id)
        await agent.shutdown()
        await console.stop()
        return line, got

    with Receiver() as receiver:
        line, got = asyncio.run(main(receiver))
    ended = [m for m in got if isinstance(m, p.CallEnded)]
    assert len(line.calls) == 1 and ended[0].reason == "authorized_end"  # hung up through its control either way
    outcomes = [m.outcome for m in got if isinstance(m, p.EndCallWebhookOutcome)]
    assert (len(receiver.received), outcomes) == ((1, ["delivered"]) if sources else (0, []))


def test_shutdown_stops_sources_finishes_taps_then_closes_the_link():
    order: list[str] = []

    class Tap:
        def __init__(self, info):
            self.chunks = 0
            self.info = info
            self.session = None

        def attach(self, session):
            self.session = session

        def push(self, chunk):
            self.chunks += 1

        async def close(self):
            order.append("tap closed")

    async def main():
        console = await TinyConsole().start()
        agent = _agent_with_null_transcriber(console, tap_factories=[Tap])
        await agent.start()
        lines = [Line(), Line()]
        handles = [_start_line(agent, line) for line in lines]
        await until(lambda: all(h.session.audio_end > 0.05 for h in handles))
        await agent.shutdown(grace=5)
        order.append("link closed" if agent.link._stopped.is_set() else "link open")  # noqa: SLF001
        got = [events(console, h.call_id) for h in handles]
        pending = agent.link.pending
        await console.stop()
        return got, pending, handles

    got, pending, handles = asyncio.run(main())
    assert pending == 0, "the link waited for the last acks"
    for call_events in got:
        assert call_events[-1].TYPE == "call_ended" and call_events[-1].reason == "shutdown"
    assert order == ["tap closed", "tap closed", "link closed"]
    for h in handles:
        tap = h.session.taps[0]
        assert tap.chunks > 0 and tap.session is h.session and tap.info.call_id == h.call_id


def test_the_agent_keeps_as_many_recognizers_warm_as_its_plan_says():
    model = SharedModel(None, Path("/nowhere"))
    link = ConsoleLink("ws://127.0.0.1:9", agent_id="agent-1", token="good")
    Agent(link, model=model, decoding=DecodingPlan(warm_recognizers=3))
    assert model.keep_warm == 3
    Agent(link, model=object())  # a stand-in model is left alone
