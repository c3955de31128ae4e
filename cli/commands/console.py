"""Run the console alone: the hub that agents and browsers connect to.

``callshield console [--host H] [--port P] [--data-dir D]`` serves the web
pages (``/``, ``/partner``, ``/supervisor``), the agents' websocket
(``/ws/agent``) and the browsers' websocket (``/ws/browser``) on one port,
with its store (the SQLite file in the data directory, or the PostgreSQL
database of ``[console] store``), until interrupted (Ctrl-C or
SIGTERM), then closes every socket and the store in order.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import signal
import sys
from pathlib import Path

from console.config import ConsoleConfig
from kernel.config import default_data_dir, load_config
from kernel.retention import RetentionPolicy


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="bind address (default: [console] host, else 127.0.0.1)")
    parser.add_argument("--port", type=int, help="TCP port (default: [console] port, else 8750; 0 = any free port)")
    parser.add_argument("--data-dir", metavar="DIR", help="store and recordings (default: [console] data_dir, else the callshield data directory)")


def console_config(args: argparse.Namespace):
    """The console's config: the file's ``[console]`` section, then the command line."""
    config = ConsoleConfig.from_table(load_config(args.config).section("console"), data_dir=default_data_dir())
    overrides = {"host": getattr(args, "host", None), "port": getattr(args, "port", None)}
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = Path(args.data_dir).expanduser()
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(config, **overrides) if overrides else config


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)

    retention = RetentionPolicy.from_section(load_config(args.config).section("retention"))
    return asyncio.run(_serve(console_config(args), retention))


async def _serve(config, retention=None) -> int:
    # imported here, not at the top: every command module loads for `callshield --help`; console.server about 220 ms (python -X importtime)
    from console.server import Console
    from console.store import shown

    console = Console(config, retention=retention)
    await console.start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: asyncio.ensure_future(console.stop()))
    people = await console.db(console.store.user_count)
    print(f"callshield console at {console.http_url}  (store: {shown(config.store_location)})", flush=True)
    if console.cluster is not None:
        fanout = console.cluster.health()
        how = "PostgreSQL LISTEN/NOTIFY in its store" if fanout["fanout"] == "postgresql" else f"NATS at {fanout['url']}"
        print(f"  replica:      {console.cluster.replica}, linked to the others through {how}", flush=True)
    print(f"  sign in:      {console.http_url}/", flush=True)
    print(f"  agents:       {console.url}/ws/agent", flush=True)
    if people == 0:
        print("  no users yet: add one with  callshield users add NAME --role supervisor", flush=True)
    await console.serve_forever()
    return 0
