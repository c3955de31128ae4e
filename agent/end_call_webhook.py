"""End-call for calls the agent cannot hang up: a signed webhook to the site's CTI or PBX.

SIPREC, Genesys AudioHook and Twilio Media Streams give the agent a copy of a
call's audio and no way to hang it up (their calls have no
:class:`~agent.call.CallControl`). When a supervisor authorizes ending such a
call, the agent POSTs a JSON request to ``[end_call_webhook] url`` and the
phone system's side (a CTI connector, a PBX script) ends the call. The
receiver's contract, with a verification snippet, is ``docs/end-call-webhook.md``.

- **Signed** like Stripe's and Slack's webhooks: ``Callshield-Signature:
  t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`` keyed with the
  shared secret (:func:`signature`); the receiver recomputes it and refuses a
  stale ``t`` against replay (:func:`verify_signature`). Each attempt is
  signed afresh.
- **Idempotent**: the body's ``event_id`` (also the ``Idempotency-Key``
  header) is the same on every attempt of one authorization.
- **Retried** with exponential backoff (:class:`kernel.backoff.Backoff`, capped
  at ``backoff_max_s``) after a connection error, a timeout, an answer that is
  not HTTP, and the statuses in :data:`RETRIED_STATUSES` (5xx, 408, 429; a
  ``Retry-After`` is honoured, up to ``backoff_max_s``); never after another
  answer (a 4xx says the request itself is wrong) or an untrusted TLS
  certificate (a configuration error), and at most ``max_attempts`` times.
- **Bounded**: one delivery per call at a time; at most ``max_pending``
  deliveries waiting or in flight (beyond that the oldest is dropped: reported
  failed and counted); at most ``concurrency`` requests open at once.
- **Reported**: every outcome (``delivered``, ``retrying``, ``failed``) goes to
  the console as a :class:`~kernel.protocol.EndCallWebhookOutcome`, where the
  supervisor sees it on the call and the audit log keeps it.

The HTTP client is asyncio streams on the agent's one event loop (HTTP/1.1,
one connection per attempt, ``Connection: close``, the whole attempt within
``timeout_s``), https with the system's trust store or ``ca_file``. The
secret is never logged, nor the URL's path and query (which may hold a key):
logs name the receiver by host and port.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import hmac
import json
import logging
import os
import random
import re
import ssl
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agent.call import CallInfo
from kernel.backoff import Backoff
from kernel.clock import Clock, iso, utc_now
from kernel.config import secret_from_file
from kernel.errors import CallshieldError, ConfigError
from kernel.protocol import EndCallAuthorized, EndCallWebhookOutcome
from kernel.sections import read_section

log = logging.getLogger("callshield.agent.webhook")

SIGNATURE_HEADER = "Callshield-Signature"
"""The header carrying ``t=<unix seconds>,v1=<hex HMAC-SHA256>``."""
SIGNATURE_TOLERANCE_S = 300
"""Seconds a receiver should accept between a signature's ``t`` and its own clock (replay window)."""
RETRIED_STATUSES = frozenset({408, 429}) | frozenset(range(500, 600))
"""HTTP statuses after which the request is tried again (the others are final)."""
MIN_SECRET_CHARS = 16
"""Shortest secret accepted (``openssl rand -hex 32`` gives 64 characters)."""
SECRET_ENV = "CALLSHIELD_WEBHOOK_SECRET"
"""Environment variable holding the secret when neither ``secret`` nor ``secret_file`` is set."""
PAYLOAD_VERSION = 1
"""``version`` of the JSON body; a field added keeps it, a field renamed or re-typed raises it."""

MAX_LINE = 8192
"""Longest status or header line of an answer read (bytes)."""
MAX_HEADERS = 100
"""Most header lines of an answer read."""
_SOURCE_KIND = re.compile(r"[a-z][a-z0-9_]*")


