"""Retention policy (pure, fake dates) and the clean-up that carries it out."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from kernel.config import ConfigError
from kernel.retention import CallRecord, Removal, RetentionPolicy, next_cleanup, plan_cleanup, run_cleanup

NOW = datetime(2026, 3, 1, 3, 0, tzinfo=timezone.utc)


def call(call_id, *, ended_days_ago, flagged, recording=True, transcript=True, running=False):
    ended = NOW - timedelta(days=ended_days_ago)
    return CallRecord(
        call_id=call_id,
        started_at=ended - timedelta(minutes=5),
        ended_at=None if running else ended,
        flagged=flagged,
        recording=f"{call_id}.wav" if recording else None,
        has_transcript=transcript,
    )


def test_defaults_and_config_section():
    p = RetentionPolicy()
    assert (p.flagged_days, p.keep_unflagged_audio, p.keep_unflagged_transcripts, p.cleanup_hour) == (90, False, True, 3)
    p = RetentionPolicy.from_section({"flagged_days": 30, "keep_unflagged_audio": True, "cleanup_hour": 23})
    assert p.flagged_days == 30 and p.keep_unflagged_audio and p.cleanup_hour == 23
    for bad in ({"flagged_days": "30"}, {"flagged_days": True}, {"keep_unflagged_audio": 1},
                {"cleanup_hour": 24}, {"flagged_days": 0}, {"unflagged_days": -1}, {"keep_days": 3}):
        with pytest.raises(ConfigError) as err:
            RetentionPolicy.from_section(bad)
        assert err.value.code == "bad_config" and "[retention]" in str(err.value)


def test_flagged_calls_are_kept_for_flagged_days():
    p = RetentionPolicy(flagged_days=90)
    calls = [call("young", ended_days_ago=89.9, flagged=True), call("old", ended_days_ago=90, flagged=True),
             call("old-no-audio", ended_days_ago=120, flagged=True, recording=False)]
    plan = plan_cleanup(calls, NOW, p)
    assert {(r.call_id, r.what) for r in plan} == {("old", "audio"), ("old", "transcript"), ("old-no-audio", "transcript")}
    assert all("90 days" in r.reason for r in plan)
    assert [r.path for r in plan if r.what == "audio"] == ["old.wav"]


def test_unflagged_audio_goes_at_call_end_transcript_as_configured():
    just_ended = call("clean", ended_days_ago=0, flagged=False)
    plan = plan_cleanup([just_ended], NOW, RetentionPolicy())
    assert plan == [Removal("clean", "audio", "call with no finding", "clean.wav")]
    plan = plan_cleanup([just_ended], NOW, RetentionPolicy(keep_unflagged_transcripts=False))
    assert {r.what for r in plan} == {"audio", "transcript"}
    assert plan_cleanup([just_ended], NOW, RetentionPolicy(keep_unflagged_audio=True)) == []
    # what is kept of an unflagged call expires after unflagged_days (0: never)
    month_old = call("month", ended_days_ago=31, flagged=False)
    assert {r.what for r in plan_cleanup([month_old], NOW, RetentionPolicy(keep_unflagged_audio=True))} == {"audio", "transcript"}
    assert plan_cleanup([month_old], NOW, RetentionPolicy(keep_unflagged_audio=True, unflagged_days=0)) == []


def test_live_calls_are_never_touched_but_stale_open_ones_are():
    live = call("live", ended_days_ago=0, flagged=False, running=True)
    assert plan_cleanup([live], NOW, RetentionPolicy()) == []
    crashed = CallRecord("crashed", started_at=NOW - timedelta(days=2), ended_at=None, flagged=False, recording="crashed.wav")
    assert [r.call_id for r in plan_cleanup([crashed], NOW, RetentionPolicy())] == ["crashed"]


def test_next_cleanup_is_at_the_configured_hour():
    p = RetentionPolicy(cleanup_hour=3)
    assert next_cleanup(datetime(2026, 3, 1, 2, 59, tzinfo=timezone.utc), p) == datetime(2026, 3, 1, 3, 0, tzinfo=timezone.utc)
    assert next_cleanup(datetime(2026, 3, 1, 3, 0, tzinfo=timezone.utc), p) == datetime(2026, 3, 2, 3, 0, tzinfo=timezone.utc)


def test_run_cleanup_removes_reports_and_audits(tmp_path):
    rec = tmp_path / "recordings"
    rec.mkdir()
    for name in ("old.wav", "clean.wav", "young.wav"):
        (rec / name).write_bytes(b"RIFF" + bytes(96))
    calls = [call("old", ended_days_ago=100, flagged=True), call("clean", ended_days_ago=0, flagged=False),
             call("young", ended_days_ago=1, flagged=True)]
    plan = plan_cleanup(calls, NOW, RetentionPolicy())
    transcripts: list[str] = []
    forgotten: list[str] = []
    audit: list[tuple[str, str, str]] = []
    report = run_cleanup(plan, recordings_dir=rec, now=NOW,
                         remove_transcript=lambda cid: transcripts.append(cid) or 7,
                         forget_recording=forgotten.append,
                         audit=lambda action, cid, detail: audit.append((action, cid, detail)))
    assert sorted(p.name for p in rec.iterdir()) == ["young.wav"]
    assert report.files == 2 and report.bytes == 200 and report.transcripts == 1 and not report.failed
    assert transcripts == ["old"] and sorted(forgotten) == ["clean", "old"]
    assert sorted((a, c) for a, c, _ in audit) == [("retention_removed_audio", "clean"), ("retention_removed_audio", "old"),
                                                   ("retention_removed_transcript", "old")]
    lines = report.lines()
    assert any("old.wav" in line and "90 days" in line for line in lines)
    assert any("7 utterances" in line for line in lines)
    assert lines[-1] == "retention clean-up: 2 recordings (200 bytes) and 1 transcripts removed, 0 failed"
    # running the same plan again: files already gone are fine, nothing breaks
    again = run_cleanup(plan[:1], recordings_dir=rec, now=NOW)
    assert "already gone" in again.lines()[0]


def test_run_cleanup_never_leaves_the_recordings_dir(tmp_path):
    rec = tmp_path / "recordings"
    rec.mkdir()
    outside = tmp_path / "console.db"
    outside.write_text("precious")
    (rec / "link.wav").symlink_to(outside)
    plan = [Removal("a", "audio", "x", "../console.db"), Removal("b", "audio", "x", str(outside)),
            Removal("c", "audio", "x", "link.wav"), Removal("d", "transcript", "x")]
    audit: list = []
    report = run_cleanup(plan, recordings_dir=rec, now=NOW, audit=lambda *a: audit.append(a))
    assert outside.read_text() == "precious"
    assert not (rec / "link.wav").exists() and not (rec / "link.wav").is_symlink()  # the link itself goes
    assert [r.call_id for r, _ in report.failed] == ["a", "b", "d"]
    assert all("refused" in why for r, why in report.failed if r.what == "audio")
    assert [a[1] for a in audit] == ["c"]
