"""A throwaway PostgreSQL server for the tests: Debian's ``postgresql``
binaries, ``initdb`` and ``pg_ctl`` in a temporary directory, on a free
loopback port with its unix socket in that directory.

Run as the ``postgres`` system user when the tests run as root (CI), since
PostgreSQL refuses to run as root; as the current user otherwise. Trust
authentication on loopback only; fsync off (a test cluster is thrown away:
speed over durability; the store still turns ``synchronous_commit`` on for
its own connection, which the store tests check).

Missing binaries fail the PostgreSQL tests with a message saying what to
install (never a skip: .ci/run installs it).
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

SUPERUSER = "postgres"


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unavailable(why: str) -> None:
    """Fail a PostgreSQL test that cannot run here, saying what to install."""
    pytest.fail(f"{why}; install Debian's postgresql and psycopg (pip install -e '.[test]')", pytrace=False)


class PostgresServer:
    """One running cluster; :meth:`new_database` gives each test its own database."""

    def __init__(self) -> None:
        bin_dir = _bin_dir()
        if bin_dir is None:
            unavailable("PostgreSQL is not installed (no initdb under /usr/lib/postgresql/*/bin or on PATH)")
        try:
            import psycopg
        except ImportError:
            unavailable("psycopg is not installed")
        self._psycopg = psycopg
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="callshield-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:
            self._as = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.root, "postgres")
        self._names = itertools.count(1)
        self.admin = None
        try:
            self._run("initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
            with open(self.data / "postgresql.conf", "a", encoding="utf-8") as conf:
                conf.write(f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{self.root}'\n"
                           "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 50\n")
            self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w", "-t", "60", "start")
            self.admin = psycopg.connect(self.url("postgres"), autocommit=True)
        except BaseException:
            self.stop()
            raise

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run([*self._as, str(self.bin / tool), *args], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise AssertionError(f"{tool} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}\n{tail}")

    def url(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        name = f"test_{next(self._names)}"
        self.admin.execute(f"CREATE DATABASE {name} TEMPLATE template0")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        self.admin.execute(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")

    def cut_connections(self, url: str) -> int:
        """Drop every client's connection to one database (as a server restart or failover
        would); how many. Only client backends count: an autovacuum worker busy in the
        database appears in pg_stat_activity too (a CI run counted 2 where the console had 1)."""
        return len(self.admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid() AND backend_type = 'client backend'", (url.rsplit("/", 1)[1],)
        ).fetchall())

    def stop(self) -> None:
        try:
            if self.admin is not None:
                self.admin.close()
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    close = stop

    def __enter__(self) -> "PostgresServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
