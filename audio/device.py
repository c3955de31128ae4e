"""Sound devices as a call source: a stereo line-in, or two devices, one per speaker.

For sites that tap the partner's headset instead of the PBX. PortAudio (through
the ``sounddevice`` package) calls back on its own thread with a block of
samples; the callback only copies the block and hands it to the event loop
with ``loop.call_soon_threadsafe``. There it goes into a bounded queue: when
the consumer falls behind, the oldest block is dropped and counted
(:attr:`DeviceCapture.dropped_blocks`), and PortAudio's own input overflows are
counted too (:attr:`DeviceCapture.overflows`). Time stays audio time: each
block's start sample is counted in the callback, so a dropped block leaves a
gap in the time line instead of shifting what follows.

``sounddevice`` is imported only when a device is listed or opened, so the
rest of callshield works on a machine without PortAudio. This module imports
nothing from ``agent`` or ``console``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from kernel.sections import read_section, setting
from audio.errors import AudioError
from audio.frames import AudioChunk, Speaker
from kernel.queues import DropOldestQueue

DeviceRef = int | str | None
"""A PortAudio device: its index, a (part of its) name, or None for the default input."""


class DeviceError(AudioError):
    """A sound device cannot be listed, found or opened.

    Codes: ``no_portaudio`` (the PortAudio library is missing: apt-get install
    libportaudio2), ``no_device`` (no input device matches), ``bad_config``
    (the ``[devices]`` section is wrong), ``device_failed`` (PortAudio refused
    to open or run the device).
    """

    code = "device_error"


def _sounddevice() -> Any:
    # Imported here, not at the top: `python -X importtime -c "import sounddevice"`
    # measures 64 ms (it loads PortAudio, which also probes the sound system), and
    # it fails with OSError where libportaudio is absent; only device commands pay.
    try:
        import sounddevice
    except OSError as exc:  # sounddevice raises OSError when libportaudio is absent
        raise DeviceError(f"PortAudio is not available ({exc}); install libportaudio2", code="no_portaudio") from None
    except ImportError as exc:
        raise DeviceError(f"the sounddevice package is missing ({exc})", code="no_portaudio") from None
    return sounddevice


# --------------------------------------------------------------------------- listing


@dataclass(frozen=True)
class DeviceInfo:
    """One PortAudio device. ``index``: PortAudio's number; ``hostapi``: e.g.
    ``ALSA``; channels are counts; ``default_samplerate`` in Hz;
    ``default_input``/``default_output``: whether it is the system default."""

    index: int
    name: str
    hostapi: str
    max_input_channels: int
    max_output_channels: int
    default_samplerate: float
    default_input: bool = False
    default_output: bool = False


def list_devices(sd: Any = None) -> list[DeviceInfo]:
    """Every PortAudio device (inputs and outputs), in PortAudio's order."""
    sd = sd or _sounddevice()
    try:
        devices = sd.query_devices()
        hostapis = sd.query_hostapis()
        default_in, default_out = _defaults(sd)
    except Exception as exc:  # PortAudio errors have no common base we can rely on
        raise DeviceError(f"cannot list sound devices: {exc}", code="device_failed") from None
    return [
        DeviceInfo(
            index=int(d["index"]) if "index" in d else i,
            name=str(d["name"]),
            hostapi=str(hostapis[d["hostapi"]]["name"]),
            max_input_channels=int(d["max_input_channels"]),
            max_output_channels=int(d["max_output_channels"]),
            default_samplerate=float(d["default_samplerate"]),
            default_input=i == default_in,
            default_output=i == default_out,
        )
        for i, d in enumerate(devices)
    ]


