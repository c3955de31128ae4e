"""Crash recovery of call recordings: fix what a crash or a power cut left on disk.

The recorder (:mod:`audio.recorder`) writes each call's WAV as the call runs
and syncs its header every few seconds, so a file left by a crash holds its
audio but may claim fewer bytes than it has, or end inside a frame.
:func:`recover` rewrites the sizes from the file's length and trims a
trailing partial frame; the agent runs :func:`recover_dir` at start-up,
before any call records. :func:`info_of` describes a WAV already on disk.
Everything here is blocking file I/O: run it in an executor.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from audio.recorder import MAX_DATA_BYTES, RecordingError
from kernel.recordings import RecordingInfo, sha256_file


@dataclass(frozen=True)
class RecoveryReport:
    """What :func:`recover` found and did to one file.

    Attributes:
        path: the WAV file.
        status: ``ok`` (header already right), ``fixed`` (header rewritten
            and/or a partial frame trimmed) or ``unreadable`` (not a WAV this
            recorder can repair; the file is left as it is).
        sample_rate: frames per second (Hz), 0 when unreadable.
        channels: channels in the file, 0 when unreadable.
        frames: frames in the file after recovery.
        claimed_data_bytes: the data size the header said before recovery.
        data_bytes: the data size after recovery.
        trimmed_bytes: bytes of a trailing partial frame cut off.
        detail: one line for humans.
    """

    path: Path
    status: Literal["ok", "fixed", "unreadable"]
    sample_rate: int = 0
    channels: int = 0
    frames: int = 0
    claimed_data_bytes: int = 0
    data_bytes: int = 0
    trimmed_bytes: int = 0
    detail: str = ""

    @property
    def duration(self) -> float:
        """Length in seconds of audio after recovery."""
        return self.frames / self.sample_rate if self.sample_rate else 0.0

    def describe(self) -> str:
        """One line: the file, what was done, and how much audio it holds."""
        if self.status == "unreadable":
            return f"{self.path}: unreadable, left as is ({self.detail})"
        if self.status == "ok":
            return f"{self.path}: ok, {self.duration:.2f} s"
        return f"{self.path}: fixed, {self.duration:.2f} s ({self.detail})"



def _read_layout(fh, size: int) -> tuple[int, int, int, int, int]:
    """(channels, sample_rate, block_align, data_offset, claimed_data_bytes) or RecordingError."""
    head = fh.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise RecordingError("not a RIFF/WAVE file")
    fmt = None
    pos = 12
    while pos + 8 <= size:
        fh.seek(pos)
        cid, clen = struct.unpack("<4sI", fh.read(8))
        body = pos + 8
        if cid == b"fmt ":
            raw = fh.read(min(clen, 40))
            if len(raw) < 16:
                raise RecordingError("fmt chunk cut short")
            tag, channels, rate, _, block, bits = struct.unpack("<HHIIHH", raw[:16])
            if tag not in (1, 0xFFFE) or bits != 16 or channels < 1 or rate <= 0 or block != channels * 2:
                raise RecordingError(f"not 16-bit PCM (format {tag}, {bits} bits)")
            fmt = (channels, rate, block)
        elif cid == b"data":
            if fmt is None:
                raise RecordingError("data before fmt")
            return fmt[0], fmt[1], fmt[2], body, clen
        pos = body + clen + (clen & 1)
    raise RecordingError("no data chunk" if fmt else "no fmt chunk")


def recover(path: str | os.PathLike) -> RecoveryReport:
    """Fix the header of a WAV left by a crash (sizes from the file length,
    trailing partial frame trimmed) and say what was done. Idempotent: a file
    whose header is already right is reported ``ok`` and not touched."""
    path = Path(path)
    try:
        with open(path, "r+b") as fh:
            size = os.fstat(fh.fileno()).st_size
            try:
                channels, rate, block, offset, claimed = _read_layout(fh, size)
            except (RecordingError, struct.error) as exc:
                return RecoveryReport(path=path, status="unreadable", detail=str(exc) or "truncated header")
            available = size - offset
            trimmed = available % block
            data = min(available - trimmed, MAX_DATA_BYTES)
            trimmed = available - data
            riff = offset - 8 + data
            fh.seek(4)
            riff_claimed = struct.unpack("<I", fh.read(4))[0]
            report = dict(path=path, sample_rate=rate, channels=channels, frames=data // block,
                          claimed_data_bytes=claimed, data_bytes=data, trimmed_bytes=trimmed)
            if claimed == data and riff_claimed == riff and not trimmed:
                return RecoveryReport(status="ok", detail="header matches the data", **report)
            if trimmed:
                fh.truncate(offset + data)
            fh.seek(4)
            fh.write(struct.pack("<I", riff))
            fh.seek(offset - 4)
            fh.write(struct.pack("<I", data))
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise RecordingError(f"{path}: cannot recover: {exc.strerror or exc}") from exc
    claimed_frames = claimed // block
    detail = f"header said {claimed_frames} frames, file holds {data // block}"
    if trimmed:
        detail += f"; trimmed {trimmed} bytes of a partial frame"
    return RecoveryReport(status="fixed", detail=detail, **report)


def recover_dir(directory: str | os.PathLike) -> list[RecoveryReport]:
    """:func:`recover` every ``*.wav`` directly in ``directory`` (start-up of the
    agent, before any call records). A missing directory holds nothing."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return [recover(p) for p in sorted(directory.glob("*.wav")) if p.is_file() and not p.is_symlink()]


def info_of(path: str | os.PathLike) -> RecordingInfo:
    """A :class:`RecordingInfo` for a WAV already on disk (after :func:`recover`). Blocking."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            channels, rate, block, offset, data = _read_layout(fh, size)
    except (OSError, struct.error) as exc:
        raise RecordingError(f"{path}: cannot read: {exc}") from exc
    return RecordingInfo(path=path, sample_rate=rate, frames=data // block, bytes=size, sha256=sha256_file(path))
