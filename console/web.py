"""The console's web pages and small HTTP endpoints, answered from the
websocket server's ``process_request`` hook (one server, one port).

The static files (``console/static``) are read once when the console starts,
so serving a page never touches the disk on the event loop. Every response
carries a strict Content-Security-Policy (scripts and styles only from this
origin, no inline script), so an injected transcript could not run even if a
page forgot to escape it.
"""

from __future__ import annotations

import email.utils
import json
import re
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


class Site:
    """Answers plain HTTP requests; returns None for the websocket paths."""

    def __init__(self, *, health: Callable[[], dict[str, Any]], tls: bool = False, static: dict[str, tuple[bytes, str]] | None = None) -> None:
        self._files = load_static() if static is None else static
        self._health = health
        self._tls = tls

    def answer(self, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        host = request.headers.get("Host")
        if path in SOCKET_PATHS:
            if path == "/ws/browser" and not same_origin(request):
                return response(HTTPStatus.FORBIDDEN, b"cross-origin websocket refused\n", "text/plain; charset=utf-8", host, tls=self._tls)
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


def same_origin(request: Request) -> bool:
    """A browser socket must come from a page of this console (blocks other
    sites' pages from talking to the console through a user's browser).
    Clients that send no Origin (tools, tests) are let through: they still
    have to log in."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc.lower() == (request.headers.get("Host") or "").lower()
