"""QA on the console: adopting finished recordings, the retention clean-up,
and what the QA page asks for (flagged calls, one call's replay, marks).

Every function here is blocking and runs on the console's ``store`` thread
(the store calls) or its ``recordings`` executor (file reads); the server
only dispatches. Role checks are the server's (``console.roles``).

Recordings arrive through the shared recordings directory: the agent writes
``NAME.wav`` and, once finalized, ``NAME.wav.json`` with the hash as first
stored (``audio.recorder.write_sidecar``). :func:`adopt_recording` copies those
facts into the store when the console learns the call ended (and again,
lazily, when QA opens the call or the daily clean-up runs), so a recording
is never served before it is finished.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from agent.retention import CallRecord, CleanupReport, RetentionPolicy, plan_cleanup, run_cleanup
from audio.recorder import read_sidecar, recording_name, sha256_file, sidecar_path
from console.clock import parse_iso
from console.store import Store

log = logging.getLogger("callshield.console.qa")

VERDICTS = ("confirmed", "false_alarm")


def adopt_recording(store: Store, recordings_dir: Path, call_id: str) -> dict[str, Any] | None:
    """Store the recording of ``call_id`` from its sidecar, once; returns its
    row (None when there is no finished recording). The first-stored hash is
    the agent's, taken when it finalized the file; if the file no longer
    matches it, the row keeps the agent's hash (so verification fails later)
    and the audit log says so."""
    row = store.recording(call_id)
    if row is not None:
        return row
    name = recording_name(call_id)
    facts = read_sidecar(sidecar_path(recordings_dir / name))
    wav = recordings_dir / name
    if facts is None or not wav.is_file() or store.call(call_id) is None:
        return None
    row = store.add_recording(
        call_id, path=name, sha256=facts["sha256"], bytes=facts["bytes"], duration=float(facts["duration"]),
        sample_rate=int(facts.get("sample_rate") or 0), finalized_at=facts["finalized_at"], recovered=bool(facts.get("recovered")),
    )
    now = sha256_file(wav)
    if now != facts["sha256"]:
        store.audit("console", "recording_mismatch", call_id, f"{name}: file hash {now} differs from the hash when finalized {facts['sha256']}")
    return row


def apply_call_end(store: Store, recordings_dir: Path, call_id: str, policy: RetentionPolicy, now: datetime) -> CleanupReport:
    """At a call's end: adopt its recording, then apply retention to this call
    alone (audio or transcript of a call with no finding, as configured)."""
    adopt_recording(store, recordings_dir, call_id)
    return cleanup(store, recordings_dir, policy, now, only=call_id, adopt=False)


def cleanup(store: Store, recordings_dir: Path, policy: RetentionPolicy, now: datetime, *,
            only: str | None = None, adopt: bool = True) -> CleanupReport:
    """The retention clean-up (daily, and per call at its end): adopt
    finished recordings the store does not know yet, plan, remove, audit."""
    rows = store.retention_calls(only)
    if adopt:
        for row in rows:
            if row["recording"] is None and row["ended_at"] is not None:
                adopted = adopt_recording(store, recordings_dir, row["id"])
                if adopted is not None:
                    row["recording"] = adopted["path"]
    calls = [
        CallRecord(
            call_id=r["id"],
            started_at=parse_iso(r["started_at"]),
            ended_at=parse_iso(r["ended_at"]) if r["ended_at"] else None,
            flagged=bool(r["flagged"]),
            recording=r["recording"],
            has_transcript=bool(r["has_transcript"]),
        )
        for r in rows
    ]
    plan = plan_cleanup(calls, now, policy)
    report = run_cleanup(
        plan,
        recordings_dir=recordings_dir,
        now=now,
        remove_transcript=store.remove_transcript,
        forget_recording=lambda call_id: _forget(store, recordings_dir, call_id),
        audit=lambda action, call_id, detail: store.audit("retention", action, call_id, detail),
    )
    if plan or only is None:
        for line in report.lines():
            log.info("%s", line)
    return report


def _forget(store: Store, recordings_dir: Path, call_id: str) -> None:
    store.recording_removed(call_id)
    sidecar_path(recordings_dir / recording_name(call_id)).unlink(missing_ok=True)


def call_for_qa(store: Store, recordings_dir: Path, call_id: str) -> dict[str, Any] | None:
    """One call for the QA player: the call, transcript, findings (each with
    its QA mark), levels, authorizations and the recording's facts (no URL:
    the server signs one). None for an unknown call."""
    detail = store.call_detail(call_id)
    if detail is None:
        return None
    marks = {m["finding_id"]: m for m in store.qa_marks(call_id)}
    for finding in detail["findings"]:
        finding["mark"] = marks.get(finding["id"])
    recording = adopt_recording(store, recordings_dir, call_id)
    if recording is not None and recording.get("removed_at"):
        recording = None
    detail["recording"] = recording
    return {k: detail[k] for k in ("call", "utterances", "findings", "levels", "authorizations", "recording")}


def normalize_filters(since: str, until: str) -> tuple[str | None, str | None]:
    """``YYYY-MM-DD`` dates (UTC, both inclusive) as ISO bounds for ``started_at``; '' is open."""
    lo = hi = None
    if since:
        lo = datetime.fromisoformat(since).strftime("%Y-%m-%dT00:00:00")
    if until:
        hi = (datetime.fromisoformat(until) + timedelta(days=1)).strftime("%Y-%m-%dT00:00:00")
    return lo, hi

