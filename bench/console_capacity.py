"""How many live calls the console carries: one replica on SQLite against one
to three replicas on PostgreSQL, linked through NATS or through PostgreSQL's
LISTEN/NOTIFY, side by side.

Simulated agents (real ``agent/link.ConsoleLink`` links, several calls each)
replay timed calls into the console replicas as real agents send them: a
call starts, then every ``--turn`` seconds a line (the customer's preceded by
three partials), and one call in four turns threatening at its third
customer line (the finding and the level change to ``alert``); the call
ends after ``--seconds``. Call starts are spread over the first turn.
Agents link to the replicas in turn (each given every replica's URL). With
the default 4 agents every threatening call (one in four) is on the same
agent's link, so whatever delays that one link delays every alert.
Browsers watch: ``--supervisors`` supervisors watching everything and one
partner per call watching their own call, spread over the replicas too.

For each setup and each ``--calls`` count it prints:

- ``events/s``: durable events stored per second (over all replicas);
- ``alert p50/p95/p99``: from the agent publishing the level change to each
  supervisor's screen showing the alert, milliseconds, over every
  (supervisor, alert) pair;
- ``lost``: alerts a supervisor never got (must be 0), and final lines the
  store lacks (must be 0);
- ``shed/dropped``: partials shed by the consoles and agents, browsers
  dropped as too slow, messages lost between replicas, screens refreshed;
- ``store conflicts``: the replicas' write transactions that raced another
  writer and ran again, those that lost every try, and the agent links the
  consoles closed on a store error (``/healthz`` ``store_conflicts`` and
  ``agent_links_store_errors``; per method on the line after each run);
  after each run too, the transactions that stored agents' events and the
  events each stored (``/healthz`` ``event_runs``: the group commit);
- ``CPU``: each console process's CPU time over the run's wall time, per 100
  calls (100 % = one core busy); and the same for PostgreSQL (all its
  processes: the store, and with ``notify2`` the fan-out too) and nats-server;
- ``bench CPU``: this process's own CPU (the simulated agents and every
  browser, one event loop), % of one core over the run: near 100 % it, not
  the consoles, sets the pace;
- ``load``: the machine's 1-minute load average at the end of the run
  (other work on the machine counts against the figures).

Setups (``--setups``): ``sqlite1`` (one console, SQLite), ``pg1``/``pg2``/``pg3``
(PostgreSQL store, one, two or three replicas linked through NATS), ``notify2``
(two replicas linked through LISTEN/NOTIFY on the store's database,
``[console] fanout = "postgresql"``).

    .venv/bin/python bench/console_capacity.py [--calls 30] [--seconds 12] [--supervisors 10] [--agents 4] [--setups sqlite1,pg2] [--trace FILE]

``--trace FILE`` appends what the agents' links, the replicas and the alerts
did every 0.25 s (JSON lines, see ``_trace``); the replicas' logs stay in
``callshield-capacity-*`` under the temporary directory.

``--calls 100,300,1000`` runs each size in turn (for the sizing table in
docs/deployment.md; minutes each, and people to add: a partner per call).
Everything runs on this machine (agents, browsers, PostgreSQL, NATS), so its
other load counts against the figures: report them with the load.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "console")]

from websockets.asyncio.client import connect  # noqa: E402

from kernel.backoff import Backoff  # noqa: E402
from agent.link import ConsoleLink  # noqa: E402
from console.store import Store  # noqa: E402
from console_kit import Browser  # noqa: E402
from kernel import protocol as p  # noqa: E402
from replica_kit import Replica  # noqa: E402

SETUPS = {
    "sqlite1": ("SQLite, 1 replica", 1, ""),
    "pg1": ("PostgreSQL+NATS, 1 replica", 1, "nats"),
    "pg2": ("PostgreSQL+NATS, 2 replicas", 2, "nats"),
    "pg3": ("PostgreSQL+NATS, 3 replicas", 3, "nats"),
    "notify2": ("PostgreSQL+LISTEN/NOTIFY, 2 replicas", 2, "postgresql"),
}
"""name: (label, replicas, fan-out between them)."""
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


@dataclass
class Watch:
    """What the browsers saw."""

    published: dict[str, float] = field(default_factory=dict)  # call id -> when its alert's level change was published
    first_seen: dict[str, float] = field(default_factory=dict)  # call id -> when a supervisor first saw its alert
    latencies: list[float] = field(default_factory=list)
    alerts_seen: dict[str, set[str]] = field(default_factory=dict)  # supervisor -> call ids


async def watch(browser: Browser, name: str, w: Watch) -> None:
    seen = w.alerts_seen.setdefault(name, set())
    try:
        async for raw in browser.ws:
            if '"type":"alert"' not in raw[:40]:
                continue
            now = time.monotonic()
            call_id = json.loads(raw)["alert"]["call_id"]
            if call_id not in seen and call_id in w.published:
                seen.add(call_id)
                w.latencies.append(now - w.published[call_id])
                w.first_seen.setdefault(call_id, now)
    except Exception:  # closed: counted as alerts not seen
        return


async def play_call(link: ConsoleLink, call_id: str, partner: str, *, seconds: float, turn: float, threat: bool, delay: float,
                    w: Watch, ids) -> int:
    """One timed call into ``link``; the final lines published."""
    await asyncio.sleep(delay)
    start = time.monotonic()
    link.publish(p.CallStarted(seq=0, event_id=next(ids), call_id=call_id, partner=partner, seat="1", source="bench",
                               started_at="2026-12-06T00:00:00.000Z"))
    lines = 0
    for n in itertools.count():
        at = (n + 1) * turn
        if at >= seconds:
            break
        customer = n % 2 == 0
        speaker = "customer" if customer else "partner"
        text = "i know where you live and i will break your neck" if threat and n == 4 else f"line {n} of the call about my bill"
        if customer:
            for k in range(3):
                await _until(start + at - turn + (k + 1) * turn / 4)
                link.publish(p.PartialTranscript(call_id=call_id, speaker=speaker, start=at - turn, text=" ".join(text.split()[: 2 + 2 * k])))
        await _until(start + at)
        link.publish(p.UtteranceFinal(seq=0, event_id=next(ids), call_id=call_id, speaker=speaker, start=at - turn, end=at, text=text, words=()))
        lines += 1
        if threat and n == 4:
            link.publish(p.FindingRaised(seq=0, event_id=next(ids), call_id=call_id, category="threat", severity="high", score=0.9,
                                         rule="threat.harm", evidence="break your neck", start=at - turn, end=at, text=text, span=None))
            w.published[call_id] = time.monotonic()
            link.publish(p.LevelChanged(seq=0, event_id=next(ids), call_id=call_id, level="alert", previous="none",
                                        reason="a threat against the partner", at=at, suggestion="", category="threat"))
    await _until(start + seconds)
    link.publish(p.CallEnded(seq=0, event_id=next(ids), call_id=call_id, at=seconds, reason="hangup"))
    return lines


async def _until(when: float) -> None:
    await asyncio.sleep(max(0.0, when - time.monotonic()))


RUNS_IN: str | None = None
"""Where each run makes its folder (None: the system's temporary folder)."""


async def run(setup: str, calls: int, args, servers) -> dict:
    label, n_replicas, fanout = SETUPS[setup]
    tmp = Path(tempfile.mkdtemp(prefix="callshield-capacity-", dir=RUNS_IN))
    store_url = ""
    if setup != "sqlite1":
        store_url = servers.postgres().new_database()
    nats_url = servers.nats().url if fanout == "nats" else ""
    settings = {"fanout": "postgresql"} if fanout == "postgresql" else {}
    people = [f"sup{i}" for i in range(args.supervisors)]
    partners = [f"partner{i}" for i in range(calls)]
    agents = [f"agent{i}" for i in range(args.agents)]
    where = store_url or tmp / "r0" / "console.db"
    (tmp / "r0").mkdir(parents=True, exist_ok=True)
    store = Store.open(where)
    tokens, sessions = {}, {}
    for name in people:
        store.add_user(name, "supervisor")
        sessions[name] = store.create_session(name, 2)[0]
    for name in partners:
        store.add_user(name, "partner")
        sessions[name] = store.create_session(name, 2)[0]
    for name in agents:
        tokens[name] = store.add_user(name, "agent")
    store.close()
    replicas = [Replica(tmp, f"r{i}", store_url, nats_url, browser_queue=1024, **settings) for i in range(n_replicas)]
    helpers = servers.processes(setup != "sqlite1", fanout == "nats")
    links: list[ConsoleLink] = []
    browsers: list[Browser] = []
    failed = True
    try:
        for r in replicas:
            await r.started()
        if n_replicas > 1:
            deadline = time.monotonic() + 30
            while any(len(r.health()["cluster"]["peers"]) < n_replicas - 1 for r in replicas):
                if time.monotonic() > deadline:
                    raise RuntimeError("the replicas did not hear each other within 30 s")
                await asyncio.sleep(0.2)
        w = Watch()
        watchers = []
        for i, name in enumerate(people + partners):
            b = Browser(await connect(replicas[i % n_replicas].url + "/ws/browser", max_size=None))
            await b.request("resume", token=sessions[name])
            await b.expect("snapshot", timeout=30)
            browsers.append(b)
            if name in people:
                watchers.append(asyncio.create_task(watch(b, name, w)))
            else:
                watchers.append(asyncio.create_task(_drain(b)))
        for i, name in enumerate(agents):
            urls = [replicas[(i + k) % n_replicas].url for k in range(n_replicas)]
            link = ConsoleLink(urls, agent_id=name, token=tokens[name], backoff=Backoff(initial=0.2, maximum=2.0), partial_limit=1000)
            link.start()
            links.append(link)
        for link in links:
            await link.wait_connected(30)
        cpu0 = {r.name: cpu_seconds(r.process.pid) for r in replicas}
        helpers0 = {name: _cpu_of(pids()) for name, pids in helpers.items()}
        driver0 = time.process_time()
        t0 = time.monotonic()
        ids = (f"ev{n}" for n in itertools.count())
        threats = [c for c in range(calls) if c % 4 == 3]
        tracer = asyncio.create_task(_trace(args.trace, t0, links, replicas, w)) if args.trace else None
        lines = await asyncio.gather(*(play_call(links[c % len(links)], f"call-{c}", partners[c], seconds=args.seconds, turn=args.turn,
                                                 threat=c in threats, delay=args.turn * c / calls, w=w, ids=ids) for c in range(calls)))
        held = 0  # messages the agents still hold after the drain: not lost (they resend), but late
        for link in links:
            try:
                await link.drain(args.drain)
            except TimeoutError:
                held += link.pending
        if held:
            print(f"   the consoles had not acknowledged {held} message(s) {args.drain:g} s after the last call ended "
                  f"(overloaded: the agents still hold them and resend; 'lines lost' counts the lines among them)", flush=True)
        await asyncio.sleep(1.0)  # the last alerts on their way to screens
        wall = time.monotonic() - t0
        if tracer is not None:
            tracer.cancel()
            await asyncio.gather(tracer, return_exceptions=True)
            with open(args.trace, "a") as out:
                for c, at in sorted(w.published.items(), key=lambda kv: kv[1]):
                    out.write(json.dumps({"alert": c, "published": round(at - t0, 3), "seen": round(w.first_seen[c] - t0, 3) if c in w.first_seen else None}) + "\n")
        cpu = {r.name: (cpu_seconds(r.process.pid) - cpu0[r.name]) / wall for r in replicas}
        helpers_cpu = {name: _cpu_since(helpers0[name], pids()) / wall for name, pids in helpers.items()}
        driver_cpu = (time.process_time() - driver0) / wall
        health = [r.health() for r in replicas]
        stored = sum(h["events_stored"] for h in health)
        check = Store.open(where)
        lines_stored = sum(len(check.call_detail(f"call-{c}").utterances) for c in range(calls))
        check.close()
        missing_alerts = sum(len([c for c in threats if f"call-{c}" not in w.alerts_seen.get(s, set())]) for s in people)
        lat = sorted(w.latencies)
        cluster = [h["cluster"] or {} for h in health]
        failed = False
        return {
            "setup": label, "calls": calls, "events_s": stored / wall, "stored": stored, "alerts": len(threats) * len(people),
            "p50": _pct(lat, 50), "p95": _pct(lat, 95), "p99": _pct(lat, 99),
            "lost_alerts": missing_alerts, "lost_lines": sum(lines) - lines_stored, "held": held,
            "shed": sum(h["partials_shed"] for h in health) + sum(link.stats.partials_dropped for link in links),
            "browsers_dropped": sum(h["browsers_dropped"] for h in health),
            "between": sum(c.get("dropped", 0) + c.get("partials_shed", 0) for c in cluster), "resyncs": sum(c.get("resyncs", 0) for c in cluster),
            "cpu": {name: share * 100 * 100 / calls for name, share in cpu.items()},
            "servers_cpu": {name: share * 100 * 100 / calls for name, share in helpers_cpu.items()}, "load": os.getloadavg()[0],
            "driver_cpu": driver_cpu * 100,
            "links": {"reconnects": sum(link.stats.connects for link in links) - len(links), "resent": sum(link.stats.resent for link in links),
                      "failovers": sum(link.stats.failovers for link in links),
                      "reconnects per link": [link.stats.connects - 1 for link in links]},
            "store": _conflicts(health),
            "runs": sum(h.get("event_runs", 0) for h in health),
        }
    finally:
        for link in links:
            await link.close()
        for b in browsers:
            await b.ws.close()
        for r in replicas:
            r.stop()
        if store_url:
            servers.postgres().drop_database(store_url)
        if failed or args.keep:
            print(f"   this run's folder (replicas' configs and logs{', SQLite store' if not store_url else ''}): {tmp}", flush=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def _conflicts(health: list[dict]) -> dict:
    """The replicas' store conflicts (``/healthz`` ``store_conflicts``): ``retried`` (transactions rolled back and run
    again), ``exhausted`` (methods that lost every try), ``links closed`` (agent links closed on a store error), and
    per method its counts by cause, summed over the replicas."""
    methods: dict[str, dict[str, int]] = {}
    for h in health:
        for method, counts in h["store_conflicts"].items():
            of_method = methods.setdefault(method, {})
            for cause, n in counts.items():
                of_method[cause] = of_method.get(cause, 0) + n
    return {"retried": sum(n for counts in methods.values() for cause, n in counts.items() if cause != "exhausted"),
            "exhausted": sum(counts.get("exhausted", 0) for counts in methods.values()),
            "links closed": sum(h["agent_links_store_errors"] for h in health), "by method": methods}


async def _trace(path: str, t0: float, links: list[ConsoleLink], replicas: list, w: Watch) -> None:
    """``--trace``: every 0.25 s a JSON line: ``t`` (seconds since the calls began), ``lag`` (this event loop's lateness),
    per agent link ``[linked, unacknowledged, sent, acknowledged, resent, connects, console]``, per replica its
    ``events_stored``, and ``alerts`` [published, seen by a supervisor]; after the run one line per alert (when it was
    published and first seen)."""
    loop = asyncio.get_running_loop()
    with open(path, "a") as out:
        out.write(json.dumps({"start": time.time(), "t0": t0}) + "\n")
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.25)
            lag = time.monotonic() - before - 0.25
            health = await asyncio.gather(*(loop.run_in_executor(None, r.health) for r in replicas), return_exceptions=True)
            out.write(json.dumps({
                "t": round(time.monotonic() - t0, 3), "lag": round(lag, 3),
                "links": [[int(link.connected), link.pending, link.stats.sent, link.stats.acked, link.stats.resent, link.stats.connects,
                           link.url.rsplit(":", 1)[-1].split("/")[0]] for link in links],
                "stored": [h["events_stored"] if isinstance(h, dict) else repr(h)[:60] for h in health],
                "alerts": [len(w.published), len(w.first_seen)]}) + "\n")
            out.flush()


async def _drain(browser: Browser) -> None:
    try:
        async for _ in browser.ws:
            pass
    except Exception:
        return


def _pct(values: list[float], q: int) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0] * 1000
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000


