"""The ``[console]`` section of the config file.

Example::

    [console]
    host = "127.0.0.1"      # bind address; "0.0.0.0" to serve the whole site network
    port = 8750             # TCP port for pages and websockets (0 = any free port)
    data_dir = "/var/lib/callshield"   # default: callshield's data directory
    store = "postgresql://callshield@db.site.example/callshield"   # default: the SQLite file data_dir/console.db
    tls_cert = "/etc/callshield/console.crt"   # both or neither
    tls_key = "/etc/callshield/console.key"
    browser_queue = 256     # messages buffered per browser before it is dropped
    session_hours = 12      # how long a login lasts
    login_failures = 5      # failed logins per (user name, client address) before that pair is locked (ten times as many per address)
    lockout_seconds = 300   # the window, and the first lock (doubled at each further lock, at most 24 h)
    agent_lost_seconds = 60 # an agent silent this long (no link, no heartbeat naming a call): its calls close as lost
    allowed_hosts = ["callshield.site.example"]   # Host names browsers and agents use; default: see below
    nats = "nats://nats.site.example:4222"   # several replicas: their NATS (default: none, one console)
    fanout = "postgresql"   # or: the replicas reach each other through the store's PostgreSQL (LISTEN/NOTIFY), no NATS
    replica = "console-a"   # this replica's name (default: the host name and port)

Every setting with its default: ``docs/callshield.example.toml``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from console.web import host_name, is_address
from kernel.errors import ConfigError
from kernel.protocol import HEARTBEAT_S
from kernel.sections import read_section

_PATHS = ("data_dir", "tls_cert", "tls_key")
POSTGRESQL_SCHEMES = ("postgresql://", "postgres://")
"""How ``store`` names a PostgreSQL database (a libpq connection URI)."""
NATS_SCHEMES = ("nats://", "tls://")
"""How ``nats`` names a NATS server."""
FANOUTS = ("", "nats", "postgresql")
"""What ``fanout`` may say."""


@dataclass(frozen=True, kw_only=True)
class ConsoleConfig:
    """Where and how the console serves.

    ``host``: bind address. ``port``: TCP port (0 = any free port, see
    ``Console.port`` after start). ``data_dir``: directory of the store
    (``console.db``) and recordings. ``store``: empty (the default) for the
    SQLite file ``console.db`` in ``data_dir``, or a PostgreSQL connection URL
    (``postgresql://user@host:port/database?sslmode=verify-full``; the password
    from ``~/.pgpass`` or ``PGPASSWORD`` rather than the URL; ``docs/deployment.md``);
    recordings stay in ``data_dir`` either way. ``tls_cert``/``tls_key``: PEM files; with
    both set the console serves https/wss only. ``browser_queue``: messages
    buffered per browser connection; a browser that falls that far behind is
    disconnected. ``session_hours``: hours a login token stays valid.
    ``login_failures``: failed logins per (user name, client address)
    allowed within ``lockout_seconds`` seconds before that pair is locked for
    ``lockout_seconds`` (twice as long at each further lock, at most 24 h;
    ten times as many failures per address across names); an address the
    user signed in from within ``session_hours`` is only paced, never locked
    (``console/auth.py``).
    ``agent_lost_seconds``: seconds of console time after which a call whose
    agent is gone (link closed, or heartbeats no longer naming the call) is
    closed as lost; at least twice the agents' heartbeat interval.
    ``allowed_hosts``: the host names and IP addresses requests may name in ``Host`` (and pages
    in ``Origin``), against DNS rebinding; empty (the default) means what the
    console listens on: for a loopback bind, it and ``localhost``,
    ``127.0.0.1``, ``::1``; for one address, it and this machine's host name;
    for ``0.0.0.0``/``::``, the loopback names, the host name and any IP
    address (``console.web.default_allowed_hosts``). A site DNS name must be
    listed. The console's own address (its ``url``) is always allowed.
    ``nats``: empty (the default) for one console; for several replicas
    sharing one PostgreSQL store, the NATS server(s) they share
    (``nats://host:4222``, comma-separated for a NATS cluster,
    ``nats://user:password@host:4222``, ``tls://host:4222``), through which
    live screens, authorizations and sign-outs cross (``console/cluster.py``).
    ``fanout``: how replicas reach each other: ``nats`` (through ``nats``),
    ``postgresql`` (LISTEN/NOTIFY on the ``store`` database itself,
    ``console/cluster_postgresql.py``; then ``nats`` stays empty), or empty
    (the default): NATS when ``nats`` is set, else none (one console).
    ``replica``: this replica's name in logs and ``/healthz`` (default: the
    machine's host name and the port).
    """

    data_dir: Path
    store: str = ""
    host: str = "127.0.0.1"
    port: int = 8750
    tls_cert: Path | None = None
    tls_key: Path | None = None
    browser_queue: int = 256
    session_hours: float = 12.0
    login_failures: int = 5
    lockout_seconds: float = 300.0
    agent_lost_seconds: float = 60.0
    allowed_hosts: tuple[str, ...] = ()
    nats: str = ""
    fanout: str = ""
    replica: str = ""

    @property
    def store_path(self) -> Path:
        """The SQLite store's file (used when ``store`` is empty)."""
        return self.data_dir / "console.db"

    @property
    def store_location(self) -> Path | str:
        """Where the store is: the PostgreSQL URL of ``store``, else the SQLite file."""
        return self.store or self.store_path

    @property
    def fanout_kind(self) -> str:
        """How replicas reach each other: ``nats``, ``postgresql``, or "" for one console."""
        return self.fanout or ("nats" if self.nats else "")

    @property
    def recordings_dir(self) -> Path:
        return self.data_dir / "recordings"

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("[console] tls_cert and tls_key must be given together")
        if self.store and not self.store.startswith(POSTGRESQL_SCHEMES):
            raise ConfigError(f"[console] store must be a postgresql:// URL, not {self.store.split(':', 1)[0]!r}..."
                              " (leave it out for the SQLite file in data_dir)")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"[console] port must be 0..65535, not {self.port}")
        if self.browser_queue < 1:
            raise ConfigError("[console] browser_queue must be at least 1")
        if self.session_hours <= 0:
            raise ConfigError("[console] session_hours must be positive")
        if self.login_failures < 1 or self.lockout_seconds < 0:
            raise ConfigError("[console] login_failures must be >= 1 and lockout_seconds >= 0")
        if not self.agent_lost_seconds >= 2 * HEARTBEAT_S:
            raise ConfigError(f"[console] agent_lost_seconds must be at least {2 * HEARTBEAT_S:g} (twice the agents' heartbeat interval)")
        for url in filter(None, (u.strip() for u in self.nats.split(","))):
            if not url.startswith(NATS_SCHEMES) or len(url.split("://", 1)[1]) == 0:
                raise ConfigError(f"[console] nats must be nats://HOST:PORT (or tls://), not {url.split('@')[-1][:60]!r}")
        if self.nats and not self.store:
            raise ConfigError("[console] nats needs a shared store: set [console] store to the replicas' PostgreSQL")
        if self.fanout not in FANOUTS:
            raise ConfigError(f"[console] fanout must be \"nats\" or \"postgresql\" (or left out), not {self.fanout[:40]!r}")
        if self.fanout == "nats" and not self.nats:
            raise ConfigError("[console] fanout = \"nats\" needs [console] nats, the NATS server(s)")
        if self.fanout == "postgresql" and not self.store:
            raise ConfigError("[console] fanout = \"postgresql\" needs a shared store: set [console] store to the replicas' PostgreSQL")
        if self.fanout == "postgresql" and self.nats:
            raise ConfigError("[console] fanout = \"postgresql\" goes through the store, not NATS: leave [console] nats out")
        if len(self.replica) > 64 or not all(c.isalnum() or c in "-_." for c in self.replica):
            raise ConfigError(f"[console] replica must be at most 64 letters, digits, '-', '_' or '.', not {self.replica[:70]!r}")
        for name in self.allowed_hosts:
            if not (is_address(name.strip("[]")) or (":" not in name and host_name(name) is not None)):
                raise ConfigError(f"[console] allowed_hosts: {name!r} is not a host name or IP address (no scheme, port or path)")

    @classmethod
    def from_table(cls, table: Mapping[str, Any], *, data_dir: Path) -> "ConsoleConfig":
        """Build from the parsed ``[console]`` table; ``data_dir`` is the default
        data directory, used when the table has no ``data_dir`` (or an empty one:
        an empty path is no path, for the TLS files too)."""
        given = {key: value for key, value in table.items() if not (key in _PATHS and value == "")}
        return read_section(cls, given, section="[console]", defaults={"data_dir": Path(data_dir)},
                            wrong_type="{section} {key} has the wrong type ({kind})")
