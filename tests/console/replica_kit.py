"""Console replicas as processes (``python -m cli console``), for the failover
test and ``bench/console_capacity.py``: start one on a free port with its
``[console]`` settings, read its ``/healthz``, and browser sockets on it."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

from websockets.asyncio.client import connect

from console_kit import PASSWORD, Browser

ROOT = Path(__file__).resolve().parents[2]


class Replica:
    """One ``python -m cli console`` process; ``url`` once it serves."""

    def __init__(self, tmp: Path, name: str, store: str = "", nats: str = "", **settings: object) -> None:
        """``store``: a PostgreSQL URL ("": SQLite in its data directory); ``nats``: "" for a single console."""
        self.name = name
        config = tmp / f"{name}.toml"
        lines = [f'store = "{store}"', f'nats = "{nats}"', f'replica = "{name}"', "port = 0", f'data_dir = "{tmp / name}"']
        lines += [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
        config.write_text("[console]\n" + "\n".join(lines) + "\n")
        env = {**os.environ, "PYTHONPATH": str(ROOT), "CALLSHIELD_HOME": str(tmp / name)}
        self.log = open(tmp / f"{name}.log", "w+b")
        self.process = subprocess.Popen([sys.executable, "-m", "cli", "--config", str(config), "console"], cwd=ROOT, env=env,
                                        stdout=subprocess.PIPE, stderr=self.log)
        self.url = ""
        self.data_dir = tmp / name

    async def started(self) -> None:
        loop = asyncio.get_running_loop()
        line = await asyncio.wait_for(loop.run_in_executor(None, self.process.stdout.readline), 60)
        found = re.search(rb"console at http://([\d.]+:\d+)", line)
        assert found, (line, self.tail())
        self.url = f"ws://{found.group(1).decode()}"

    @property
    def store_path(self) -> Path:
        """Its SQLite store (when it has no PostgreSQL ``store``)."""
        return self.data_dir / "console.db"

    def health(self) -> dict:
        with urllib.request.urlopen(self.url.replace("ws://", "http://") + "/healthz", timeout=5) as answer:
            return json.loads(answer.read())

    def tail(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


async def read_all(browser: Browser) -> None:
    """Keep reading a browser socket (into ``seen``) until cancelled or closed."""
    try:
        while True:
            await browser.recv_json(3600)
    except Exception:  # closed
        return


async def signed_in(replica: Replica, user: str) -> tuple[Browser, dict]:
    browser = Browser(await connect(replica.url + "/ws/browser"))
    await browser.request("login", user=user, password=PASSWORD)
    session = await browser.expect("session", timeout=15)
    await browser.expect("snapshot")
    return browser, session