class Servers:
    """PostgreSQL and NATS, started once when a setup needs them (``tests/postgres_kit.py``, ``tests/nats_kit.py``)."""

    def __init__(self) -> None:
        self._pg = self._nats = None

    def postgres(self):
        if self._pg is None:
            from postgres_kit import PostgresServer

            self._pg = PostgresServer()
        return self._pg

    def nats(self):
        if self._nats is None:
            from nats_kit import NatsServer

            self._nats = NatsServer()
        return self._nats

    def processes(self, postgresql: bool, nats: bool) -> dict:
        """The servers whose CPU a setup costs besides the consoles': ``postgresql`` (the postmaster and its
        backends, read at each call: they come and go) and ``nats`` (nats-server), each a function giving pids."""
        found = {}
        if postgresql:
            postmaster = _postmaster(self.postgres())
            found["postgresql"] = lambda: _children(postmaster)
        if nats:
            pid = self.nats().process.pid
            found["nats"] = lambda: [pid]
        return found

    def close(self) -> None:
        if self._pg is not None:
            self._pg.close()
        if self._nats is not None:
            self._nats.close()


def _postmaster(pg) -> int:
    return int((pg.data / "postmaster.pid").read_text().split()[0])


def _cpu_of(pids: list[int]) -> dict[int, float]:
    out = {}
    for pid in pids:
        try:
            out[pid] = cpu_seconds(pid)
        except (OSError, ValueError, IndexError):  # gone meanwhile
            continue
    return out