def _defaults(sd: Any) -> tuple[int, int]:
    device = sd.default.device
    try:
        return int(device[0]), int(device[1])
    except (TypeError, ValueError, IndexError):
        return -1, -1


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class DeviceConfig:
    """The ``[devices]`` section: which sound devices carry a call.

    Either one stereo line-in (``stereo``; each speaker on its own channel) or
    one device per speaker (``customer``, optionally ``partner``). With
    neither, the default input device is used as a stereo line-in if it has
    two channels, else as the customer alone.

    Fields:
        stereo: device (index or name) of a stereo line-in, or None.
        customer_channel: 0-based channel of the customer on ``stereo``.
        partner_channel: 0-based channel of the partner on ``stereo``.
        customer: device of the customer alone (two-device setup), or None.
        partner: device of the partner alone, or None.
        sample_rate: Hz to capture at (8000, 16000, 32000 or 48000: what
            webrtcvad takes, so nothing downstream converts).
        block_ms: milliseconds of audio per PortAudio callback.
        queue_blocks: bound of the capture queue, in blocks; the oldest block
            is dropped (and counted) beyond it.
    """

    stereo: DeviceRef = setting(default=None, read=lambda value: _device("stereo", value))
    customer_channel: int = 0
    partner_channel: int = 1
    customer: DeviceRef = setting(default=None, read=lambda value: _device("customer", value))
    partner: DeviceRef = setting(default=None, read=lambda value: _device("partner", value))
    sample_rate: int = 16000
    block_ms: int = 20
    queue_blocks: int = 250

    def __post_init__(self) -> None:
        if self.sample_rate not in (8000, 16000, 32000, 48000):
            raise DeviceError(f"[devices] sample_rate must be 8000, 16000, 32000 or 48000, not {self.sample_rate}", code="bad_config")
        if not 5 <= self.block_ms <= 500 or self.queue_blocks < 1:
            raise DeviceError("[devices] block_ms must be 5..500 and queue_blocks at least 1", code="bad_config")
        if self.stereo is not None and (self.customer is not None or self.partner is not None):
            raise DeviceError("[devices]: set either stereo, or customer (and partner), not both", code="bad_config")
        if self.partner is not None and self.customer is None:
            raise DeviceError("[devices]: a partner device needs a customer device", code="bad_config")
        if min(self.customer_channel, self.partner_channel) < 0 or self.customer_channel == self.partner_channel:
            raise DeviceError("[devices]: customer_channel and partner_channel must be two different channels", code="bad_config")

    @property
    def block_frames(self) -> int:
        return self.sample_rate * self.block_ms // 1000

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> "DeviceConfig":
        """Build from the ``[devices]`` table; a wrong key or value is a :class:`DeviceError` (``bad_config``)."""
        return read_section(cls, section, section="[devices]", error=lambda message: DeviceError(message, code="bad_config"))


