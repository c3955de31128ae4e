"""Helpers of the SIP tests: SIPREC offers and metadata as an SBC sends them; SIPp runs."""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass
import sys
from pathlib import Path

import numpy as np

from audio.sip.message import SipMessage, header_params, multipart, parse_message
from audio.sip.sdp import parse_sdp

METADATA = """<?xml version="1.0" encoding="UTF-8"?>
<recording xmlns='urn:ietf:params:xml:ns:recording:1'>
  <datamode>complete</datamode>
  <session session_id="s1"><sipSessionID>abc;remote=def</sipSessionID></session>
  <participant participant_id="p1"><nameID aor="{caller}"><name>Caller</name></nameID></participant>
  <participant participant_id="p2"><nameID aor="{callee}"><name>Callee</name></nameID></participant>
  <stream stream_id="st1" session_id="s1"><label>1</label></stream>
  <stream stream_id="st2" session_id="s1"><label>2</label></stream>
  <participantstreamassoc participant_id="p1"><send>st1</send><recv>st2</recv></participantstreamassoc>
  <participantstreamassoc participant_id="p2"><send>st2</send><recv>st1</recv></participantstreamassoc>
</recording>
"""


def metadata(caller: str = "sip:+4930123456@carrier.example", callee: str = "sip:1001@pbx.example") -> bytes:
    return METADATA.format(caller=caller, callee=callee).encode()


def sdp(streams: list[tuple[int, str, str]] | None = None, *, address: str = "127.0.0.1", proto: str = "RTP/AVP",
        formats: str = "0 8 101") -> bytes:
    """An SDP offer of ``(port, label, direction)`` audio streams."""
    streams = streams if streams is not None else [(6000, "1", "sendonly"), (6002, "2", "sendonly")]
    lines = ["v=0", f"o=SBC 1 1 IN IP4 {address}", "s=SIPREC", f"c=IN IP4 {address}", "t=0 0"]
    for port, label, direction in streams:
        lines += [f"m=audio {port} {proto} {formats}", "a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000",
                  "a=rtpmap:101 telephone-event/8000", f"a=label:{label}", f"a={direction}"]
    return ("\r\n".join(lines) + "\r\n").encode()


def invite(*, call_id: str = "call-1@sbc", branch: str = "z9hG4bK-1", from_tag: str = "sbc1", to_tag: str | None = None,
           cseq: int = 1, body_sdp: bytes | None = None, meta: bytes | None = b"", siprec: bool = True,
           to: str = "<sip:srs@127.0.0.1>", method: str = "INVITE") -> SipMessage:
    """A SIPREC INVITE (multipart SDP + metadata), or a plain one (``siprec=False``, SDP only)."""
    body_sdp = sdp() if body_sdp is None else body_sdp
    headers = [("Via", f"SIP/2.0/UDP 127.0.0.1:5070;branch={branch}"), ("Max-Forwards", "70"),
               ("From", f"<sip:src@sbc.example>;tag={from_tag}"), ("To", to + (f";tag={to_tag}" if to_tag else "")),
               ("Call-ID", call_id), ("CSeq", f"{cseq} {method}"), ("Contact", "<sip:src@127.0.0.1:5070>" + (";+sip.src" if siprec else ""))]
    if siprec:
        headers.append(("Require", "siprec"))
        content_type, body = multipart([("application/sdp", body_sdp), ("application/rs-metadata+xml", meta or metadata())])
    else:
        content_type, body = "application/sdp", body_sdp
    headers.append(("Content-Type", content_type))
    return SipMessage(method, "sip:srs@127.0.0.1", headers=tuple(headers), body=body)


