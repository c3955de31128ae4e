"""Retention: how long recordings and transcripts of calls are kept.

The site decides, in the ``[retention]`` section of the config file::

    [retention]
    flagged_days = 90                 # audio + transcript of calls with a finding
    keep_unflagged_audio = false      # false: audio of a call with no finding goes when the call ends
    keep_unflagged_transcripts = true # false: its transcript goes too
    unflagged_days = 30               # how long what is kept of unflagged calls stays (0: forever)
    cleanup_hour = 3                  # local hour of the daily clean-up (0-23)

What is never removed: the call's row, its findings, authorizations and the
audit log, so the console can always say that a call happened, what was found
and who did what; QA marks stay with their findings.

:func:`plan_cleanup` is pure (calls and ``now`` in, removals out) so the
policy is tested with fake dates; :func:`run_cleanup` carries a plan out,
removing files only inside the recordings directory, and reports and audits
what it removed. The same plan applied to one call at its end is the "delete
unflagged audio when the call ends" rule.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from kernel.errors import ConfigError
from kernel.sections import read_section

STALE_OPEN_CALL = timedelta(days=1)
"""A call with no end older than this is taken as ended at its start (its agent crashed)."""


@dataclass(frozen=True)
class RetentionPolicy:
    """The ``[retention]`` config section.

    Attributes:
        flagged_days: days (from the call's end) the recording and transcript
            of a call with at least one finding are kept.
        keep_unflagged_audio: keep the recording of a call with no finding
            (False: removed as soon as the call ends).
        keep_unflagged_transcripts: keep the transcript of a call with no finding.
        unflagged_days: days what is kept of a call with no finding stays;
            0 keeps it until removed by hand.
        cleanup_hour: local hour (0-23) at which the daily clean-up runs.
    """

    flagged_days: int = 90
    keep_unflagged_audio: bool = False
    keep_unflagged_transcripts: bool = True
    unflagged_days: int = 30
    cleanup_hour: int = 3

    def __post_init__(self) -> None:
        if self.flagged_days < 1:
            raise ConfigError(f"[retention] flagged_days must be at least 1 (got {self.flagged_days})")
        if self.unflagged_days < 0:
            raise ConfigError(f"[retention] unflagged_days must be 0 or more (got {self.unflagged_days})")
        if not 0 <= self.cleanup_hour <= 23:
            raise ConfigError(f"[retention] cleanup_hour must be 0-23 (got {self.cleanup_hour})")

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> RetentionPolicy:
        """Build from the ``[retention]`` table; unknown keys and wrong types are a :class:`ConfigError`."""
        return read_section(cls, section, section="[retention]")


@dataclass(frozen=True)
class CallRecord:
    """What retention needs to know about one call.

    Attributes:
        call_id: the call.
        started_at: wall-clock start (timezone-aware or naive, like ``now``).
        ended_at: wall-clock end, None while the call runs.
        flagged: at least one finding was raised in the call.
        recording: the recording's path relative to the recordings
            directory, None when there is none (left) any more.
        has_transcript: utterances of the call are still stored.
    """

    call_id: str
    started_at: datetime
    ended_at: datetime | None
    flagged: bool
    recording: str | None = None
    has_transcript: bool = False


@dataclass(frozen=True)
class Removal:
    """One thing the policy says must go.

    Attributes:
        call_id: whose.
        what: ``audio`` (the recording file) or ``transcript`` (utterance rows).
        reason: why, in words (goes to the report and the audit log).
        path: for audio, the recording's path relative to the recordings directory.
    """

    call_id: str
    what: Literal["audio", "transcript"]
    reason: str
    path: str | None = None


@dataclass(frozen=True)
class Removed:
    """One removal carried out. ``bytes``: size of the file removed (0 for a
    transcript or a file that was already gone); ``rows``: utterances removed."""

    removal: Removal
    bytes: int = 0
    rows: int = 0
    note: str = ""


@dataclass(frozen=True)
class CleanupReport:
    """What a clean-up run did. ``failed`` lists removals that could not be
    done, each with the reason; they are retried on the next run."""

    now: datetime
    removed: tuple[Removed, ...] = ()
    failed: tuple[tuple[Removal, str], ...] = ()

    @property
    def files(self) -> int:
        return sum(1 for r in self.removed if r.removal.what == "audio")

    @property
    def bytes(self) -> int:
        return sum(r.bytes for r in self.removed)

    @property
    def transcripts(self) -> int:
        return sum(1 for r in self.removed if r.removal.what == "transcript")

    def lines(self) -> list[str]:
        """One line per removal and failure, then a summary line."""
        out = []
        for r in self.removed:
            target = r.removal.path if r.removal.what == "audio" else f"{r.rows} utterances"
            out.append(f"removed {r.removal.what} of call {r.removal.call_id}: {target} ({r.removal.reason}){' ' + r.note if r.note else ''}")
        for removal, why in self.failed:
            out.append(f"could not remove {removal.what} of call {removal.call_id}: {why}")
        out.append(self.summary())
        return out

    def summary(self) -> str:
        return (f"retention clean-up: {self.files} recordings ({self.bytes} bytes) and "
                f"{self.transcripts} transcripts removed, {len(self.failed)} failed")


def plan_cleanup(calls: Iterable[CallRecord], now: datetime, policy: RetentionPolicy) -> list[Removal]:
    """What must go now under ``policy``. Pure: no I/O, no clock."""
    plan: list[Removal] = []
    for call in calls:
        ended = call.ended_at
        if ended is None:
            if now - call.started_at < STALE_OPEN_CALL:
                continue  # still running: never touch a live call
            ended = call.started_at
        age = now - ended
        if call.flagged:
            if age >= timedelta(days=policy.flagged_days):
                reason = f"flagged call older than {policy.flagged_days} days"
                if call.recording:
                    plan.append(Removal(call.call_id, "audio", reason, call.recording))
                if call.has_transcript:
                    plan.append(Removal(call.call_id, "transcript", reason))
            continue
        expired = policy.unflagged_days > 0 and age >= timedelta(days=policy.unflagged_days)
        if call.recording and (not policy.keep_unflagged_audio or expired):
            reason = "call with no finding" if not policy.keep_unflagged_audio else f"call with no finding older than {policy.unflagged_days} days"
            plan.append(Removal(call.call_id, "audio", reason, call.recording))
        if call.has_transcript and (not policy.keep_unflagged_transcripts or expired):
            reason = "call with no finding" if not policy.keep_unflagged_transcripts else f"call with no finding older than {policy.unflagged_days} days"
            plan.append(Removal(call.call_id, "transcript", reason))
    return plan


def next_cleanup(now: datetime, policy: RetentionPolicy) -> datetime:
    """The next time (after ``now``, same timezone) the daily clean-up is due."""
    due = now.replace(hour=policy.cleanup_hour, minute=0, second=0, microsecond=0)
    return due if due > now else due + timedelta(days=1)


def run_cleanup(
    plan: Iterable[Removal],
    *,
    recordings_dir: str | os.PathLike,
    now: datetime,
    remove_transcript: Callable[[str], int] | None = None,
    forget_recording: Callable[[str], None] | None = None,
    audit: Callable[[str, str, str], None] | None = None,
) -> CleanupReport:
    """Carry out ``plan`` and say what was removed. Blocking: run it in an executor.

    Args:
        plan: from :func:`plan_cleanup`.
        recordings_dir: the only directory files are removed from; a path
            that resolves outside it (``..``, an absolute path, a symlink
            out) is refused, never followed.
        now: the wall-clock time of this run (for the report).
        remove_transcript: deletes a call's utterances, returns how many
            (the store's); None: transcript removals are reported as failed.
        forget_recording: tells the store the call's recording is gone.
        audit: ``audit(action, call_id, detail)`` writes one audit-log entry
            per removal (action ``retention_removed_audio`` or
            ``retention_removed_transcript``).
    """
    root = Path(recordings_dir).resolve()
    removed: list[Removed] = []
    failed: list[tuple[Removal, str]] = []
    for removal in plan:
        try:
            if removal.what == "audio":
                done = _remove_audio(root, removal)
                if forget_recording is not None:
                    forget_recording(removal.call_id)
                detail = f"{removal.path} ({done.bytes} bytes): {removal.reason}"
            else:
                if remove_transcript is None:
                    raise OSError("no transcript store to remove from")
                done = Removed(removal, rows=int(remove_transcript(removal.call_id)))
                detail = f"{done.rows} utterances: {removal.reason}"
        except (OSError, ValueError) as exc:
            failed.append((removal, getattr(exc, "strerror", None) or str(exc)))
            continue
        removed.append(done)
        if audit is not None:
            audit(f"retention_removed_{removal.what}", removal.call_id, detail)
    return CleanupReport(now=now, removed=tuple(removed), failed=tuple(failed))


def _remove_audio(root: Path, removal: Removal) -> Removed:
    if not removal.path:
        raise ValueError("no recording path")
    relative = Path(removal.path)
    if relative.is_absolute() or ".." in relative.parts:
        raise ValueError(f"refused: {removal.path!r} is not inside the recordings directory")
    target = root / relative
    if target.is_symlink():
        # A link is removed as a link; whatever it points to is never touched.
        target.unlink()
        return Removed(removal, note="(a symbolic link; its target was left alone)")
    if not target.resolve().is_relative_to(root):
        raise ValueError(f"refused: {removal.path!r} resolves outside the recordings directory")
    try:
        size = target.stat().st_size
        target.unlink()
    except FileNotFoundError:
        return Removed(removal, note="(already gone)")
    return Removed(removal, bytes=size)
