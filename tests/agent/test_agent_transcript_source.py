"""Timed transcripts: parsing, bad lines, pacing by audio time."""

from __future__ import annotations

import asyncio

import pytest

from agent.transcript_source import TimedTranscript, TranscriptError, TranscriptSource
from agent_kit import jsonl
from models.transcript import Partial, Utterance

LINES = [
    {"speaker": "customer", "start": 2.0, "end": 3.0, "text": "you stupid idiot"},
    {"call": "x", "speaker": "partner", "start": 0.5, "end": 1.5, "text": "hello how can i help",
     "words": [{"word": "hello", "start": 0.5, "end": 0.8, "conf": 0.9}, {"word": "how", "start": 0.9, "end": 1.0},
               {"word": "can", "start": 1.0, "end": 1.2}, {"word": "i", "start": 1.2, "end": 1.3}, {"word": "help", "start": 1.3, "end": 1.5}]},
]


def test_reads_sorts_and_spreads_word_times(tmp_path):
    path = tmp_path / "call.jsonl"
    path.write_text(jsonl(LINES) + "\n", encoding="utf-8")
    transcript = TimedTranscript.read(path)
    assert [u.speaker for u in transcript.utterances] == ["partner", "customer"]
    assert transcript.duration == 3.0
    customer = transcript.utterances[1]
    assert [w.word for w in customer.words] == ["you", "stupid", "idiot"]
    assert customer.words[0].start == 2.0 and customer.words[-1].end == pytest.approx(3.0)
    assert transcript.utterances[0].words[0].conf == 0.9


@pytest.mark.parametrize("text, message", [
    ("", "no utterances"),
    ("{not json\n", ":1: not JSON"),
    ('[1, 2]\n', "must be a JSON object"),
    ('{"speaker": "bot", "start": 0, "end": 1, "text": "hi"}\n', "'speaker' must be"),
    ('{"speaker": "customer", "start": 2, "end": 1, "text": "hi"}\n', "before 'start'"),
    ('{"speaker": "customer", "start": "0", "end": 1, "text": "hi"}\n', "'start' must be a number"),
    ('{"speaker": "customer", "start": 0, "end": 1}\n', "'text' must be a string"),
    ('\n{"speaker": "customer", "start": 0, "end": 1, "text": "a", "words": [{"word": "a"}]}\n', ":2: 'start' must be"),
])
def test_bad_transcripts_are_one_line_errors(tmp_path, text, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(TranscriptError) as info:
        TimedTranscript.read(path)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert info.value.code == "bad_transcript"


def test_binary_file_is_refused(tmp_path):
    path = tmp_path / "call.jsonl"
    path.write_bytes(b"RIFF\xff\xfe\x00\x00WAVE")
    with pytest.raises(TranscriptError, match="not a UTF-8 text file"):
        TimedTranscript.read(path)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_paced_release_follows_audio_time():
    transcript = TimedTranscript.parse([jsonl(LINES[:1]), jsonl(LINES[1:])])
    clock = FakeClock()
    source = TranscriptSource(transcript, realtime=True, speed=2.0, clock=clock, sleep=clock.sleep)

    async def collect():
        out = []
        async for event in source:
            out.append((round(clock.now - 100.0, 3), event))
        return out

    events = asyncio.run(collect())
    finals = [(t, e.text) for t, e in events if isinstance(e, Utterance)]
    assert finals == [(0.75, "hello how can i help"), (1.5, "you stupid idiot")]  # end / speed
    partials = [(t, e.text) for t, e in events if isinstance(e, Partial)]
    assert partials[0] == (0.4, "hello") and partials[-1][1] == "you stupid"
    assert [t for t, _ in events] == sorted(t for t, _ in events)
    assert source.wall_time_of(3.0) == 101.5
    assert clock.now == pytest.approx(101.5)  # waits for the end of the call


def test_unpaced_release_is_immediate_and_skips_partials():
    transcript = TimedTranscript.parse(jsonl(LINES).splitlines())
    clock = FakeClock()
    source = TranscriptSource(transcript, clock=clock, sleep=clock.sleep)

    async def collect():
        return [event async for event in source]

    events = asyncio.run(collect())
    assert all(isinstance(e, Utterance) for e in events) and len(events) == 2
    assert clock.sleeps == []
