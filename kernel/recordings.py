"""The recording contract between the agent and the console: names, sidecars, hashes.

The agent's recorder (``audio/recorder.py``) writes one stereo WAV per call in
the recordings directory, named by :func:`recording_name`, and when the call
ends it writes the recording's facts beside it (:func:`write_sidecar`,
``NAME.wav.json``): the SHA-256 as first stored, size, duration, when. The
console adopts those facts into its store (``console/qa.py``) and serves the
file to QA, checking the hash again. Both sides read this one module, so the
name of a call's file and the shape of its sidecar are written once.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RecordingInfo:
    """A finalized recording.

    Attributes:
        path: the WAV file.
        sample_rate: frames per second (Hz).
        frames: stereo frames in the file (samples per channel).
        bytes: size of the file in bytes, header included.
        sha256: hex SHA-256 of the whole file as finalized ("as first stored").
        dropped_frames: frames written as silence because the disk fell behind.
        late_samples: samples (either channel) that came after their place was
            written and were dropped.
    """

    path: Path
    sample_rate: int
    frames: int
    bytes: int
    sha256: str
    dropped_frames: int = 0
    late_samples: int = 0

    @property
    def duration(self) -> float:
        """Length in seconds of audio."""
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def sha256_file(path: str | os.PathLike, *, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def fsync_dir(path: Path) -> None:
    """Make a new or renamed directory entry survive a power cut (POSIX only)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)



_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$")


def recording_name(call_id: str) -> str:
    """The file name of a call's recording: the call id when it is a plain
    name, else a digest of it (an id from a PBX never becomes a path)."""
    if _SAFE_NAME.match(call_id) and not call_id.endswith(".json"):
        return f"{call_id}.wav"
    return "call-" + hashlib.sha256(call_id.encode("utf-8")).hexdigest()[:40] + ".wav"


def sidecar_path(wav: str | os.PathLike) -> Path:
    """Where the facts of a finalized recording are written: ``NAME.wav.json``."""
    wav = Path(wav)
    return wav.with_name(wav.name + ".json")


def write_sidecar(call_id: str, info: RecordingInfo, finalized_at: str, *, recovered: bool = False,
                  call_started_at: str | None = None) -> Path:
    """Record a finalized recording's facts (hash as first stored, size,
    duration) beside it, atomically, for the console to adopt into its store.
    ``finalized_at``: ISO 8601 UTC wall time from the caller's clock.
    ``call_started_at``: the call's ``started_at`` as its ``call_started``
    said (written when known): with the id it names one call, so a
    recording is never adopted for another call that had its id."""
    facts = {
        "call_id": call_id,
        "file": info.path.name,
        "sha256": info.sha256,
        "bytes": info.bytes,
        "frames": info.frames,
        "sample_rate": info.sample_rate,
        "duration": round(info.duration, 3),
        "finalized_at": finalized_at,
        "recovered": recovered,
        "dropped_frames": info.dropped_frames,
    }
    if call_started_at is not None:
        facts["call_started_at"] = call_started_at
    target = sidecar_path(info.path)
    tmp = target.with_name(target.name + ".part")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(facts, fh, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, target)
    fsync_dir(target.parent)
    return target


def read_sidecar(path: str | os.PathLike) -> dict | None:
    """The facts :func:`write_sidecar` wrote, or None when missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as fh:
            facts = json.load(fh)
    except (OSError, ValueError):
        return None
    keys = {"call_id": str, "file": str, "sha256": str, "bytes": int, "duration": (int, float), "finalized_at": str}
    if not isinstance(facts, dict) or not all(isinstance(facts.get(k), t) for k, t in keys.items()):
        return None
    return facts