def _cpu_since(before: dict[int, float], pids: list[int]) -> float:
    """CPU seconds the processes alive now used since ``before`` (those started since: all of theirs)."""
    return sum(now - before.get(pid, 0.0) for pid, now in _cpu_of(pids).items())


def _children(parent: int) -> list[int]:
    """``parent`` and its child processes (PostgreSQL: the postmaster and its backends)."""
    pids = [parent]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == parent:
                pids.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):  # gone meanwhile
            continue
    return pids


def table(results: list[dict]) -> str:
    head = ("setup", "calls", "events/s", "alert p50 ms", "p95 ms", "p99 ms", "alerts lost", "lines lost",
            "held by agents after the drain", "partials shed",
            "browsers dropped", "lost between replicas", "resyncs",
            "store conflicts retried", "exhausted", "links closed on a store error",
            "console CPU % per 100 calls", "PostgreSQL CPU % per 100 calls", "NATS CPU % per 100 calls",
            "bench CPU %", "load avg")
    rows = [head]
    for r in results:
        rows.append((r["setup"], str(r["calls"]), f"{r['events_s']:.0f}", f"{r['p50']:.0f}", f"{r['p95']:.0f}", f"{r['p99']:.0f}",
                     f"{r['lost_alerts']} of {r['alerts']}", str(r["lost_lines"]), str(r["held"]), str(r["shed"]), str(r["browsers_dropped"]),
                     str(r["between"]), str(r["resyncs"]), *(str(r["store"][k]) for k in ("retried", "exhausted", "links closed")),
                     " + ".join(f"{v:.0f}" for v in r["cpu"].values()),
                     *(f"{r['servers_cpu'][k]:.0f}" if k in r["servers_cpu"] else "" for k in ("postgresql", "nats")), f"{r['driver_cpu']:.0f}",
                     f"{r['load']:.1f}"))
    return "\n".join("| " + " | ".join(row) + " |" + ("\n|" + "---|" * len(head) if i == 0 else "") for i, row in enumerate(rows))


