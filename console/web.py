"""The console's web pages and small HTTP endpoints, answered from the
websocket server's ``process_request`` hook (one server, one port).

The static files (``console/static``) are read once when the console starts,
so serving a page never touches the disk on the event loop. Every response
carries a strict Content-Security-Policy (scripts and styles only from this
origin, no inline script), so an injected transcript could not run even if a
page forgot to escape it.

Before any of that, :class:`HostGate` looks at every request, pages and
websocket upgrades alike (issue 13, #10 and #11): a ``Host`` that is not one
of the console's allowed hosts is refused (421, against DNS rebinding), an
``Origin`` that is not this console's own is refused (403), and a request
with two ``Host``, ``Origin``, ``Authorization`` or ``Range`` headers is
refused (400). A refusal is a :class:`Refusal`, which the server answers
with its status and a one-line body and logs once, never a traceback.
"""

from __future__ import annotations

import email.utils
import ipaddress
import json
import re
import socket
from collections.abc import Iterable
from http import HTTPStatus
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from kernel import levels

STATIC_DIR = Path(__file__).with_name("static")
PAGES = {"/": "login.html", "/partner": "partner.html", "/supervisor": "supervisor.html", "/qa": "qa.html"}
"""Page paths -> files of the static folder (a missing file is a 404)."""
SOCKET_PATHS = ("/ws/agent", "/ws/browser")
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
}
_HOST = re.compile(r"^[A-Za-z0-9.\-:\[\]]{1,255}$")
_NAME = re.compile(r"^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*$")
_PORT = re.compile(r"[0-9]{1,5}")
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
"""The names a browser on the console's own machine reaches a loopback bind by."""
SINGLE_HEADERS = ("Host", "Origin", "Authorization", "Range")
"""Headers the console reads as one value: a request carrying two of one is refused."""


def load_static(directory: Path = STATIC_DIR) -> dict[str, tuple[bytes, str]]:
    """``/static/NAME`` -> (bytes, content type) for every file of the static folder, and
    ``/static/levels.js``, the ladder's levels generated from ``kernel/levels.py``."""
    files: dict[str, tuple[bytes, str]] = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file() and path.suffix in TYPES:
            files["/static/" + path.relative_to(directory).as_posix()] = (path.read_bytes(), TYPES[path.suffix])
    files["/static/levels.js"] = (levels.browser_script().encode("utf-8"), TYPES[".js"])
    return files


def security_headers(host: str | None) -> list[tuple[str, str]]:
    """Headers every page and file is served with. ``host``: the request's Host
    (validated), so the page may open websockets back to this same console."""
    connect = "'self'"
    if host and _HOST.match(host):
        connect += f" ws://{host} wss://{host}"
    csp = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src {connect}; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
    return [
        ("Content-Security-Policy", csp),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Referrer-Policy", "no-referrer"),
        ("Cross-Origin-Opener-Policy", "same-origin"),
        ("Cache-Control", "no-store"),
    ]


def response(status: HTTPStatus, body: bytes, content_type: str, host: str | None, *, tls: bool = False) -> Response:
    headers = Headers([
        ("Date", email.utils.formatdate(usegmt=True)),
        ("Connection", "close"),
        ("Content-Length", str(len(body))),
        ("Content-Type", content_type),
    ])
    for name, value in security_headers(host):
        headers[name] = value
    if tls:
        headers["Strict-Transport-Security"] = "max-age=31536000"
    return Response(status.value, status.phrase, headers, body)


def split_target(target: str) -> tuple[str, str]:
    """``(path, query)`` of a request target. Not ``urlsplit``: a target such as
    ``//[x/`` is a path here, not a malformed network location."""
    path, _, query = target.partition("?")
    return path, query


class Refusal(Exception):
    """A request refused at the console's edge: answered with ``status`` and
    ``reason`` (one line, the body) and logged once, with ``detail`` (what the
    request said, for the operator; not sent back), without a traceback."""

    def __init__(self, status: HTTPStatus, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.detail = detail


def host_name(value: str) -> str | None:
    """The host name of a ``Host`` header or an origin's ``host[:port]``, lower
    case, without a final dot or IPv6 brackets (``"Console.Site.:8750"`` ->
    ``"console.site"``, ``"[::1]:80"`` -> ``"::1"``); None when it is not a
    host name or IP address with an optional port."""
    value = value.strip().lower()
    if value.startswith("["):
        inner, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not (rest[0] == ":" and _PORT.fullmatch(rest[1:]))):
            return None
        try:
            return str(ipaddress.IPv6Address(inner))
        except ValueError:
            return None
    name, _, port = value.partition(":") if value.count(":") == 1 else (value, "", "")
    if port and not _PORT.fullmatch(port):
        return None
    name = name.removesuffix(".")
    if is_address(name):
        return str(ipaddress.ip_address(name))
    return name if _NAME.match(name) else None


