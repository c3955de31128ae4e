"""What a call is, and the contracts of what may act on it or watch it.

- :class:`CallInfo`: who and what a call is (frozen; published with ``call_started``);
- :class:`CallControl`: what the agent may do to a live call through its PBX or device;
- :class:`CallTap`: a per-chunk observer of a call's audio (the call recorder, ...).

:class:`~agent.session.CallSession` runs a call with these; the ingresses and
the recorder implement them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from audio.frames import AudioChunk


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
    first (e.g. to learn at the end whether the call had findings).
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
    """

    call_id: str
    partner: str
    seat: str
    source_kind: str
    sample_rate: int
    started_at: str
