"""Recording calls on the agent: one WAV per call into the recordings directory.

:class:`RecordingTap` is a call tap (``agent.call.CallTap``): it feeds every
chunk of both speakers to an ``audio.recorder.CallRecorder`` and, when the call
ends, finalizes the file, hashes it and writes the hash beside it
(``NAME.wav.json``, see ``kernel.recordings.write_sidecar``). Retention at call
end: a call with no finding has its audio deleted at once unless
``[retention] keep_unflagged_audio`` is set.

How recordings reach the console: the recordings directory is shared (the
same directory for ``callshield serve``; a mounted share for a separate
agent, see docs/evidence.md). The console adopts a finalized recording into
its store from the sidecar when it learns that the call ended; nothing
travels over the agent link.

:func:`recover_recordings` runs at agent start-up: it repairs files left by a
crash and writes the missing sidecars, so those recordings are adopted too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from kernel.retention import RetentionPolicy
from kernel.clock import iso, utc_now
from audio.frames import AudioChunk
from audio.recorder import CallRecorder
from audio.recovery import RecoveryReport, info_of, recover_dir
from kernel.recordings import RecordingInfo, fsync_dir, read_sidecar, recording_name, sidecar_path, write_sidecar

log = logging.getLogger("callshield.agent.recording")


class RecordingTap:
    """Records one call; see the module docstring.

    Args:
        call_id: the call (names the file, see ``kernel.recordings.recording_name``).
        recordings_dir: where the WAV and its sidecar go.
        policy: the retention policy (unflagged audio at call end).
        clock: wall clock (aware ``datetime``) for ``finalized_at``.
        executor: the agent's ``recorder`` executor (file I/O of every call).
        sync_interval_s: seconds of audio between fsyncs (the most a power cut loses).
        call_started_at: the call's ``started_at`` (``CallInfo``), written in
            the sidecar so the console adopts the file for this call only.

    Renaming (:meth:`rename`, when the console refuses the call's id as
    taken): the file is written under the name the call started with; when
    the call ends, the finished WAV is renamed to the call's current id
    before its sidecar is written; a rename after the end moves the WAV and
    rewrites the sidecar. A file is only ever linked to a name that is free
    (never over another call's recording).
    """

    def __init__(self, call_id: str, recordings_dir: Path, policy: RetentionPolicy, *, clock: Callable[[], datetime],
                 executor: Executor | None = None, sync_interval_s: float = 1.0, call_started_at: str | None = None) -> None:
        self.call_id = call_id
        self.call_started_at = call_started_at
        self.recordings_dir = Path(recordings_dir)
        self.path = self.recordings_dir / recording_name(call_id)
        self.policy = policy
        self._clock = clock
        self._executor = executor
        self._sync = sync_interval_s
        self._recorder: CallRecorder | None = None
        self._session: Any = None
        self._closing = False
        self._files = asyncio.Lock()  # the files' name changes one at a time (the end of the call, renames)
        self.info: RecordingInfo | None = None
        self.finalized_at: str | None = None
        self.kept: bool | None = None

    def attach(self, session: Any) -> None:
        """The call's session, to learn at the end whether findings were raised (held until :meth:`close`)."""
        self._session = session

    def push(self, chunk: AudioChunk) -> None:
        if self._recorder is None:
            self._recorder = CallRecorder(self.path, chunk.sample_rate, sync_interval_s=self._sync, executor=self._executor)
        self._recorder.push(chunk)

    async def close(self) -> None:
        # The session holds this tap: letting go of it breaks the cycle, so an
        # ended call (its recognizers, its sockets) is freed at once, not at the
        # next full garbage collection.
        session, self._session = self._session, None
        self._closing = True
        recorder, self._recorder = self._recorder, None
        if recorder is None:
            return  # no audio, no recording
        async with self._files:
            self.info = await recorder.aclose()
            flagged = session is None or getattr(session, "findings", 1) > 0
            loop = asyncio.get_running_loop()
            if not flagged and not self.policy.keep_unflagged_audio:
                await loop.run_in_executor(self._executor, self._discard)
                self.kept = False
                log.info("call %s: no finding; recording deleted at call end (retention)", self.call_id)
                return
            await self._settle_name()
            self.finalized_at = iso(self._clock())
            await loop.run_in_executor(self._executor, partial(write_sidecar, self.call_id, self.info, self.finalized_at,
                                                               call_started_at=self.call_started_at))
            self.kept = True
        if recorder.dropped_frames:
            log.warning("call %s: %d frames of audio written as silence (disk too slow)", self.call_id, recorder.dropped_frames)

    def rename(self, call_id: str) -> asyncio.Task | None:
        """The call now runs as ``call_id``. Before the end, the name changes
        when the call ends; after it, the kept WAV and its sidecar are moved
        now (returns that work)."""
        self.call_id = call_id
        if not self._closing:
            return None
        return asyncio.get_running_loop().create_task(self._moved(), name=f"recording-rename:{call_id}")

    async def _moved(self) -> None:
        async with self._files:
            if self.kept:
                await self._settle_name()

    async def _settle_name(self) -> None:
        """Give the finished WAV (and its sidecar, if written) the call's current name."""
        target = self.recordings_dir / recording_name(self.call_id)
        if self.info is None or target == self.path:
            return
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, move_recording, self.info, target, self.call_id, self.finalized_at,
                                       self.call_started_at)
        except OSError as exc:  # the name is taken, or the share failed: keep the file where it is, say so
            log.error("call %s: recording %s could not be renamed to %s: %s", self.call_id, self.path.name, target.name, exc)
            return
        log.info("call %s: recording renamed from %s", self.call_id, self.path.name)
        self.path = target
        self.info = dataclasses.replace(self.info, path=target)

    def _discard(self) -> None:
        self.path.unlink(missing_ok=True)
        sidecar_path(self.path).unlink(missing_ok=True)


