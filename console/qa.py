"""QA on the console: adopting finished recordings, the retention clean-up,
and what the QA page asks for (flagged calls, one call's replay, marks).

Every function here is blocking and runs on the console's ``store`` thread
(the store calls) or its ``recordings`` executor (file reads); the server
only dispatches. Role checks are the server's (``console.roles``).

Recordings arrive through the shared recordings directory: the agent writes
``NAME.wav`` and, once finalized, ``NAME.wav.json`` with the hash as first
stored (``kernel.recordings.write_sidecar``). :func:`adopt_recording` copies those
facts into the store when the console learns the call ended (and again,
lazily, when QA opens the call or the daily clean-up runs), so a recording
is never served before it is finished.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from console import browser_protocol as b
from console.errors import BadRequest, StoreError
from console.evidence import CallEvidence, EvidenceError, build_evidence_zip
from console.fanout import BrowserLink
from console.hub import Hub
from console.recordings import LinkSigner, QaFiles, StoredRecording, inside, loudness_envelope
from console.replay import Loudness, QaReplay, ReviewedFinding, SignedRecording
from console.store import Recording, Store, json_ready
from kernel.clock import iso
from kernel.recordings import read_sidecar, recording_name, sha256_file, sidecar_path
from kernel.retention import CleanupReport, RetentionPolicy, next_cleanup, plan_cleanup, run_cleanup

log = logging.getLogger("callshield.console.qa")

CLEANUP_LOCK = "retention"
"""The store's one-at-a-time turn (:meth:`Store.exclusively`) the retention clean-up takes."""
CALL_END_TRIES = 120
"""Times a call's clean-up at its end is tried while another replica holds the turn."""
CALL_END_RETRY_S = 5.0
"""Seconds between two of those tries (ten minutes in all; then the daily clean-up takes the call)."""


def adopt_recording(store: Store, recordings_dir: Path, call_id: str) -> Recording | None:
    """Store the recording of ``call_id`` from its sidecar, once; returns its
    row (None when there is no finished recording). The first-stored hash is
    the agent's, taken when it finalized the file; if the file no longer
    matches it, the row keeps the agent's hash (so verification fails later)
    and the audit log says so."""
    row = store.recording(call_id)
    if row is not None:
        return row
    found = _sidecar_checked(recordings_dir, call_id)
    return None if found is None else _store_recording(store, call_id, *found)


def cleanup(store: Store, recordings_dir: Path, policy: RetentionPolicy, now: datetime, *, only: str | None = None) -> CleanupReport | None:
    """The retention clean-up (daily, and per call at its end) of recordings
    already adopted (:meth:`QaDesk.adopt`): plan, remove, audit.

    One at a time across the replicas sharing a PostgreSQL store
    (:meth:`Store.exclusively`), planned once the turn is taken, so each
    removal is done and audited once. A replica that finds another cleaning
    skips this round (None; logged at debug): the other removes what is due,
    and what it left is due again at the next round (a call's end, the daily
    run). On SQLite the turn is always this console's."""
    with store.exclusively(CLEANUP_LOCK) as mine:
        if not mine:
            log.debug("retention clean-up%s skipped: another console replica is cleaning", f" of call {only}" if only else "")
            return None
        plan = plan_cleanup(store.retention_calls(only), now, policy)
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


def call_for_qa(store: Store, call_id: str) -> QaReplay | None:
    """One call for the QA player: the call, transcript, findings (each with
    its QA mark), levels, authorizations and the recording (None when there
    is none or retention removed it; its ``url`` is empty: the server signs
    one) and no loudness yet (read from the file off the store thread). None
    for an unknown call."""
    detail = store.call_detail(call_id)
    if detail is None:
        return None
    marks = {m.finding_id: m for m in store.qa_marks(call_id)}
    recording = store.recording(call_id)
    kept = None if recording is None or recording.removed_at else SignedRecording(**vars(recording))
    return QaReplay(
        call=detail.call,
        utterances=detail.utterances,
        findings=tuple(ReviewedFinding(**vars(f), mark=marks.get(f.id)) for f in detail.findings),
        levels=detail.levels,
        authorizations=detail.authorizations,
        recording=kept,
        loudness=None,
    )


def evidence_from_store(store: Store, recordings_dir: Path, call_id: str) -> CallEvidence:
    """Gather a call's evidence from the console's store (blocking: the store
    thread or the CLI), as the JSON the zip holds. Raises
    :class:`EvidenceError` for an unknown call or a kept recording missing
    from the recordings directory."""
    detail = store.call_detail(call_id)
    if detail is None:
        raise EvidenceError(f"no call {call_id!r} in the store", code="no_call")
    recording = adopt_recording(store, Path(recordings_dir), call_id)
    path = None
    if recording is not None and not recording.removed_at:
        path = inside(Path(recordings_dir), recording.path)
        if path is None:
            raise EvidenceError(f"the recording of call {call_id} is missing from {recordings_dir}", code="recording_missing")
    return CallEvidence(
        call=json_ready(detail.call),
        recording_path=path,
        recording_sha256=recording.sha256 if path is not None else None,
        recording_finalized_at=recording.finalized_at if path is not None else None,
        utterances=[{k: v for k, v in json_ready(u).items() if k != "call_id"} for u in detail.utterances],
        findings=json_ready(detail.findings),
        authorizations=json_ready(detail.authorizations),
        audit=json_ready(store.audit_entries(call_id=call_id, limit=100_000)),
        qa_marks=json_ready(store.qa_marks(call_id)),
    )


