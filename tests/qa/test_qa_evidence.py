"""Evidence zip: export then verify, and every way tampering must show."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from cli.main import main
from audio.frames import AudioChunk
from audio.recorder import CallRecorder
from console.evidence import (CallEvidence, EvidenceError, build_evidence_zip, manifest_digest, rewrite_member,
                              sums_text, verify_evidence_zip)

EXPORTED_AT = "2026-03-01T10:00:00Z"


def make_recording(path):
    rec = CallRecorder(path, 8000)
    tone = (3000 * np.sin(np.arange(8000) / 8000 * 2 * np.pi * 440)).astype(np.int16)
    rec.push(AudioChunk("customer", tone, 8000, 0))
    rec.push(AudioChunk("partner", tone // 2, 8000, 0))
    return rec.close()


def evidence(tmp_path, **over) -> CallEvidence:
    info = make_recording(tmp_path / "recordings" / "call-7.wav")
    fields = dict(
        call={"id": "call-7", "partner": "mina", "seat": "A12", "agent": "site-1", "started_at": "2026-03-01T09:00:00Z",
              "ended_at": "2026-03-01T09:05:00Z", "level": "alert"},
        recording_path=info.path,
        recording_sha256=info.sha256,
        recording_finalized_at="2026-03-01T09:05:01Z",
        utterances=[{"speaker": "customer", "start": 0.1, "end": 0.9, "text": "너 죽여버린다", "words": []},
                    {"speaker": "partner", "start": 1.0, "end": 1.5, "text": "고객님 진정하세요", "words": []}],
        findings=[{"id": 1, "category": "threat", "severity": "grave", "evidence": "죽여버린다", "start": 0.1, "end": 0.9}],
        authorizations=[{"id": "auth-1", "by": "sup", "reason": "threat", "authorized_at": "2026-03-01T09:04:00Z"}],
        audit=[{"id": 3, "who": "sup", "action": "authorize_end", "call_id": "call-7", "at": "2026-03-01T09:04:00Z"}],
        qa_marks=[{"finding_id": 1, "verdict": "confirmed", "note": "clear threat", "by": "qa1"}],
    )
    fields.update(over)
    return CallEvidence(**fields)


def exported(tmp_path, **over):
    out = tmp_path / "out" / "call-7.zip"
    manifest = build_evidence_zip(evidence(tmp_path, **over), out, exported_at=EXPORTED_AT, exported_by="qa1")
    return out, manifest


def flip_one_byte(data: bytes) -> bytes:
    i = len(data) // 2
    return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:]


def test_export_then_verify_ok(tmp_path):
    out, manifest = exported(tmp_path)
    with zipfile.ZipFile(out) as zf:
        names = sorted(zf.namelist())
        transcript = [json.loads(line) for line in zf.read("transcript.jsonl").decode().splitlines()]
        sums = zf.read("SHA256SUMS").decode()
    assert names == sorted(["manifest.json", "SHA256SUMS", "call.json", "recording.wav", "transcript.jsonl", "findings.jsonl",
                            "authorizations.jsonl", "audit.jsonl", "qa_marks.jsonl"])
    assert [u["speaker"] for u in transcript] == ["customer", "partner"] and transcript[0]["text"] == "너 죽여버린다"
    rec = manifest["recording"]
    assert rec["sha256_first_stored"] == rec["sha256_at_export"] and rec["sample_rate"] == 8000 and rec["channels"] == 2
    assert manifest["manifest_sha256"] == manifest_digest(manifest)
    assert sums == sums_text(manifest["files"]) and "recording.wav" in sums
    report = verify_evidence_zip(out)
    assert report.ok, report.problems
    assert "call call-7" in report.summary and "2 utterances" in report.summary and "1 findings" in report.summary
    assert "recording 1.0 s" in report.summary and report.manifest_sha256 == manifest["manifest_sha256"]
    assert not list(out.parent.glob("*.part"))  # written atomically


def test_one_flipped_byte_of_the_recording_fails(tmp_path):
    out, _ = exported(tmp_path)
    bad = tmp_path / "bad.zip"
    rewrite_member(out, bad, "recording.wav", flip_one_byte)
    report = verify_evidence_zip(bad)
    assert not report.ok
    assert any(p.startswith("recording.wav: SHA-256 differs") for p in report.problems)
    assert any("first stored" in p for p in report.problems)


def test_edited_transcript_fails(tmp_path):
    out, _ = exported(tmp_path)
    bad = tmp_path / "bad.zip"
    rewrite_member(out, bad, "transcript.jsonl", lambda b: b.replace("죽여버린다".encode(), "감사합니다".encode()))
    report = verify_evidence_zip(bad)
    assert report.problems == ("transcript.jsonl: SHA-256 differs from the manifest (changed after export)",)


def test_tampering_with_the_manifest_to_match_still_fails(tmp_path):
    out, manifest = exported(tmp_path)
    # a tamperer edits the transcript and updates its hash in the manifest, but not the digest
    bad = tmp_path / "bad.zip"
    edit = lambda b: b.replace("죽여버린다".encode(), "감사합니다".encode())  # noqa: E731
    with zipfile.ZipFile(out) as zf:
        new_hash = __import__("hashlib").sha256(edit(zf.read("transcript.jsonl"))).hexdigest()
    manifest = dict(manifest, files=[dict(f, sha256=new_hash) if f["name"] == "transcript.jsonl" else f for f in manifest["files"]])
    rewrite_member(out, tmp_path / "step.zip", "transcript.jsonl", edit)
    rewrite_member(tmp_path / "step.zip", bad, "manifest.json", lambda _: json.dumps(manifest).encode())
    problems = verify_evidence_zip(bad).problems
    assert any("its own digest" in p for p in problems) and any(p.startswith("SHA256SUMS") for p in problems)


def test_recording_changed_before_export_fails(tmp_path):
    ev = evidence(tmp_path)
    data = ev.recording_path.read_bytes()
    ev.recording_path.write_bytes(flip_one_byte(data))  # changed on disk after it was first stored
    out = tmp_path / "e.zip"
    build_evidence_zip(ev, out, exported_at=EXPORTED_AT)
    report = verify_evidence_zip(out)
    assert report.problems and all("recording.wav: changed between first storage and export" in p for p in report.problems)


def test_missing_extra_and_broken_members(tmp_path):
    out, _ = exported(tmp_path)
    missing = tmp_path / "missing.zip"
    with zipfile.ZipFile(out) as zin, zipfile.ZipFile(missing, "w") as zout:
        for info in zin.infolist():
            if info.filename != "findings.jsonl":
                zout.writestr(info, zin.read(info.filename))
        zout.writestr("notes.txt", "added later")
    problems = verify_evidence_zip(missing).problems
    assert "findings.jsonl: in the manifest but missing from the zip" in problems
    assert "notes.txt: in the zip but not in the manifest (extra file)" in problems

    not_zip = tmp_path / "not.zip"
    not_zip.write_bytes(b"hello")
    assert verify_evidence_zip(not_zip).problems[0].startswith("not a readable zip")
    no_manifest = tmp_path / "nomanifest.zip"
    with zipfile.ZipFile(no_manifest, "w") as zf:
        zf.writestr("recording.wav", b"x")
    assert verify_evidence_zip(no_manifest).problems == ("manifest.json: missing",)


def test_raw_byte_flip_in_the_zip_is_reported_not_raised(tmp_path):
    out, _ = exported(tmp_path)
    raw = bytearray(out.read_bytes())
    with zipfile.ZipFile(out) as zf:
        info = zf.getinfo("recording.wav")
    raw[info.header_offset + 30 + len(info.filename) + 1000] ^= 0xFF  # inside the stored WAV, CRC left stale
    bad = tmp_path / "raw.zip"
    bad.write_bytes(bytes(raw))
    report = verify_evidence_zip(bad)
    assert not report.ok and any(p.startswith("recording.wav:") for p in report.problems)


def test_call_without_recording_and_without_stored_hash(tmp_path):
    out = tmp_path / "t.zip"
    build_evidence_zip(evidence(tmp_path, recording_path=None, recording_sha256=None), out, exported_at=EXPORTED_AT)
    report = verify_evidence_zip(out)
    assert report.ok and "recording" not in report.summary.split(":")[1].split(",")[0]
    out2 = tmp_path / "u.zip"
    ev = evidence(tmp_path / "b", recording_sha256=None)
    build_evidence_zip(ev, out2, exported_at=EXPORTED_AT)
    report = verify_evidence_zip(out2)
    assert report.ok and report.warnings and "no first-stored hash" in report.warnings[0]
    with pytest.raises(EvidenceError):
        build_evidence_zip(evidence(tmp_path / "c", recording_path=tmp_path / "gone.wav"), tmp_path / "v.zip", exported_at=EXPORTED_AT)


def test_verify_command(tmp_path, capsys):
    out, manifest = exported(tmp_path)
    assert main(["verify", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("OK call call-7:") and manifest["manifest_sha256"] in printed
    bad = tmp_path / "bad.zip"
    rewrite_member(out, bad, "recording.wav", flip_one_byte)
    assert main(["verify", str(bad)]) == 1
    captured = capsys.readouterr()
    assert captured.out.startswith("FAIL recording.wav:") and "cannot be trusted" in captured.err
    not_zip = tmp_path / "notes.zip"
    not_zip.write_text("just text")
    assert main(["verify", str(not_zip)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("callshield: error:") and "not a zip file" in err and len(err.strip().splitlines()) == 1
    assert main(["verify", str(tmp_path / "nope.zip")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("callshield: error:") and "nope.zip" in err and len(err.strip().splitlines()) == 1
