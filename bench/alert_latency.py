"""Alert latency: from the end of the offending word to the alert on a supervisor's socket.

    .venv/bin/python bench/alert_latency.py [--calls 1,10,50] [--browsers 10] [--spread S] [--partials on|off|both] [--rules-only]

For each round, a real console (SQLite in a temporary directory, websockets on
127.0.0.1) runs with ``--browsers`` supervisor sockets logged in, and one
agent (one link, one shared detector, as on a site) replays ``N`` timed
transcripts at once, in real time, so transcript time maps to wall time:
audio second ``t`` of a call is released at ``start + t`` on the event loop's
clock. Call starts are spread over the first second. Every call escalates
twice (an ``alert``, then ``end_call_recommended``), so each round measures
``2 x N x browsers`` arrivals.

The detector is the full one, as the commands build it
(``load_settings(None).detector(config)``: rules + semantic stage, its
sentence encoder looked up like ``callshield agent`` does), so the agent
screens customers' final utterances in its "detect" executor and the
latency includes the semantic stage. ``--rules-only`` runs the rules alone
(``[detection] semantic = false``: no encoder, no executor), to compare.
The environment's ``OPENBLAS_NUM_THREADS`` is printed with each table: the
encoder's numpy threads multiplied by the executor's threads oversubscribe
the cores (run with ``OPENBLAS_NUM_THREADS=1``, as the agent should be).

``--partials`` picks the detection mode (``[detection] screen_partials``):
``on`` (the default) screens the customer's word-by-word partials, so a
stable finding alerts while the customer is still speaking; ``off`` screens
final utterances only (the behaviour before early findings); ``both`` runs
every round in both modes, to compare. Each table says which mode it ran.

Two latencies per arrival, p50 and p95:

- *word*: from the end of the offending word (the last word of the
  finding's evidence, in transcript time) to the alert's arrival. With
  partials off this includes waiting for the rest of the utterance; with
  partials on, for the one word after the evidence that makes it stable.
- *known*: from when the agent could first know (the end of the utterance,
  or with partials on the release of the partial that made the finding
  stable) to the arrival: the pipeline's own latency (agent, link, store,
  fan-out, socket).

Everything runs in this one process and event loop (console, agent and ten
browsers sharing one core), which is harsher than a real deployment.
Target: p95 under 1 second at 50 calls.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.link import Backoff, ConsoleLink  # noqa: E402
from cli.settings import load_settings  # noqa: E402
from agent.runtime import Agent  # noqa: E402
from agent.transcript_source import TimedTranscript, TranscriptSource  # noqa: E402
from detection.config import DetectionConfig  # noqa: E402
from models.transcript import Partial  # noqa: E402
from console.config import ConsoleConfig  # noqa: E402
from console.server import Console  # noqa: E402

PASSWORD = "bench-supervisor-password"

CALL = [  # recognizer-style timed transcript; the customer escalates twice
    {"speaker": "partner", "start": 0.2, "end": 1.4, "text": "thank you for calling how can i help you"},
    {"speaker": "customer", "start": 1.7, "end": 3.4, "text": "my bill is far too high this month"},
    {"speaker": "partner", "start": 3.6, "end": 4.6, "text": "let me look at that for you"},
    {"speaker": "customer", "start": 4.8, "end": 5.6, "text": "you stupid idiot"},
    {"speaker": "customer", "start": 5.9, "end": 7.6, "text": "i know where you live and you will regret this"},
    {"speaker": "partner", "start": 7.8, "end": 8.6, "text": "please stop threatening me"},
    {"speaker": "customer", "start": 8.8, "end": 10.4, "text": "i will break every bone in your body"},
]


def offending_word_end(text: str, span, words) -> float:
    """End time of the last word that overlaps the finding's evidence span."""
    if span is None:
        return words[-1].end
    first, last = span
    position, end = 0, words[-1].end
    for word in words:
        at = text.find(word.word, position)
        if at < 0:
            break
        position = at + len(word.word)
        if at < last and position > first:
            end = word.end
    return end


