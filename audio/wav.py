"""WAV files as a call source: PCM16, mu-law and A-law, mono or stereo, 8 to 48 kHz.

Python's ``wave`` module reads only PCM, so the RIFF/WAVE chunks are parsed
here: ``fmt `` (plain or WAVE_FORMAT_EXTENSIBLE), ``data``, and any other
chunk skipped by its size. Every size is checked against the file.

What is an error and what is not:

- a file cut inside its header (before the first sample) is ``truncated``;
- a data chunk shorter than its header says (a recording cut off by a
  crash, or a writer that never went back to fill in the size) is READ with
  what is there: :attr:`WavInfo.truncated` says so, nothing is lost;
- zero bytes: ``empty``; not RIFF/WAVE: ``not_wav``; not 16-bit PCM, mu-law
  or A-law: ``unsupported_encoding``; a rate outside 8000..48000 Hz:
  ``unsupported_rate``; no such file: ``not_found``.

Stereo channels map to speakers (default: left = customer, right = partner);
a mono file is the customer. :class:`WavSource` delivers chunks per speaker,
as fast as possible or paced in real time to stand in for a live call. A file
whose rate webrtcvad does not take is converted once, on open, to the
nearest rate it does take (see :mod:`audio.resample`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np

from audio.errors import WavError
from audio.frames import SPEAKERS, AudioChunk, Speaker
from audio.g711 import decode_alaw, decode_ulaw
from audio.resample import delivery_rate, resample

__all__ = ["Encoding", "WavInfo", "read_info", "read_wav", "WavSource", "MIN_RATE", "MAX_RATE"]

Encoding = Literal["pcm16", "mu-law", "a-law"]

MIN_RATE = 8000
MAX_RATE = 48000

_PCM, _ALAW, _ULAW, _EXTENSIBLE = 0x0001, 0x0006, 0x0007, 0xFFFE
# The 14 bytes that follow the format tag in a WAVE_FORMAT_EXTENSIBLE sub-format GUID.
_KSDATAFORMAT_TAIL = bytes.fromhex("000000001000800000aa00389b71")
_FORMAT_NAMES = {
    0x0001: "PCM", 0x0002: "Microsoft ADPCM", 0x0003: "IEEE float", 0x0006: "A-law",
    0x0007: "mu-law", 0x0011: "IMA ADPCM", 0x0022: "DSP Group TrueSpeech", 0x0031: "GSM 6.10",
    0x0040: "G.721 ADPCM", 0x0050: "MPEG", 0x0055: "MP3", 0x0064: "G.726 ADPCM",
    0x0065: "G.722 ADPCM", 0x0160: "WMA",
}
_UNKNOWN_SIZE = 0xFFFFFFFF


@dataclass(frozen=True)
class WavInfo:
    """What a WAV file holds, from its header and its real length.

    Attributes:
        path: the file.
        encoding: ``pcm16``, ``mu-law`` or ``a-law``.
        sample_rate: the file's own rate, Hz (before any edge conversion).
        channels: channels per frame (1 = mono, 2 = stereo, ...).
        frames: samples per channel actually present in the file.
        duration: ``frames / sample_rate``, seconds.
        truncated: True when the data chunk is shorter than its header said
            (the samples present are still read).
        data_offset: byte offset of the first sample in the file.
        block_align: bytes per frame (all channels).
    """

    path: Path
    encoding: Encoding
    sample_rate: int
    channels: int
    frames: int
    duration: float
    truncated: bool
    data_offset: int = 0
    block_align: int = 0

    @property
    def bytes_per_sample(self) -> int:
        return 2 if self.encoding == "pcm16" else 1


def _err(path: Path, code: str, what: str) -> WavError:
    return WavError(f"{path}: {what}", code=code)


def _parse_fmt(path: Path, body: bytes) -> tuple[Encoding, int, int, int]:
    """(encoding, channels, rate, block_align) from a ``fmt `` chunk body, or raise."""
    if len(body) < 16:
        raise _err(path, "bad_header", f"fmt chunk is {len(body)} bytes, needs at least 16")
    tag, channels, rate, _byte_rate, block_align, bits = struct.unpack("<HHIIHH", body[:16])
    if tag == _EXTENSIBLE:
        if len(body) < 40:
            raise _err(path, "bad_header", "WAVE_FORMAT_EXTENSIBLE fmt chunk shorter than 40 bytes")
        _cb_size, valid_bits, _channel_mask = struct.unpack("<HHI", body[16:24])
        guid = body[24:40]
        sub_tag = struct.unpack("<H", guid[:2])[0]
        if guid[2:] != _KSDATAFORMAT_TAIL:
            raise _err(path, "unsupported_encoding", f"WAVE_FORMAT_EXTENSIBLE sub-format {guid.hex()} is not a standard audio format")
        if valid_bits and valid_bits != bits:
            raise _err(path, "unsupported_encoding", f"{valid_bits}-bit samples in {bits}-bit containers are not supported; use 16-bit PCM, mu-law or A-law")
        tag = sub_tag
    name = _FORMAT_NAMES.get(tag, f"format 0x{tag:04x}")
    if tag == _PCM and bits == 16:
        encoding: Encoding = "pcm16"
    elif tag == _ULAW and bits == 8:
        encoding = "mu-law"
    elif tag == _ALAW and bits == 8:
        encoding = "a-law"
    elif tag == _PCM:
        raise _err(path, "unsupported_encoding", f"{bits}-bit PCM is not supported; use 16-bit PCM, mu-law or A-law (e.g. sox in.wav -b 16 out.wav)")
    elif tag in (_ULAW, _ALAW):
        raise _err(path, "unsupported_encoding", f"{name} with {bits} bits per sample is not valid G.711 (8 bits)")
    else:
        raise _err(path, "unsupported_encoding", f"{name} ({bits}-bit) is not supported; use 16-bit PCM, mu-law or A-law (e.g. sox in.wav -b 16 -e signed-integer out.wav)")
    if channels == 0:
        raise _err(path, "bad_header", "the header says 0 channels")
    width = 2 if encoding == "pcm16" else 1
    if block_align != channels * width:
        raise _err(path, "bad_header", f"block align {block_align} does not match {channels} channel(s) of {width} byte(s)")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise _err(path, "unsupported_rate", f"sample rate {rate} Hz is outside {MIN_RATE}..{MAX_RATE} Hz (e.g. sox in.wav -r 16000 out.wav)")
    return encoding, channels, rate, block_align


def read_info(path: str | os.PathLike) -> WavInfo:
    """Parse a WAV file's header and measure its data; raise :class:`~audio.errors.WavError` with a ``code``."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return _read_info(path, fh, os.fstat(fh.fileno()).st_size)
    except FileNotFoundError:
        raise _err(path, "not_found", "no such file") from None
    except IsADirectoryError:
        raise _err(path, "not_found", "is a directory, not a WAV file") from None
    except OSError as exc:
        raise _err(path, "read_failed", exc.strerror or str(exc)) from None


