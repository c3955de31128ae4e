"""SDP (RFC 4566 / 8866) offers in, answers out: only what a recorder needs.

:func:`parse_sdp` reads an offer into a :class:`SessionDescription` (bounded:
:data:`MAX_SDP` bytes, :data:`MAX_MEDIA` media sections); :func:`answer`
builds the answer (RFC 3264): one ``m=`` line per offered one, in the same
order; an audio stream we take is answered on our port with the offered
codecs we decode, ``a=recvonly`` (``a=inactive`` for a stream the offer holds
``inactive`` or ``recvonly``), its ``a=label`` copied (RFC 7866); anything else
is refused with port 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from audio.sip.message import SipError

MAX_SDP = 16384
"""Largest SDP body accepted, bytes."""
MAX_MEDIA = 8
"""Most ``m=`` sections an offer may have."""
MAX_FORMATS = 32
"""Most payload types one ``m=`` line may list."""

STATIC_PAYLOADS = {0: ("PCMU", 8000), 3: ("GSM", 8000), 4: ("G723", 8000), 8: ("PCMA", 8000), 9: ("G722", 8000), 18: ("G729", 8000)}
"""RTP/AVP static payload types (RFC 3551) an offer may use without ``a=rtpmap``."""

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")


@dataclass(frozen=True)
class Crypto:
    """An SDES ``a=crypto`` line (RFC 4568): ``tag``, ``suite`` and the ``key_params`` (``inline:...``)."""

    tag: int
    suite: str
    key_params: str


@dataclass(frozen=True)
class MediaDescription:
    """One ``m=`` section. ``port``: the sender's RTP port (0: refused or
    removed); ``formats``: the payload types in offer order; ``rtpmap``:
    payload type -> (encoding name as offered, clock rate); ``address``: the
    connection address that applies (media-level ``c=``, else session-level);
    ``direction``: the media-level attribute, else the session's, else
    ``sendrecv``; ``label``: ``a=label`` (RFC 4574), None if absent."""

    kind: str
    port: int
    proto: str
    formats: tuple[int, ...]
    address: str | None
    direction: str
    label: str | None = None
    rtpmap: Mapping[int, tuple[str, int]] = field(default_factory=dict)
    crypto: tuple[Crypto, ...] = ()
    ptime_ms: int | None = None

    def encoding(self, payload_type: int) -> tuple[str, int] | None:
        """(name, clock rate) of a payload type: from ``a=rtpmap``, else the static table."""
        return self.rtpmap.get(payload_type) or STATIC_PAYLOADS.get(payload_type)

    @property
    def sends(self) -> bool:
        """Whether the offerer sends media on this stream (sendrecv or sendonly, and a port)."""
        return self.port != 0 and self.direction in ("sendrecv", "sendonly")


@dataclass(frozen=True)
class SessionDescription:
    """A parsed SDP: ``origin`` (the ``o=`` line), ``address`` (session ``c=``), ``media`` sections."""

    origin: str
    address: str | None
    media: tuple[MediaDescription, ...]


def parse_sdp(data: bytes) -> SessionDescription:
    """Parse an SDP body; ``bad_sdp`` for anything that is not one."""
    if len(data) > MAX_SDP:
        raise SipError(f"SDP of {len(data)} bytes is over {MAX_SDP}", code="bad_sdp")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SipError("SDP is not UTF-8", code="bad_sdp") from None
    lines = [line.strip() for line in text.replace("\r\n", "\n").split("\n") if line.strip()]
    if not lines or not lines[0].startswith("v="):
        raise SipError("SDP does not start with v=", code="bad_sdp")
    origin = ""
    session_address: str | None = None
    session_direction = "sendrecv"
    sections: list[dict] = []
    for line in lines[1:]:
        kind, eq, value = line.partition("=")
        if not eq or len(kind) != 1:
            raise SipError(f"bad SDP line {line[:60]!r}", code="bad_sdp")
        current = sections[-1] if sections else None
        if kind == "m":
            if len(sections) >= MAX_MEDIA:
                raise SipError(f"more than {MAX_MEDIA} m= lines", code="bad_sdp")
            sections.append(_media_line(value))
        elif kind == "o":
            origin = value
        elif kind == "c":
            address = _connection(value)
            if current is None:
                session_address = address
            else:
                current["address"] = address
        elif kind == "a":
            name, _, arg = value.partition(":")
            if name in DIRECTIONS:
                if current is None:
                    session_direction = name
                else:
                    current["direction"] = name
            elif current is not None:
                _media_attribute(current, name, arg)
    media = tuple(
        MediaDescription(kind=s["kind"], port=s["port"], proto=s["proto"], formats=s["formats"],
                         address=s.get("address", session_address), direction=s.get("direction", session_direction),
                         label=s.get("label"), rtpmap=s["rtpmap"], crypto=tuple(s["crypto"]), ptime_ms=s.get("ptime"))
        for s in sections
    )
    return SessionDescription(origin, session_address, media)


def _media_line(value: str) -> dict:
    parts = value.split()
    if len(parts) < 3:
        raise SipError(f"bad m= line {value[:60]!r}", code="bad_sdp")
    port_text = parts[1].split("/")[0]
    if not port_text.isdigit() or int(port_text) > 65535:
        raise SipError(f"bad m= port {parts[1][:20]!r}", code="bad_sdp")
    formats = []
    if parts[2].upper().startswith("RTP/"):
        for fmt in parts[3:MAX_FORMATS + 3]:
            if not fmt.isdigit() or int(fmt) > 127:
                raise SipError(f"bad RTP payload type {fmt[:10]!r}", code="bad_sdp")
            formats.append(int(fmt))
    return {"kind": parts[0].lower(), "port": int(port_text), "proto": parts[2], "formats": tuple(formats), "rtpmap": {}, "crypto": []}


def _connection(value: str) -> str:
    parts = value.split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SipError(f"bad c= line {value[:60]!r}", code="bad_sdp")
    return parts[2].split("/")[0]


def _media_attribute(section: dict, name: str, arg: str) -> None:
    if name == "label":
        section["label"] = arg.strip()[:64]
    elif name == "rtpmap":
        pt, _, encoding = arg.partition(" ")
        enc_parts = encoding.strip().split("/")
        if pt.isdigit() and len(enc_parts) >= 2 and enc_parts[1].isdigit():
            section["rtpmap"][int(pt)] = (enc_parts[0][:32], int(enc_parts[1]))
    elif name == "ptime" and arg.strip().isdigit():
        section["ptime"] = int(arg.strip())
    elif name == "crypto" and len(section["crypto"]) < 8:
        parts = arg.split()
        if len(parts) >= 3 and parts[0].isdigit():
            section["crypto"].append(Crypto(int(parts[0]), parts[1], parts[2]))


# --------------------------------------------------------------------------- answers


@dataclass(frozen=True)
class StreamAnswer:
    """What we answer for one offered ``m=`` line: ``port`` 0 refuses it;
    ``formats``: the payload types we take (offer order); ``direction``;
    ``crypto``: the SDES line we answer with, if any."""

    port: int
    formats: tuple[int, ...] = ()
    direction: str = "recvonly"
    crypto: Crypto | None = None


def answer_direction(offered: str) -> str:
    """Our direction for an offered one: we only ever receive."""
    return "recvonly" if offered in ("sendonly", "sendrecv") else "inactive"


def accepted_formats(media: MediaDescription, supported: Iterable[str]) -> tuple[int, ...]:
    """The offered payload types of ``media`` whose codec (``NAME/clock``, e.g.
    ``PCMU/8000``, without case) is in ``supported``, in offer order."""
    names = {name.upper() for name in supported}
    taken = []
    for pt in media.formats:
        encoding = media.encoding(pt)
        if encoding is not None and f"{encoding[0]}/{encoding[1]}".upper() in names:
            taken.append(pt)
    return tuple(taken)


def build_answer(offer: SessionDescription, streams: list[StreamAnswer], *, address: str, session_id: int, version: int) -> bytes:
    """The SDP answer to ``offer``: ``streams[i]`` answers ``offer.media[i]``."""
    if len(streams) != len(offer.media):
        raise ValueError("one StreamAnswer per offered m= line")
    ip = "IP6" if ":" in address else "IP4"
    lines = ["v=0", f"o=callshield {session_id} {version} IN {ip} {address}", "s=callshield", f"c=IN {ip} {address}", "t=0 0"]
    for media, ours in zip(offer.media, streams):
        if ours.port == 0 or not ours.formats:
            fmts = " ".join(str(f) for f in media.formats) or "0"
            lines.append(f"m={media.kind} 0 {media.proto} {fmts}")
            continue
        lines.append(f"m={media.kind} {ours.port} {media.proto} {' '.join(str(f) for f in ours.formats)}")
        for pt in ours.formats:
            name, rate = media.encoding(pt) or ("PCMU", 8000)
            lines.append(f"a=rtpmap:{pt} {name}/{rate}")
        if media.ptime_ms:
            lines.append(f"a=ptime:{media.ptime_ms}")
        if media.label is not None:
            lines.append(f"a=label:{media.label}")
        if ours.crypto is not None:
            lines.append(f"a=crypto:{ours.crypto.tag} {ours.crypto.suite} {ours.crypto.key_params}")
        lines.append(f"a={ours.direction}")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")