def expected_alerts(transcript: TimedTranscript, detector, config: DetectionConfig) -> dict[float, float]:
    """Alert time (``at``, s) -> end of the offending word (s), by running the
    detector on the script as the agent will hear it (paced: partials too)."""
    from detection.call import CallScreen

    screen = CallScreen(detector, config)
    by_start = {(u.speaker, u.start): u for u in transcript.utterances}
    out: dict[float, float] = {}
    for at, event in TranscriptSource(transcript, realtime=True).events():
        if isinstance(event, Partial):
            utterance = by_start[(event.speaker, event.start)]
            screening = screen.hear_partial(event.speaker, event.text, event.start, at)
        else:
            utterance = event
            screening = screen.hear(event.speaker, event.text, event.start, event.end)
        change = screening.level_change
        if change is not None and change.level in ("alert", "end_call_recommended"):
            ends = [offending_word_end(f.text, f.span, utterance.words) for f in screening.findings if f.span is not None]
            out[round(change.at, 3)] = max(ends) if ends else at
    return out


class Supervisor:
    """One browser socket, logged in as a supervisor; stamps every alert's arrival."""

    def __init__(self, url: str, user: str) -> None:
        self.url, self.user = url + "/ws/browser", user
        self.arrivals: list[tuple[str, float, float]] = []  # (call_id, alert at, arrival on the loop clock)
        self.task = None

    async def open(self) -> None:
        from websockets.asyncio.client import connect

        self.ws = await connect(self.url, proxy=None, max_size=None)
        await self.ws.send(json.dumps({"v": 1, "type": "login", "user": self.user, "password": PASSWORD}))
        while json.loads(await self.ws.recv())["type"] != "snapshot":
            pass
        self.task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        async for raw in self.ws:
            now = loop.time()
            if '"type":"alert"' in raw[:40]:  # cheap pre-filter: only alerts are parsed
                alert = json.loads(raw)["alert"]
                self.arrivals.append((alert["call_id"], round(alert["at"], 3), now))

    async def close(self) -> None:
        await self.ws.close()
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


async def one_round(calls: int, browsers: int, transcript: TimedTranscript, expected: dict[float, float], seed: int, spread: float,
                    config: DetectionConfig, detector) -> dict:
    loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory() as data:
        console = Console(ConsoleConfig(data_dir=Path(data), host="127.0.0.1", port=0))
        await console.start()
        token = await console.db(console.store.add_user, "bench-agent", "agent")
        for i in range(browsers):
            await console.db(console.store.add_user, f"sup{i}", "supervisor", PASSWORD)
        screens = [Supervisor(console.url, f"sup{i}") for i in range(browsers)]
        await asyncio.gather(*(s.open() for s in screens))
        link = ConsoleLink(console.url, agent_id="bench-agent", token=token, backoff=Backoff(initial=0.05, maximum=0.5))
        agent = Agent(link, detection_config=config, detector=detector)
        if (detector.semantic is not None) != (agent.detect_executor is not None):
            raise RuntimeError("the agent should screen final utterances in its detect executor exactly when the detector has a semantic stage")
        await agent.start()
        await link.wait_connected(timeout=10)

        rng = random.Random(seed)
        sources: dict[str, TranscriptSource] = {}
        cpu0, wall0 = time.process_time(), loop.time()

        async def start_later(delay: float) -> None:
            await asyncio.sleep(delay)
            source = TranscriptSource(transcript, realtime=True)
            handle = agent.start_transcript_call(source, partner="bench-partner", seat="b")
            sources[handle.call_id] = source
            await handle.wait()

        await asyncio.gather(*(start_later(rng.random() * spread) for _ in range(calls)))
        await link.drain(timeout=30)
        want = calls * len(expected) * browsers
        deadline = loop.time() + 10
        while sum(len(s.arrivals) for s in screens) < want and loop.time() < deadline:
            await asyncio.sleep(0.05)
        cpu, wall = time.process_time() - cpu0, loop.time() - wall0

        word, utterance = [], []
        for screen in screens:
            for call_id, at, arrived in screen.arrivals:
                source = sources[call_id]
                word.append(arrived - source.wall_time_of(expected.get(at, at)))
                utterance.append(arrived - source.wall_time_of(at))
        got = sum(len(s.arrivals) for s in screens)
        await asyncio.gather(*(s.close() for s in screens))
        await agent.shutdown(grace=1)
        await console.stop()
    return {
        "calls": calls, "browsers": browsers, "expected": want, "arrivals": got,
        "word_p50": percentile(word, 0.5), "word_p95": percentile(word, 0.95),
        "utt_p50": percentile(utterance, 0.5), "utt_p95": percentile(utterance, 0.95), "utt_max": max(utterance, default=float("nan")),
        "cpu_share": cpu / wall if wall else float("nan"), "dropped_browsers": console.stats.browsers_dropped,
    }