def request(method: str, *, call_id: str = "call-1@sbc", branch: str = "z9hG4bK-2", from_tag: str = "sbc1",
            to_tag: str | None = None, cseq: int = 2) -> SipMessage:
    """An in-dialog (``to_tag``) or out-of-dialog request without a body."""
    return SipMessage(method, "sip:srs@127.0.0.1", headers=(
        ("Via", f"SIP/2.0/UDP 127.0.0.1:5070;branch={branch}"), ("From", f"<sip:src@sbc.example>;tag={from_tag}"),
        ("To", "<sip:srs@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")), ("Call-ID", call_id),
        ("CSeq", f"{cseq} {'INVITE' if method == 'ACK' else method}"), ("Max-Forwards", "70")))


# --------------------------------------------------------------------------- calls

RATE = 8000


def tone(seconds: float, freq: float) -> np.ndarray:
    """``seconds`` of a sine at ``freq`` Hz, 8 kHz int16."""
    t = np.arange(int(seconds * RATE)) / RATE
    return (8000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


class Calls:
    """A SipServer ``on_call`` that drains every call's audio, counting samples per speaker."""

    def __init__(self) -> None:
        self.calls, self.audio, self.done = {}, {}, {}

    async def __call__(self, call) -> None:
        self.calls[call.id] = call
        got = self.audio.setdefault(call.id, {"customer": 0, "partner": 0})
        self.done[call.id] = asyncio.Event()
        async for chunk in call.audio():
            got[chunk.speaker] += len(chunk.samples)
        self.done[call.id].set()


class UdpPeer(asyncio.DatagramProtocol):
    """An SBC's SIP socket: sends requests, keeps every response."""

    def __init__(self) -> None:
        self.responses: asyncio.Queue[SipMessage] = asyncio.Queue()
        self.skipped: list[SipMessage] = []

    def datagram_received(self, data, addr) -> None:
        self.responses.put_nowait(parse_message(data))

    @classmethod
    async def open(cls, port: int):
        loop = asyncio.get_running_loop()
        transport, peer = await loop.create_datagram_endpoint(cls, remote_addr=("127.0.0.1", port))
        return transport, peer

    async def expect(self, status: int, method: str | None = None, timeout: float = 5.0) -> SipMessage:
        """The next response to a ``method`` request (any, if None); provisional ones are skipped."""
        while True:
            message = await asyncio.wait_for(self.responses.get(), timeout)
            if method is not None and message.get("CSeq", "").split()[-1:] != [method]:
                self.skipped.append(message)
                continue
            if message.status == status:
                return message
            assert message.status < 200, f"got {message.status} {message.reason}, wanted {status}"


async def answered(transport, peer, message) -> tuple[SipMessage, list[int]]:
    """Send an INVITE; its 200 OK and the RTP ports of its answer."""
    transport.sendto(message.encode())
    ok = await peer.expect(200)
    return ok, [m.port for m in parse_sdp(ok.body).media]


@dataclass
class PlacedCall:
    """A SIPREC call placed by :func:`place_siprec_call`: ``samples`` sent per speaker."""

    call_id: str
    samples: dict[str, int]


async def place_siprec_call(port: int, customer: np.ndarray, partner: np.ndarray, *, call_id: str, pace_ms: float = 20.0) -> PlacedCall:
    """An SBC's SIPREC call, over UDP: INVITE, ACK, both streams as PCMU RTP at
    real-time pace (``pace_ms`` per 20 ms packet), BYE."""
    from audio.rtp import RtpSender, packetize

    transport, peer = await UdpPeer.open(port)
    try:
        ok, ports = await answered(transport, peer, invite(call_id=call_id, branch=f"z9hG4bK-{call_id}"))
        tag = header_params(ok.get("To") or "").get("tag")
        transport.sendto(request("ACK", call_id=call_id, to_tag=tag, cseq=1, branch=f"z9hG4bK-ack-{call_id}").encode())
        async with await RtpSender.open("127.0.0.1", ports[0]) as a, await RtpSender.open("127.0.0.1", ports[1]) as b:
            await asyncio.gather(a.send(packetize(customer, ssrc=1), pace_ms=pace_ms), b.send(packetize(partner, ssrc=2), pace_ms=pace_ms))
        transport.sendto(request("BYE", call_id=call_id, to_tag=tag, cseq=2, branch=f"z9hG4bK-bye-{call_id}").encode())
        await peer.expect(200, "BYE", timeout=30)
    finally:
        transport.close()
    step = 160
    return PlacedCall(call_id, {"customer": -(-len(customer) // step) * step, "partner": -(-len(partner) // step) * step})


# --------------------------------------------------------------------------- SIPp

SIPP_DIR = Path(__file__).resolve().parent / "sipp"
"""The committed SIPp scenarios and rtp_pcap.py."""


def write_call_pcaps(folder: Path, customer: np.ndarray, partner: np.ndarray) -> Path:
    """customer.pcap and partner.pcap (PCMU RTP, 20 ms packets) of 8 kHz samples, in ``folder``."""
    sys.path.insert(0, str(SIPP_DIR))
    from rtp_pcap import write_pcap

    from audio.rtp import packetize

    for name, samples, ssrc in (("customer", customer, 0x1111), ("partner", partner, 0x2222)):
        write_pcap(folder / f"{name}.pcap", [p.encode() for p in packetize(samples, codec="PCMU", ssrc=ssrc)])
    return folder


async def run_sipp(scenario: str, port: int, *, cwd: Path, transport: str = "u1", duration_ms: int = 1000, calls: int = 1,
                   rate: float | None = None, callee: str = "sip:1001@pbx.example", timeout: float = 120) -> tuple[int, str]:
    """Run SIPp (Debian ``sip-tester``) as the client of ``scenario`` against 127.0.0.1:``port``; (exit code, its errors)."""
    assert shutil.which("sipp"), "SIPp is required (apt-get install sip-tester)"
    errors = cwd / f"{scenario}.{transport}.errors.log"
    args = ["sipp", "-sf", str(SIPP_DIR / scenario), "-m", str(calls), "-d", str(duration_ms), "-i", "127.0.0.1", "-mi", "127.0.0.1",
            "-t", transport, "-key", "python", sys.executable, "-key", "tools", str(SIPP_DIR), "-key", "callee", callee,
            "-trace_err", "-error_file", str(errors), "-nostdin", "-timeout", f"{int(timeout)}s", f"127.0.0.1:{port}"]
    if rate is not None:
        args[1:1] = ["-r", str(rate)]
    proc = await asyncio.create_subprocess_exec(*args, cwd=cwd, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), timeout + 10)
    log = errors.read_text(errors="replace") if errors.exists() else ""
    return proc.returncode, err.decode(errors="replace") + log


# --------------------------------------------------------------------------- baresip

BARESIP_CONFIG = """poll_method epoll
sip_listen 127.0.0.1:{port}
sip_trans_def udp
audio_player aufile,{folder}/heard.wav
audio_source aufile,{wav}
audio_alert aufile,{folder}/alert.wav
audio_level no
rtp_timeout 0
module_path /usr/lib/baresip/modules
module g711.so
module aufile.so
module_app account.so
module_app menu.so
"""


async def baresip_dials(uri: str, wav: Path, *, folder: Path, sip_port: int, seconds: int) -> tuple[int, str]:
    """A real SIP user agent (Debian ``baresip``) dials ``uri``, plays ``wav``
    (8 kHz mono PCM16) as its microphone and hangs up at its end (or after
    ``seconds``); (exit code, its output)."""
    assert shutil.which("baresip"), "baresip is required (apt-get install baresip)"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config").write_text(BARESIP_CONFIG.format(port=sip_port, folder=folder, wav=wav), encoding="utf-8")
    (folder / "accounts").write_text("<sip:pbx@127.0.0.1>;regint=0;audio_codecs=PCMU,PCMA\n", encoding="utf-8")
    proc = await asyncio.create_subprocess_exec("baresip", "-f", str(folder), "-e", f"/dial {uri}", "-t", str(seconds),
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                                                stdin=asyncio.subprocess.DEVNULL)
    out, _ = await asyncio.wait_for(proc.communicate(), seconds + 30)
    return proc.returncode, out.decode(errors="replace")
