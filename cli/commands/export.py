"""Export a call's evidence as a verifiable zip, or QA's marks for the detector.

``callshield export CALL_ID --out FILE.zip`` writes the recording, the
transcript (JSON Lines), findings, authorizations, audit entries and QA marks
of the call with a manifest of SHA-256 hashes (docs/evidence.md); check it
with ``callshield verify FILE.zip``. The export is written to the console's
audit log with the manifest's digest.

``callshield export --qa-marks FILE.jsonl`` writes every finding QA has
marked (``confirmed`` or ``false_alarm``, with the finding's text, rule and
evidence) as JSON Lines, to tune the detector's lexicons and rules.

Both read the console's store: the PostgreSQL database of ``[console]
store`` when the config file names one, else the SQLite file in
``--data-dir`` (default: ``[console] data_dir`` of the config file, else
callshield's data directory), where the recordings are either way.
"""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import json
from pathlib import Path

from kernel.clock import iso, utc_now
from kernel.config import ConfigError, default_data_dir, load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("call_id", metavar="CALL_ID", nargs="?", help="the call to export")
    parser.add_argument("--out", metavar="FILE.zip", help="where to write the evidence zip")
    parser.add_argument("--qa-marks", metavar="FILE.jsonl", help="instead of a call: write all QA marks of findings as JSON Lines")
    parser.add_argument("--data-dir", metavar="DIR", help="the console's data directory (store and recordings)")


def run(args: argparse.Namespace) -> int:
    # imported here, not at the top: every command module loads for `callshield --help`; console.store and console.evidence about 120 ms (python -X importtime)
    from console.config import ConsoleConfig
    from console.evidence import EvidenceError, build_evidence_zip
    from console.qa import evidence_from_store
    from console.store import Store, json_ready

    if bool(args.call_id) == bool(args.qa_marks):
        raise ConfigError("give either CALL_ID --out FILE.zip, or --qa-marks FILE.jsonl", code="bad_arguments")
    if args.call_id and not args.out:
        raise ConfigError("--out FILE.zip is required to export a call", code="bad_arguments")
    config = ConsoleConfig.from_table(load_config(getattr(args, "config", None)).section("console"), data_dir=default_data_dir())
    if args.data_dir:
        config = dataclasses.replace(config, data_dir=Path(args.data_dir).expanduser())
    if not config.store and not config.store_path.is_file():
        raise EvidenceError(f"no console store at {config.store_path} (use --data-dir, or [console] store for PostgreSQL)", code="no_store")
    who = f"cli:{getpass.getuser()}"
    store = Store.open(config.store_location)
    try:
        if args.qa_marks:
            marks = store.qa_marks_for_training()
            out = Path(args.qa_marks)
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_name(out.name + ".part")
            with open(tmp, "w", encoding="utf-8") as fh:
                for mark in marks:
                    fh.write(json.dumps(json_ready(mark), ensure_ascii=False, sort_keys=True) + "\n")
            tmp.replace(out)
            verdicts = {v: sum(1 for m in marks if m.verdict == v) for v in ("confirmed", "false_alarm")}
            print(f"wrote {out}: {len(marks)} marked findings ({verdicts['confirmed']} confirmed, {verdicts['false_alarm']} false alarms)")
            return 0
        evidence = evidence_from_store(store, config.recordings_dir, args.call_id)
        manifest = build_evidence_zip(evidence, Path(args.out), exported_at=iso(utc_now()), exported_by=who)
        store.audit(who, "evidence_exported", args.call_id, f"manifest sha256 {manifest['manifest_sha256']} ({Path(args.out).name})")
    finally:
        store.close()
    rec = manifest["recording"]
    if rec is None:
        what = "no recording"
    else:
        what = f"recording {rec['duration']:.1f} s"
        if rec["sha256_first_stored"] and rec["sha256_first_stored"] != rec["sha256_at_export"]:
            print(f"warning: the recording of call {args.call_id} changed since it was first stored; 'callshield verify' will fail")
        elif not rec["sha256_first_stored"]:
            print(f"warning: the store has no first-stored hash for the recording of call {args.call_id}")
    print(f"wrote {args.out}: call {args.call_id}, {len(manifest['files'])} files, {what}, "
          f"{manifest['counts']['findings']} findings; manifest sha256 {manifest['manifest_sha256']}")
    return 0
