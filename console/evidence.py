"""Evidence of one call as a zip that shows later tampering.

When the company consults the police or lawyers about a call, QA hands over
one zip: the recording, the transcript, the findings, the authorizations, the
audit entries and QA's marks, and ``manifest.json`` with the SHA-256 of every
file and of the recording *as first stored* (hashed when the recorder
finalized it, kept in the console's store). ``callshield verify FILE.zip``
(:func:`verify_evidence_zip`) checks all of it. The format is written down in
``docs/evidence.md``; keep the two in step.

:func:`build_evidence_zip` works on a plain :class:`CallEvidence`, so it does
not care where the call came from (the console's store fills one in
``console.qa.evidence_from_store``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import wave
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from kernel.errors import CallshieldError

FORMAT = "callshield-evidence"
VERSION = 1
MANIFEST = "manifest.json"
SUMS = "SHA256SUMS"
RECORDING = "recording.wav"
CALL = "call.json"
LISTS = {  # member name -> CallEvidence attribute (each a JSON Lines file)
    "transcript.jsonl": "utterances",
    "findings.jsonl": "findings",
    "authorizations.jsonl": "authorizations",
    "audit.jsonl": "audit",
    "qa_marks.jsonl": "qa_marks",
}
MAX_MANIFEST_BYTES = 4 << 20
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class EvidenceError(CallshieldError):
    """Evidence could not be gathered, written or read."""

    code = "evidence_error"


@dataclass(frozen=True)
class CallEvidence:
    """Everything the console holds about one call, as plain JSON-ready data.

    Attributes:
        call: the call's row (``id``, ``partner``, ``seat``, ``agent``,
            ``source``, ``started_at``, ``ended_at``, ``level``, ...).
        recording_path: the WAV file on disk, None when the call has none.
        recording_sha256: hex SHA-256 of the recording as first stored
            (None when the store has no hash for it).
        recording_finalized_at: ISO 8601 UTC wall time the recording was
            finalized (and hashed), or None.
        utterances: the transcript of both speakers, in time order
            (``speaker``, ``start``/``end`` in seconds of audio time, ``text``, ``words``).
        findings: the detector's findings (with their ids).
        authorizations: end-call authorizations (who, when, why).
        audit: the audit-log entries about this call.
        qa_marks: QA's verdicts on the findings.
    """

    call: Mapping[str, Any]
    recording_path: Path | None = None
    recording_sha256: str | None = None
    recording_finalized_at: str | None = None
    utterances: Sequence[Mapping[str, Any]] = ()
    findings: Sequence[Mapping[str, Any]] = ()
    authorizations: Sequence[Mapping[str, Any]] = ()
    audit: Sequence[Mapping[str, Any]] = ()
    qa_marks: Sequence[Mapping[str, Any]] = ()

    @property
    def call_id(self) -> str:
        return str(self.call.get("id") or self.call.get("call_id") or "")


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of :func:`verify_evidence_zip`.

    Attributes:
        ok: no problem found.
        problems: one line per problem (tampering, missing or extra files,
            a broken manifest); empty when ok.
        warnings: things worth saying that do not fail verification (a
            recording with no first-stored hash).
        summary: one line describing the evidence (call, files, counts).
        manifest_sha256: the manifest's own digest, as recomputed.
    """

    ok: bool
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    summary: str = ""
    manifest_sha256: str = ""


