"""Notices an ingress raises about a call's transport: a leg that broke, media that went silent.

Shared by every live ingress (:mod:`audio.audiosocket`, :mod:`audio.rtp`):
the agent turns each into a call notice on the console.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class IngressNotice:
    """Something about a call's ingress worth showing: a leg that broke, a leg
    that never got its partner, media that stopped. ``code``: stable snake_case;
    ``call_id``: None for a connection that never named a call (or a media
    stream not yet given one)."""

    code: str
    message: str
    call_id: str | None = None
    speaker: str | None = None


NoticeSink = Callable[[IngressNotice], None]
"""Where an ingress sends its notices (called on the event loop; must not block or raise)."""
