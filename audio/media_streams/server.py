"""One websockets server for Genesys AudioHook and Twilio Media Streams, by request path.

Before the upgrade (``process_request``) the server decides who may stream:

- a path that is neither ``audiohook_path`` nor ``twilio_path``: 404;
- ``max_calls`` streams running: 503 (counted, ``over_capacity``);
- AudioHook: the ``X-API-KEY`` must be configured and the request signature
  verify (:func:`~audio.media_streams.signatures.verify_audiohook`), else
  401; the ``Audiohook-Session-Id`` header must be there (400);
- Twilio: with an auth token configured, ``X-Twilio-Signature`` must match
  the URL Twilio called (:func:`~audio.media_streams.signatures.verify_twilio`), else 403.

Refusals answer after a fixed delay (:data:`REFUSAL_DELAY_S`, so timing tells
nothing about which check failed), say only the status to the client, and are
logged and counted with the reason (:attr:`MediaStreamsServer.refused`).

Each accepted connection runs its protocol session
(:class:`~audio.media_streams.audiohook.AudioHookSession` or
:class:`~audio.media_streams.twilio.TwilioStream`); once it opens, a
:class:`~audio.media_streams.call.StreamCall` is handed to ``on_call`` as its
own task. Messages over ``max_message_bytes`` are dropped and counted; the
websocket library closes a connection whose message exceeds four times that
(close code 1009). A connection that sends nothing that opens a call within
``open_timeout_s`` is closed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from audio.errors import MediaStreamError
from audio.media_streams.audiohook import AudioHookSession
from audio.media_streams.call import Step, StreamCall, report_problem
from audio.media_streams.config import MediaStreamsConfig
from audio.media_streams.signatures import NonceCache, SignedRequest, verify_audiohook, verify_twilio
from audio.media_streams.twilio import TwilioStream
from audio.notices import IngressNotice, NoticeSink

log = logging.getLogger("callshield.audio.media_streams")

REFUSAL_DELAY_S = 0.25
"""A refused upgrade is answered this long after it arrived, whatever failed."""

CallHandler = Callable[[StreamCall], Awaitable[None]]


async def _wait_refusal_delay(arrived: float) -> None:
    """Sleep until :data:`REFUSAL_DELAY_S` after ``arrived`` (monotonic), whatever check failed."""
    await asyncio.sleep(max(0.0, arrived + REFUSAL_DELAY_S - time.monotonic()))


def _headers(request: Request) -> tuple[dict[str, str], list[str]]:
    """Lower-case header name -> value; and the names sent more than once."""
    out: dict[str, str] = {}
    doubled = []
    for name in {n.lower() for n in request.headers.keys()}:
        values = request.headers.get_all(name)
        if len(values) > 1:
            doubled.append(name)
        out[name] = ", ".join(values)
    return out, doubled


class MediaStreamsServer:
    """The websocket server; ``on_call`` gets each opened stream's call.

    Use as ``async with MediaStreamsServer(...) as server:``; ``server.port``
    is the bound port. ``clock``: wall-clock seconds (signature times).
    Counters: :attr:`refused` (by reason), :attr:`problems` (bad input on
    connections that opened no call, by code), :attr:`streams` (connections
    accepted), :attr:`calls` (calls handed out).
    """

    def __init__(self, on_call: CallHandler, config: MediaStreamsConfig = MediaStreamsConfig(), *,
                 on_notice: NoticeSink | None = None, clock: Callable[[], float] = time.time) -> None:
        self.on_call = on_call
        self.config = config
        self.clock = clock
        self._notify = on_notice or (lambda notice: None)
        self.port: int | None = None
        self.refused: Counter[str] = Counter()
        self.problems: Counter[str] = Counter()
        self.streams = 0
        self.calls = 0
        self._load = 0  # connections that opened no call yet + calls not yet finished
        self._keys: dict[str, bytes] = {}
        self._token = ""
        self._nonces = NonceCache()
        self._server: Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._closing = False

    @property
    def running(self) -> int:
        """Streams counted against ``max_calls``."""
        return self._load

    async def start(self) -> "MediaStreamsServer":
        config = self.config
        self._keys = config.api_keys()
        self._token = config.auth_token()
        if config.audiohook_path and not self._keys:
            log.warning("[media_streams] has no AudioHook API keys: every AudioHook connection will be refused")
        if config.twilio_path and not self._token:
            log.warning("[media_streams] has no Twilio auth token: Twilio streams are accepted without checking X-Twilio-Signature")
        try:
            self._server = await serve(self._connection, config.host, config.port, process_request=self._check,
                                       max_size=4 * config.max_message_bytes, server_header="callshield")
        except OSError as exc:
            raise MediaStreamError(f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}", code="port_unavailable") from exc
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        """Stop accepting and close every connection; running calls end with what they have (reason ``shutdown``)."""
        self._closing = True
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def __aenter__(self) -> "MediaStreamsServer":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- before the upgrade

    def _kind(self, path: str) -> str | None:
        path = path.split("?", 1)[0]
        if self.config.audiohook_path and path == self.config.audiohook_path:
            return "audiohook"
        if self.config.twilio_path and path == self.config.twilio_path:
            return "twilio"
        return None

    def _refuse(self, connection: ServerConnection, status: HTTPStatus, reason: str, detail: str) -> Response:
        address = connection.remote_address[0] if connection.remote_address else "?"
        report_problem(self.refused, reason, f"{detail} (from {address}, answered {status.value})",
                       where="media streams", notify=lambda c, m: self._notify(IngressNotice(c, m)))
        return connection.respond(status, f"{status.phrase}\n")

    async def _check(self, connection: ServerConnection, request: Request) -> Response | None:
        arrived = time.monotonic()
        kind = self._kind(request.path)
        if kind is None:
            return connection.respond(HTTPStatus.NOT_FOUND, "Not Found\n")
        if self._load >= self.config.max_calls:
            return self._refuse(connection, HTTPStatus.SERVICE_UNAVAILABLE, "over_capacity", f"{kind} stream refused: {self._load} streams running ([media_streams] max_calls)")
        headers, doubled = _headers(request)
        try:
            if doubled:
                raise MediaStreamError(f"header(s) sent twice: {', '.join(sorted(doubled))}", code="unauthorized")
            if kind == "audiohook":
                if not headers.get("audiohook-session-id"):
                    await _wait_refusal_delay(arrived)
                    return self._refuse(connection, HTTPStatus.BAD_REQUEST, "bad_request", "AudioHook upgrade without Audiohook-Session-Id")
                verify_audiohook(SignedRequest("GET", request.path, headers), self._keys, now=self.clock(),
                                 max_age_s=self.config.signature_max_age_s, nonces=self._nonces)
            elif self._token:
                base = self.config.twilio_url.rstrip("/") or f"wss://{headers.get('host', '')}"
                verify_twilio(self._token, base + request.path, headers.get("x-twilio-signature"))
        except MediaStreamError as exc:
            await _wait_refusal_delay(arrived)
            status = HTTPStatus.UNAUTHORIZED if kind == "audiohook" else HTTPStatus.FORBIDDEN
            return self._refuse(connection, status, "unauthorized", f"{kind} stream refused: {exc.message}")
        return None

    # ---- after the upgrade

    async def _connection(self, ws: ServerConnection) -> None:
        kind = self._kind(ws.request.path)
        if self._load >= self.config.max_calls:  # several upgrades raced past the check
            self._refuse_late(kind)
            await ws.close(1013, "over capacity")
            return
        self.streams += 1
        self._load += 1
        calls: list[StreamCall] = []  # the call this connection opened, once it has (its task then holds the load)
        try:
            if kind == "audiohook":
                headers = ws.request.headers
                session: Any = AudioHookSession(headers.get("Audiohook-Session-Id", ""), headers.get("Audiohook-Organization-Id"))
            else:
                session = TwilioStream(self.config.twilio_customer_track)
            await self._stream(ws, kind, session, calls)
        finally:
            if not calls:
                self._load -= 1

    def _refuse_late(self, kind: str | None) -> None:
        self.refused["over_capacity"] += 1
        self._notify(IngressNotice("over_capacity", f"{kind} stream closed (1013): {self._load} streams running ([media_streams] max_calls)"))

    async def _stream(self, ws: ServerConnection, kind: str, session: Any, calls: list[StreamCall]) -> None:
        """Run one connection; a call it opens is appended to ``calls`` as it is handed out."""
        call: StreamCall | None = None
        reason = "stream_lost"
        deadline = asyncio.get_running_loop().time() + self.config.open_timeout_s
        try:
            while True:
                if call is None:
                    remaining = deadline - asyncio.get_running_loop().time()
                    if remaining <= 0:
                        self._problem(kind, "open_timeout", f"nothing opened a call within {self.config.open_timeout_s:g} s: closed")
                        await ws.close(1008, "no open")
                        return
                    try:
                        message = await asyncio.wait_for(ws.recv(), remaining)
                    except TimeoutError:
                        continue
                else:
                    message = await ws.recv()
                if len(message) > self.config.max_message_bytes:
                    step = Step(problems=[("oversized", f"a message of {len(message)} bytes (over max_message_bytes {self.config.max_message_bytes}) dropped")])
                elif isinstance(message, str):
                    step = session.receive_text(message)
                elif kind == "audiohook":
                    step = session.receive_audio(message)
                else:
                    step = Step(problems=[("bad_frame", f"a binary message of {len(message)} bytes (Twilio sends text): dropped")])
                for reply in step.replies:
                    await ws.send(json.dumps(reply))
                if step.opened is not None and call is None:
                    call = self._call(kind, step.opened, session)
                    calls.append(call)
                    self._hand_out(call)
                if call is not None:
                    call.apply(step)
                else:
                    for code, text in step.problems:
                        self._problem(kind, code, text)
                if step.closed:
                    reason = "hangup"
                    return
        except ConnectionClosed:
            if self._closing:
                reason = "shutdown"
        finally:
            if call is not None:
                call.end(reason)

    def _problem(self, kind: str, code: str, text: str) -> None:
        report_problem(self.problems, code, text, where=f"{kind} stream", notify=lambda c, m: self._notify(IngressNotice(c, m)))

    def _call(self, kind: str, opened: Any, session: Any) -> StreamCall:
        if kind == "audiohook":
            call_id = opened.conversation_id
            details = {"conversation": opened.conversation_id, "session": session.session_id, "organization": opened.organization_id}
        else:
            call_id = opened.call_sid
            details = {"stream": opened.stream_sid, "account": opened.account_sid, "tracks": ",".join(opened.tracks)}
        return StreamCall(call_id=call_id, source_kind=kind, sample_rate=8000, queue_chunks=self.config.queue_chunks,
                          partner=opened.name("partner"), seat=opened.name("seat"), details=details)

    def _hand_out(self, call: StreamCall) -> None:
        self.calls += 1
        log.info("%s call %s opened (%s)", call.source_kind, call.call_id, ", ".join(f"{k} {v}" for k, v in call.details.items()))

        async def run() -> None:
            try:
                await self.on_call(call)
            except Exception as exc:  # one call's handler must not reach the others
                log.exception("%s call %s: handler failed", call.source_kind, call.call_id)
                self._notify(IngressNotice("ingress_error", f"{call.source_kind} call {call.call_id}: {exc!r}", call.call_id))
            finally:
                call.end("closed")
                self._load -= 1
                log.info("%s call %s finished: %s", call.source_kind, call.call_id, call.summary())

        task = asyncio.create_task(run(), name=f"{call.source_kind}:{call.call_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