def canonical_json(value: Any) -> bytes:
    """The bytes the manifest digest is taken over: sorted keys, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def manifest_digest(manifest: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of ``manifest`` without its ``manifest_sha256`` field."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return hashlib.sha256(canonical_json(body)).hexdigest()


def sums_text(files: Sequence[Mapping[str, Any]]) -> str:
    """``SHA256SUMS`` in the format ``sha256sum -c`` reads: one "HASH  NAME" line per file, sorted by name."""
    return "".join(f"{f['sha256']}  {f['name']}\n" for f in sorted(files, key=lambda f: f["name"]))


def _jsonl(rows: Sequence[Mapping[str, Any]]) -> bytes:
    return "".join(json.dumps(dict(r), ensure_ascii=False, sort_keys=True) + "\n" for r in rows).encode("utf-8")


def _hash_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _wav_facts(source: str | os.PathLike | BinaryIO) -> dict[str, Any]:
    with wave.open(source if not isinstance(source, os.PathLike) else str(source), "rb") as w:
        return {"sample_rate": w.getframerate(), "channels": w.getnchannels(),
                "frames": w.getnframes(), "duration": round(w.getnframes() / w.getframerate(), 3)}


def build_evidence_zip(
    evidence: CallEvidence,
    out: str | os.PathLike,
    *,
    exported_at: str,
    exported_by: str = "",
) -> dict[str, Any]:
    """Write the evidence zip to ``out`` (atomically: a temporary file renamed
    into place) and return its manifest. Blocking: run it in an executor.

    ``exported_at`` is an ISO 8601 UTC wall time from the caller's clock;
    ``exported_by`` the user (or ``cli``) who asked for it.
    """
    if not evidence.call_id:
        raise EvidenceError("the call has no id")
    out = Path(out)
    members: list[tuple[str, bytes | Path]] = [(CALL, (json.dumps(dict(evidence.call), ensure_ascii=False, sort_keys=True, indent=2) + "\n").encode("utf-8"))]
    for name, attr in LISTS.items():
        members.append((name, _jsonl(getattr(evidence, attr))))
    recording: dict[str, Any] | None = None
    if evidence.recording_path is not None:
        path = Path(evidence.recording_path)
        if not path.is_file():
            raise EvidenceError(f"recording of call {evidence.call_id} not found: {path}")
        current, size = _hash_file(path)
        try:
            facts = _wav_facts(path)
        except (wave.Error, EOFError) as exc:
            raise EvidenceError(f"recording of call {evidence.call_id} is not a readable WAV: {exc}") from exc
        recording = {
            "name": RECORDING,
            "sha256_first_stored": evidence.recording_sha256,
            "sha256_at_export": current,
            "bytes": size,
            "finalized_at": evidence.recording_finalized_at,
            **facts,
        }
        members.append((RECORDING, path))

    files: list[dict[str, Any]] = []
    for name, body in members:
        if isinstance(body, Path):
            files.append({"name": name, "bytes": recording["bytes"], "sha256": recording["sha256_at_export"]})
        else:
            files.append({"name": name, "bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()})
    files.sort(key=lambda f: f["name"])
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "call_id": evidence.call_id,
        "exported_at": exported_at,
        "exported_by": exported_by,
        "files": files,
        "recording": recording,
        "counts": {attr: len(getattr(evidence, attr)) for attr in LISTS.values()},
    }
    manifest["manifest_sha256"] = manifest_digest(manifest)

    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w") as zf:
            for name, body in members:
                if isinstance(body, Path):
                    # stored, not deflated: audio barely compresses and QA may read it in place
                    zf.write(body, name, compress_type=zipfile.ZIP_STORED)
                else:
                    zf.writestr(name, body, compress_type=zipfile.ZIP_DEFLATED)
            zf.writestr(SUMS, sums_text(files), compress_type=zipfile.ZIP_DEFLATED)
            zf.writestr(MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", compress_type=zipfile.ZIP_DEFLATED)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    # A recording changed since it was first stored is exported anyway (that it
    # changed is itself something to show); verify reports it.
    return manifest


def verify_evidence_zip(path: str | os.PathLike | BinaryIO) -> VerifyReport:
    """Check an evidence zip: every file against the manifest, no file missing
    or extra, the recording against its first-stored hash, the manifest's own
    digest, ``SHA256SUMS``. Never raises for a bad zip: it reports it."""
    problems: list[str] = []
    warnings: list[str] = []
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        return VerifyReport(ok=False, problems=(f"not a readable zip: {getattr(exc, 'strerror', None) or exc}",))
    with zf:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        dupes = sorted({n for n in names if names.count(n) > 1})
        for name in dupes:
            problems.append(f"{name}: appears more than once in the zip")
        if MANIFEST not in names:
            return VerifyReport(ok=False, problems=tuple(problems + [f"{MANIFEST}: missing"]))
        info = zf.getinfo(MANIFEST)
        if info.file_size > MAX_MANIFEST_BYTES:
            return VerifyReport(ok=False, problems=tuple(problems + [f"{MANIFEST}: too large"]))
        try:
            manifest = json.loads(zf.read(MANIFEST).decode("utf-8"))
        except (zipfile.BadZipFile, UnicodeDecodeError, json.JSONDecodeError, EOFError) as exc:
            return VerifyReport(ok=False, problems=tuple(problems + [f"{MANIFEST}: unreadable ({exc})"]))
        shape = _manifest_shape(manifest)
        if shape:
            return VerifyReport(ok=False, problems=tuple(problems + [f"{MANIFEST}: {shape}"]))

        digest = manifest_digest(manifest)
        if manifest.get("manifest_sha256") != digest:
            problems.append(f"{MANIFEST}: its own digest does not match its content (manifest edited)")

        listed = {f["name"]: f for f in manifest["files"]}
        present = set(names) - {MANIFEST, SUMS}
        for name in sorted(present - set(listed)):
            problems.append(f"{name}: in the zip but not in the manifest (extra file)")
        for name in sorted(set(listed) - present):
            problems.append(f"{name}: in the manifest but missing from the zip")
        actual: dict[str, str] = {}
        for name in sorted(set(listed) & present):
            try:
                digest_hex, size = _hash_member(zf, name)
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                problems.append(f"{name}: corrupt in the zip ({exc})")
                continue
            actual[name] = digest_hex
            if digest_hex != listed[name]["sha256"]:
                problems.append(f"{name}: SHA-256 differs from the manifest (changed after export)")
            elif size != listed[name]["bytes"]:
                problems.append(f"{name}: size differs from the manifest")

        if SUMS not in names:
            problems.append(f"{SUMS}: missing")
        else:
            try:
                if zf.read(SUMS).decode("utf-8") != sums_text(manifest["files"]):
                    problems.append(f"{SUMS}: does not match the manifest")
            except (zipfile.BadZipFile, UnicodeDecodeError, EOFError) as exc:
                problems.append(f"{SUMS}: unreadable ({exc})")

        recording = manifest.get("recording")
        duration = ""
        if recording is not None:
            name = recording.get("name")
            if name not in listed:
                problems.append(f"{MANIFEST}: the recording {name!r} is not among its files")
            elif recording.get("sha256_at_export") != listed[name]["sha256"]:
                problems.append(f"{MANIFEST}: the recording's hash at export differs from its file entry")
            first = recording.get("sha256_first_stored")
            if not first:
                warnings.append(f"{name}: no first-stored hash; cannot show it is unchanged since the call")
            elif first != recording.get("sha256_at_export"):
                problems.append(f"{name}: changed between first storage and export (stored {first[:12]}…, at export {str(recording.get('sha256_at_export'))[:12]}…)")
            elif name in actual and actual[name] != first:
                problems.append(f"{name}: differs from the recording as first stored")
            if name in actual and name in present:
                try:
                    with zf.open(name) as fh:
                        facts = _wav_facts(fh)
                    duration = f", recording {facts['duration']:.1f} s"
                except (wave.Error, EOFError, zipfile.BadZipFile, OSError) as exc:
                    problems.append(f"{name}: not a readable WAV ({exc})")

        counts = manifest.get("counts") or {}
        summary = (
            f"call {manifest['call_id']}: {len(listed)} files{duration}, "
            f"{counts.get('utterances', '?')} utterances, {counts.get('findings', '?')} findings, "
            f"{counts.get('authorizations', '?')} authorizations, {counts.get('audit', '?')} audit entries, "
            f"{counts.get('qa_marks', '?')} QA marks; exported {manifest.get('exported_at')}"
            f"{' by ' + manifest['exported_by'] if manifest.get('exported_by') else ''}; manifest sha256 {digest}"
        )
    return VerifyReport(ok=not problems, problems=tuple(problems), warnings=tuple(warnings), summary=summary, manifest_sha256=digest)


def _hash_member(zf: zipfile.ZipFile, name: str) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with zf.open(name) as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _manifest_shape(manifest: Any) -> str:
    """Empty when the manifest has the expected form, else what is wrong."""
    if not isinstance(manifest, dict):
        return "not a JSON object"
    if manifest.get("format") != FORMAT:
        return f"not a callshield evidence manifest (format {manifest.get('format')!r})"
    if manifest.get("version") != VERSION:
        return f"unsupported version {manifest.get('version')!r} (this callshield reads {VERSION})"
    if not isinstance(manifest.get("call_id"), str):
        return "no call_id"
    files = manifest.get("files")
    if not isinstance(files, list):
        return "no file list"
    seen = set()
    for f in files:
        if not (isinstance(f, dict) and isinstance(f.get("name"), str) and isinstance(f.get("bytes"), int)
                and isinstance(f.get("sha256"), str) and _HEX64.match(f["sha256"])):
            return "a file entry is malformed"
        if f["name"] in seen or f["name"] in (MANIFEST, SUMS):
            return f"file {f['name']!r} listed twice"
        seen.add(f["name"])
    recording = manifest.get("recording")
    if recording is not None and not isinstance(recording, dict):
        return "recording entry is malformed"
    return ""


def rewrite_member(src: str | os.PathLike, dst: str | os.PathLike, name: str, change) -> None:
    """Copy a zip, passing member ``name``'s bytes through ``change(bytes) -> bytes``
    (a correct new zip with fresh CRCs: what a careful tamperer would make).
    Used by the tests and handy to demonstrate verification."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename == name:
                data = change(data)
            zout.writestr(info, data)


__all__ = [
    "CallEvidence", "EvidenceError", "VerifyReport", "build_evidence_zip", "verify_evidence_zip",
    "manifest_digest", "canonical_json", "sums_text", "rewrite_member", "FORMAT", "VERSION",
]

