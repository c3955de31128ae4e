"""What the QA player is given for one call: the store's records, each finding
with its QA mark, the recording with a link signed for the viewer, and the
loudness of both speakers over the call.

Built by ``console/qa.py``, sent by ``console/browser_protocol.py`` (the
``qa_call`` answer); the JSON keys are those in ``docs/console.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

from console.store.records import Authorization, Call, Finding, LevelChange, QaMark, Record, Recording, Utterance


@dataclass(frozen=True)
class Loudness(Record):
    """RMS loudness in dBFS (-90..0) per ``step`` seconds, per speaker."""

    step: float
    customer: tuple[float, ...]
    partner: tuple[float, ...]


@dataclass(frozen=True)
class ReviewedFinding(Finding):
    """A finding with QA's mark on it (None when not marked yet)."""

    mark: QaMark | None = None


@dataclass(frozen=True)
class SignedRecording(Recording):
    """A kept recording with ``url``, a link signed for the user who asked."""

    url: str = ""


@dataclass(frozen=True)
class QaReplay(Record):
    """One call for the QA player. ``recording``: None when none is kept;
    ``loudness``: None without a readable recording."""

    call: Call
    utterances: tuple[Utterance, ...]
    findings: tuple[ReviewedFinding, ...]
    levels: tuple[LevelChange, ...]
    authorizations: tuple[Authorization, ...]
    recording: SignedRecording | None
    loudness: Loudness | None
