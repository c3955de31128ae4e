"""The ``callshield`` command line.

Each subcommand lives in its own module under ``cli/commands/`` and offers
two functions::

    def add_arguments(parser: argparse.ArgumentParser) -> None: ...
    def run(args: argparse.Namespace) -> int: ...      # the exit status

Modules keep heavy imports (vosk, sounddevice, the console) inside ``run`` so
that ``callshield --help`` stays instant and one command's missing optional
dependency never breaks another.

Errors: a :class:`~kernel.errors.CallshieldError` (or an ``OSError`` such as a
missing file) ends the command with one line on standard error and exit
status 2, never a traceback. ``CALLSHIELD_DEBUG=1`` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

# One BLAS thread per calling thread, set before numpy is first imported: the
# agent already runs its numpy work (the sentence encoder) in an executor of
# one thread per core, and BLAS threads of its own on top of that
# oversubscribe the cores (bench/alert_latency.py: p95 of 46 s at 10 calls
# without this, 0.2 s with it). A site may still set these variables itself.
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

from kernel.errors import CallshieldError  # noqa: E402

# name -> (module under cli.commands, one-line help). Order is the help order.
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("serve", "run console and agent together on this machine"),
    "console": ("console", "run the console (hub, store, web pages) alone"),
    "agent": ("agent", "run an agent that streams calls to a console"),
    "replay": ("replay", "stream a recorded call (WAV or timed JSONL) into a running console"),
    "transcribe": ("transcribe", "transcribe a call recording to timed utterances"),
    "detect": ("detect", "screen utterances (JSON Lines) for harassment"),
    "models": ("models", "list, install and locate speech models and the sentence encoder"),
    "devices": ("devices", "list sound devices for capturing calls"),
    "users": ("users", "manage console users and roles"),
    "export": ("export", "export a call's evidence as a verifiable zip"),
    "verify": ("verify", "verify an evidence zip made by 'callshield export'"),
}


def _load(module: str):
    try:
        return importlib.import_module(f"cli.commands.{module}")
    except ModuleNotFoundError as exc:
        if exc.name == f"cli.commands.{module}":
            return None  # command not built yet in this checkout
        raise


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="callshield",
        description="On-premise protection of call-center partners from customer harassment.",
    )
    parser.add_argument("--config", metavar="FILE", help="config file (TOML); default: $CALLSHIELD_CONFIG or ~/.config/callshield/config.toml")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = _load(module_name)
        if module is None:
            continue
        cmd = sub.add_parser(name, help=help_text, description=(module.__doc__ or help_text).strip().splitlines()[0])
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (CallshieldError, OSError) as exc:
        if os.environ.get("CALLSHIELD_DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}:
            raise
        print(f"callshield: error: {_one_line(exc)}", file=sys.stderr)
        return 2


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return " ".join(str(exc).split()) or type(exc).__name__


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
