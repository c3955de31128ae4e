"""SIP messages (RFC 3261 section 7): a bounded, sans-I/O parser and serializer.

No I/O and no clock: bytes in, :class:`SipMessage` out (or :class:`SipError`),
and back. Bounds (every one raises ``SipError`` past it, never grows):

- a message is at most :data:`MAX_MESSAGE` bytes (a UDP datagram's size);
- at most :data:`MAX_HEADERS` header fields, each (unfolded) at most
  :data:`MAX_HEADER_LINE` bytes;
- the body is exactly ``Content-Length`` bytes: a datagram shorter than it is
  ``truncated``; on a stream (:class:`StreamFramer`, TCP) ``Content-Length``
  is required (RFC 3261 section 18.3) and frames the next message.

Header names are kept in their canonical long form: compact forms (``v``,
``i``, ``l``, ``c``, ``m``, ``f``, ``t``, ``k``, ...) are expanded, and
lines folded with leading white space (RFC 3261 section 7.3.1) are joined.
Multipart bodies (RFC 2046, ``multipart/mixed`` with a ``boundary``) are
split by :func:`body_parts`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from audio.errors import AudioError

MAX_MESSAGE = 65535
"""Largest message accepted, header and body, in bytes."""
MAX_HEADERS = 100
"""Most header fields a message may have."""
MAX_HEADER_LINE = 8192
"""Longest header field, folded lines joined, in bytes."""
MAX_PARTS = 8
"""Most parts a multipart body may have."""

COMPACT = {
    "a": "Accept-Contact", "b": "Referred-By", "c": "Content-Type", "d": "Request-Disposition", "e": "Content-Encoding",
    "f": "From", "i": "Call-ID", "j": "Reject-Contact", "k": "Supported", "l": "Content-Length", "m": "Contact",
    "n": "Identity-Info", "o": "Event", "r": "Refer-To", "s": "Subject", "t": "To", "u": "Allow-Events", "v": "Via",
    "x": "Session-Expires", "y": "Identity",
}
"""Compact header names (RFC 3261 section 7.3.3 and later RFCs) -> long names."""

_CANONICAL = {name.lower(): name for name in (
    *COMPACT.values(), "CSeq", "Max-Forwards", "Require", "Proxy-Require", "Unsupported", "Allow", "Accept",
    "Record-Route", "Route", "Retry-After", "User-Agent", "Server", "Content-Disposition", "WWW-Authenticate",
    "Authorization", "Expires", "Warning", "Timestamp", "Min-Expires", "MIME-Version", "Reason",
)}

REASONS = {
    100: "Trying", 180: "Ringing", 200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
    415: "Unsupported Media Type", 420: "Bad Extension", 481: "Call/Transaction Does Not Exist", 482: "Loop Detected",
    486: "Busy Here", 487: "Request Terminated", 488: "Not Acceptable Here", 500: "Server Internal Error",
    501: "Not Implemented", 503: "Service Unavailable", 513: "Message Too Large",
}

_TOKEN = re.compile(r"^[A-Za-z0-9.!%*_+`'~-]+$")
_STATUS_LINE = re.compile(r"^SIP/2\.0 ([1-6][0-9][0-9]) (.*)$")
_REQUEST_LINE = re.compile(r"^([A-Za-z0-9.!%*_+`'~-]+) (\S+) SIP/2\.0$")


class SipError(AudioError):
    """A SIP message (or a part of one: SDP, metadata) that cannot be used.

    Codes: ``bad_message`` (not SIP, a bad start line, header or number),
    ``too_large`` (over :data:`MAX_MESSAGE`), ``too_many_headers``,
    ``header_too_long``, ``truncated`` (fewer body bytes than
    ``Content-Length``), ``no_content_length`` (on a stream), ``bad_body``
    (a multipart body without its boundary), ``bad_sdp``, ``bad_metadata``,
    ``bad_config`` (the ``[siprec]`` section)."""

    code = "bad_message"


def canonical(name: str) -> str:
    """The long, conventionally capitalized form of a header name (``i`` -> ``Call-ID``)."""
    lowered = name.lower()
    if lowered in COMPACT:
        return COMPACT[lowered]
    return _CANONICAL.get(lowered) or "-".join(part.capitalize() for part in name.split("-"))


@dataclass(frozen=True)
class SipMessage:
    """One SIP request or response.

    ``method`` and ``uri`` are set for a request, ``status`` and ``reason`` for
    a response. ``headers``: (canonical name, value) pairs in wire order, a
    name repeated as often as it came (Via lines stay in order). ``body``: the
    bytes after the header, exactly ``Content-Length`` of them.
    """

    method: str | None = None
    uri: str | None = None
    status: int | None = None
    reason: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    @property
    def is_request(self) -> bool:
        return self.method is not None

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of header ``name`` (any form of the name), or ``default``."""
        wanted = canonical(name)
        for key, value in self.headers:
            if key == wanted:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of header ``name``, comma-separated lists split (outside quotes and <>)."""
        wanted = canonical(name)
        return [item for key, value in self.headers if key == wanted for item in split_list(value)]

    def lines(self, name: str) -> list[str]:
        """Every header line of ``name``, as it came (for copying Via into responses)."""
        wanted = canonical(name)
        return [value for key, value in self.headers if key == wanted]

    @property
    def call_id(self) -> str:
        return self.get("Call-ID") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        """(sequence number, method) of the CSeq header; ``bad_message`` if absent or malformed."""
        value = self.get("CSeq")
        parts = (value or "").split()
        if len(parts) != 2 or not parts[0].isdigit() or len(parts[0]) > 10 or not _TOKEN.match(parts[1]):
            raise SipError(f"bad CSeq {value!r}")
        return int(parts[0]), parts[1].upper()

    @property
    def branch(self) -> str:
        """The branch parameter of the top Via (the transaction's id), or ''."""
        vias = self.get_all("Via")
        return header_params(vias[0]).get("branch", "") if vias else ""

    def option_tags(self, name: str) -> set[str]:
        """The option tags of ``Require`` / ``Supported`` / ``Proxy-Require``, lower-cased."""
        return {tag.strip().lower() for tag in self.get_all(name) if tag.strip()}

    def encode(self) -> bytes:
        """The message on the wire; Content-Length is (re)computed from the body."""
        start = f"{self.method} {self.uri} SIP/2.0" if self.is_request else f"SIP/2.0 {self.status} {self.reason}"
        lines = [start] + [f"{name}: {value}" for name, value in self.headers if name != "Content-Length"]
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body


def split_list(value: str) -> list[str]:
    """Split a header value at commas that are outside quotes and angle brackets."""
    items, depth, quoted, start = [], 0, False, 0
    escaped = False
    for i, char in enumerate(value):
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif not quoted and char == "<":
            depth += 1
        elif not quoted and char == ">":
            depth = max(0, depth - 1)
        elif char == "," and not quoted and depth == 0:
            items.append(value[start:i].strip())
            start = i + 1
    items.append(value[start:].strip())
    return [item for item in items if item]


def header_params(value: str) -> dict[str, str]:
    """The ``;name=value`` parameters of a header value (after any <uri>), names lower-cased, quotes removed."""
    rest = value[value.rfind(">") + 1:] if ">" in value else value
    params: dict[str, str] = {}
    for part in rest.split(";")[1:]:
        name, _, val = part.partition("=")
        if name.strip():
            params[name.strip().lower()] = val.strip().strip('"')
    return params


@dataclass(frozen=True)
class NameAddr:
    """A From / To / Contact value: ``display`` name, ``uri`` and header ``params`` (``tag``)."""

    display: str
    uri: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def tag(self) -> str:
        return self.params.get("tag", "")

    @property
    def user(self) -> str:
        """The user part of the URI (``1001`` of ``sip:1001@pbx``; the number of ``tel:+4930...``)."""
        return uri_user(self.uri)


def uri_user(uri: str) -> str:
    """The user part of a SIP / tel URI, without parameters (``''`` if none)."""
    scheme, _, rest = uri.partition(":")
    if not rest:
        return ""
    if scheme.lower() == "tel":
        return rest.split(";")[0]
    user = rest.split("@")[0] if "@" in rest else ""
    return user.split(";")[0].split(":")[0]


def name_addr(value: str) -> NameAddr:
    """Parse a From / To / Contact value (``"Bob" <sip:bob@x>;tag=1`` or ``sip:bob@x;tag=1``)."""
    value = value.strip()
    if "<" in value:
        lt = value.index("<")
        gt = value.find(">", lt)
        if gt < 0:
            raise SipError(f"unclosed <uri> in {value[:80]!r}")
        return NameAddr(value[:lt].strip().strip('"'), value[lt + 1:gt].strip(), header_params(value))
    uri, _, _ = value.partition(";")
    return NameAddr("", uri.strip(), header_params(value))


# --------------------------------------------------------------------------- parsing


def parse_message(data: bytes) -> SipMessage:
    """One whole message (a UDP datagram, or one framed by :class:`StreamFramer`).

    Without ``Content-Length`` (allowed on UDP), the body is the rest of the
    datagram. Raises :class:`SipError` for anything that is not a bounded,
    well-formed SIP message."""
    if len(data) > MAX_MESSAGE:
        raise SipError(f"message of {len(data)} bytes is over {MAX_MESSAGE}", code="too_large")
    end = data.find(b"\r\n\r\n")
    sep = 4
    if end < 0:
        end, sep = data.find(b"\n\n"), 2
        if end < 0:
            raise SipError("no end of header (blank line)", code="truncated")
    message = _parse_head(data[:end])
    rest = data[end + sep:]
    length = _content_length(message)
    if length is None:
        body = rest
    elif length > len(rest):
        raise SipError(f"Content-Length {length} but {len(rest)} body bytes", code="truncated")
    else:
        body = rest[:length]
    return SipMessage(message.method, message.uri, message.status, message.reason, message.headers, bytes(body))


def _content_length(message: SipMessage) -> int | None:
    value = message.get("Content-Length")
    if value is None:
        return None
    value = value.strip()
    if not value.isdigit() or len(value) > 6:
        raise SipError(f"bad Content-Length {value[:20]!r}")
    return int(value)


def _parse_head(head: bytes) -> SipMessage:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise SipError("header is not UTF-8") from None
    raw_lines = text.replace("\r\n", "\n").split("\n")
    while raw_lines and not raw_lines[0]:  # keep-alive CRLFs before a message
        raw_lines.pop(0)
    if not raw_lines:
        raise SipError("empty message")
    start = raw_lines[0]
    if len(start) > MAX_HEADER_LINE:
        raise SipError("start line too long", code="header_too_long")
    method = uri = None
    status = None
    reason = ""
    if match := _STATUS_LINE.match(start):
        status, reason = int(match.group(1)), match.group(2)
    elif match := _REQUEST_LINE.match(start):
        method, uri = match.group(1).upper(), match.group(2)
    else:
        raise SipError(f"not a SIP start line: {start[:80]!r}")
    fields: list[str] = []
    for line in raw_lines[1:]:
        if line[:1] in (" ", "\t"):
            if not fields:
                raise SipError("folded line before any header")
            fields[-1] += " " + line.strip()
        else:
            if len(fields) >= MAX_HEADERS:
                raise SipError(f"more than {MAX_HEADERS} header fields", code="too_many_headers")
            fields.append(line)
        if len(fields[-1]) > MAX_HEADER_LINE:
            raise SipError(f"a header field is over {MAX_HEADER_LINE} bytes", code="header_too_long")
    headers = []
    for line in fields:
        name, colon, value = line.partition(":")
        name = name.strip()
        if not colon or not _TOKEN.match(name):
            raise SipError(f"bad header line {line[:80]!r}")
        headers.append((canonical(name), value.strip()))
    return SipMessage(method, uri, status, reason, tuple(headers))


class StreamFramer:
    """Cuts a byte stream (SIP over TCP) into messages by ``Content-Length``.

    ``feed(data)`` returns the messages completed by ``data`` (each parsed, or
    the :class:`SipError` it raised, in order). Bounded: it holds at most one
    message being received (:data:`MAX_MESSAGE` bytes); past that, or on a
    header without ``Content-Length``, the stream cannot be framed any more
    and :class:`SipError` is raised (close the connection). CRLF keep-alives
    (RFC 5626) between messages are skipped."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.keepalives = 0
        """Keep-alive CRLFs seen between messages."""

    def feed(self, data: bytes) -> list[SipMessage | SipError]:
        self._buffer += data
        out: list[SipMessage | SipError] = []
        while True:
            stripped = 0
            while self._buffer[stripped:stripped + 2] == b"\r\n":
                stripped += 2
            if stripped:
                self.keepalives += 1
                del self._buffer[:stripped]
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > MAX_MESSAGE:
                    raise SipError(f"no end of header within {MAX_MESSAGE} bytes", code="too_large")
                return out
            head = bytes(self._buffer[:end])
            try:
                message = _parse_head(head)
            except SipError as exc:
                # Without a readable header the next message cannot be found.
                raise SipError(f"stream cannot be framed: {exc.message}", code=exc.code) from None
            length = _content_length(message)
            if length is None:
                raise SipError("a message on a stream without Content-Length", code="no_content_length")
            total = end + 4 + length
            if total > MAX_MESSAGE:
                raise SipError(f"message of {total} bytes is over {MAX_MESSAGE}", code="too_large")
            if len(self._buffer) < total:
                return out
            body = bytes(self._buffer[end + 4:total])
            del self._buffer[:total]
            out.append(SipMessage(message.method, message.uri, message.status, message.reason, message.headers, body))


# --------------------------------------------------------------------------- bodies


@dataclass(frozen=True)
class BodyPart:
    """One part of a body: its ``content_type`` (lower-cased, no parameters), its part headers and bytes."""

    content_type: str
    headers: tuple[tuple[str, str], ...]
    body: bytes


def media_type(value: str | None) -> str:
    """``application/sdp`` of ``Application/SDP; charset=x`` ('' for None)."""
    return (value or "").split(";")[0].strip().lower()


def body_parts(message: SipMessage) -> list[BodyPart]:
    """The message's body as parts: one part, or each part of a ``multipart/*`` body.

    Nested multiparts are not opened (kept as one part). Raises ``bad_body``
    for a multipart body without its boundary or with more than :data:`MAX_PARTS` parts."""
    content_type = message.get("Content-Type")
    kind = media_type(content_type)
    if not message.body:
        return []
    if not kind.startswith("multipart/"):
        return [BodyPart(kind or "application/sdp", (), message.body)]
    boundary = header_params(content_type or "").get("boundary")
    if not boundary or len(boundary) > 70:
        raise SipError(f"multipart body without a usable boundary ({content_type!r})", code="bad_body")
    delimiter = b"--" + boundary.encode("utf-8", "replace")
    chunks = message.body.split(delimiter)
    if len(chunks) < 3:
        raise SipError(f"multipart body without its boundary {boundary!r}", code="bad_body")
    parts = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):  # the close delimiter
            break
        if len(parts) >= MAX_PARTS:
            raise SipError(f"more than {MAX_PARTS} body parts", code="bad_body")
        chunk = chunk[2:] if chunk.startswith(b"\r\n") else chunk.lstrip(b"\n")
        if chunk.endswith(b"\r\n"):
            chunk = chunk[:-2]
        elif chunk.endswith(b"\n"):
            chunk = chunk[:-1]
        end = chunk.find(b"\r\n\r\n")
        sep = 4
        if end < 0:
            end, sep = chunk.find(b"\n\n"), 2
        if end < 0:  # a part with no header at all: RFC 2046 default text/plain
            parts.append(BodyPart("text/plain", (), chunk))
            continue
        if end == 0:
            head, data = b"", chunk[sep:]
        else:
            head, data = chunk[:end], chunk[end + sep:]
        part_headers = []
        for line in head.decode("utf-8", "replace").replace("\r\n", "\n").split("\n"):
            name, colon, value = line.partition(":")
            if colon:
                part_headers.append((canonical(name.strip()), value.strip()))
        kind_of_part = next((media_type(v) for k, v in part_headers if k == "Content-Type"), "text/plain")
        parts.append(BodyPart(kind_of_part, tuple(part_headers), data))
    return parts


def multipart(parts: list[tuple[str, bytes]], boundary: str = "callshield-boundary") -> tuple[str, bytes]:
    """(Content-Type value, body) of a ``multipart/mixed`` body of (content type, bytes) parts."""
    body = b"".join(b"--" + boundary.encode() + b"\r\nContent-Type: " + kind.encode() + b"\r\n\r\n" + data + b"\r\n" for kind, data in parts)
    return f"multipart/mixed;boundary={boundary}", body + b"--" + boundary.encode() + b"--\r\n"


# --------------------------------------------------------------------------- responses


def response(request: SipMessage, status: int, reason: str | None = None, *, to_tag: str | None = None,
             headers: tuple[tuple[str, str], ...] = (), body: bytes = b"", content_type: str | None = None) -> SipMessage:
    """A response to ``request`` (RFC 3261 section 8.2.6): Via, From, To, Call-ID
    and CSeq copied; ``to_tag`` added to To when it has none (not on 100)."""
    to = request.get("To") or ""
    if to_tag and status != 100 and "tag" not in header_params(to):
        to = f"{to};tag={to_tag}"
    copied = [("Via", via) for via in request.lines("Via")]
    copied += [("From", request.get("From") or ""), ("To", to), ("Call-ID", request.call_id), ("CSeq", request.get("CSeq") or "")]
    if content_type:
        copied.append(("Content-Type", content_type))
    return SipMessage(status=status, reason=reason or REASONS.get(status, "Unknown"), headers=tuple(copied) + tuple(headers), body=body)
