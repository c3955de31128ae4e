"""The call recorder: one stereo WAV per call, customer left, partner right.

QA replays flagged calls and evidence exports hand the recording to police or
lawyers, so a crash or a power cut must not cost the call: the recorder writes
the WAV while the call runs, and at most the last second of audio is lost.

How it stays safe:

- the header is written first with placeholder sizes; audio is appended as it
  comes; every ``sync_interval_s`` of audio the RIFF and data sizes are
  updated and the file is ``fsync``-ed, so after a power cut the file on disk
  holds everything up to the last sync;
- smaller writes (every ``write_interval_s``) reach the operating system in
  between, so a killed process loses only what was never handed to it;
- :func:`audio.recovery.recover` (run by the agent at start-up,
  :func:`~audio.recovery.recover_dir`) fixes the header of a file left by a
  crash from the file's length and trims a trailing partial frame.

Every byte of file I/O runs in a small named executor; :meth:`CallRecorder.push`
only places samples and interleaves them (cheap numpy work) so it can be
called from the event loop for every chunk of a live call.

Placement: each chunk is put at its ``start_sample`` (audio time). Gaps are
filled with silence; samples that arrive after their place was already
written are dropped and counted (``late_samples``). The two channels advance
independently: frames are written as far as both channels are known, and when
one channel runs more than ``max_lag_s`` ahead (a one-sided source, a stalled
stream), the other is filled with silence up to that lag. If the disk falls
more than ``max_pending_s`` behind, the oldest pending audio is written as
silence instead (counted in ``dropped_frames``) so memory stays bounded and the
recording keeps its timing.
"""

from __future__ import annotations

import asyncio
import os
import struct
import threading
from collections import deque
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from audio.errors import AudioError
from audio.frames import AudioChunk
from kernel.recordings import RecordingInfo, fsync_dir, sha256_file

CHANNELS = 2
SAMPLE_WIDTH = 2  # bytes per sample (PCM16)
BLOCK_ALIGN = CHANNELS * SAMPLE_WIDTH  # bytes per stereo frame
HEADER_BYTES = 44
MAX_DATA_BYTES = 0xFFFFFFFF - 36  # what a RIFF size field can describe
_CHANNEL_OF = {"customer": 0, "partner": 1}


class RecordingError(AudioError):
    """A recording could not be written, finalized or recovered."""

    code = "recording_error"


def wav_header(sample_rate: int, data_bytes: int, channels: int = CHANNELS) -> bytes:
    """A 44-byte PCM16 WAV header for ``data_bytes`` bytes of audio."""
    block = channels * SAMPLE_WIDTH
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF", 36 + data_bytes, b"WAVE",
        b"fmt ", 16, 1, channels, sample_rate, sample_rate * block, block, SAMPLE_WIDTH * 8,
        b"data", data_bytes,
    )


class _WavFile:
    """The file side of a recorder. Runs only in the executor, under its lock."""

    def __init__(self, path: Path, sample_rate: int) -> None:
        self.path = path
        self.sample_rate = sample_rate
        self.fh = None
        self.data_bytes = 0

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # "x": a recording is evidence; never overwrite one that exists.
        self.fh = open(self.path, "xb", buffering=0)
        self.fh.write(wav_header(self.sample_rate, 0))
        os.fsync(self.fh.fileno())
        fsync_dir(self.path.parent)

    def append(self, block: bytes | int) -> None:
        if isinstance(block, int):  # frames of silence
            remaining = block * BLOCK_ALIGN
            zeros = bytes(min(remaining, 1 << 16))
            while remaining:
                n = min(remaining, len(zeros))
                self._write(zeros[:n])
                remaining -= n
        else:
            self._write(block)

    def _write(self, data: bytes) -> None:
        if self.data_bytes + len(data) > MAX_DATA_BYTES:
            raise RecordingError(f"{self.path}: recording exceeds the 4 GiB a WAV file can hold")
        view = memoryview(data)
        while view:
            n = self.fh.write(view)
            view = view[n:]
        self.data_bytes += len(data)

    def sync(self) -> None:
        """Write the real sizes into the header and push everything to the disk."""
        os.pwrite(self.fh.fileno(), struct.pack("<I", 36 + self.data_bytes), 4)
        os.pwrite(self.fh.fileno(), struct.pack("<I", self.data_bytes), 40)
        os.fsync(self.fh.fileno())

    def close(self) -> None:
        if self.fh is not None and not self.fh.closed:
            self.fh.close()


