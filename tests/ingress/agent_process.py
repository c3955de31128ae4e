"""A real ``callshield agent`` process on the Korean model, feeding a real
console, for the ingress tests that drive it from outside (a fake Asterisk,
SIPp, baresip, AudioHook and Twilio clients).

    async with agent_process(tmp_path, ko_model_dir, ["--siprec", f"127.0.0.1:{port}"],
                             ready="SIPREC and SIP calls accepted") as run:
        ...  # place the call
        [detail] = await run.ended_calls(1)
        code = await run.stop()   # SIGTERM; run.log holds what it printed
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from console.config import ConsoleConfig
from console.server import Console

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_for(tmp_path: Path) -> dict:
    env = dict(os.environ)
    env.update(CALLSHIELD_HOME=str(tmp_path / "home"), XDG_CONFIG_HOME=str(tmp_path / "config"), PYTHONUNBUFFERED="1")
    for name in ("CALLSHIELD_CONFIG", "CALLSHIELD_MODEL", "CALLSHIELD_MODELS_DIR", "CALLSHIELD_AGENT_TOKEN"):
        env.pop(name, None)
    return env


async def wait_for_line(stream: asyncio.StreamReader, needle: str, timeout: float, seen: list[str]) -> None:
    """Read ``stream`` into ``seen`` until a line holds ``needle`` (AssertionError if it ends first)."""
    async def read() -> None:
        while True:
            line = (await stream.readline()).decode()
            if not line:
                raise AssertionError(f"agent exited before saying {needle!r}:\n" + "".join(seen))
            seen.append(line)
            if needle in line:
                return

    await asyncio.wait_for(read(), timeout)


class AgentRun:
    """The running console and agent process of :func:`agent_process`."""

    def __init__(self, console: Console, proc: asyncio.subprocess.Process) -> None:
        self.console = console
        self.proc = proc
        self.seen: list[str] = []

    @property
    def log(self) -> str:
        return "".join(self.seen)

    async def ended_calls(self, count: int = 1, seconds: float = 30.0) -> list[dict]:
        """The details of the latest ``count`` calls once all have ended in the console, or [] after ``seconds``."""
        store = self.console.store
        for _ in range(int(seconds * 10)):
            calls = await self.console.db(store.recent_calls, 10)
            if len(calls) >= count and all(c.get("ended_at") for c in calls[:count]):
                return [await self.console.db(store.call_detail, c["id"]) for c in calls[:count]]
            await asyncio.sleep(0.1)
        return []

    async def stop(self) -> int:
        """SIGTERM the agent; its exit status (what it printed is in :attr:`log`)."""
        self.proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.proc.wait(), 60)
        self.seen.append((await self.proc.stderr.read()).decode())
        return code


@contextlib.asynccontextmanager
async def agent_process(tmp_path: Path, model_dir: Path, ingress: Sequence[str], *, ready: str,
                        config: Path | None = None, extra: Sequence[str] = ()) -> AsyncIterator[AgentRun]:
    """A console (SQLite under ``tmp_path/data``) and ``callshield agent`` linked to
    it as ``floor-1`` with ``ingress`` arguments, once the agent has said ``ready``."""
    console = Console(ConsoleConfig(data_dir=tmp_path / "data", host="127.0.0.1", port=0))
    await console.start()
    try:
        token = await console.db(console.store.add_user, "floor-1", "agent")
        options = ["--config", str(config)] if config is not None else []
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cli", *options, "agent", "--console", console.url, "--token", token, "--agent-id", "floor-1",
            "--model", str(model_dir), *ingress, *extra,
            cwd=ROOT, env=env_for(tmp_path), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        run = AgentRun(console, proc)
        try:
            await wait_for_line(proc.stderr, ready, 60, run.seen)
            yield run
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    finally:
        await console.stop()
