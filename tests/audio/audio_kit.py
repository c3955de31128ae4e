"""Helpers for the audio tests: hand-made RIFF bytes, tones, sox conversions."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import numpy as np

from speech import require_tools, write_pcm16

SHARED_DIGITS = ("digits-8k.wav", "digits-16k.wav")
# Where the three digit groups of the shared recordings are spoken (s), measured by ear and level.
DIGIT_GROUPS = ((0.85, 2.6), (3.9, 5.0), (6.3, 7.9))


def fmt_body(tag: int, channels: int, rate: int, bits: int) -> bytes:
    block = channels * bits // 8
    return struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)


def extensible_body(sub_tag: int, channels: int, rate: int, bits: int, valid_bits: int | None = None) -> bytes:
    block = channels * bits // 8
    guid = struct.pack("<H", sub_tag) + bytes.fromhex("000000001000800000aa00389b71")
    return struct.pack("<HHIIHHHHI", 0xFFFE, channels, rate, rate * block, block, bits, 22, valid_bits or bits, 3) + guid


def riff(chunks: list[tuple[bytes, bytes]], *, riff_size: int | None = None, sizes: dict[bytes, int] | None = None) -> bytes:
    """A RIFF/WAVE file from (id, body) chunks; ``sizes`` overrides a chunk's size field, ``riff_size`` the RIFF one."""
    body = b"WAVE"
    for chunk_id, data in chunks:
        size = (sizes or {}).get(chunk_id, len(data))
        body += chunk_id + struct.pack("<I", size) + data + (b"\0" if len(data) & 1 else b"")
    return b"RIFF" + struct.pack("<I", len(body) if riff_size is None else riff_size) + body


def pcm16_wav(samples: np.ndarray, rate: int) -> bytes:
    samples = np.asarray(samples, dtype="<i2")
    channels = 1 if samples.ndim == 1 else samples.shape[1]
    return riff([(b"fmt ", fmt_body(1, channels, rate, 16)), (b"data", samples.tobytes())])


def tone(freq: float, seconds: float, rate: int, amplitude: float) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return np.rint(amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def two_tone_stereo(seconds: float, rate: int) -> np.ndarray:
    """Left: 300 Hz at amplitude 8000; right: 700 Hz at amplitude 2000 (tells the channels apart by level)."""
    return np.stack([tone(300, seconds, rate, 8000), tone(700, seconds, rate, 2000)], axis=1)


def sox(*args: str | Path) -> None:
    """Run sox without dither (-D), so its output is exactly the algorithm's."""
    require_tools()
    subprocess.run(["sox", "-D", *map(str, args)], check=True, capture_output=True)


def write_encoded(path: Path, samples: np.ndarray, rate: int, encoding: str) -> Path:
    """A WAV of ``samples`` in ``pcm16``, or ``mu-law``/``a-law`` written by sox."""
    if encoding == "pcm16":
        return write_pcm16(path, samples, rate)
    pcm = write_pcm16(path.with_suffix(".pcm.wav"), samples, rate)
    sox(pcm, "-e", encoding, "-b", "8", path)
    return path


def rms(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    return float(np.sqrt(np.mean(x * x))) if len(x) else 0.0