def normalize_filters(since: str, until: str) -> tuple[str | None, str | None]:
    """``YYYY-MM-DD`` dates (UTC, both inclusive) as ISO bounds for ``started_at``; '' is open."""
    lo = hi = None
    if since:
        lo = datetime.fromisoformat(since).strftime("%Y-%m-%dT00:00:00")
    if until:
        hi = (datetime.fromisoformat(until) + timedelta(days=1)).strftime("%Y-%m-%dT00:00:00")
    return lo, hi



def _sidecar_checked(recordings_dir: Path, call_id: str) -> tuple[dict[str, Any], str] | None:
    """A finished recording's sidecar facts and the file's hash now (files executor)."""
    name = recording_name(call_id)
    wav = recordings_dir / name
    facts = read_sidecar(sidecar_path(wav))
    if facts is None or not wav.is_file():
        return None
    return facts, sha256_file(wav)


def _store_recording(store: Store, call_id: str, facts: dict[str, Any], now_hash: str) -> Recording | None:
    """Store a checked recording's row (store thread); None for an unknown
    call, or for a recording whose sidecar names another call: another id, or
    this id with another start (a later call that had this call's id, before
    its agent renamed it)."""
    call = store.call(call_id)
    if call is None:
        return None
    name = recording_name(call_id)
    started = facts.get("call_started_at", call.started_at)
    if facts["call_id"] != call_id or started != call.started_at:
        log.warning("call %s (started %s): %s is the recording of call %s started %s, not adopted",
                    call_id, call.started_at, name, facts["call_id"], started)
        return None
    row = store.add_recording(
        call_id, path=name, sha256=facts["sha256"], bytes=facts["bytes"], duration=float(facts["duration"]),
        sample_rate=int(facts.get("sample_rate") or 0), finalized_at=facts["finalized_at"], recovered=bool(facts.get("recovered")),
    )
    if now_hash != facts["sha256"]:
        store.audit("console", "recording_mismatch", call_id, f"{name}: file hash {now_hash} differs from the hash when finalized {facts['sha256']}")
    return row