def _read_info(path: Path, fh: BinaryIO, size: int) -> WavInfo:
    if size == 0:
        raise _err(path, "empty", "empty file (0 bytes)")
    head = fh.read(12)
    magic = head[:4]
    if magic in (b"RIFX", b"RF64", b"BW64"):
        raise _err(path, "unsupported_encoding", f"{magic.decode()} files are not supported; convert to a plain RIFF WAV (sox in.wav out.wav)")
    if not b"RIFF".startswith(magic) or (len(head) >= 12 and head[8:12] != b"WAVE"):
        raise _err(path, "not_wav", "not a WAV file (no RIFF/WAVE header)")
    if len(head) < 12:
        raise _err(path, "truncated", f"file ends inside the RIFF header ({size} bytes)")
    riff_end = 8 + struct.unpack("<I", head[4:8])[0]

    fmt: tuple[Encoding, int, int, int] | None = None
    data_offset = data_size = None
    pos = 12
    while pos + 8 <= size and (fmt is None or data_offset is None):
        fh.seek(pos)
        chunk_id, chunk_size = struct.unpack("<4sI", fh.read(8))
        body_at = pos + 8
        if chunk_id == b"fmt ":
            if body_at + chunk_size > size:
                raise _err(path, "truncated", f"file ends inside the fmt chunk ({size} bytes)")
            fmt = _parse_fmt(path, fh.read(chunk_size))
        elif chunk_id == b"data" and data_offset is None:
            data_offset, data_size = body_at, chunk_size
            runs_to_end = chunk_size == _UNKNOWN_SIZE or body_at + chunk_size >= size
            never_updated = chunk_size == 0 and riff_end <= body_at
            if runs_to_end or never_updated:
                break  # the samples run to the end of the file: measured below
        pos = body_at + chunk_size + (chunk_size & 1)
    if fmt is None:
        raise _err(path, "truncated", f"file ends before the fmt chunk ({size} bytes)")
    if data_offset is None:
        raise _err(path, "truncated", f"file ends before the data chunk ({size} bytes)")

    encoding, channels, rate, block_align = fmt
    present = size - data_offset
    truncated = False
    if data_size == _UNKNOWN_SIZE:
        available = present  # a streaming writer that could not know the length
    elif data_size == 0 and present > 0 and riff_end <= data_offset:
        # The header was written before the samples and never updated (the
        # writer crashed): everything after the header is the recording.
        available, truncated = present, True
    elif data_size > present:
        available, truncated = present, True
    else:
        available = data_size
    frames = available // block_align
    if available % block_align:
        truncated = True  # a frame cut in the middle: the whole frames before it are kept
    return WavInfo(
        path=path, encoding=encoding, sample_rate=rate, channels=channels, frames=frames,
        duration=frames / rate, truncated=truncated, data_offset=data_offset, block_align=block_align,
    )


