"""A fake Asterisk: one AudioSocket leg played from samples (or a WAV), as the
``AudioSocket()`` dialplan application would send it.

It connects, sends the leg's UUID, then 20 ms slin frames paced at ``speed``
times real time (0: as fast as the socket takes them), then a hang-up frame.
It reads whatever the server sends back (closing message frames, a hang-up)
with the event loop's time of arrival, and, like Asterisk, stops sending and
closes once the server sends a hang-up.

Deliberately independent of ``audio.audiosocket``: it builds frames with
``struct`` so the server is checked against a separate encoder.
"""

from __future__ import annotations

import asyncio
import struct
import uuid as uuidlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

RATE_KIND = {8000: 0x10, 12000: 0x11, 16000: 0x12, 24000: 0x13, 32000: 0x14, 44100: 0x15, 48000: 0x16, 96000: 0x17, 192000: 0x18}


def frame(kind: int, payload: bytes = b"") -> bytes:
    return struct.pack("!BH", kind, len(payload)) + payload


def leg_uuid(call: uuidlib.UUID, speaker: str) -> uuidlib.UUID:
    """The pairing convention of docs/asterisk.md: last byte 00 customer, 01 partner."""
    return uuidlib.UUID(bytes=call.bytes[:15] + (b"\x00" if speaker == "customer" else b"\x01"))


@dataclass
class Received:
    kind: int
    payload: bytes
    at: float  # event loop time of arrival, seconds


@dataclass
class LegResult:
    sent_samples: int = 0
    received: list[Received] = field(default_factory=list)
    server_hung_up: bool = False

    def frames_of(self, kind: int) -> list[Received]:
        return [r for r in self.received if r.kind == kind]


async def play_leg(
    port: int,
    leg: uuidlib.UUID | bytes,
    samples: np.ndarray,
    *,
    rate: int = 8000,
    speed: float = 0.0,
    hangup: bool = True,
    frame_ms: int = 20,
    tail: bytes = b"",
    keep_open_s: float = 0.0,
    host: str = "127.0.0.1",
) -> LegResult:
    """Play one leg; ``tail``: raw bytes sent after the audio instead of a clean ending
    (then no hang-up, and the connection is closed right after, as a crash would)."""
    reader, writer = await asyncio.open_connection(host, port)
    result = LegResult()
    raw = leg.bytes if isinstance(leg, uuidlib.UUID) else bytes(leg)
    writer.write(frame(0x01, raw))
    hung_up = asyncio.Event()
    reading = asyncio.create_task(_read_back(reader, result, hung_up))
    loop = asyncio.get_running_loop()
    step = rate * frame_ms // 1000
    samples = np.asarray(samples, dtype="<i2")
    start = loop.time()
    try:
        for i, first in enumerate(range(0, len(samples), step)):
            if hung_up.is_set():
                break
            piece = samples[first:first + step]
            writer.write(frame(RATE_KIND[rate], piece.tobytes()))
            result.sent_samples += len(piece)
            if speed > 0:
                await writer.drain()
                delay = start + (i + 1) * frame_ms / 1000 / speed - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            elif i % 50 == 0:
                await writer.drain()
        await writer.drain()
        if tail:
            writer.write(tail)
            await writer.drain()
        elif hangup and not hung_up.is_set():
            writer.write(frame(0x00))
            await writer.drain()
        if keep_open_s and not tail:
            try:
                await asyncio.wait_for(hung_up.wait(), keep_open_s)
            except asyncio.TimeoutError:
                pass
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()
        try:
            await asyncio.wait_for(reading, 2)
        except (asyncio.TimeoutError, ConnectionError, OSError):
            reading.cancel()
    return result


async def _read_back(reader: asyncio.StreamReader, result: LegResult, hung_up: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    try:
        while True:
            header = await reader.readexactly(3)
            kind, length = struct.unpack("!BH", header)
            payload = await reader.readexactly(length) if length else b""
            result.received.append(Received(kind, payload, loop.time()))
            if kind == 0x00:
                result.server_hung_up = True
                hung_up.set()
                return
    except (asyncio.IncompleteReadError, ConnectionError, OSError):
        return


def wav_samples(path: Path) -> tuple[np.ndarray, int]:
    """(samples, rate) of a PCM16 WAV; stereo is returned as (n, 2)."""
    import wave

    with wave.open(str(path), "rb") as w:
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        if w.getnchannels() > 1:
            data = data.reshape(-1, w.getnchannels())
        return data, w.getframerate()
