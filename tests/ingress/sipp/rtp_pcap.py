"""RTP in pcap files: write speech as a capture SIPp's ``play_pcap_audio`` plays, and play one (stdlib only).

``python rtp_pcap.py FILE HOST PORT`` sends the UDP payloads of ``FILE`` to
``HOST:PORT`` at the pace of the capture's timestamps: the SIPREC scenario
runs it (``<exec command=...>``) for the second stream, whose port SIPp's own
player cannot aim at (it plays to the first ``m=audio`` of the answer).
"""

from __future__ import annotations

import socket
import struct
import sys
import time

_GLOBAL = struct.Struct("<IHHiIII")
_RECORD = struct.Struct("<IIII")
ETHERTYPE_IPV4 = 0x0800


def _checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp_frame(payload: bytes, *, src: tuple[str, int], dst: tuple[str, int]) -> bytes:
    """An Ethernet + IPv4 + UDP frame carrying ``payload``."""
    udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0, socket.inet_aton(src[0]), socket.inet_aton(dst[0]))
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    return b"\x00\x00\x00\x00\x00\x02" + b"\x00\x00\x00\x00\x00\x01" + struct.pack("!H", ETHERTYPE_IPV4) + ip + udp


def write_pcap(path, payloads: list[bytes], *, ptime_ms: int = 20, dst_port: int = 6000) -> None:
    """A capture of ``payloads`` (RTP datagrams) sent ``ptime_ms`` apart to ``dst_port``."""
    with open(path, "wb") as out:
        out.write(_GLOBAL.pack(0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i, payload in enumerate(payloads):
            frame = udp_frame(payload, src=("127.0.0.1", 5000), dst=("127.0.0.1", dst_port))
            micros = i * ptime_ms * 1000
            out.write(_RECORD.pack(micros // 1_000_000, micros % 1_000_000, len(frame), len(frame)) + frame)


def read_pcap(path) -> list[tuple[float, bytes]]:
    """(seconds, UDP payload) of every IPv4/UDP packet of an Ethernet capture."""
    data = open(path, "rb").read()
    magic, _, _, _, _, _, linktype = _GLOBAL.unpack_from(data)
    assert magic == 0xA1B2C3D4 and linktype == 1, "a little-endian, microsecond, Ethernet capture"
    out, offset = [], _GLOBAL.size
    while offset + _RECORD.size <= len(data):
        sec, usec, length, _ = _RECORD.unpack_from(data, offset)
        frame = data[offset + _RECORD.size:offset + _RECORD.size + length]
        offset += _RECORD.size + length
        if len(frame) >= 42 and struct.unpack("!H", frame[12:14])[0] == ETHERTYPE_IPV4 and frame[23] == 17:
            ihl = (frame[14] & 0x0F) * 4
            out.append((sec + usec / 1e6, frame[14 + ihl + 8:]))
    return out


def play(path, host: str, port: int) -> int:
    """Send the capture's payloads to ``host:port`` at their pace; returns how many were sent."""
    packets = read_pcap(path)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        start = time.monotonic()
        first = packets[0][0] if packets else 0.0
        for stamp, payload in packets:
            delay = start + (stamp - first) - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sock.sendto(payload, (host, port))
    return len(packets)


if __name__ == "__main__":
    play(sys.argv[1], sys.argv[2], int(sys.argv[3]))