class CallRecorder:
    """Records one call as a stereo PCM16 WAV while it runs.

    Args:
        path: the WAV file to create (it must not exist yet).
        sample_rate: Hz of every chunk pushed (both speakers).
        sync_interval_s: seconds of audio between header updates + ``fsync``
            (the most a power cut can lose).
        write_interval_s: seconds of audio between writes to the operating
            system (the most a killed process can lose); at most ``sync_interval_s``.
        max_lag_s: seconds one channel may run ahead of the other before the
            lagging one is written as silence.
        max_pending_s: seconds of audio allowed to wait for the disk before the
            oldest is replaced by silence (counted in ``dropped_frames``).
        executor: where file I/O runs; shared by many recorders if given (any
            size: each recorder serializes its own I/O). When None, the
            recorder owns a one-thread executor named ``recorder``.

    Use :meth:`push` for every chunk of either speaker, then :meth:`close`
    (or ``await`` :meth:`aclose` on the event loop) at the end of the call.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        sample_rate: int,
        *,
        sync_interval_s: float = 1.0,
        write_interval_s: float = 0.2,
        max_lag_s: float = 2.0,
        max_pending_s: float = 30.0,
        executor: Executor | None = None,
    ) -> None:
        if sample_rate <= 0:
            raise RecordingError(f"bad sample rate {sample_rate}")
        if sync_interval_s <= 0 or write_interval_s <= 0 or max_lag_s < 0 or max_pending_s <= 0:
            raise RecordingError("recorder intervals must be positive")
        self.path = Path(path)
        self.sample_rate = sample_rate
        self._sync_frames = max(1, round(sync_interval_s * sample_rate))
        self._write_frames = max(1, min(self._sync_frames, round(write_interval_s * sample_rate)))
        self._max_lag = round(max_lag_s * sample_rate)
        self._max_pending = max(1, round(max_pending_s * sample_rate))
        self._own_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="recorder")
        self._file = _WavFile(self.path, sample_rate)
        self._io_lock = threading.Lock()
        self._queue_lock = threading.Lock()
        self._queue: deque[bytes | int] = deque()  # interleaved PCM, or an int = frames of silence
        self._queued_audio = 0  # frames of real audio (not silence markers) waiting for the disk
        self._unsubmitted = 0  # frames queued since the last write job was submitted
        self._since_sync = 0  # frames handed out since the last sync job
        self._pending: list[list[np.ndarray]] = [[], []]  # per channel, not yet interleaved
        self._buffered = [0, 0]
        self._frames = 0  # frames interleaved so far (the next frame's index)
        self._futures: deque[Future] = deque()
        self._error: BaseException | None = None
        self._closed = False
        self.dropped_frames = 0
        self.late_samples = 0
        self._submit(sync=False)  # create the file and its header off the caller's thread

    # ------------------------------------------------------------------ event-loop side

    @property
    def frames(self) -> int:
        """Frames placed in the recording so far (written or waiting for the disk)."""
        return self._frames

    @property
    def error(self) -> BaseException | None:
        """The first I/O error of the writer, if any (the call goes on without it)."""
        return self._error

    def push(self, chunk: AudioChunk) -> None:
        """Place one chunk of one speaker at its audio time. Cheap: no I/O."""
        if self._closed:
            raise RecordingError(f"{self.path}: recorder is closed")
        if chunk.sample_rate != self.sample_rate:
            raise RecordingError(f"{self.path}: chunk at {chunk.sample_rate} Hz, recording at {self.sample_rate} Hz")
        ch = _CHANNEL_OF.get(chunk.speaker)
        if ch is None:
            raise RecordingError(f"unknown speaker {chunk.speaker!r}")
        samples = chunk.samples
        start = chunk.start_sample
        known = self._frames + self._buffered[ch]
        if start < known:
            skip = known - start
            self.late_samples += min(skip, len(samples))
            if skip >= len(samples):
                return
            samples = samples[skip:]
            start = known
        if start > known:
            self._add(ch, np.zeros(start - known, dtype=np.int16))
        if len(samples):
            self._add(ch, samples)
        self._interleave(final=False)

    def close(self) -> RecordingInfo:
        """Write everything, fix the header, fsync, and hash the file. Blocks."""
        future = self._finish()
        try:
            return future.result()
        finally:
            self._shutdown()

    async def aclose(self) -> RecordingInfo:
        """:meth:`close` without blocking the event loop."""
        future = self._finish()
        try:
            return await asyncio.wrap_future(future)
        finally:
            self._shutdown()

    # ------------------------------------------------------------------ internals

    def _add(self, ch: int, samples: np.ndarray) -> None:
        self._pending[ch].append(samples)
        self._buffered[ch] += len(samples)

    def _take(self, ch: int, n: int) -> np.ndarray:
        parts = self._pending[ch]
        have = self._buffered[ch]
        if have < n:
            parts.append(np.zeros(n - have, dtype=np.int16))
            have = n
        joined = parts[0] if len(parts) == 1 else np.concatenate(parts)
        head, rest = joined[:n], joined[n:]
        self._pending[ch] = [rest] if len(rest) else []
        self._buffered[ch] = have - n
        return head

    def _interleave(self, *, final: bool) -> None:
        lo, hi = min(self._buffered), max(self._buffered)
        ready = hi if final else max(lo, hi - self._max_lag)
        if ready <= 0:
            return
        frames = np.empty((ready, CHANNELS), dtype="<i2")
        frames[:, 0] = self._take(0, ready)
        frames[:, 1] = self._take(1, ready)
        self._frames += ready
        self._enqueue(frames.tobytes(), ready)
        self._unsubmitted += ready
        self._since_sync += ready
        if self._since_sync >= self._sync_frames:
            self._since_sync = 0
            self._unsubmitted = 0
            self._submit(sync=True)
        elif self._unsubmitted >= self._write_frames:
            self._unsubmitted = 0
            self._submit(sync=False)

    def _enqueue(self, block: bytes, frames: int) -> None:
        with self._queue_lock:
            self._queue.append(block)
            self._queued_audio += frames
            # The disk is behind: keep the timing, bound the memory, count the loss.
            i = 0
            while self._queued_audio > self._max_pending and i < len(self._queue) - 1:
                oldest = self._queue[i]
                if not isinstance(oldest, int):
                    n = len(oldest) // BLOCK_ALIGN
                    self._queue[i] = n
                    self._queued_audio -= n
                    self.dropped_frames += n
                i += 1

    def _submit(self, *, sync: bool) -> None:
        while self._futures and self._futures[0].done():
            self._futures.popleft()
        try:
            self._futures.append(self._executor.submit(self._drain, sync))
        except RuntimeError as exc:  # executor shut down under us
            self._error = self._error or exc

    def _drain(self, sync: bool, finalize: bool = False) -> RecordingInfo | None:
        with self._io_lock:
            if self._error is not None:
                if finalize:
                    raise RecordingError(f"{self.path}: recording failed: {self._error}") from self._error
                return None
            try:
                if self._file.fh is None:
                    self._file.open()
                while True:
                    with self._queue_lock:
                        if not self._queue:
                            break
                        block = self._queue.popleft()
                        if not isinstance(block, int):
                            self._queued_audio -= len(block) // BLOCK_ALIGN
                    self._file.append(block)
                if sync or finalize:
                    self._file.sync()
                if finalize:
                    self._file.close()
                    fsync_dir(self.path.parent)
                    return RecordingInfo(
                        path=self.path,
                        sample_rate=self.sample_rate,
                        frames=self._file.data_bytes // BLOCK_ALIGN,
                        bytes=HEADER_BYTES + self._file.data_bytes,
                        sha256=sha256_file(self.path),
                        dropped_frames=self.dropped_frames,
                        late_samples=self.late_samples,
                    )
            except FileExistsError as exc:
                self._error = RecordingError(f"{self.path}: a recording with this name already exists")
                if finalize:
                    raise self._error from exc
            except (OSError, RecordingError) as exc:
                self._error = exc
                self._file.close()
                if finalize:
                    raise RecordingError(f"{self.path}: recording failed: {exc}") from exc
            return None

    def _finish(self) -> Future:
        if self._closed:
            raise RecordingError(f"{self.path}: recorder is already closed")
        self._closed = True
        self._interleave(final=True)
        return self._executor.submit(self._drain, True, True)

    def _shutdown(self) -> None:
        if self._own_executor:
            self._executor.shutdown(wait=False)
