"""Screen utterances (JSON Lines) for harassment, one JSON object out per line in.

Input, from files or standard input (``-`` or no path): one utterance a line,
either a JSON object with ``text`` and optionally ``call``, ``speaker``
(``customer`` or ``partner``), ``start`` and ``end`` (seconds), or a plain
text line (one customer utterance). Output, in input order, one line each:
the input's fields plus ``"findings": [...]``, each finding
``{"category", "subtype", "severity", "score", "span", "evidence", "rule"}``
(repetition adds ``count`` and ``since``; threats, personal attacks, sexual
remarks and privacy add ``why``: whom the words are aimed at). With
``--explain`` each line also gets ``"dropped"``: the candidates the checks
ruled out, each ``{"category", "rule", "evidence", "reason"}`` ("negated",
"reported speech: 'he goes'", ...). Lines with the same ``call`` are
one call, in order: a repeated request is reported on the line where it
becomes excessive. Partner lines are context, never screened. A line that is
not valid input gets an ``error`` field and one finding of category
``error`` instead of stopping the run. Reading a terminal (no file, no pipe),
it first prints a one-line hint on standard error.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from typing import Any, Iterator


TTY_HINT = ("callshield detect: reading from the terminal: type what a customer says and press Enter "
            "(Ctrl-D to finish), or give a file: callshield detect CALL.jsonl")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", metavar="PATH", help="JSON Lines or text files; '-' or nothing: standard input")
    parser.add_argument("--language", metavar="LANG", help="lexicon language (default: [detection] language, else en)")
    parser.add_argument("--explain", action="store_true",
                        help="also list what the checks ruled out and why (negation, idioms, whom the words are aimed at)")


def run(args: argparse.Namespace) -> int:
    # imported here, not at the top: every command module loads for `callshield --help`; cli.settings and detection (numpy) about 260 ms (python -X importtime)
    from cli.settings import load_settings
    from detection import DetectionConfig

    paths = args.paths or ["-"]
    if "-" in paths and sys.stdin.isatty():  # a person at a terminal, not a pipe: say what to do rather than wait silently
        print(TTY_HINT, file=sys.stderr, flush=True)
    settings = load_settings(getattr(args, "config", None))
    table = dict(settings.section("detection"))
    if args.language:
        table["language"] = args.language
    detector = settings.detector(DetectionConfig.from_table(table))
    for path in paths:
        if path != "-":
            with open(path, "rb"):
                pass  # a missing file is a clear error before any output
    screen = Calls(detector, explain=args.explain)
    out = sys.stdout
    for path in paths:
        for line in _lines(path):
            out.write(json.dumps(screen.line(line), ensure_ascii=False) + "\n")
            out.flush()
    return 0


def _lines(path: str) -> Iterator[str]:
    if path == "-":
        yield from (line.rstrip("\r\n") for line in sys.stdin)
        return
    with open(path, encoding="utf-8", errors="replace") as fh:
        yield from (line.rstrip("\r\n") for line in fh)


class Calls:
    """Turns input lines into output objects, keeping one CallScreen per ``call``."""

    def __init__(self, detector, *, explain: bool = False) -> None:
        self.detector = detector
        self.explain = explain
        self.calls: dict[str, Any] = {}

    def line(self, line: str) -> dict:
        from detection import CallScreen

        if line.lstrip().startswith("{"):
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                return _error({"text": line}, "bad_json", f"not valid JSON: {exc.msg} at column {exc.colno}")
            if not isinstance(item, dict):
                return _error({"text": line}, "bad_json", "not a JSON object")
        else:
            item = {"text": line}
        problem = _check(item)
        if problem:
            return _error(item, "bad_input", problem)
        speaker = item.get("speaker") or "customer"
        start = float(item.get("start") or 0.0)
        end = float(item.get("end") if item.get("end") is not None else start)
        call_id = item.get("call")
        if call_id is None:
            call = CallScreen(self.detector)
        else:
            key = json.dumps(call_id)
            call = self.calls.get(key)
            if call is None:
                call = self.calls[key] = CallScreen(self.detector)
        dropped: list | None = [] if self.explain else None
        screening = call.hear(speaker, item["text"], start, end, dropped=dropped)
        out = {**item, "findings": [f.to_dict() for f in screening.findings]}
        if dropped is not None:
            out["dropped"] = [dataclasses.asdict(d) for d in dropped]
        return out


def _check(item: dict) -> str | None:
    if not isinstance(item.get("text"), str):
        return "\"text\" must be a string"
    if item.get("speaker") not in (None, "customer", "partner"):
        return f"\"speaker\" must be \"customer\" or \"partner\", not {item.get('speaker')!r}"
    for key in ("start", "end"):
        value = item.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0):
            return f"\"{key}\" must be seconds (a number >= 0), not {value!r}"
    call = item.get("call")
    if call is not None and not isinstance(call, (str, int)):
        return "\"call\" must be a string or a number"
    return None


def _error(item: dict, code: str, message: str) -> dict:
    finding = {
        "category": "error",
        "subtype": code,
        "severity": "low",
        "score": 0.0,
        "span": None,
        "evidence": message,
        "rule": f"input.{code}",
    }
    return {**item, "error": f"{code}: {message}", "findings": [finding]}