async def main_async(args) -> int:
    servers = Servers()
    results = []
    try:
        for calls in (int(c) for c in args.calls.split(",")):
            for setup in args.setups.split(","):
                if setup not in SETUPS:
                    raise SystemExit(f"unknown setup {setup!r} (known: {', '.join(SETUPS)})")
                print(f"== {SETUPS[setup][0]}, {calls} calls of {args.seconds:g} s (load average {os.getloadavg()[0]:.1f}) ...", flush=True)
                results.append(await run(setup, calls, args, servers))
                print(f"   agents' links: {results[-1]['links']}", flush=True)
                print(f"   store conflicts: {results[-1]['store']}", flush=True)
                runs = results[-1]["runs"]
                if runs:
                    print(f"   store transactions of agents' events: {runs} ({results[-1]['stored'] / runs:.1f} events each)", flush=True)
    finally:
        servers.close()
    print(table(results))
    print(f"({os.cpu_count()} cores; load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}; agents, browsers, PostgreSQL and NATS on the same machine)")
    return 1 if any(r["lost_alerts"] or r["lost_lines"] for r in results) else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", default="30", help="concurrent calls, comma-separated sizes (default 30)")
    parser.add_argument("--seconds", type=float, default=12.0, help="length of each call, seconds (default 12)")
    parser.add_argument("--turn", type=float, default=1.5, help="seconds between two lines of a call (default 1.5)")
    parser.add_argument("--supervisors", type=int, default=10, help="supervisors watching every call (default 10)")
    parser.add_argument("--agents", type=int, default=4, help="agent links the calls are spread over (default 4)")
    parser.add_argument("--trace", default="", help="append to this file a JSON line every 0.25 s of each run (agent links, replicas, alerts)")
    parser.add_argument("--drain", type=float, default=60.0,
                        help="seconds the agents wait for the consoles' last acknowledgements after the calls (default 60)")
    parser.add_argument("--keep", action="store_true",
                        help="keep each run's folder (the replicas' configs and logs, the SQLite store) and print where; "
                             "by default it is removed unless the run failed")
    parser.add_argument("--setups", default="sqlite1,pg2", help=f"which, comma-separated: {', '.join(SETUPS)} (default sqlite1,pg2)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