def is_address(name: str) -> bool:
    """Whether ``name`` is an IPv4 or IPv6 address (not a DNS name)."""
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def default_allowed_hosts(bind: str) -> tuple[tuple[str, ...], bool]:
    """The host names a console bound to ``bind`` answers to when ``[console]
    allowed_hosts`` is not set, and whether any IP address is allowed too.

    - a loopback bind (``127.0.0.1``, ``::1``, ``localhost``): the bind address
      and ``localhost``, ``127.0.0.1``, ``::1``;
    - one address or name: that, and this machine's host name;
    - every address (``0.0.0.0``, ``::``, empty): the loopback names, this
      machine's host name, and any IP address (an address in ``Host`` is one
      the request was routed to: no DNS name is involved, so none can be
      rebound). A site DNS name must be listed in ``allowed_hosts``.
    """
    bind = bind.strip()
    if bind in ("", "0.0.0.0", "::"):
        return (*LOOPBACK_NAMES, socket.gethostname().lower()), True
    name = host_name(bind) or bind.lower()
    loopback = name == "localhost" or (is_address(name) and ipaddress.ip_address(name).is_loopback)
    if loopback:
        return tuple(dict.fromkeys((name, *LOOPBACK_NAMES))), False
    return (name, socket.gethostname().lower()), False


class HostGate:
    """Which ``Host`` and ``Origin`` a request may carry (issue 13, #10, #11).

    ``allowed``: host names and IP addresses the console answers to (the
    ``[console] allowed_hosts`` setting, or :func:`default_allowed_hosts`);
    ``any_address``: any IP address is allowed too (a wildcard bind's
    default); ``own``: the address the console advertises itself at (its
    ``url``), always allowed so its own agent (``callshield serve``) gets in.
    """

    def __init__(self, allowed: Iterable[str], *, any_address: bool = False, own: str | None = None) -> None:
        names = {host_name(name) or name.lower() for name in allowed}
        if own:
            names.add(host_name(own) or own.lower())
        self.allowed = frozenset(names)
        self.any_address = any_address

    @classmethod
    def for_console(cls, configured: tuple[str, ...], bind: str, own: str) -> "HostGate":
        """The gate of a console bound to ``bind`` with ``[console] allowed_hosts = configured``."""
        if configured:
            return cls(configured, own=own)
        names, any_address = default_allowed_hosts(bind)
        return cls(names, any_address=any_address, own=own)

    def allows(self, name: str | None) -> bool:
        return name is not None and (name in self.allowed or (self.any_address and is_address(name)))

    def check(self, request: Request) -> None:
        """Raise :class:`Refusal` unless ``request`` may be answered: one of each
        :data:`SINGLE_HEADERS` at most, an allowed ``Host``, and an ``Origin``
        (when a browser sends one) that is this very host and port."""
        for header in SINGLE_HEADERS:
            if len(request.headers.get_all(header)) > 1:
                raise Refusal(HTTPStatus.BAD_REQUEST, f"more than one {header} header")
        host = request.headers.get("Host")
        if host is None:
            raise Refusal(HTTPStatus.BAD_REQUEST, "no Host header")
        if not self.allows(host_name(host)):
            raise Refusal(HTTPStatus.MISDIRECTED_REQUEST, "this console does not answer to that Host name (see [console] allowed_hosts)",
                          f"Host {host[:100]!r}")
        origin = request.headers.get("Origin")
        if origin is not None and not self.same_origin(origin, host):
            raise Refusal(HTTPStatus.FORBIDDEN, "cross-origin request refused", f"Origin {origin[:100]!r}")

    def same_origin(self, origin: str, host: str) -> bool:
        """A page of this console: an http(s) origin whose host and port are the
        request's ``Host`` (itself allowed). Blocks other sites' pages, and
        other ports of the same machine, from talking to the console through a
        user's browser. Clients that send no Origin (agents, tools) still have
        to authenticate."""
        try:
            parts = urlsplit(origin.strip())
        except ValueError:  # "http://[::1" and the like
            return False
        return (parts.scheme in ("http", "https") and not parts.path and not parts.query
                and parts.netloc.lower() == host.strip().lower() and self.allows(host_name(parts.netloc)))


class Site:
    """Answers plain HTTP requests; returns None for the websocket paths."""

    def __init__(self, *, health: Callable[[], dict[str, Any]], tls: bool = False, static: dict[str, tuple[bytes, str]] | None = None) -> None:
        self._files = load_static() if static is None else static
        self._health = health
        self._tls = tls

    def answer(self, request: Request) -> Response | None:
        path, _ = split_target(request.path)
        host = request.headers.get("Host")
        if path in SOCKET_PATHS:  # Host and Origin checked by the HostGate already
            return None
        if path == "/healthz":
            body = json.dumps(self._health()).encode()
            return response(HTTPStatus.OK, body, "application/json", host, tls=self._tls)
        name = PAGES.get(path)
        key = f"/static/{name}" if name else path
        found = self._files.get(key)
        if found is None:
            return response(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8", host, tls=self._tls)
        body, content_type = found
        return response(HTTPStatus.OK, body, content_type, host, tls=self._tls)

