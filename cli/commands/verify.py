"""Verify an evidence zip made by 'callshield export'.

Checks every file against the manifest's SHA-256, that no file is missing or
extra, the recording against its hash as first stored, the manifest's own
digest and SHA256SUMS. Prints ``OK`` and a summary (exit 0), or one line per
problem (exit 1). The format is in docs/evidence.md.
"""

from __future__ import annotations

import argparse
import sys
import zipfile
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("zip", metavar="FILE.zip", help="evidence zip to check")


def run(args: argparse.Namespace) -> int:
    # imported here, not at the top: every command module loads for `callshield --help`; console.evidence about 50 ms (python -X importtime)
    from console.evidence import EvidenceError, verify_evidence_zip

    path = Path(args.zip)
    if not path.is_file():
        raise FileNotFoundError(2, "No such file", str(path))
    if not zipfile.is_zipfile(path):
        raise EvidenceError(f"{path}: not a zip file (an evidence zip is made by 'callshield export')", code="not_a_zip")
    report = verify_evidence_zip(path)
    for line in report.warnings:
        print(f"warning: {line}", file=sys.stderr)
    if report.ok:
        print(f"OK {report.summary}")
        return 0
    for line in report.problems:
        print(f"FAIL {line}")
    print(f"{path}: {len(report.problems)} problem(s); this evidence cannot be trusted as exported", file=sys.stderr)
    return 1