def _device(name: str, value: Any) -> DeviceRef:
    """A device setting: its index or (part of) its name; an empty name is none."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"{name} must be a device index or name")
    return value if value != "" else None


# --------------------------------------------------------------------------- capture


@dataclass(frozen=True)
class _Input:
    """One PortAudio input stream and which speaker each of its channels carries."""

    device: DeviceRef
    channels: int
    speakers: Sequence[tuple[int, Speaker]]  # (channel index, speaker)


class DeviceCapture:
    """Capture one call from sound devices; iterate :meth:`chunks` for its audio.

    ``async with DeviceCapture(config) as capture: async for chunk in capture.chunks(): ...``
    Stopping (:meth:`stop`, leaving the ``async with``) ends the iterator
    after the blocks already queued. ``sd`` replaces the ``sounddevice``
    module (for tests that isolate the queueing from PortAudio).
    """

    def __init__(self, config: DeviceConfig = DeviceConfig(), *, sd: Any = None, executor: Executor | None = None) -> None:
        self.config = config
        self._sd = sd
        self._owns_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="device-io")
        self._queue: DropOldestQueue[tuple[AudioChunk, ...]] = DropOldestQueue(config.queue_blocks)
        self._streams: list[Any] = []
        self._frames: list[int] = []  # frames seen per stream, counted on PortAudio's thread
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped = False
        self.inputs: list[_Input] = []
        self.overflows = 0
        """Blocks PortAudio flagged as input overflow (audio lost before we saw it)."""
        self.blocks = 0
        self.samples_captured: dict[str, int] = {}
        """Samples per speaker put into the queue (before any drop)."""

    @property
    def dropped_blocks(self) -> int:
        """Blocks dropped because the queue was full."""
        return self._queue.dropped

    @property
    def speakers(self) -> tuple[str, ...]:
        return tuple(s for i in self.inputs for _, s in i.speakers)

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    def _plan(self, sd: Any) -> list[_Input]:
        c = self.config
        if c.customer is not None:
            plan = [_Input(c.customer, 1, [(0, "customer")])]
            if c.partner is not None:
                plan.append(_Input(c.partner, 1, [(0, "partner")]))
            return plan
        device = c.stereo
        info = self._query(sd, device)
        channels = int(info["max_input_channels"])
        if channels < 1:
            raise DeviceError(f"sound device {info['name']!r} has no input channels", code="no_device")
        if device is None and channels < 2:
            return [_Input(None, 1, [(0, "customer")])]
        needed = max(c.customer_channel, c.partner_channel) + 1
        if channels < needed:
            raise DeviceError(f"sound device {info['name']!r} has {channels} input channel(s); the [devices] channels need {needed}", code="no_device")
        return [_Input(device, needed, [(c.customer_channel, "customer"), (c.partner_channel, "partner")])]

    @staticmethod
    def _query(sd: Any, device: DeviceRef) -> Mapping[str, Any]:
        try:
            return sd.query_devices(device, "input")
        except Exception as exc:
            which = "the default input device" if device is None else f"input device {device!r}"
            raise DeviceError(f"cannot find {which}: {exc}", code="no_device") from None

    async def start(self) -> "DeviceCapture":
        """Open and start the streams (PortAudio calls are made in the ``device-io`` executor)."""
        self._loop = asyncio.get_running_loop()
        sd = self._sd or _sounddevice()
        self.inputs = self._plan(sd)
        for _, speaker in (pair for i in self.inputs for pair in i.speakers):
            self.samples_captured[speaker] = 0
        try:
            for index, spec in enumerate(self.inputs):
                self._frames.append(0)
                stream = await self._loop.run_in_executor(self._executor, self._open, sd, spec, index)
                self._streams.append(stream)
            for stream in self._streams:
                await self._loop.run_in_executor(self._executor, stream.start)
        except DeviceError:
            await self.close()
            raise
        except Exception as exc:
            await self.close()
            raise DeviceError(f"cannot open the sound device: {exc}", code="device_failed") from None
        return self

    def _open(self, sd: Any, spec: _Input, index: int) -> Any:
        c = self.config
        if spec.device is not None:
            self._query(sd, spec.device)
        return sd.InputStream(
            device=spec.device, channels=spec.channels, samplerate=c.sample_rate, dtype="int16",
            blocksize=c.block_frames, callback=self._callback_for(index, spec),
        )

    def _callback_for(self, index: int, spec: _Input):
        loop = self._loop
        assert loop is not None

        def callback(indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
            # PortAudio's thread: copy, count, hand over. Nothing here may block.
            start = self._frames[index]
            self._frames[index] = start + frames
            block = np.array(indata, dtype=np.int16, copy=True).reshape(frames, -1)
            overflow = bool(getattr(status, "input_overflow", False))
            with contextlib.suppress(RuntimeError):  # the loop closed while the device ran on
                loop.call_soon_threadsafe(self._put, spec, block, start, overflow)

        return callback

    def _put(self, spec: _Input, block: np.ndarray, start: int, overflow: bool) -> None:
        if self._stopped:
            return
        if overflow:
            self.overflows += 1
        rate = self.config.sample_rate
        chunks = tuple(AudioChunk(speaker, np.ascontiguousarray(block[:, channel]), rate, start) for channel, speaker in spec.speakers)
        for chunk in chunks:
            self.samples_captured[chunk.speaker] += len(chunk.samples)
        self._queue.put(chunks)
        self.blocks += 1

    async def chunks(self) -> AsyncIterator[AudioChunk]:
        """The call's chunks (both speakers) until :meth:`stop`, then what is still queued."""
        while (block := await self._queue.get()) is not None:
            for chunk in block:
                yield chunk

    def __aiter__(self) -> AsyncIterator[AudioChunk]:
        return self.chunks()

    def stop(self) -> None:
        """Stop accepting blocks; the iterator ends once the queue is empty."""
        self._stopped = True
        self._queue.close()

    async def close(self) -> None:
        """Stop and close the streams and release the executor."""
        self.stop()
        loop = asyncio.get_running_loop()
        streams, self._streams = self._streams, []
        for stream in streams:
            with contextlib.suppress(Exception):
                await loop.run_in_executor(self._executor, stream.stop)
            with contextlib.suppress(Exception):
                await loop.run_in_executor(self._executor, stream.close)
        if self._owns_executor:
            self._executor.shutdown(wait=False)

    async def __aenter__(self) -> "DeviceCapture":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