class WebhookError(CallshieldError):
    """An end-call webhook could not be delivered or verified."""

    code = "webhook_failed"


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class EndCallWebhookSettings:
    """The ``[end_call_webhook]`` section.

    Attributes:
        url: where the agent POSTs, ``https://`` (or ``http://`` on a trusted
            network); empty: no webhook.
        secret: the shared HMAC key (at least 16 characters). Prefer
            ``secret_file`` or ``$CALLSHIELD_WEBHOOK_SECRET``. Never logged.
        secret_file: a file whose first line is the secret, or None.
        ca_file: PEM certificate authority (or the receiver's own certificate)
            trusted for ``https://``; None: the system's trust store.
        sources: the call sources (``CallInfo.source_kind``) whose authorized
            ends are sent; empty: every call without a control of its own
            (calls the agent can hang up itself are left to it).
        timeout_s: seconds one attempt may take, connecting to answer.
        max_attempts: attempts in all, the first included (1: no retry).
        backoff_initial_s: seconds before the first retry; each next one waits
            twice as long.
        backoff_max_s: the longest wait between two attempts, seconds (also
            the most of a ``Retry-After`` honoured).
        backoff_jitter: fraction (0..1) of each wait drawn at random, so that
            many agents do not retry in lockstep.
        max_pending: deliveries waiting or in flight at once; beyond it the
            oldest is dropped (reported failed, counted).
        concurrency: requests open at once.
    """

    url: str = ""
    secret: str = field(default="", repr=False)
    secret_file: Path | None = None
    ca_file: Path | None = None
    sources: tuple[str, ...] = ()
    timeout_s: float = 5.0
    max_attempts: int = 5
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 30.0
    backoff_jitter: float = 0.2
    max_pending: int = 100
    concurrency: int = 4

    @classmethod
    def from_section(cls, table: Mapping[str, Any] | None, *, where: str = "[end_call_webhook]",
                     env: Mapping[str, str] | None = None) -> "EndCallWebhookSettings":
        """Parse the table (``where`` names it in errors); with a ``url``, the
        secret is resolved now (``secret``, ``secret_file``, ``$CALLSHIELD_WEBHOOK_SECRET``),
        so a missing or weak one fails before any call."""
        settings = read_section(cls, table, section=where)
        if settings.url:
            settings = dataclasses.replace(settings, secret=settings.resolved_secret(env, where=where), secret_file=None)
        return settings

    def check(self) -> None:
        """What the values mean together (called by :func:`~kernel.sections.read_section`)."""
        if self.url:
            parts = urlsplit(self.url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigError("url must be http://HOST[:PORT]/PATH or https://HOST[:PORT]/PATH")
            if parts.username is not None or parts.password is not None:
                raise ConfigError("url must not hold a user or password: the signature authenticates the agent")
            if parts.fragment:
                raise ConfigError("url must not have a #fragment")
            try:
                parts.port  # noqa: B018 - raises ValueError for a bad port
            except ValueError as exc:
                raise ConfigError(f"url has a bad port: {exc}") from None
        if self.secret and self.secret_file is not None:
            raise ConfigError("give secret or secret_file, not both")
        if self.secret:
            _strong(self.secret, "secret")
        for kind in self.sources:
            if not _SOURCE_KIND.fullmatch(kind):
                raise ConfigError(f"sources: {kind!r} is not a source kind (snake_case, e.g. \"siprec\")")
        if not self.timeout_s > 0 or not 1 <= self.max_attempts <= 100:
            raise ConfigError("need timeout_s > 0 and 1 <= max_attempts <= 100")
        if not 0 < self.backoff_initial_s <= self.backoff_max_s:
            raise ConfigError("need 0 < backoff_initial_s <= backoff_max_s")
        if not 0 <= self.backoff_jitter <= 1:
            raise ConfigError("backoff_jitter must be between 0 and 1")
        if self.max_pending < 1 or self.concurrency < 1:
            raise ConfigError("max_pending and concurrency must be at least 1")

    def resolved_secret(self, env: Mapping[str, str] | None = None, *, where: str = "[end_call_webhook]") -> str:
        """The secret: ``secret``, else ``secret_file``'s first line, else ``$CALLSHIELD_WEBHOOK_SECRET``."""
        env = os.environ if env is None else env
        if self.secret:
            return self.secret
        if self.secret_file is not None:
            return _strong(secret_from_file(self.secret_file, f"{where} secret_file"), f"{where} secret_file {self.secret_file}")
        secret = env.get(SECRET_ENV, "").strip()
        if not secret:
            raise ConfigError(f"{where}: a url needs a secret: set secret_file, secret or ${SECRET_ENV}")
        return _strong(secret, f"${SECRET_ENV}")

    def applies_to(self, source_kind: str, *, has_control: bool) -> bool:
        """Whether an authorized end of a call of this kind is sent (see ``sources``)."""
        return source_kind in self.sources if self.sources else not has_control

    def backoff(self) -> Backoff:
        return Backoff(initial=self.backoff_initial_s, maximum=self.backoff_max_s, jitter=self.backoff_jitter)


def _strong(secret: str, what: str) -> str:
    if len(secret) < MIN_SECRET_CHARS:
        raise ConfigError(f"{what} is shorter than {MIN_SECRET_CHARS} characters; make one with: openssl rand -hex 32")
    return secret


# --------------------------------------------------------------------------- signature


def signature(secret: str | bytes, timestamp: int, body: bytes) -> str:
    """The ``Callshield-Signature`` value for ``body`` sent at ``timestamp`` (unix seconds):
    ``t=<timestamp>,v1=<hex HMAC-SHA256(secret, "<timestamp>." + body)>``."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    mac = hmac.new(key, b"%d." % timestamp + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(secret: str | bytes, header: str, body: bytes, *, now: float,
                     tolerance_s: float = SIGNATURE_TOLERANCE_S) -> int:
    """Check a received end-call webhook (for receivers written in Python); returns its timestamp.

    ``header``: the ``Callshield-Signature`` value; ``body``: the raw bytes
    received (before any JSON parsing); ``now``: the receiver's clock, unix
    seconds. Raises :class:`WebhookError` (code ``bad_signature``, or
    ``stale_signature`` when ``t`` is more than ``tolerance_s`` from ``now``).
    Several ``v1`` entries are accepted (one of them must match)."""
    timestamp, candidates = None, []
    for item in header.split(",")[:16]:
        key, _, value = item.strip().partition("=")
        if key == "t" and value.isdigit() and len(value) <= 12:
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        raise WebhookError("no t=... and v1=... in the signature header", code="bad_signature")
    if abs(now - timestamp) > tolerance_s:
        raise WebhookError(f"signature timestamp {timestamp} is {abs(now - timestamp):.0f} s from now (more than {tolerance_s:g} s)",
                           code="stale_signature")
    expected = signature(secret, timestamp, body).rpartition("v1=")[2]
    if not any(hmac.compare_digest(expected, candidate) for candidate in candidates):
        raise WebhookError("the signature does not match the body", code="bad_signature")
    return timestamp


# --------------------------------------------------------------------------- payload


def end_call_payload(info: CallInfo, authorization: EndCallAuthorized, *, event_id: str, agent_id: str, site: str,
                     call_time_s: float, requested_at: str) -> bytes:
    """The JSON body (UTF-8, ASCII-escaped, compact) asking to end ``info``'s call.
    Fields and their units: ``docs/end-call-webhook.md``."""
    body = {
        "type": "end_call",
        "version": PAYLOAD_VERSION,
        "event_id": event_id,
        "authorization_id": authorization.authorization_id,
        "call_id": info.call_id,
        "ingress_ids": dict(info.ingress_ids),
        "source": info.source_kind,
        "partner": info.partner,
        "seat": info.seat,
        "call_started_at": info.started_at,
        "agent_id": agent_id,
        "site": site,
        "authorized_by": authorization.by,
        "reason": authorization.reason,
        "authorized_at": authorization.authorized_at,
        "call_time_s": round(call_time_s, 3),
        "requested_at": requested_at,
    }
    return json.dumps(body, separators=(",", ":")).encode("ascii")


# --------------------------------------------------------------------------- one attempt over HTTP


@dataclass(frozen=True)
class Answer:
    """The receiver's answer: ``status`` (HTTP), ``reason`` (its phrase, may be
    empty), ``retry_after``: seconds its ``Retry-After`` asks for, or None."""

    status: int
    reason: str = ""
    retry_after: float | None = None


def retry_after_seconds(value: str | None, now_unix: float) -> float | None:
    """A ``Retry-After`` header as seconds from now: delta-seconds or an HTTP
    date; None when absent or unreadable (never negative)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(min(int(value[:9]), 10**8))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now_unix)


