"""The receiving side of the end-call webhook, for the tests: a real HTTP(S)
server in a thread (``http.server``), and a check of the signature written
from ``docs/end-call-webhook.md`` alone, apart from ``agent/end_call_webhook.py``
(so a mistake in the agent's signing cannot hide behind the same mistake in
its verifier)."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SECRET = "test-secret-0123456789abcdef-0123456789"
TLS = Path(__file__).resolve().parent / "console" / "tls"
"""The self-signed certificate of tests/console/tls (localhost, 127.0.0.1)."""


def check_signature(secret: str, header: str, body: bytes, *, now: float, tolerance: float = 300) -> dict:
    """The body as JSON if ``header`` is ``t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">`` for
    ``secret`` and ``t`` is within ``tolerance`` seconds of ``now``; AssertionError otherwise."""
    found = re.fullmatch(r"t=([0-9]+),v1=([0-9a-f]{64})", header)
    assert found, f"not a Callshield-Signature: {header!r}"
    assert abs(now - int(found[1])) <= tolerance, f"stale timestamp {found[1]} (now {now:.0f})"
    expected = hmac.new(secret.encode(), found[1].encode() + b"." + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected, found[2]), "signature does not match"
    return json.loads(body)


@dataclass(frozen=True)
class Received:
    """One request the receiver got: ``headers`` (names lowercased), ``body``
    (raw bytes), ``at`` (``time.monotonic()`` on arrival)."""

    method: str
    path: str
    headers: dict
    body: bytes
    at: float


class Receiver:
    """A webhook receiver on 127.0.0.1, any free port, in a thread.

    ``answers``: ``(status, headers)`` or ``(status, headers, reason phrase)``
    for the first requests, in order; every later request is answered ``200``. ``tls``: serve https with the test
    certificate."""

    def __init__(self, answers=(), *, tls: bool = False) -> None:
        self.answers = list(answers)
        self.received: list[Received] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    receiver.received.append(Received("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.monotonic()))
                    status, headers, *reason = receiver.answers.pop(0) if receiver.answers else (200, {})
                payload = b'{"ok":true}' if status < 300 else b'{"error":"test"}'
                self.send_response(status, *reason)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.tls = tls
        if tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(TLS / "console.crt"), str(TLS / "console.key"))
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="webhook-receiver", daemon=True)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{'localhost' if self.tls else '127.0.0.1'}:{self.port}/callshield/end-call?key=k"

    def __enter__(self) -> "Receiver":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mute:
    """A listening socket that never accepts or answers (a receiver that hangs)."""

    def __enter__(self) -> "Mute":
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(16)
        self.port = self.socket.getsockname()[1]
        return self

    def __exit__(self, *exc) -> None:
        self.socket.close()