def _decode(info: WavInfo, raw: bytes) -> np.ndarray:
    if info.encoding == "pcm16":
        flat = np.frombuffer(raw, dtype="<i2").astype(np.int16)
    elif info.encoding == "mu-law":
        flat = decode_ulaw(raw)
    else:
        flat = decode_alaw(raw)
    return flat.reshape(-1, info.channels)


def read_wav(path: str | os.PathLike) -> tuple[WavInfo, np.ndarray]:
    """The whole file: its :class:`WavInfo` and int16 samples of shape ``(frames, channels)`` at the file's rate."""
    info = read_info(path)
    try:
        with info.path.open("rb") as fh:
            fh.seek(info.data_offset)
            raw = fh.read(info.frames * info.block_align)
    except OSError as exc:
        raise _err(info.path, "read_failed", exc.strerror or str(exc)) from None
    if len(raw) < info.frames * info.block_align:  # the file shrank since read_info
        raw = raw[: len(raw) - len(raw) % info.block_align]
        frames = len(raw) // info.block_align
        info = dataclasses.replace(info, frames=frames, duration=frames / info.sample_rate, truncated=True)
    return info, _decode(info, raw)


def read_mono(path: str | os.PathLike, rate: int) -> np.ndarray:
    """The whole file as int16 mono samples at ``rate`` Hz (stereo mixed down,
    resampled if the file's rate differs). Blocking: run it in an executor on
    the event loop. Raises :class:`~audio.errors.WavError` as :func:`read_wav`."""
    info, data = read_wav(path)
    if data.ndim == 2 and data.shape[1] > 1:
        data = np.round(data.astype(np.float64).mean(axis=1)).astype(np.int16)
    else:
        data = np.ascontiguousarray(data.reshape(-1))
    return resample(data, info.sample_rate, rate) if info.sample_rate != rate else data


def _check_channel_map(path: Path, channel_map: Sequence[Speaker | None], channels: int) -> list[tuple[int, Speaker]]:
    used: list[tuple[int, Speaker]] = []
    for index, speaker in enumerate(channel_map[:channels]):
        if speaker is None:
            continue
        if speaker not in SPEAKERS:
            raise WavError(f"{path}: channel map entry {speaker!r} is not one of {', '.join(SPEAKERS)} or None", code="bad_channel_map")
        if any(s == speaker for _, s in used):
            raise WavError(f"{path}: channel map gives {speaker} two channels", code="bad_channel_map")
        used.append((index, speaker))
    if not used:
        raise WavError(f"{path}: channel map {tuple(channel_map)!r} ignores every one of the file's {channels} channel(s)", code="bad_channel_map")
    return used