async def post(url: str, body: bytes, headers: Mapping[str, str], *, timeout: float, context: ssl.SSLContext | None,
               now_unix: Callable[[], float]) -> Answer:
    """POST ``body`` to ``url`` (HTTP/1.1, ``Connection: close``) and read the
    status and headers of the answer, all within ``timeout`` seconds.

    Raises ``TimeoutError``, ``OSError`` (refused, unreachable, TLS) or
    :class:`WebhookError` (an answer that is not HTTP)."""
    parts = urlsplit(url)
    https = parts.scheme == "https"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [f"POST {target} HTTP/1.1", f"Host: {parts.netloc}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                parts.hostname, parts.port or (443 if https else 80), ssl=context if https else None, limit=MAX_LINE)
            writer.write("\r\n".join(lines).encode("latin-1") + body)
            await writer.drain()
            return await _read_answer(reader, now_unix)
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)


_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([1-5][0-9][0-9])(?: ([^\r\n]*))?\r?\n")


async def _read_answer(reader: asyncio.StreamReader, now_unix: Callable[[], float]) -> Answer:
    for _ in range(5):  # interim 1xx answers (none is asked for) are skipped
        try:
            line = await reader.readline()
        except ValueError:
            raise WebhookError(f"the answer's status line is longer than {MAX_LINE} bytes") from None
        if not line:
            raise WebhookError("the receiver closed the connection without answering")
        status = _STATUS_LINE.fullmatch(line)
        if status is None:
            raise WebhookError(f"the answer is not HTTP/1.x: {line[:40]!r}")
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADERS):
            try:
                line = await reader.readline()
            except ValueError:
                raise WebhookError(f"a header line of the answer is longer than {MAX_LINE} bytes") from None
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        else:
            raise WebhookError(f"the answer has more than {MAX_HEADERS} header lines")
        code = int(status[1])
        if code >= 200:
            reason = (status[2] or b"").decode("latin-1")[:80]
            return Answer(code, reason, retry_after_seconds(headers.get("retry-after"), now_unix()))
    raise WebhookError("the answer has only interim (1xx) statuses")


