"""What a call is, and the contracts of what may act on it or watch it.

- :class:`CallInfo`: who and what a call is (frozen; published with ``call_started``);
- :class:`CallControl`: what the agent may do to a live call through its PBX or device;
- :class:`CallTap`: a per-chunk observer of a call's audio (the call recorder, ...);
- :class:`CallIds`: the ids an agent has given its calls, so that none is given twice.

:class:`~agent.session.CallSession` runs a call with these; the ingresses and
the recorder implement them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from audio.frames import AudioChunk
from kernel.queues import RecentSet


@runtime_checkable
class CallControl(Protocol):
    """What the agent may do to a live call through its PBX or device."""

    async def end_call(self, closing_message: Path | None) -> None:
        """Play ``closing_message`` (a WAV, or nothing) to the customer, then hang up."""


@runtime_checkable
class CallTap(Protocol):
    """A per-chunk observer (the call recorder, a level meter, ...).

    ``push`` is called on the event loop for every chunk, in source order,
    and must not block; ``close`` is awaited once when the call ends, after
    the last chunk was screened and before ``call_ended`` is published (so a
    recording is finalized before the console hears the call ended). A tap
    with an ``attach(session)`` method is given its :class:`~agent.session.CallSession`
    first (e.g. to learn at the end whether the call had findings). A tap
    with a ``rename(call_id)`` method is told when its call takes a new id
    (the console refused the id as taken), during the call or after it; it
    may return an ``asyncio.Task`` still doing it (the agent waits for it
    at shutdown).
    """

    def push(self, chunk: AudioChunk) -> None: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class CallInfo:
    """Who and what a call is.

    Attributes:
        call_id: unique forever (a UUID unless the ingress gives one).
        partner: the partner's user name at the console.
        seat: desk or extension.
        source_kind: ``audiosocket``, ``device``, ``wav`` or ``transcript``.
        sample_rate: Hz of the call's audio (0 for a transcript).
        started_at: ISO 8601 UTC wall time the call started.
        ingress_ids: the ids the ingress and the phone system know the call
            by, as ``(name, value)`` pairs sorted by name, e.g.
            ``(("audiosocket_uuid", "..."),)``; a SIPREC session id, a Twilio
            ``callSid``... The agent's ``call_id`` may differ from them (a
            reused id runs as ``<id>.2``); the end-call webhook sends them so
            the phone system can find its call (:func:`ingress_ids`).
    """

    call_id: str
    partner: str
    seat: str
    source_kind: str
    sample_rate: int
    started_at: str
    ingress_ids: tuple[tuple[str, str], ...] = ()


def ingress_ids(ids: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    """``ids`` as :attr:`CallInfo.ingress_ids`: ``(name, value)`` pairs sorted by
    name, empty values left out. Names are snake_case words saying whose id it
    is (``audiosocket_uuid``, ``sip_call_id``, ``twilio_call_sid``...)."""
    return tuple(sorted((str(k), str(v)) for k, v in (ids or {}).items() if v))


REMEMBERED_CALL_IDS = 50_000
"""Ended calls' ids an agent remembers (about 150 bytes each; the oldest are forgotten first)."""


class CallIds:
    """The ids an agent has given its calls: a new call never gets one of them.

    A PBX that sends a finished call's id again (a dialplan reusing a UUID, a
    channel re-entering AudioSocket) must not add to that call's record:
    evidence never changes after the fact. :meth:`take` then gives the new
    call a distinct id, ``<id>.2`` (``.3``...), next to the original in every
    list, and says which id was asked for so the agent can report it.

    The ids of running calls are the agent's own (``running``); the ids of
    ended calls, and ids the console said are taken (a call of an earlier
    process of this agent, ``call_id_taken``), are kept here, the latest
    ``remember`` of them (``forgotten``: how many older ones were let go,
    counted).
    """

    def __init__(self, remember: int = REMEMBERED_CALL_IDS) -> None:
        if remember < 1:
            raise ValueError("remember must be at least 1")
        self.remember = remember
        self._ended: RecentSet[str] = RecentSet(remember)

    @property
    def forgotten(self) -> int:
        return self._ended.forgotten

    def __contains__(self, call_id: object) -> bool:
        return call_id in self._ended

    def take(self, wanted: str | None, running: Container[str], taken: Callable[[str], bool] | None = None) -> tuple[str, str | None]:
        """(the new call's id, ``wanted`` if it was already used or None): ``wanted``
        itself when unused, a fresh UUID when None, else ``wanted.N``.
        ``taken``: also used when it says so (e.g. a recording by that name exists)."""
        if wanted is None:
            return uuid.uuid4().hex, None
        used = lambda call_id: call_id in running or call_id in self._ended or (taken is not None and taken(call_id))  # noqa: E731
        if not used(wanted):
            return wanted, None
        n = 2
        while used(f"{wanted}.{n}"):
            n += 1
        return f"{wanted}.{n}", wanted

    def ended(self, call_id: str) -> None:
        """Remember an ended call's id, or one the console says is taken
        (forgetting the oldest beyond ``remember``)."""
        self._ended.add(call_id)