async def main(args) -> int:
    transcript = TimedTranscript.parse(json.dumps(line) for line in CALL)
    spread = transcript.duration if args.spread is None else args.spread
    modes = {"on": [True], "off": [False], "both": [False, True]}[args.partials]
    verdicts = []
    settings = load_settings(None)
    for partials in modes:
        config = DetectionConfig(screen_partials=partials, semantic=not args.rules_only)
        detector = settings.detector(config)
        expected = expected_alerts(transcript, detector, config)
        if len(expected) < 1:
            print("the detector raised no alert on the bench call; nothing to measure", file=sys.stderr)
            return 1
        mode = "partials on (early findings from live hypotheses)" if partials else "partials off (final utterances only)"
        stages = ("rules + semantic stage (final customer utterances in the agent's detect executor)"
                  if detector.semantic is not None else "rules alone")
        print(f"mode: {mode}; detector: {stages}; OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}")
        print(f"bench call: {transcript.duration:.1f} s, {len(expected)} alert(s) per call at "
              + ", ".join(f"{at:.2f} s (offending word ends {word:.2f} s)" for at, word in sorted(expected.items()))
              + f"; call starts spread over {spread:.1f} s")
        header = f"{'calls':>5} {'browsers':>8} {'arrived':>9} {'word p50':>9} {'word p95':>9} {'known p50':>9} {'known p95':>9} {'known max':>9} {'cpu/wall':>8}"
        print(header)
        rows = []
        for n, calls in enumerate(args.calls):
            row = await one_round(calls, args.browsers, transcript, expected, seed=n, spread=spread, config=config,
                                  detector=detector)
            rows.append(row)
            print(f"{row['calls']:>5} {row['browsers']:>8} {row['arrivals']:>4}/{row['expected']:<4} "
                  f"{row['word_p50']:>8.3f}s {row['word_p95']:>8.3f}s {row['utt_p50']:>8.3f}s {row['utt_p95']:>8.3f}s {row['utt_max']:>8.3f}s "
                  f"{row['cpu_share']:>8.2f}", flush=True)
        last = rows[-1]
        verdict = "met" if last["word_p95"] < 1.0 and last["arrivals"] == last["expected"] else "NOT met"
        verdicts.append(verdict)
        print(f"target p95 < 1 s (end of offending word -> supervisor socket) at {last['calls']} calls, partials "
              f"{'on' if partials else 'off'}, {'rules alone' if detector.semantic is None else 'rules + semantic'}: {verdict}\n")
    return 0 if verdicts[-1] == "met" else 1


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=lambda s: [int(x) for x in s.split(",")], default=[1, 10, 50])
    parser.add_argument("--browsers", type=int, default=10)
    parser.add_argument("--spread", type=float, default=None, help="seconds over which call starts are spread (default: the call's length)")
    parser.add_argument("--partials", choices=("on", "off", "both"), default="on",
                        help="screen customer partials (early findings), final utterances only, or compare both (default: on)")
    parser.add_argument("--rules-only", action="store_true",
                        help="the rules alone ([detection] semantic = false), to compare with the full detector")
    sys.exit(asyncio.run(main(parser.parse_args())))