# --------------------------------------------------------------------------- deliveries


@dataclass
class WebhookStats:
    """Counts since the agent started: ``requested`` deliveries, ``delivered``,
    ``failed`` (dropped ones included), ``dropped`` (over ``max_pending``),
    ``retries`` (attempts after a first), ``duplicates`` (a second delivery for
    a call that had one pending, not sent)."""

    requested: int = 0
    delivered: int = 0
    failed: int = 0
    dropped: int = 0
    retries: int = 0
    duplicates: int = 0


@dataclass
class _Delivery:
    info: CallInfo
    authorization: EndCallAuthorized
    body: bytes
    event_id: str
    reports: int = 0
    attempt: int = 0
    final: bool = False  # delivered or failed was reported
    cancelled_because: str = "the agent shut down before it was delivered"


class EndCallWebhook:
    """Sends end-call webhooks and reports what became of each.

    ``publish``: where outcome events go (``ConsoleLink.publish``). ``clock``:
    the wall clock (signature timestamps, ``requested_at``, HTTP dates).
    ``rng``: draws the backoff jitter."""

    def __init__(self, settings: EndCallWebhookSettings, *, publish: Callable[[Any], Any], agent_id: str, site: str = "",
                 clock: Clock = utc_now, rng: random.Random | None = None) -> None:
        if not settings.url:
            raise ValueError("no [end_call_webhook] url")
        if not settings.secret:
            raise ConfigError("[end_call_webhook]: no secret (read the section with EndCallWebhookSettings.from_section)")
        self.settings = settings
        self.stats = WebhookStats()
        self._publish = publish
        self._agent_id = agent_id
        self._site = site
        self._clock = clock
        self._rng = rng or random.Random()
        self._backoff = settings.backoff()
        parts = urlsplit(settings.url)
        self.receiver = f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
        """The receiver as logs name it (host and port; never the path, query or secret)."""
        self._context: ssl.SSLContext | None = None
        if parts.scheme == "https":
            try:
                self._context = ssl.create_default_context(cafile=str(settings.ca_file) if settings.ca_file else None)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"[end_call_webhook] ca_file {settings.ca_file}: cannot load it: {exc}") from None
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._pending: dict[str, tuple[_Delivery, asyncio.Task]] = {}  # call id -> delivery, oldest first
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def pending(self) -> int:
        """Deliveries waiting or in flight."""
        return len(self._pending)

    def delay(self, retry: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry ``retry`` (0 = the second attempt): the
        backoff's, or the receiver's ``Retry-After`` if longer, at most ``backoff_max_s``."""
        wait = self._backoff.delay(retry, self._rng)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.settings.backoff_max_s))
        return wait

    def request(self, info: CallInfo, authorization: EndCallAuthorized, *, call_time_s: float) -> bool:
        """Start delivering the end of ``info``'s call (returns at once); False when
        one is already pending for that call (it is not sent twice)."""
        if info.call_id in self._pending:
            self.stats.duplicates += 1
            log.warning("call %s: an end-call webhook is already pending; authorization %s not sent again",
                        info.call_id, authorization.authorization_id)
            return False
        while len(self._pending) >= self.settings.max_pending:
            oldest, task = next(iter(self._pending.values()))
            del self._pending[oldest.info.call_id]
            oldest.cancelled_because = f"dropped: more than {self.settings.max_pending} end-call webhooks were pending"
            self.stats.dropped += 1
            task.cancel()
        self.stats.requested += 1
        event_id = uuid.uuid4().hex
        body = end_call_payload(info, authorization, event_id=event_id, agent_id=self._agent_id, site=self._site,
                                call_time_s=call_time_s, requested_at=iso(self._clock()))
        delivery = _Delivery(info, authorization, body, event_id)
        task = asyncio.get_running_loop().create_task(self._deliver(delivery), name=f"end-call-webhook:{info.call_id}")
        self._pending[info.call_id] = (delivery, task)
        self._idle.clear()
        task.add_done_callback(lambda t, d=delivery: self._done(d, t))
        return True

    def _done(self, d: _Delivery, task: asyncio.Task) -> None:
        """A delivery's task ended: one stopped before its outcome (dropped, shut
        down; perhaps before it ever ran) or broken by a bug is reported failed."""
        call_id = d.info.call_id
        if call_id in self._pending and self._pending[call_id][0] is d:
            del self._pending[call_id]
        if not d.final:
            why = d.cancelled_because if task.cancelled() else f"the agent failed sending it: {task.exception()!r}"
            self.stats.failed += 1
            log.error("call %s: end-call webhook to %s not delivered: %s", call_id, self.receiver, why)
            self._report(d, "failed", error=why)
        if not self._pending:
            self._idle.set()

    async def idle(self, timeout: float | None = None) -> None:
        """Wait until no delivery is pending (``TimeoutError`` after ``timeout`` s)."""
        async with asyncio.timeout(timeout):
            await self._idle.wait()

    async def close(self, grace: float = 0.0) -> None:
        """Let pending deliveries finish for up to ``grace`` seconds, then stop
        the rest (each reported failed)."""
        with contextlib.suppress(TimeoutError):
            await self.idle(grace)
        tasks = [task for _, task in self._pending.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------------ one delivery

    async def _deliver(self, d: _Delivery) -> None:
        limit = self.settings.max_attempts
        while True:
            d.attempt += 1
            if d.attempt > 1:
                self.stats.retries += 1
            async with self._slots:
                status, error, retried, retry_after = await self._attempt(d)
            if 200 <= status < 300:
                self.stats.delivered += 1
                log.info("call %s: end-call webhook delivered to %s (HTTP %d, attempt %d)", d.info.call_id, self.receiver, status, d.attempt)
                self._report(d, "delivered", status=status)
                return
            if not retried or d.attempt >= limit:
                self.stats.failed += 1
                why = f"{error}; gave up after {d.attempt} attempt(s)" if retried else f"{error}; not retried"
                log.error("call %s: end-call webhook to %s failed: %s", d.info.call_id, self.receiver, why)
                self._report(d, "failed", status=status, error=why)
                return
            wait = self.delay(d.attempt - 1, retry_after)
            log.warning("call %s: end-call webhook to %s, attempt %d of %d: %s; retrying in %.1f s",
                        d.info.call_id, self.receiver, d.attempt, limit, error, wait)
            self._report(d, "retrying", status=status, error=error, retry_in=round(wait, 3))
            await asyncio.sleep(wait)

    async def _attempt(self, d: _Delivery) -> tuple[int, str, bool, float | None]:
        """One POST: (HTTP status or 0, what went wrong or "", whether to retry, Retry-After seconds)."""
        timestamp = int(self._clock().timestamp())
        headers = {
            "User-Agent": "callshield",
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature(self.settings.secret, timestamp, d.body),
            "Callshield-Event-Id": d.event_id,
            "Idempotency-Key": d.event_id,
            "Callshield-Attempt": str(d.attempt),
        }
        try:
            answer = await post(self.settings.url, d.body, headers, timeout=self.settings.timeout_s, context=self._context,
                                now_unix=lambda: self._clock().timestamp())
        except TimeoutError:
            return 0, f"no answer within {self.settings.timeout_s:g} s", True, None
        except ssl.SSLCertVerificationError as exc:
            return 0, f"the receiver's TLS certificate is not trusted ({exc.verify_message}); check ca_file", False, None
        except ConnectionRefusedError:
            return 0, "connection refused", True, None
        except OSError as exc:
            return 0, f"cannot connect: {exc.strerror or exc}", True, None
        except WebhookError as exc:
            return 0, exc.message, True, None
        text = f"HTTP {answer.status}" + (f" {answer.reason}" if answer.reason else "")
        if 200 <= answer.status < 300:
            return answer.status, "", False, None
        return answer.status, text, answer.status in RETRIED_STATUSES, answer.retry_after

    def _report(self, d: _Delivery, outcome: str, *, status: int = 0, error: str = "", retry_in: float = 0.0) -> None:
        d.reports += 1
        d.final = outcome != "retrying"
        self._publish(EndCallWebhookOutcome(
            seq=0, event_id=f"webhook:{d.event_id}:{d.reports}", call_id=d.info.call_id,
            authorization_id=d.authorization.authorization_id, outcome=outcome, attempt=d.attempt,
            max_attempts=self.settings.max_attempts, status=status, error=error[:500], retry_in=retry_in, webhook_id=d.event_id))
