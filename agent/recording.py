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
import logging
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from kernel.retention import RetentionPolicy
from kernel.clock import iso, utc_now
from audio.frames import AudioChunk
from audio.recorder import CallRecorder
from audio.recovery import RecoveryReport, info_of, recover_dir
from kernel.recordings import RecordingInfo, read_sidecar, recording_name, sidecar_path, write_sidecar

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
    """

    def __init__(self, call_id: str, recordings_dir: Path, policy: RetentionPolicy, *, clock: Callable[[], datetime],
                 executor: Executor | None = None, sync_interval_s: float = 1.0) -> None:
        self.call_id = call_id
        self.path = Path(recordings_dir) / recording_name(call_id)
        self.policy = policy
        self._clock = clock
        self._executor = executor
        self._sync = sync_interval_s
        self._recorder: CallRecorder | None = None
        self._session: Any = None
        self.info: RecordingInfo | None = None
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
        if self._recorder is None:
            return  # no audio, no recording
        self.info = await self._recorder.aclose()
        flagged = session is None or getattr(session, "findings", 1) > 0
        loop = asyncio.get_running_loop()
        if not flagged and not self.policy.keep_unflagged_audio:
            await loop.run_in_executor(self._executor, self._discard)
            self.kept = False
            log.info("call %s: no finding; recording deleted at call end (retention)", self.call_id)
            return
        await loop.run_in_executor(self._executor, write_sidecar, self.call_id, self.info, iso(self._clock()))
        self.kept = True
        if self._recorder.dropped_frames:
            log.warning("call %s: %d frames of audio written as silence (disk too slow)", self.call_id, self._recorder.dropped_frames)

    def _discard(self) -> None:
        self.path.unlink(missing_ok=True)
        sidecar_path(self.path).unlink(missing_ok=True)


def recording_taps(recordings_dir: Path, policy: RetentionPolicy, *, clock: Callable[[], datetime],
                   executor: Executor | None = None) -> Callable[[Any], RecordingTap]:
    """A tap factory for ``agent.runtime.Agent(tap_factories=[...])``: one
    :class:`RecordingTap` per audio call."""
    return lambda info: RecordingTap(info.call_id, recordings_dir, policy, clock=clock, executor=executor)


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

    async def recover(self) -> list[RecoveryReport]:
        """Repair recordings a crash left behind (before any call records)."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.pool, lambda: self.recordings_dir.mkdir(parents=True, exist_ok=True))
        reports = await loop.run_in_executor(self.pool, lambda: recover_recordings(self.recordings_dir, clock=self.clock))
        fixed = [r for r in reports if r.status != "ok"]
        if fixed:
            log.warning("start-up: %d recording(s) needed recovery in %s", len(fixed), self.recordings_dir)
        return reports

    def tap(self, info: Any) -> RecordingTap:
        """The tap factory: one recording per audio call."""
        return RecordingTap(info.call_id, self.recordings_dir, self.policy, clock=self.clock, executor=self.pool)

    def close(self) -> None:
        self.pool.shutdown(wait=True)