class QaDesk:
    """The console's QA side: the ``qa_*`` browser requests, the recordings and
    evidence routes, adoption of recordings at call end, and the retention
    clean-up (once at start, then daily at ``cleanup_hour`` local time).

    File work (hashing, loudness, zips) runs in the ``recordings`` executor;
    store work on the console's store thread (``console.db``).
    """

    LOUDNESS_CACHE = 32

    def __init__(self, console: Hub, policy: RetentionPolicy) -> None:
        self.console = console
        self.policy = policy
        self.recordings_dir = Path(console.config.recordings_dir)
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="recordings")
        self.signer = LinkSigner(console.clock)
        self.files = QaFiles(
            self.recordings_dir, signer=self.signer, session_role=self._session_role, user_role=self._user_role,
            recording_of=self._recording_of, export=self._export, pool=self.pool, tls=console.config.tls,
            on_refusal=self._refused,
        )
        self.last_cleanup: CleanupReport | None = None
        self._loudness: dict[str, Loudness | None] = {}
        console.add_route(self.files.handles, self.files.answer)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.console.spawn(self._daily())

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    async def _files(self, fn, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.pool, partial(fn, *args))

    async def _daily(self) -> None:
        while True:
            try:
                await self.run_cleanup()
            except StoreError as exc:  # the store unreachable: one line, tried again tomorrow
                log.error("retention clean-up failed: %s", exc)
            except Exception:  # a bad day must not stop tomorrow's clean-up
                log.exception("retention clean-up failed")
            now = self.console.clock().astimezone()
            await asyncio.sleep((next_cleanup(now, self.policy) - now).total_seconds())

    async def run_cleanup(self) -> CleanupReport | None:
        """Adopt finished recordings, then remove what retention says must go
        (None when another replica was cleaning: see :func:`cleanup`)."""
        c = self.console
        for call in await c.db(c.store.retention_calls):
            if call.recording is None and call.ended_at is not None:
                await self.adopt(call.call_id)
        report = await c.db(cleanup, c.store, self.recordings_dir, self.policy, c.clock())
        if report is not None:  # None: another replica was cleaning
            self.last_cleanup = report
        return report

    async def adopt(self, call_id: str) -> Recording | None:
        """The call's recording row, adopting a finished recording first if needed."""
        c = self.console
        row = await c.db(c.store.recording, call_id)
        if row is not None:
            return row
        found = await self._files(_sidecar_checked, self.recordings_dir, call_id)
        if found is None:
            return None
        return await c.db(_store_recording, c.store, call_id, *found)

    async def call_ended(self, call_id: str) -> None:
        """A call ended: adopt its recording and apply retention to it."""
        c = self.console
        try:
            await self.adopt(call_id)
            for _ in range(CALL_END_TRIES):  # another replica cleaning: its turn ends soon, try again then
                if await c.db(cleanup, c.store, self.recordings_dir, self.policy, c.clock(), only=call_id) is not None:
                    break
                await asyncio.sleep(CALL_END_RETRY_S)
            else:
                log.info("call %s: retention at call end left to the daily clean-up (another replica kept cleaning)", call_id)
        except StoreError as exc:  # the store unreachable: one line; the daily clean-up adopts it later
            log.error("call %s: recording/retention at call end failed: %s", call_id, exc)
        except Exception:
            log.exception("call %s: recording/retention at call end failed", call_id)

    # ------------------------------------------------------------------ browser requests

    async def handle(self, link: BrowserLink, r: b.QaCalls | b.QaCall | b.QaMark | b.QaExport) -> b.QaCallList | b.QaCallShown | b.QaMarked | b.QaLink:
        """Answer one ``qa_*`` request (the role was checked by the server)."""
        c = self.console
        if isinstance(r, b.QaCalls):
            try:
                since, until = normalize_filters(r.since, r.until)
            except ValueError as exc:
                raise BadRequest("dates must be YYYY-MM-DD", code="bad_date") from exc
            found = await c.db(c.store.qa_calls, since=since, until=until, category=r.category, level=r.level,
                               partner=r.partner, limit=max(1, min(r.limit, 1000)))
            return b.QaCallList(calls=found.calls, counts=found.counts, partners=found.partners, categories=found.categories, ref=r.ref)
        if isinstance(r, b.QaCall):
            await self.adopt(r.call_id)
            replay = await c.db(call_for_qa, c.store, r.call_id)
            if replay is None:
                raise BadRequest(f"no call {r.call_id!r}", code="unknown_call")
            rec = replay.recording
            if rec is not None:
                replay = dataclasses.replace(
                    replay, recording=dataclasses.replace(rec, url=self.files.recording_link(r.call_id, link.user)),
                    loudness=await self._envelope(r.call_id, rec),
                )
            await c.db(c.store.audit, link.user, "qa_opened", r.call_id, "")
            return b.QaCallShown(detail=replay, ref=r.ref)
        if isinstance(r, b.QaMark):
            mark = await c.db(c.store.qa_mark, r.finding_id, r.verdict, r.note, link.user)
            return b.QaMarked(mark=mark, ref=r.ref)
        if isinstance(r, b.QaExport):
            if await c.db(c.store.call, r.call_id) is None:
                raise BadRequest(f"no call {r.call_id!r}", code="unknown_call")
            return b.QaLink(call_id=r.call_id, url=self.files.evidence_link(r.call_id, link.user), ref=r.ref)
        raise BadRequest(f"{r.TYPE} is not a QA request", code="unexpected_message")

    async def _envelope(self, call_id: str, rec: Recording) -> Loudness | None:
        key = f"{call_id}:{rec.sha256}"
        if key not in self._loudness:
            path = inside(self.recordings_dir, rec.path)
            self._loudness[key] = await self._files(loudness_envelope, path) if path is not None else None
            while len(self._loudness) > self.LOUDNESS_CACHE:
                self._loudness.pop(next(iter(self._loudness)))
        return self._loudness[key]

    # ------------------------------------------------------------------ HTTP callbacks

    async def _session_role(self, token: str) -> tuple[str, str] | None:
        c = self.console
        session = await c.db(c.store.session, token)
        return (session.user, session.role) if session is not None else None

    async def _user_role(self, user: str) -> str | None:
        c = self.console
        found = await c.db(c.store.credentials, user)
        return found[0] if found else None

    async def _recording_of(self, call_id: str) -> StoredRecording | None:
        row = await self.adopt(call_id)
        if row is None or row.removed_at:
            return None
        return StoredRecording(row.path, row.bytes)

    async def _refused(self, who: str, what: str) -> None:
        c = self.console
        c.stats.browser_refusals += 1
        await c.db(c.store.audit, who, "refused", None, what)

    async def _export(self, call_id: str, user: str) -> tuple[Path, str]:
        """Build the evidence zip for a download; audited with its digest."""
        c = self.console
        await self.adopt(call_id)
        try:
            evidence = await c.db(evidence_from_store, c.store, self.recordings_dir, call_id)
        except EvidenceError as exc:
            raise LookupError(exc.message) from exc
        exports = Path(c.config.data_dir) / "exports"
        name = f"callshield-evidence-{recording_name(call_id)[:-4]}.zip"
        out = exports / f"{secrets.token_hex(8)}-{name}"
        manifest = await self._files(partial(build_evidence_zip, evidence, out, exported_at=iso(c.clock()), exported_by=user))
        await c.db(c.store.audit, user, "evidence_exported", call_id, f"manifest sha256 {manifest['manifest_sha256']} (download)")
        return out, name
