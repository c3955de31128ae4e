"""What the store hands out: typed, frozen records, one per kind of row.

The store turns its rows into these records and every other console module
takes them; they become JSON only at the edges, through :func:`json_ready`
(the browser messages in ``console/browser_protocol.py``, the evidence zip,
``callshield export``). Field names are the JSON keys the pages read
(``docs/console.md``), in the same order, so a record's JSON object is the
row the browser has always received.

Units: ``start``/``end``/``at`` are seconds of audio time from the start of
the call; text fields ending in ``_at`` are ISO 8601 UTC wall time.

Records read by attribute. For callers outside the console that still read
rows by key (``row["id"]``, ``row.get("ended_at")``), :class:`Record` also
answers ``[name]`` and ``get``; it is read-only and never adds a key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class Record:
    """Base of the store's records (frozen dataclasses): read-only access by field name too."""

    def __getitem__(self, name: str) -> Any:
        if name not in self.__dataclass_fields__:  # type: ignore[attr-defined]
            raise KeyError(name)
        return getattr(self, name)

    def get(self, name: str, default: Any = None) -> Any:
        return getattr(self, name) if name in self.__dataclass_fields__ else default  # type: ignore[attr-defined]


def json_ready(value: Any) -> Any:
    """``value`` as plain JSON data: records become objects (field order kept),
    tuples and lists become lists, mappings keep their keys; the one place a
    record becomes JSON."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: json_ready(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, Mapping):
        return {k: json_ready(v) for k, v in value.items()}
    return value


# --------------------------------------------------------------------------- calls and their events


@dataclass(frozen=True)
class Call(Record):
    """A call's summary. ``sample_rate``: Hz (0 for a transcript); ``started_at``:
    from the agent; ``ended_at``: console clock; ``length``: seconds of audio,
    set at the end; ``level``/``peak_level``: the ladder's current and highest
    level; ``open_alerts``/``authorizations``: counts."""

    id: str
    agent: str
    partner: str
    seat: str
    source: str
    sample_rate: int
    started_at: str
    ended_at: str | None
    length: float | None
    level: str
    peak_level: str
    end_reason: str | None
    open_alerts: int
    authorizations: int


@dataclass(frozen=True)
class FlaggedCall(Call):
    """A call with at least one finding, for the QA list: ``findings`` (count),
    ``categories`` (sorted, distinct), ``marked`` (QA marks on its findings)."""

    findings: int = 0
    categories: tuple[str, ...] = ()
    marked: int = 0


@dataclass(frozen=True)
class Utterance(Record):
    """A final utterance. ``words``: the agent's word list as it sent it
    (JSON objects ``{word, start, end, conf}``), kept verbatim."""

    id: int
    call_id: str
    speaker: str
    start: float
    end: float
    text: str
    words: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True)
class Finding(Record):
    """A detector finding. ``score``: 0..1; ``span``: ``[first, last)``
    characters of ``text``, or None; ``why``: whom the words are aimed at."""

    id: int
    call_id: str
    category: str
    subtype: str | None
    severity: str
    score: float
    rule: str
    evidence: str
    start: float
    end: float
    text: str
    why: str
    span: tuple[int, int] | None


@dataclass(frozen=True)
class LevelChange(Record):
    """The ladder moved: ``suggestion`` is the sentence the partner may say."""

    id: int
    call_id: str
    level: str
    previous: str
    reason: str
    suggestion: str
    category: str | None
    at: float


@dataclass(frozen=True)
class Notice(Record):
    """Something an agent reported that is not a finding. ``dropped``: frames."""

    id: int
    agent: str
    call_id: str | None
    code: str
    message: str
    dropped: int
    received_at: str


# --------------------------------------------------------------------------- supervision


@dataclass(frozen=True)
class Alert(Record):
    """A level rising to ``alert`` or above, for supervisors."""

    id: int
    call_id: str
    partner: str
    seat: str
    level: str
    reason: str
    at: float
    raised_at: str
    acknowledged_by: str | None
    acknowledged_at: str | None


@dataclass(frozen=True)
class CheckIn(Record):
    """A partner queued for a supervisor's check-in after a grave call."""

    id: int
    call_id: str
    partner: str
    reason: str
    created_at: str
    done_by: str | None
    done_at: str | None
    note: str


@dataclass(frozen=True)
class HelpRequest(Record):
    """A partner asked for help (``seat`` of the call, None without one)."""

    id: int
    call_id: str | None
    partner: str
    seat: str | None
    note: str
    created_at: str
    acknowledged_by: str | None
    acknowledged_at: str | None


@dataclass(frozen=True)
class Authorization(Record):
    """A supervisor (``by``) authorized ending a live call."""

    id: str
    call_id: str
    reason: str
    authorized_at: str
    by: str


@dataclass(frozen=True)
class AuditEntry(Record):
    """One line of the audit log. ``who``: a user, ``agent:NAME`` or ``-``."""

    id: int
    at: str
    who: str
    action: str
    call_id: str | None
    detail: str


@dataclass(frozen=True)
class CallHistory(Record):
    """Everything stored about one call (the ``call_detail`` answer)."""

    call: Call
    utterances: tuple[Utterance, ...]
    findings: tuple[Finding, ...]
    levels: tuple[LevelChange, ...]
    alerts: tuple[Alert, ...]
    authorizations: tuple[Authorization, ...]
    help: tuple[HelpRequest, ...]
    checkins: tuple[CheckIn, ...]
    notices: tuple[Notice, ...] = ()


# --------------------------------------------------------------------------- people and agents


@dataclass(frozen=True)
class Account(Record):
    """A person (``role`` partner, supervisor, qa, admin) or an agent (``role`` ``agent``)."""

    name: str
    role: str
    created_at: str


# --------------------------------------------------------------------------- QA


@dataclass(frozen=True)
class Recording(Record):
    """A call's recording as first stored. ``path``: relative to the recordings
    directory; ``sha256``: hex, of the finalized file; ``bytes``: file size;
    ``duration``: seconds; ``sample_rate``: Hz; ``finalized_at``: agent clock;
    ``recovered``: repaired after a crash; ``removed_at``: set once retention
    removed the file."""

    call_id: str
    path: str
    sha256: str
    bytes: int
    duration: float
    sample_rate: int
    finalized_at: str
    recovered: bool
    stored_at: str
    removed_at: str | None


@dataclass(frozen=True)
class QaMark(Record):
    """QA's verdict on a finding: ``confirmed`` or ``false_alarm``, by whom, when."""

    id: int
    finding_id: int
    call_id: str
    verdict: str
    note: str
    at: str
    by: str


@dataclass(frozen=True)
class FlagCounts(Record):
    """Totals over every flagged call that matched (not only those listed)."""

    calls: int
    findings: int
    by_category: dict[str, int]
    by_level: dict[str, int]


@dataclass(frozen=True)
class FlaggedCalls(Record):
    """The QA list: ``calls`` newest first, ``counts``, and the filter choices."""

    calls: tuple[FlaggedCall, ...]
    counts: FlagCounts
    partners: tuple[str, ...]
    categories: tuple[str, ...]


@dataclass(frozen=True)
class MarkedFinding(Record):
    """A marked finding with what the detector saw, for tuning lexicons and rules
    (``callshield export --qa-marks``)."""

    verdict: str
    note: str
    by: str
    at: str
    finding_id: int
    call_id: str
    category: str
    subtype: str | None
    severity: str
    score: float
    rule: str
    evidence: str
    text: str
    start: float
    end: float
    span: tuple[int, int] | None
