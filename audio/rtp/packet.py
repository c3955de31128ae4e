"""The RTP packet (RFC 3550 §5.1): parse a datagram, build one, tell RTCP apart.

Sans-I/O and bounded by the datagram it is given: :func:`parse_rtp` reads at
most ``len(data)`` bytes and either returns an :class:`RtpPacket` or raises
:class:`~audio.errors.RtpError` with a stable ``code``; it never raises
anything else (a Hypothesis property test holds it to that).

Wire format (network byte order)::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    |V=2|P|X|  CC   |M|     PT      |       sequence number         |
    |                           timestamp                           |
    |           synchronization source (SSRC) identifier            |
    |            contributing source (CSRC) identifiers (CC x 32)   |
    |  extension profile (X=1)      |  extension length (32-bit words)|
    |                      extension data ...                       |
    |                      payload ...        | padding ... | count |

RTCP multiplexed on the RTP port (RFC 5761 §4) is told apart by its second
byte, 192..223 (RTCP packet types SR, RR, SDES, BYE, APP, ...), which read as
RTP would be marker set and payload type 64..95: :func:`is_rtcp`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from audio.errors import RtpError

__all__ = ["HEADER_BYTES", "RtpExtension", "RtpPacket", "is_rtcp", "parse_rtp"]

HEADER_BYTES = 12
"""Bytes of the fixed RTP header (before CSRCs and the extension)."""

_FIXED = struct.Struct("!BBHII")
_EXT = struct.Struct("!HH")


@dataclass(frozen=True)
class RtpExtension:
    """An RTP header extension (RFC 3550 §5.3.1): ``profile`` is the 16-bit
    profile-defined value (0xBEDE for RFC 8285 one-byte headers), ``data`` the
    extension body (a multiple of 4 bytes), kept as received and not interpreted."""

    profile: int
    data: bytes = b""


@dataclass(frozen=True)
class RtpPacket:
    """One RTP packet, header fields decoded, padding removed.

    Attributes:
        payload_type: 0..127 (the SDP ``m=`` line's format number: 0 PCMU, 8
            PCMA, 9 G.722, 96..127 dynamic).
        sequence: 16-bit sequence number, +1 per packet sent (wraps at 65536).
        timestamp: 32-bit RTP timestamp of the first payload sample, in the
            codec's clock (8000 Hz for PCMU, PCMA, G.722), wraps at 2**32.
        ssrc: 32-bit synchronization source of the sender's stream.
        marker: the M bit (start of a talk spurt for audio).
        payload: the codec's bytes, padding removed.
        csrc: contributing sources (at most 15), in header order.
        extension: the header extension, or None when the X bit is clear.
    """

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    marker: bool = False
    payload: bytes = b""
    csrc: tuple[int, ...] = ()
    extension: RtpExtension | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.payload_type <= 127:
            raise ValueError(f"payload_type {self.payload_type} outside 0..127")
        if not 0 <= self.sequence <= 0xFFFF:
            raise ValueError(f"sequence {self.sequence} outside 0..65535")
        if not 0 <= self.timestamp <= 0xFFFFFFFF or not 0 <= self.ssrc <= 0xFFFFFFFF:
            raise ValueError("timestamp and ssrc are 32-bit unsigned")
        if len(self.csrc) > 15 or any(not 0 <= c <= 0xFFFFFFFF for c in self.csrc):
            raise ValueError("at most 15 CSRCs, each 32-bit unsigned")
        if self.extension is not None and (len(self.extension.data) % 4 or len(self.extension.data) > 4 * 0xFFFF
                                           or not 0 <= self.extension.profile <= 0xFFFF):
            raise ValueError("extension data must be a multiple of 4 bytes (at most 262140), profile 16-bit")

    def encode(self, *, padding: int = 0) -> bytes:
        """The packet on the wire (version 2), with ``padding`` bytes of padding
        (0..255; the last one holds the count) when ``padding`` > 0."""
        if not 0 <= padding <= 255:
            raise ValueError("padding is 0..255 bytes")
        first = 0x80 | (0x20 if padding else 0) | (0x10 if self.extension is not None else 0) | len(self.csrc)
        parts = [_FIXED.pack(first, (0x80 if self.marker else 0) | self.payload_type, self.sequence, self.timestamp, self.ssrc)]
        parts.extend(struct.pack("!I", c) for c in self.csrc)
        if self.extension is not None:
            parts.append(_EXT.pack(self.extension.profile, len(self.extension.data) // 4) + self.extension.data)
        parts.append(self.payload)
        if padding:
            parts.append(bytes(padding - 1) + bytes([padding]))
        return b"".join(parts)


def is_rtcp(data: bytes) -> bool:
    """Whether a datagram on the RTP port is RTCP (RFC 5761 §4): version 2 and
    a second byte of 192..223 (packet types SR 200, RR 201, SDES 202, BYE 203,
    APP 204, RTPFB 205, PSFB 206, XR 207, ...). Such a datagram is not RTP and
    must not be counted as a malformed one."""
    return len(data) >= 4 and data[0] >> 6 == 2 and 192 <= data[1] <= 223


def parse_rtp(data: bytes) -> RtpPacket:
    """Decode one RTP datagram; raises :class:`~audio.errors.RtpError` when it is not well formed.

    Codes: ``truncated`` (under 12 bytes, or cut inside the CSRC list or the
    header extension), ``bad_version`` (not version 2), ``bad_padding`` (P bit
    set with a count of 0 or larger than what follows the header). An empty
    payload is well formed (a keep-alive). The payload type is not checked
    against any codec here, nor is RTCP recognised: call :func:`is_rtcp` first.
    """
    data = bytes(data)
    size = len(data)
    if size < HEADER_BYTES:
        raise RtpError(f"RTP datagram of {size} bytes is shorter than the 12-byte header", code="truncated")
    first, second, sequence, timestamp, ssrc = _FIXED.unpack_from(data)
    if first >> 6 != 2:
        raise RtpError(f"RTP version {first >> 6}, not 2", code="bad_version")
    at = HEADER_BYTES
    count = first & 0x0F
    if size < at + 4 * count:
        raise RtpError(f"RTP header names {count} CSRC(s) but the datagram ends after {size} bytes", code="truncated")
    csrc = struct.unpack_from(f"!{count}I", data, at) if count else ()
    at += 4 * count
    extension = None
    if first & 0x10:
        if size < at + 4:
            raise RtpError("RTP extension bit set but the datagram ends inside the extension header", code="truncated")
        profile, words = _EXT.unpack_from(data, at)
        at += 4
        if size < at + 4 * words:
            raise RtpError(f"RTP header extension of {4 * words} bytes runs past the end of the datagram", code="truncated")
        extension = RtpExtension(profile, data[at:at + 4 * words])
        at += 4 * words
    end = size
    if first & 0x20:
        pad = data[-1] if size > at else 0
        if pad == 0 or pad > size - at:
            raise RtpError(f"RTP padding count {pad} does not fit the {size - at} byte(s) after the header", code="bad_padding")
        end = size - pad
    return RtpPacket(second & 0x7F, sequence, timestamp, ssrc, bool(second & 0x80), data[at:end], tuple(csrc), extension)