def move_recording(info: RecordingInfo, target: Path, call_id: str, finalized_at: str | None, call_started_at: str | None = None) -> None:
    """Move a finished recording to ``target`` (blocking: the recorder executor),
    never over another file: the WAV is linked to the new name first (which
    fails if it exists), then, if it had one, its sidecar is written for
    ``call_id`` beside it, then the old names go."""
    old = info.path
    os.link(old, target)
    if finalized_at is not None:
        write_sidecar(call_id, dataclasses.replace(info, path=target), finalized_at, call_started_at=call_started_at)
        sidecar_path(old).unlink(missing_ok=True)
    old.unlink()
    fsync_dir(target.parent)


def recording_taps(recordings_dir: Path, policy: RetentionPolicy, *, clock: Callable[[], datetime],
                   executor: Executor | None = None) -> Callable[[Any], RecordingTap]:
    """A tap factory for ``agent.runtime.Agent(tap_factories=[...])``: one
    :class:`RecordingTap` per audio call."""
    return lambda info: RecordingTap(info.call_id, recordings_dir, policy, clock=clock, executor=executor, call_started_at=info.started_at)


def recover_recordings(recordings_dir: Path, *, clock: Callable[[], datetime]) -> list[RecoveryReport]:
    """Repair what a crash left in ``recordings_dir`` and write missing sidecars
    (``recovered: true``; the hash is taken now, as first stored). Blocking:
    run it in an executor at start-up. Returns a report per WAV file."""
    reports = recover_dir(recordings_dir)
    for report in reports:
        if report.status == "unreadable":
            log.warning("recording %s", report.describe())
            continue
        if report.status == "fixed":
            log.warning("recording %s", report.describe())
        side = sidecar_path(report.path)
        if read_sidecar(side) is None:
            call_id = report.path.stem
            write_sidecar(call_id, info_of(report.path), iso(clock()), recovered=True)
    return reports


class AgentRecording:
    """An agent's recording setup: the ``recorder`` executor (file I/O of every
    call's recording), start-up recovery, and the tap factory to hand to
    ``agent.runtime.Agent(tap_factories=[...])``. Close it after the agent has
    shut down (its calls' recordings are finished by then)."""

    def __init__(self, recordings_dir: Path, policy: RetentionPolicy, *, clock: Callable[[], datetime] | None = None,
                 workers: int = 2) -> None:
        self.recordings_dir = Path(recordings_dir)
        self.policy = policy
        self.clock = clock or utc_now
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="recorder")
        self._found: frozenset[str] = frozenset()  # recordings in the directory at start-up, by file name

    async def recover(self) -> list[RecoveryReport]:
        """Repair recordings a crash left behind (before any call records), and
        note which recordings are there (:meth:`recorded`)."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.pool, lambda: self.recordings_dir.mkdir(parents=True, exist_ok=True))
        reports = await loop.run_in_executor(self.pool, lambda: recover_recordings(self.recordings_dir, clock=self.clock))
        self._found = frozenset(report.path.name for report in reports)
        fixed = [r for r in reports if r.status != "ok"]
        if fixed:
            log.warning("start-up: %d recording(s) needed recovery in %s", len(fixed), self.recordings_dir)
        return reports

    def recorded(self, call_id: str) -> bool:
        """Whether a recording of ``call_id`` was in the directory at start-up:
        an earlier process of this agent ran a call under that id, so a new
        call must not take it (``Agent(ids_in_use=[...])``; the recorder would
        refuse to write over it, and the call would go unrecorded). Read from
        memory: no file I/O on the event loop."""
        return recording_name(call_id) in self._found

    def tap(self, info: Any) -> RecordingTap:
        """The tap factory: one recording per audio call."""
        return RecordingTap(info.call_id, self.recordings_dir, self.policy, clock=self.clock, executor=self.pool,
                            call_started_at=info.started_at)

    def close(self) -> None:
        self.pool.shutdown(wait=True)
