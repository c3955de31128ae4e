"""Send call audio as RTP: packetize 8 kHz samples and send them over UDP, paced by audio time.

For tests, benches (``bench/concurrent_calls.py --ingress siprec``) and
demos: callshield only receives RTP in production. :func:`packetize` turns
int16 8 kHz mono samples into :class:`~audio.rtp.packet.RtpPacket` s (PCMU,
PCMA or G.722, ``ptime_ms`` per packet, the last one padded with silence);
:class:`RtpSender` sends packets or raw datagrams from a UDP socket,
optionally SRTP-protected and paced (packet ``i`` leaves at ``start + i *
ptime``, an absolute schedule, so lateness does not accumulate);
:func:`wav_samples` reads a WAV into what :func:`packetize` takes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from audio.errors import RtpError
from audio.g711 import encode_alaw, encode_ulaw
from audio.rtp.codecs import CLOCK_RATE, encode_g722
from audio.rtp.packet import RtpPacket
from audio.rtp.srtp import SrtpKey
from audio.wav import read_mono

__all__ = ["STATIC_TYPES", "RtpSender", "encode_payloads", "packetize", "wav_samples"]

STATIC_TYPES = {"PCMU": 0, "PCMA": 8, "G722": 9}
"""The static payload type of each codec :func:`packetize` encodes."""


def encode_payloads(samples: np.ndarray, codec: str, ptime_ms: int = 20) -> list[bytes]:
    """int16 8 kHz mono samples as ``ptime_ms`` payloads of ``codec`` (``PCMU``,
    ``PCMA`` or ``G722``); the last one padded with silence to a whole packet."""
    step = CLOCK_RATE * ptime_ms // 1000
    samples = np.asarray(samples, dtype=np.int16).reshape(-1)
    if len(samples) % step:
        samples = np.concatenate([samples, np.zeros(step - len(samples) % step, dtype=np.int16)])
    if codec == "PCMU":
        data = encode_ulaw(samples)
    elif codec == "PCMA":
        data = encode_alaw(samples)
    elif codec == "G722":
        data = encode_g722(samples)
    else:
        raise RtpError(f"cannot encode {codec!r}: use PCMU, PCMA or G722", code="bad_codec")
    return [data[i:i + step] for i in range(0, len(data), step)]


def packetize(samples: np.ndarray, *, codec: str = "PCMU", payload_type: int | None = None, ssrc: int = 0x5EC0CA11,
              first_sequence: int = 0, first_timestamp: int = 0, ptime_ms: int = 20) -> list[RtpPacket]:
    """RTP packets carrying ``samples`` (int16, 8000 Hz, mono).

    Sequence numbers count up from ``first_sequence`` and timestamps from
    ``first_timestamp`` by the samples per packet (both wrap); the first
    packet has the marker bit (start of a talk spurt). ``payload_type``
    defaults to the codec's static type (:data:`STATIC_TYPES`).
    """
    pt = STATIC_TYPES[codec] if payload_type is None else payload_type
    step = CLOCK_RATE * ptime_ms // 1000
    return [
        RtpPacket(pt, (first_sequence + i) & 0xFFFF, (first_timestamp + i * step) & 0xFFFFFFFF, ssrc, i == 0, payload)
        for i, payload in enumerate(encode_payloads(samples, codec, ptime_ms))
    ]


def wav_samples(path: Path) -> np.ndarray:
    """A WAV file (anything :func:`audio.wav.read_wav` reads) as int16 mono 8 kHz samples (stereo mixed down)."""
    return read_mono(path, CLOCK_RATE)


class RtpSender:
    """A UDP socket that sends RTP to one address. Make it with :meth:`open`; ``close()`` when done.

    ``srtp``: protect every RTP packet with this key (libsrtp, outbound
    session) before sending; raw datagrams (:meth:`send_raw`) are sent as given.
    """

    def __init__(self, transport: asyncio.DatagramTransport, srtp: SrtpKey | None) -> None:
        self._transport = transport
        self._srtp = srtp.outbound() if srtp is not None else None
        self.sent = 0
        """Datagrams sent."""

    @classmethod
    async def open(cls, host: str, port: int, *, srtp: SrtpKey | None = None, local: tuple[str, int] | None = None) -> "RtpSender":
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, remote_addr=(host, port), local_addr=local)
        return cls(transport, srtp)

    @property
    def local_address(self) -> Any:
        return self._transport.get_extra_info("sockname")

    def send_raw(self, data: bytes) -> None:
        """Send one datagram as it is (garbage, RTCP, a pre-built packet)."""
        self._transport.sendto(data)
        self.sent += 1

    def send_packet(self, packet: RtpPacket) -> None:
        """Send one RTP packet (SRTP-protected if the sender has a key)."""
        data = packet.encode()
        self.send_raw(self._srtp.protect(data) if self._srtp is not None else data)

    async def send(self, packets: Iterable[RtpPacket | bytes], *, pace_ms: float | None = 20.0) -> None:
        """Send packets (RtpPacket, or raw bytes as they are) in the order given,
        one every ``pace_ms`` on an absolute schedule of the loop's clock
        (``None``: as fast as the loop goes, yielding to it after every datagram,
        so that a receiver on the same loop, which reads one datagram per turn,
        can keep up)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i, item in enumerate(packets):
            if pace_ms is not None:
                delay = start + i * pace_ms / 1000 - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            elif i:
                await asyncio.sleep(0)
            if isinstance(item, RtpPacket):
                self.send_packet(item)
            else:
                self.send_raw(item)

    def close(self) -> None:
        self._transport.close()

    async def __aenter__(self) -> "RtpSender":
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
