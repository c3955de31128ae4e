"""A throwaway NATS server for the tests: Debian's ``nats-server`` on a free
loopback port, its log in a temporary directory.

:meth:`NatsServer.stop` and :meth:`NatsServer.start` again on the same port
stand for NATS going down and coming back. Missing ``nats-server`` fails the
tests with what to install (never a skip: .ci/run installs it).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from postgres_kit import _free_port


def unavailable(why: str) -> None:
    """Fail a NATS test that cannot run here, saying what to install."""
    pytest.fail(f"{why}; install Debian's nats-server and nats-py (pip install -e '.[test]')", pytrace=False)


class NatsServer:
    """One ``nats-server`` process; ``url`` stays the same across stop/start."""

    def __init__(self) -> None:
        binary = shutil.which("nats-server") or ("/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None)
        if binary is None:
            unavailable("nats-server is not installed")
        try:
            import nats  # noqa: F401
        except ImportError:
            unavailable("nats-py is not installed")
        self.binary = binary
        self.root = Path(tempfile.mkdtemp(prefix="callshield-nats-"))
        self.port = _free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        log = open(self.root / "nats.log", "ab")
        self.process = subprocess.Popen([self.binary, "-a", "127.0.0.1", "-p", str(self.port), "--no_advertise"],
                                        stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"nats-server exited ({self.process.returncode}): {(self.root / 'nats.log').read_text(errors='replace')[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(7) == b"INFO {\"":
                        return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("nats-server did not start within 20 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "NatsServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