class WavSource:
    """A recorded call, delivered as :class:`~audio.frames.AudioChunk` per speaker.

    ``channel_map`` gives the speaker of each channel in order (``None`` =
    ignore that channel); channels beyond the map are ignored. A mono file's
    one channel takes ``channel_map[0]`` (the customer by default).

    Chunks are ``chunk_ms`` long (the last one may be shorter). In each chunk
    period every mapped speaker gets one chunk, in channel order, so the
    chunks come in time order. ``start_sample`` counts from 0 at the start of
    the file, at :attr:`sample_rate`.

    The header is read when the source is made (so a bad file fails at
    once); the samples are read, decoded and converted whole (an hour of
    8 kHz stereo is about 115 MB of int16) on the first iteration: :meth:`chunks` reads
    them in the caller's thread, ``async for`` in ``executor`` (default: a
    one-thread pool named ``wav-read`` used for that one read).

    With ``realtime=True`` the async iterator is paced by audio time: chunk
    period ``k`` is delivered ``k * chunk_ms`` after the first, measured on
    ``clock`` (default: the event loop's clock), so late wake-ups never add
    up to drift. ``sleep`` (default ``asyncio.sleep``) and ``clock`` can be
    replaced in tests.

    Attributes:
        info: the file's header facts.
        sample_rate: rate delivered (Hz), after any edge conversion.
        speakers: the speakers delivered, in channel order.
        chunk_samples: samples per full chunk at :attr:`sample_rate`.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        channel_map: tuple[Speaker | None, ...] = ("customer", "partner"),
        chunk_ms: int = 20,
        realtime: bool = False,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        clock: Callable[[], float] | None = None,
        executor: Executor | None = None,
    ) -> None:
        if not isinstance(chunk_ms, int) or not 1 <= chunk_ms <= 10_000:
            raise WavError(f"chunk_ms must be a whole number of milliseconds from 1 to 10000, not {chunk_ms!r}", code="bad_config")
        self.info = read_info(path)
        self._map = _check_channel_map(self.info.path, tuple(channel_map), self.info.channels)
        self.speakers: tuple[Speaker, ...] = tuple(s for _, s in self._map)
        self.sample_rate = delivery_rate(self.info.sample_rate)
        self.chunk_ms = chunk_ms
        self.chunk_samples = max(1, self.sample_rate * chunk_ms // 1000)
        self.realtime = realtime
        self._sleep = sleep
        self._clock = clock
        self._executor = executor
        self._channels: list[np.ndarray] | None = None

    @property
    def converted(self) -> bool:
        """True when the file's rate is converted at this edge."""
        return self.sample_rate != self.info.sample_rate

    def _load(self) -> list[np.ndarray]:
        """Per mapped speaker, contiguous int16 samples at :attr:`sample_rate` (read and converted once)."""
        if self._channels is None:
            info, data = read_wav(self.info.path)
            self.info = info
            channels = [np.ascontiguousarray(data[:, index]) for index, _ in self._map]
            if self.converted:
                channels = [resample(c, info.sample_rate, self.sample_rate) for c in channels]
            for c in channels:
                c.setflags(write=False)
            self._channels = channels
        return self._channels

    @property
    def frames(self) -> int:
        """Samples per speaker delivered (at :attr:`sample_rate`), once loaded; before that, the estimate from the header."""
        if self._channels is not None:
            return len(self._channels[0]) if self._channels else 0
        return -(-self.info.frames * self.sample_rate // self.info.sample_rate)

    def _periods(self, channels: list[np.ndarray]) -> Iterator[list[AudioChunk]]:
        total = len(channels[0]) if channels else 0
        step = self.chunk_samples
        for start in range(0, total, step):
            yield [
                AudioChunk(speaker=speaker, samples=channel[start:start + step], sample_rate=self.sample_rate, start_sample=start)
                for (_, speaker), channel in zip(self._map, channels)
            ]

    def chunks(self) -> Iterator[AudioChunk]:
        """Every chunk, as fast as possible, in time order (synchronous; reads the file in this thread)."""
        for period in self._periods(self._load()):
            yield from period

    async def _load_async(self) -> list[np.ndarray]:
        if self._channels is not None:
            return self._channels
        loop = asyncio.get_running_loop()
        if self._executor is not None:
            return await loop.run_in_executor(self._executor, self._load)
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wav-read")
        try:
            return await loop.run_in_executor(pool, self._load)
        finally:
            pool.shutdown(wait=False)

    def __aiter__(self) -> AsyncIterator[AudioChunk]:
        return self._aiter()

    async def _aiter(self) -> AsyncIterator[AudioChunk]:
        channels = await self._load_async()
        loop = asyncio.get_running_loop()
        clock = self._clock or loop.time
        period_s = self.chunk_samples / self.sample_rate
        started = clock()
        for k, period in enumerate(self._periods(channels)):
            if self.realtime:
                delay = started + k * period_s - clock()
                if delay > 0:
                    await self._sleep(delay)
            else:
                await asyncio.sleep(0)  # let other tasks of the call run between chunks
            for chunk in period:
                yield chunk
