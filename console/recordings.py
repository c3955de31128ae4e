"""Recordings and evidence over HTTP, for QA and supervisors only.

Two routes, answered from the websocket server's ``process_request`` hook:

- ``GET /recordings/<call_id>.wav``: the call's recording, with HTTP range
  requests (``206 Partial Content``, ``Content-Range``, ``Accept-Ranges:
  bytes``, ``416`` for a range outside the file) so the browser's ``<audio>``
  element can seek.
- ``GET /evidence/<call_id>.zip``: the call's evidence zip (see
  ``docs/evidence.md``), made on request.

Who may: a ``qa``, ``supervisor`` or ``admin`` session, shown either as
``Authorization: Bearer <session token>`` or as a short-lived signed link
(``?user=..&exp=..&sig=..``, HMAC-SHA256 with a secret the console draws at
start) that the server hands to the QA page for the ``<audio>`` element,
which cannot send headers. A signed link names one path and one user; the
user's role is checked again when it is used.

Where from: the call id is looked up in the store, which holds the
recording's path relative to the recordings directory; nothing of the URL
becomes a path. The id itself must be plain (letters, digits, ``._:@-``;
percent signs, slashes and dots-only names never match). The stored path is
joined to the recordings directory, resolved (symlinks followed) and must
still be inside it. Anything else is ``404``; a missing or wrong credential
is ``403``.

Reading the file runs in the console's ``recordings`` executor, never on the
event loop. A response carries at most :data:`MAX_CHUNK` bytes of audio; for
a longer range the answer is a shorter ``206`` and the browser asks for the
rest, as media players do.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import os
import re
import secrets
import wave
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus
from pathlib import Path
from urllib.parse import parse_qs, quote

import numpy as np
from websockets.http11 import Request, Response

from console.replay import Loudness
from console.web import Refusal, response, split_target
from kernel.pcm import dbfs

QA_ROLES = frozenset({"qa", "supervisor", "admin"})
"""Roles that may hear recordings and export evidence."""
MAX_CHUNK = 4 << 20
"""Most bytes of a recording sent in one response (a longer range gets a shorter 206)."""
LINK_SECONDS = 900
"""How long a signed link stays valid, in seconds."""

_ROUTE = re.compile(r"^/(recordings|evidence)/([A-Za-z0-9][A-Za-z0-9._:@-]{0,127})\.(wav|zip)$")
_RANGE = re.compile(r"^bytes=([0-9]{0,19})-([0-9]{0,19})$")
"""One range of at most 19 digits a side (more than any file has bytes; a longer one is a 416)."""
_TEXT = "text/plain; charset=utf-8"


class RangeNotSatisfiable(Exception):
    """The Range header asks for bytes the file does not have (or is malformed)."""


ENVELOPE_FLOOR_DBFS = -90.0
"""The quietest level the QA timeline draws (silence shows as this)."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(first, last)`` (inclusive) of a single ``bytes=`` range within ``size``
    bytes, or None to send the whole file (no header, another unit, or several
    ranges, which a server may ignore). Raises :class:`RangeNotSatisfiable`."""
    if header is None:
        return None
    header = header.strip()
    if not header.lower().startswith("bytes="):
        return None
    if "," in header:
        return None
    m = _RANGE.match(header.replace(" ", "").lower())
    if m is None:
        raise RangeNotSatisfiable(header)
    first, last = m.group(1), m.group(2)
    if first == "" and last == "":
        raise RangeNotSatisfiable(header)
    if first == "":  # the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable(header)
        return max(0, size - n), size - 1
    start = int(first)
    end = size - 1 if last == "" else int(last)
    if start >= size or end < start:
        raise RangeNotSatisfiable(header)
    return start, min(end, size - 1)


def inside(root: Path, relative: str | os.PathLike) -> Path | None:
    """``root / relative`` if it is a regular file that, every symlink
    resolved, lies inside ``root``; else None."""
    rel = Path(relative)
    if rel.is_absolute() or ".." in rel.parts or not str(relative):
        return None
    base = root.resolve()
    target = (base / rel).resolve()
    if not target.is_relative_to(base) or target == base:
        return None
    return target if target.is_file() else None


class LinkSigner:
    """Short-lived signed links for one path and one user (the ``<audio>``
    element and the download button cannot send an Authorization header).

    ``clock``: wall time (aware ``datetime``), passed in; ``secret``: drawn
    fresh when None, so links die with the console process.
    """

    def __init__(self, clock: Callable[[], datetime], *, secret: bytes | None = None, seconds: int = LINK_SECONDS) -> None:
        self._secret = secret or secrets.token_bytes(32)
        self._clock = clock
        self._seconds = seconds

    def _mac(self, path: str, user: str, exp: int) -> str:
        return hmac.new(self._secret, f"{path}\n{user}\n{exp}".encode(), hashlib.sha256).hexdigest()

    def sign(self, path: str, user: str) -> str:
        """``path`` with a query that lets ``user`` fetch it for a while."""
        exp = int(self._clock().timestamp()) + self._seconds
        return f"{path}?user={quote(user, safe='')}&exp={exp}&sig={self._mac(path, user, exp)}"

    def check(self, path: str, query: str) -> str | None:
        """The user a valid, unexpired link for ``path`` was made for, else None."""
        try:
            q = parse_qs(query, keep_blank_values=True, max_num_fields=8)
        except ValueError:  # more fields than a link has: no link, a malformed request
            raise Refusal(HTTPStatus.BAD_REQUEST, "malformed link: too many query fields") from None
        try:
            (user,), (exp_text,), (sig,) = q["user"], q["exp"], q["sig"]
            exp = int(exp_text)
        except (KeyError, ValueError):
            return None
        if exp < self._clock().timestamp():
            return None
        if not hmac.compare_digest(sig, self._mac(path, user, exp)):
            return None
        return user


@dataclass(frozen=True)
class StoredRecording:
    """What the store says about a call's recording: ``path`` relative to the
    recordings directory; ``bytes``: its size when first stored."""

    path: str
    bytes: int = 0


class QaFiles:
    """Answers ``/recordings/...`` and ``/evidence/...``; None for other paths.

    Args:
        recordings_dir: the only directory recordings are served from.
        signer: checks signed links.
        session_role: ``token -> (user, role) | None`` for a Bearer token (store lookup).
        user_role: ``user -> role | None`` (store lookup, for signed links).
        recording_of: ``call_id -> StoredRecording | None`` (store lookup).
        export: ``(call_id, user) -> (path of a finished zip, download name)``;
            the zip is deleted after it is sent.
        pool: executor for reading files (named ``recordings`` by the console).
        tls: add HSTS to responses.
        on_refusal: ``(who, what)`` for the audit log, awaited for refusals.
    """

    def __init__(
        self,
        recordings_dir: Path,
        *,
        signer: LinkSigner,
        session_role: Callable[[str], Awaitable[tuple[str, str] | None]],
        user_role: Callable[[str], Awaitable[str | None]],
        recording_of: Callable[[str], Awaitable[StoredRecording | None]],
        export: Callable[[str, str], Awaitable[tuple[Path, str]]] | None = None,
        pool: Executor | None = None,
        tls: bool = False,
        on_refusal: Callable[[str, str], Awaitable[None]] | None = None,
    ) -> None:
        self.recordings_dir = Path(recordings_dir)
        self.signer = signer
        self._session_role = session_role
        self._user_role = user_role
        self._recording_of = recording_of
        self._export = export
        self._pool = pool
        self._tls = tls
        self._on_refusal = on_refusal

    @staticmethod
    def handles(path: str) -> bool:
        """Whether a request path belongs here (prefix only; the route is checked later)."""
        return path.startswith("/recordings/") or path.startswith("/evidence/")

    def recording_link(self, call_id: str, user: str) -> str:
        return self.signer.sign(f"/recordings/{call_id}.wav", user)

    def evidence_link(self, call_id: str, user: str) -> str:
        return self.signer.sign(f"/evidence/{call_id}.zip", user)

    async def answer(self, request: Request) -> Response:
        host = request.headers.get("Host")
        path, query = split_target(request.path)
        m = _ROUTE.match(path)
        if m is None or (m.group(1) == "recordings") != (m.group(3) == "wav"):
            return self._plain(HTTPStatus.NOT_FOUND, host)
        kind, call_id = m.group(1), m.group(2)
        user = await self._who(request, path, query)
        if user is None:
            if self._on_refusal is not None:
                await self._on_refusal("-", f"{kind} of call {call_id} without a valid qa/supervisor credential")
            return self._plain(HTTPStatus.FORBIDDEN, host)
        if kind == "evidence":
            return await self._evidence(call_id, user, host)
        stored = await self._recording_of(call_id)
        if stored is None:
            return self._plain(HTTPStatus.NOT_FOUND, host)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._serve_recording, stored.path, request.headers.get("Range"), host)

    async def _who(self, request: Request, path: str, query: str) -> str | None:
        auth = request.headers.get("Authorization") or ""
        if auth[:7].lower() == "bearer ":
            found = await self._session_role(auth[7:].strip())
            if found is None:
                return None
            user, role = found
            return user if role in QA_ROLES else None
        if query:
            user = self.signer.check(path, query)
            if user is None:
                return None
            role = await self._user_role(user)
            return user if role in QA_ROLES else None
        return None

    def _serve_recording(self, relative: str, range_header: str | None, host: str | None) -> Response:
        target = inside(self.recordings_dir, relative)
        if target is None:
            return self._plain(HTTPStatus.NOT_FOUND, host)
        try:
            with open(target, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                try:
                    wanted = parse_range(range_header, size)
                except RangeNotSatisfiable:
                    resp = self._plain(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, host)
                    resp.headers["Content-Range"] = f"bytes */{size}"
                    resp.headers["Accept-Ranges"] = "bytes"
                    return resp
                if wanted is None:
                    body = fh.read()
                    status = HTTPStatus.OK
                else:
                    first, last = wanted
                    last = min(last, first + MAX_CHUNK - 1)
                    fh.seek(first)
                    body = fh.read(last - first + 1)
                    status = HTTPStatus.PARTIAL_CONTENT
        except OSError:
            return self._plain(HTTPStatus.NOT_FOUND, host)
        resp = response(status, body, "audio/wav", host, tls=self._tls)
        resp.headers["Accept-Ranges"] = "bytes"
        resp.headers["Content-Disposition"] = "inline"
        if status == HTTPStatus.PARTIAL_CONTENT:
            resp.headers["Content-Range"] = f"bytes {first}-{first + len(body) - 1}/{size}"
        return resp

    async def _evidence(self, call_id: str, user: str, host: str | None) -> Response:
        if self._export is None:
            return self._plain(HTTPStatus.NOT_FOUND, host)
        try:
            zip_path, name = await self._export(call_id, user)
        except LookupError:
            return self._plain(HTTPStatus.NOT_FOUND, host)
        loop = asyncio.get_running_loop()

        def read_and_remove() -> bytes:
            try:
                return zip_path.read_bytes()
            finally:
                zip_path.unlink(missing_ok=True)

        body = await loop.run_in_executor(self._pool, read_and_remove)
        resp = response(HTTPStatus.OK, body, "application/zip", host, tls=self._tls)
        resp.headers["Content-Disposition"] = f'attachment; filename="{name}"'
        return resp

    def _plain(self, status: HTTPStatus, host: str | None) -> Response:
        return response(status, f"{status.phrase.lower()}\n".encode(), _TEXT, host, tls=self._tls)


def loudness_envelope(path: str | os.PathLike, *, points: int = 1200) -> Loudness | None:
    """Loudness of each speaker over the call, for the QA timeline: RMS in
    dBFS (-90..0) per step of ``step`` seconds, at most ``points`` steps and
    at least 0.1 s each. None when the file is not a readable PCM16 WAV.
    Blocking (reads the whole file in pieces): run it in an executor."""
    try:
        with wave.open(str(path), "rb") as w:
            rate, channels, width, total = w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()
            if width != 2 or rate <= 0 or channels < 1:
                return None
            step = max(rate // 10, math.ceil(total / max(1, points)))
            speakers: list[list[float]] = [[] for _ in range(min(channels, 2))]
            while True:
                raw = w.readframes(step)
                if not raw:
                    break
                data = np.frombuffer(raw, dtype="<i2")
                data = data[: len(data) - len(data) % channels].reshape(-1, channels)
                if not len(data):
                    break
                for ch in range(len(speakers)):
                    speakers[ch].append(round(max(ENVELOPE_FLOOR_DBFS, dbfs(data[:, ch])), 1))
    except (wave.Error, EOFError, OSError):
        return None
    return Loudness(step=step / rate, customer=tuple(speakers[0]), partner=tuple(speakers[1]) if len(speakers) > 1 else ())
