"""SIPREC recording metadata (RFC 7865, ``application/rs-metadata+xml``): who sends which stream.

:func:`parse_metadata` reads the XML a session recording client (an SBC)
sends beside the SDP: the participants (an AoR each, a name), the streams
(an SDP ``a=label`` each) and which participant sends which stream. Both the
RFC 7865 form (``participant_id`` / ``stream_id`` attributes,
``<participantstreamassoc>``) and the older draft form that some SBCs still
send (``id`` attributes, ``<aor>`` and ``<send>`` inside ``<participant>``)
are read. Namespaces are ignored.

Bounded and safe: at most :data:`MAX_METADATA` bytes and
:data:`MAX_PARTICIPANTS` participants / streams; a document with a DTD or an
entity declaration is refused before parsing (no entity expansion, no
external fetches).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace

from audio.sip.message import SipError

MAX_METADATA = 32768
"""Largest metadata document accepted, bytes."""
MAX_PARTICIPANTS = 16
"""Most participants, and most streams, a document may describe."""

_DTD = re.compile(rb"<!\s*(DOCTYPE|ENTITY|ELEMENT|ATTLIST)", re.IGNORECASE)


@dataclass(frozen=True)
class Participant:
    """A party of the recorded call: ``id`` (the metadata's), ``aor`` (a SIP or
    tel URI, '' if none), ``name`` (display name, '' if none), the stream ids
    it ``sends`` and ``receives``."""

    id: str
    aor: str = ""
    name: str = ""
    sends: tuple[str, ...] = ()
    receives: tuple[str, ...] = ()


@dataclass(frozen=True)
class Stream:
    """A recorded stream: its metadata ``id`` and the SDP ``label`` it is sent under."""

    id: str
    label: str


@dataclass(frozen=True)
class Metadata:
    """A recording's metadata: ``participants`` in document order, ``streams``,
    ``partial`` (``<datamode>partial</datamode>``: an update to merge)."""

    participants: tuple[Participant, ...] = ()
    streams: tuple[Stream, ...] = ()
    partial: bool = False

    def sender_of_label(self, label: str) -> Participant | None:
        """The participant that sends the stream carried under SDP ``a=label:label``."""
        ids = {stream.id for stream in self.streams if stream.label == label}
        ids.add(label)  # some SBCs use the label itself as the stream id
        return next((p for p in self.participants if ids & set(p.sends)), None)

    def merged(self, update: "Metadata") -> "Metadata":
        """This metadata with ``update`` applied: a complete update replaces it,
        a partial one adds or replaces participants and streams by id."""
        if not update.partial:
            return update
        participants = {p.id: p for p in self.participants}
        for p in update.participants:
            old = participants.get(p.id)
            participants[p.id] = p if old is None else replace(
                old, aor=p.aor or old.aor, name=p.name or old.name, sends=p.sends or old.sends, receives=p.receives or old.receives)
        streams = {s.id: s for s in self.streams}
        streams.update({s.id: s for s in update.streams})
        return Metadata(tuple(participants.values())[:MAX_PARTICIPANTS], tuple(streams.values())[:MAX_PARTICIPANTS], False)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1].lower()


def _child_text(element: ET.Element, name: str) -> str:
    for child in element:
        if _local(child.tag) == name:
            return (child.text or "").strip()
    return ""


def parse_metadata(data: bytes) -> Metadata:
    """Parse an ``rs-metadata+xml`` body; ``bad_metadata`` for anything unusable."""
    if len(data) > MAX_METADATA:
        raise SipError(f"metadata of {len(data)} bytes is over {MAX_METADATA}", code="bad_metadata")
    if _DTD.search(data):
        raise SipError("metadata with a DTD or entity declaration is refused", code="bad_metadata")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise SipError(f"metadata is not XML: {exc}", code="bad_metadata") from None
    if _local(root.tag) != "recording":
        raise SipError(f"metadata root is <{_local(root.tag)}>, not <recording>", code="bad_metadata")
    participants: dict[str, dict] = {}
    streams: list[Stream] = []
    partial = False
    for element in root:
        tag = _local(element.tag)
        if tag == "datamode":
            partial = (element.text or "").strip().lower() == "partial"
        elif tag == "participant":
            pid = element.get("participant_id") or element.get("id") or ""
            if not pid or len(pid) > 256:
                continue
            if pid not in participants and len(participants) >= MAX_PARTICIPANTS:
                raise SipError(f"more than {MAX_PARTICIPANTS} participants", code="bad_metadata")
            entry = participants.setdefault(pid, {"aor": "", "name": "", "sends": [], "receives": []})
            for child in element:
                name = _local(child.tag)
                if name == "nameid":
                    entry["aor"] = (child.get("aor") or entry["aor"]).strip()
                    entry["name"] = _child_text(child, "name") or entry["name"]
                elif name == "aor":  # the draft form
                    entry["aor"] = (child.text or "").strip()
                elif name == "name":
                    entry["name"] = (child.text or "").strip()
                elif name in ("send", "recv"):
                    entry["sends" if name == "send" else "receives"].append((child.text or "").strip())
        elif tag == "stream":
            sid = element.get("stream_id") or element.get("id") or ""
            if len(streams) >= MAX_PARTICIPANTS:
                raise SipError(f"more than {MAX_PARTICIPANTS} streams", code="bad_metadata")
            if sid:
                streams.append(Stream(sid, _child_text(element, "label")))
        elif tag == "participantstreamassoc":
            pid = element.get("participant_id") or ""
            entry = participants.get(pid)
            if entry is None:
                if not pid or len(participants) >= MAX_PARTICIPANTS:
                    continue
                entry = participants.setdefault(pid, {"aor": "", "name": "", "sends": [], "receives": []})
            for child in element:
                name = _local(child.tag)
                if name in ("send", "recv"):
                    entry["sends" if name == "send" else "receives"].append((child.text or "").strip())
    return Metadata(
        tuple(Participant(pid, e["aor"], e["name"][:256], tuple(s for s in e["sends"] if s)[:MAX_PARTICIPANTS],
                          tuple(r for r in e["receives"] if r)[:MAX_PARTICIPANTS]) for pid, e in participants.items()),
        tuple(streams), partial)
