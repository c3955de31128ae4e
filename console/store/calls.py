"""Calls and their events: what agents send, stored once, and read back.

Agent events are written idempotently: the ``events`` table keys every
durable message by its ``event_id``, so a resend after a reconnect is stored
once and reported as a duplicate (not shown to browsers again). Each agent's
highest stored ``seq`` moves forward with every event, new or not.

A level change that the ladder says raises an alert (``kernel.levels``)
raises one, and grave calls queue the partner for a check-in; both are the
supervision room's rows, written in the same transaction as the event.

End of life: a call whose agent stopped answering is closed as *lost*
(``end_reason = 'lost'``, ``ended_at`` set, a ``monitoring_lost`` notice for
supervisors); any later sign of it from its own agent (an event, new or
resent, or a heartbeat naming it) reopens it. A new ``call_started`` of a
stored call (another event id: a new call under a used id, after its agent
restarted) reopens nothing: it is refused as ``call_id_taken`` and the agent
renames the call. A refused event leaves one notice per agent and call, so
supervisors see that an agent's events for a call are not being stored
(``call_id_taken`` leaves none: the agent reports ``call_id_reused``).

End-call webhooks: each outcome an agent reports (``end_call_webhook``:
delivered, retrying, failed, not configured) is kept as a notice of the call
(code ``end_call_webhook_<outcome>``, its text written here) and as an audit
entry (action ``end_call_webhook``, the outcome's fields as JSON), in one
transaction; like notices, outcomes are taken after the call has ended.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from console.errors import BadRequest, ConsoleError, Forbidden, StoreError
from console.store import rows
from console.store.audit import write_audit
from console.store.records import Alert, Call, CallHistory, CheckIn, Finding, LevelChange, Notice, Utterance
from console.store.connection import Connection, StoreConflict
from console.store.schema import Room, retried
from console.store.supervision import queue_checkin, raise_alert
from kernel import protocol as p
from kernel.clock import iso
from kernel.levels import SEVERITY_WORDS, asks_check_in, category_words, level_rank, raises_alert

DurableEvent = p.CallStarted | p.UtteranceFinal | p.FindingRaised | p.LevelChanged | p.CallEnded | p.AgentNotice | p.EndCallWebhookOutcome
"""The agent messages the store keeps (``kernel.protocol.DURABLE``)."""

LOST = "lost"
"""``end_reason`` of a call closed because its agent stopped answering."""
CALL_NOTICES = 200
"""A call's latest notices in its ``call_detail`` (a call with thousands of dropped-audio notices sends only these)."""
LOST_SHOWN_HOURS = 1.0
"""Hours a lost call stays on the supervisors' live list (marked lost) after monitoring was lost."""
REFUSAL_TOLD = "SELECT 1 FROM notices WHERE code = 'events_refused' AND agent = ? AND call_id IS NOT DISTINCT FROM ?"
"""Whether supervisors were told that an agent's events for a call are refused (index ``notices_told``)."""


@dataclass(frozen=True)
class Recorded:
    """What storing one agent event changed, for the console to fan out.

    ``new``: False when the event was already stored (a resend). ``call``: the
    call's summary after the event (None for notices without a call).
    ``record``: the stored event itself (utterance, finding, level change,
    notice). ``alert``/``checkin``: rows created by the event.
    """

    new: bool
    call: Call | None = None
    record: Utterance | Finding | LevelChange | Notice | None = None
    alert: Alert | None = None
    checkin: CheckIn | None = None
    reopened: Call | None = None


RECORD_BATCH = 64
"""Durable messages of one agent stored in one transaction at most (:meth:`CallLog.record_events`)."""


def _record(c: Connection, agent: str, message: DurableEvent, now: str) -> Recorded:
    """Store one durable message in the open transaction ``c``. It reads only
    the rows its checks need, by their keys: the event is inserted first (``ON
    CONFLICT DO NOTHING``: a resend finds its row without a read before), a new
    call likewise, and what it writes comes back from ``RETURNING``. Raises
    :class:`Forbidden` or :class:`BadRequest` for a refused message (the caller
    rolls back what it wrote)."""
    call_id = getattr(message, "call_id", None)
    stored = c.execute(
        "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
        (message.event_id, agent, message.seq, message.TYPE, call_id, now),
    ).fetchone()
    if stored is None:
        seen = c.execute("SELECT agent FROM events WHERE event_id = ?", (message.event_id,)).fetchone()
        if seen["agent"] != agent:
            raise Forbidden(f"event {message.event_id!r} belongs to another agent", code="not_your_event")
        _bump_seq(c, agent, message.seq)
        reopened = _reopen(c, call_id, agent, now) if call_id is not None else None
        return Recorded(new=False, reopened=reopened)
    reopened = None
    if call_id is not None and not (isinstance(message, p.CallStarted) and _new_call(c, agent, message)):
        owner = c.execute("SELECT agent, started_at, ended_at, end_reason FROM calls WHERE id = ?", (call_id,)).fetchone()
        if owner is not None and owner["agent"] != agent:
            raise Forbidden(f"call {call_id!r} belongs to another agent", code="not_your_call")
        if owner is None and not isinstance(message, p.CallStarted):
            raise BadRequest(f"call {call_id!r} was never started", code="unknown_call")
        if owner is not None and isinstance(message, p.CallStarted):
            _refuse_a_second_start(call_id, owner)
        if owner is not None:
            reopened = _reopen(c, call_id, agent, now) if owner["end_reason"] == LOST else None
            _refuse_after_the_end(call_id, owner, message)
    result = _apply(c, agent, message, now)
    if reopened is not None:
        result = dataclasses.replace(result, reopened=reopened)
    _bump_seq(c, agent, message.seq)
    return result


class CallLog(Room):
    """Storing agent events and reading calls."""

    def record_events(self, agent: str, messages: Sequence[DurableEvent]) -> tuple[list[Recorded], ConsoleError | None]:
        """Store an agent's durable messages, in order, in one transaction (a
        group commit: one disk flush for all of them), each as
        :meth:`record_event` stores it alone, with their calls' summaries
        (:meth:`store_events`, then :meth:`with_calls`)."""
        recorded, refused = self.store_events(agent, messages)
        return self.with_calls(messages, recorded), refused

    def store_events(self, agent: str, messages: Sequence[DurableEvent]) -> tuple[list[Recorded], ConsoleError | None]:
        """Store an agent's durable messages, in order, in one transaction;
        what each recorded comes back without its call's summary (read by
        :meth:`with_calls` once the run is committed).

        Returns what each message recorded changed, in order, up to the first
        message refused (:class:`Forbidden` or :class:`BadRequest`, as
        :meth:`record_event` raises them), and that refusal (None if none
        was). The refused message stored nothing (its savepoint is rolled
        back); those after it were not looked at, for the caller to send
        again once it has answered the refusal (it may change what they
        mean: a refused ``call_started`` under a used id). At most
        :data:`RECORD_BATCH` messages are looked at.

        If the transaction keeps racing other writers (PostgreSQL replicas),
        the messages are stored one transaction each; if one of those fails
        (:class:`StoreError`) after others were committed, what was committed
        comes back (fewer than the messages, and no refusal) and the rest is
        the caller's to send again, which meets the error then: committed
        events are never hidden behind an error.
        """
        messages = messages[:RECORD_BATCH]
        for message in messages:
            if not p.is_durable(message):
                raise BadRequest(f"{message.TYPE} is not a durable event", code="unexpected_message")
        try:
            return self._record_batch(agent, messages)
        except StoreConflict:
            if len(messages) == 1:
                raise
        recorded: list[Recorded] = []
        for message in messages:  # one transaction each: none races for long
            try:
                one, refused = self._record_batch(agent, [message])
            except StoreError:
                if not recorded:
                    raise
                return recorded, None
            recorded += one
            if refused is not None:
                return recorded, refused
        return recorded, None

    def record_event(self, agent: str, message: DurableEvent) -> Recorded:
        """Store one durable agent message idempotently (keyed by ``event_id``).

        Raises :class:`Forbidden` (code ``not_your_call``) when the message is
        about a call another agent owns, :class:`BadRequest` (``unknown_call``)
        for a call never started, :class:`BadRequest` (``call_id_taken``) for a
        ``call_started`` of a call this agent already started (a new call under
        a used id, see :func:`_refuse_a_second_start`), :class:`BadRequest`
        (``call_ended``) for a new event other than a notice about a call that
        has ended (a lost call reopens first); nothing is stored then.

        The call's summary (``Recorded.call``, its open alerts and
        authorizations counted) is read after the commit, outside the write
        transaction: counting another table's rows of the call inside it would
        make every event's transaction read index pages that other calls'
        alerts are written to (``docs/console.md``, "Writers at once").
        """
        recorded, refused = self.record_events(agent, [message])
        if refused is not None:
            raise refused
        return recorded[0]

    def with_calls(self, messages: Sequence[DurableEvent], recorded: Sequence[Recorded]) -> list[Recorded]:
        """What events recorded (:meth:`store_events`, in the order of
        ``messages``), the new ones with their call's summary, and a call
        reopened with its own: read after the commit (see
        :meth:`record_event`), once per call, so it shows the call as it is
        now, after the whole run."""
        calls: dict[str, Call] = {}

        def now(call_id: str) -> Call:
            if call_id not in calls:
                calls[call_id] = self.call(call_id)
            return calls[call_id]

        out = []
        for message, one in zip(messages, recorded):
            call_id = getattr(message, "call_id", None)
            if one.new and call_id is not None:
                one = dataclasses.replace(one, call=now(call_id))
            if one.reopened is not None:
                one = dataclasses.replace(one, reopened=now(one.reopened.id))
            out.append(one)
        return out

    @retried
    def _record_batch(self, agent: str, messages: Sequence[DurableEvent]) -> tuple[list[Recorded], ConsoleError | None]:
        """:meth:`record_events`'s transaction (:func:`_record` for each
        message): a savepoint per message, so a refused one undoes only its
        own writes."""
        now = self._now()
        recorded: list[Recorded] = []
        with self._tx() as c:
            for message in messages:
                c.execute("SAVEPOINT event")
                try:
                    recorded.append(_record(c, agent, message, now))
                except (Forbidden, BadRequest) as exc:
                    c.execute("ROLLBACK TO SAVEPOINT event")
                    c.execute("RELEASE SAVEPOINT event")
                    return recorded, exc
                c.execute("RELEASE SAVEPOINT event")
        return recorded, None

    # ------------------------------------------------------------------ end of life

    @retried
    def lose_call(self, call_id: str, why: str) -> tuple[Call, Notice] | None:
        """Close a live call as lost (its agent stopped answering); ``why`` is
        for people. Returns the call and the supervisors' notice, or None if
        the call is not live (any more)."""
        now = self._now()
        with self._tx() as c:
            changed = c.execute(
                "UPDATE calls SET ended_at = ?, end_reason = ? WHERE id = ? AND ended_at IS NULL", (now, LOST, call_id)
            ).rowcount
            if not changed:
                return None
            call = rows.call(c, call_id)
            message = f"Monitoring lost on {call.partner}'s call (seat {call.seat or '-'}): {why}. Warnings for this call stop until the agent is back."
            write_audit(c, f"agent:{call.agent}", "call_lost", call_id, why, now)
            return call, _console_notice(c, call.agent, call_id, "monitoring_lost", message, now)

    @retried
    def calls_heard(self, agent: str, call_ids: Iterable[str]) -> tuple[list[str], list[Call]]:
        """An agent's heartbeat names ``call_ids``: which of them are its calls
        (live or lost), and those of them reopened (they had been lost)."""
        now = self._now()
        owned: list[str] = []
        reopened: list[Call] = []
        with self._tx() as c:
            for call_id in call_ids:
                row = c.execute("SELECT agent FROM calls WHERE id = ? AND (ended_at IS NULL OR end_reason = ?)", (call_id, LOST)).fetchone()
                if row is None or row["agent"] != agent:
                    continue
                owned.append(call_id)
                call = _reopen(c, call_id, agent, now)
                if call is not None:
                    reopened.append(call)
        return owned, reopened

    @retried
    def refusal_notice(self, agent: str, message: DurableEvent, error: ConsoleError) -> Notice | None:
        """The supervisors' notice that ``agent``'s events for a call are refused:
        one per agent and call (None when it was already written)."""
        call_id = getattr(message, "call_id", None)
        owner = self.call_owner(call_id) if call_id else None
        whose = f", which agent {owner} owns" if owner and owner != agent else ""
        text = (f"Agent {agent} sent {message.TYPE} for call {call_id}{whose}; the console refused it ({error.code}) and keeps"
                f" refusing that call's events from this agent: they are not stored or shown. Check both agents.")
        # Found by what it says, not by an event id: an agent chooses its events'
        # ids, and another agent must not be able to take this one first. Most
        # refused events find it told already: one indexed read, no write.
        if self._conn.execute(REFUSAL_TOLD, (agent, call_id)).fetchone():
            return None
        with self._tx() as c:
            told = c.execute(REFUSAL_TOLD, (agent, call_id)).fetchone()
            return None if told else _console_notice(c, agent, call_id, "events_refused", text, self._now())

    # ------------------------------------------------------------------ reading calls

    def call(self, call_id: str) -> Call | None:
        return rows.call(self._conn, call_id)

    def call_owner(self, call_id: str) -> str | None:
        """The agent that started the call, or None."""
        row = self._conn.execute("SELECT agent FROM calls WHERE id = ?", (call_id,)).fetchone()
        return row[0] if row else None

    def live_calls(self) -> list[Call]:
        """Calls in progress, and calls lost within :data:`LOST_SHOWN_HOURS` (marked by their ``end_reason``)."""
        shown_since = iso(self._clock() - timedelta(hours=LOST_SHOWN_HOURS))
        return rows.many(self._conn, rows.call, "SELECT id FROM calls WHERE ended_at IS NULL OR (end_reason = ? AND ended_at >= ?) ORDER BY rowid",
                         (LOST, shown_since))

    def open_calls(self) -> list[Call]:
        """Calls in progress only (not ended, not lost)."""
        return rows.many(self._conn, rows.call, "SELECT id FROM calls WHERE ended_at IS NULL ORDER BY rowid")

    def recent_calls(self, limit: int = 100) -> list[Call]:
        return rows.many(self._conn, rows.call, "SELECT id FROM calls ORDER BY rowid DESC LIMIT ?", (limit,))

    def current_call_of(self, partner: str) -> Call | None:
        """The partner's latest call: the live one, else the one that ended last."""
        row = self._conn.execute(
            "SELECT id FROM calls WHERE partner = ? ORDER BY (ended_at IS NULL) DESC, rowid DESC LIMIT 1", (partner,)
        ).fetchone()
        return rows.call(self._conn, row[0]) if row else None

    def level_changes(self, call_id: str) -> list[LevelChange]:
        return rows.many(self._conn, rows.level_change, "SELECT id FROM level_changes WHERE call_id = ? ORDER BY id", (call_id,))

    def call_detail(self, call_id: str) -> CallHistory | None:
        """Everything stored about one call: utterances, findings, level changes,
        alerts, authorizations, help requests, its check-in, its notices."""
        c = self._conn
        call = rows.call(c, call_id)
        if call is None:
            return None
        of_call = (call_id,)
        return CallHistory(
            call=call,
            utterances=tuple(rows.many(c, rows.utterance, "SELECT id FROM utterances WHERE call_id = ? ORDER BY start, id", of_call)),
            findings=tuple(rows.many(c, rows.finding, "SELECT id FROM findings WHERE call_id = ? ORDER BY start, id", of_call)),
            levels=tuple(self.level_changes(call_id)),
            alerts=tuple(rows.many(c, rows.alert, "SELECT id FROM alerts WHERE call_id = ? ORDER BY id", of_call)),
            authorizations=tuple(rows.many(c, rows.authorization, rows.AUTHORIZATIONS_OF_CALL, of_call)),
            help=tuple(rows.many(c, rows.help_request, "SELECT id FROM help_requests WHERE call_id = ? ORDER BY id", of_call)),
            checkins=tuple(rows.many(c, rows.checkin, "SELECT id FROM checkins WHERE call_id = ?", of_call)),
            notices=tuple(rows.many(c, rows.notice, "SELECT id FROM notices WHERE call_id = ? ORDER BY id DESC LIMIT ?",
                                    (call_id, CALL_NOTICES)))[::-1],
        )


def _reopen(c: Connection, call_id: str, agent: str, now: str) -> Call | None:
    """Reopen ``agent``'s lost call (its agent is back with it); the call, or None if it was not lost."""
    changed = c.execute(
        "UPDATE calls SET ended_at = NULL, end_reason = NULL WHERE id = ? AND agent = ? AND end_reason = ?", (call_id, agent, LOST)
    ).rowcount
    if not changed:
        return None
    write_audit(c, f"agent:{agent}", "call_reopened", call_id, "the agent is back with this call", now)
    return rows.call(c, call_id)


def _refuse_a_second_start(call_id: str, row: Any) -> None:
    """A ``call_started`` for a call its agent already started, under another
    event id (a resend has the same one and never gets here), is a new call
    under a used id: an agent restarted since, and a PBX sent the id again.
    Refused with ``call_id_taken`` whatever the stored call's state: the
    agent renames the new call and sends it again, and the stored call (live,
    lost or ended) gets none of its events. ``row``: the call as read before."""
    state = "is live" if row["ended_at"] is None else ("was lost" if row["end_reason"] == LOST else f"ended at {row['ended_at']}")
    raise BadRequest(f"call {call_id!r} (started {row['started_at']}) {state}: a new call cannot start under its id", code=p.CALL_ID_TAKEN)


def _refuse_after_the_end(call_id: str, row: Any, message: DurableEvent) -> None:
    """A call that ended (not lost) is evidence: no new words, findings, levels
    or start/end may change it after the fact (an agent restarted with the id
    of a finished call, a PBX reusing one). Notices about it, and what became
    of its end-call webhook, are still taken. ``row``: the call as read before
    :func:`_reopen` (a lost call is reopened by then, so only an end other
    than lost closes it)."""
    if isinstance(message, (p.AgentNotice, p.EndCallWebhookOutcome)):
        return
    if row["ended_at"] is not None and row["end_reason"] != LOST:
        raise BadRequest(f"call {call_id!r} ended at {row['ended_at']}: its record is closed", code="call_ended")


def _console_notice(c: Connection, agent: str, call_id: str | None, code: str, message: str, now: str) -> Notice:
    """A notice the console writes itself (about ``agent``), under a random
    event id no agent can have used or take first (agents choose theirs)."""
    return _notice(c, f"console:{code}:{uuid.uuid4().hex}", agent, call_id, code, message, 0, now)


def _notice(c: Connection, event_id: str, agent: str, call_id: str | None, code: str, message: str, dropped: int, now: str) -> Notice:
    """Store one notice (an agent's, an end-call webhook's outcome, or the console's own)."""
    return rows.notice_of(c.execute(
        f"INSERT INTO notices (event_id, agent, call_id, code, message, dropped, received_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING {rows.NOTICE}",
        (event_id, agent, call_id, code, message, dropped, now),
    ).fetchone())


def _bump_seq(c: Connection, agent: str, seq: int) -> None:
    c.execute("UPDATE agents SET last_seq = ? WHERE name = ? AND last_seq < ?", (seq, agent, seq))


def _new_call(c: Connection, agent: str, m: p.CallStarted) -> bool:
    """Store a started call; False when its id was stored before (by this agent or another: refused then)."""
    return c.execute(
        "INSERT INTO calls (id, agent, partner, seat, source, sample_rate, started_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (id) DO NOTHING RETURNING id",
        (m.call_id, agent, m.partner, m.seat, m.source, m.sample_rate, m.started_at),
    ).fetchone() is not None


def _apply(c: Connection, agent: str, m: DurableEvent, now: str) -> Recorded:
    """Write a new event's rows (a started call is stored already, by :func:`_new_call`).
    ``Recorded.call`` is left for the caller to read after the commit."""
    if isinstance(m, p.CallStarted):
        return Recorded(new=True)
    if isinstance(m, p.UtteranceFinal):
        utterance = rows.utterance_of(c.execute(
            f'INSERT INTO utterances (event_id, call_id, speaker, start, "end", text, words) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING {rows.UTTERANCE}',
            (m.event_id, m.call_id, m.speaker, m.start, m.end, m.text, json.dumps(list(m.words), ensure_ascii=False)),
        ).fetchone())
        return Recorded(new=True, record=utterance)
    if isinstance(m, p.FindingRaised):
        first, last = _span(m.span, len(m.text))
        finding = rows.finding_of(c.execute(
            'INSERT INTO findings (event_id, call_id, category, subtype, severity, score, rule, evidence, start, "end", text, span_first, span_last, why)'
            f" VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING {rows.FINDING}",
            (m.event_id, m.call_id, m.category, m.subtype, m.severity, m.score, m.rule, m.evidence, m.start, m.end, m.text, first, last,
             m.why),
        ).fetchone())
        checkin = None
        if asks_check_in(m.severity):
            checkin = queue_checkin(c, m.call_id, f"{category_words(m.category, capitalized=True)} during the call ({SEVERITY_WORDS.get(m.severity, m.severity)})", now)
        return Recorded(new=True, record=finding, checkin=checkin)
    if isinstance(m, p.LevelChanged):
        change = rows.level_change_of(c.execute(
            "INSERT INTO level_changes (event_id, call_id, level, previous, reason, suggestion, category, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            f" RETURNING {rows.LEVEL_CHANGE}",
            (m.event_id, m.call_id, m.level, m.previous, m.reason, m.suggestion, m.category, m.at),
        ).fetchone())
        peak = c.execute("SELECT peak_level FROM calls WHERE id = ?", (m.call_id,)).fetchone()[0]
        new_peak = m.level if level_rank(m.level) > level_rank(peak) else peak
        c.execute("UPDATE calls SET level = ?, peak_level = ? WHERE id = ?", (m.level, new_peak, m.call_id))
        alert = checkin = None
        if raises_alert(m.level, m.previous):
            alert = raise_alert(c, m.call_id, change.id, m.level, m.reason, m.at, now)
            checkin = queue_checkin(c, m.call_id, f"call reached {m.level}", now)
        return Recorded(new=True, record=change, alert=alert, checkin=checkin)
    if isinstance(m, p.CallEnded):
        c.execute(
            "UPDATE calls SET ended_at = coalesce(ended_at, ?), length = ?, end_reason = ? WHERE id = ?",
            (now, m.at, m.reason, m.call_id),
        )
        return Recorded(new=True)
    if isinstance(m, p.AgentNotice):
        if m.call_id is not None and not c.execute("SELECT 1 FROM calls WHERE id = ?", (m.call_id,)).fetchone():
            raise BadRequest(f"call {m.call_id!r} was never started", code="unknown_call")
        return Recorded(new=True, record=_notice(c, m.event_id, agent, m.call_id, m.code, m.message, m.dropped, now))
    if isinstance(m, p.EndCallWebhookOutcome):
        if m.outcome not in p.WEBHOOK_OUTCOMES:
            raise BadRequest(f"end_call_webhook: unknown outcome {m.outcome[:40]!r}", code="bad_message")
        notice = _notice(c, m.event_id, agent, m.call_id, f"end_call_webhook_{m.outcome}", webhook_text(m), 0, now)
        detail = {k: getattr(m, k) for k in ("authorization_id", "webhook_id", "outcome", "attempt", "max_attempts", "status", "error", "retry_in")}
        write_audit(c, f"agent:{agent}", "end_call_webhook", m.call_id, json.dumps(detail, ensure_ascii=False), now)
        return Recorded(new=True, record=notice)
    raise BadRequest(f"{m.TYPE} is not stored", code="unexpected_message")  # pragma: no cover


def webhook_text(m: p.EndCallWebhookOutcome) -> str:
    """What an end-call webhook's outcome means for the supervisor, in words."""
    tries = f"attempt {m.attempt} of {m.max_attempts}"
    if m.outcome == "delivered":
        return f"End-call request delivered to the phone system (HTTP {m.status}, {tries})."
    if m.outcome == "retrying":
        return f"End-call request not delivered yet ({tries}: {m.error}); trying again in {round(m.retry_in, 1):g} s."
    if m.outcome == "failed":
        return f"End-call request failed ({m.error}): the phone system was not asked to end the call; the partner ends it."
    # not configured: the setting that is missing (m.error) is for the audit log, not the floor
    return "callshield cannot end this call itself (no end-call link to the phone system is set up for it): the partner ends the call."


def _span(span: tuple | None, length: int) -> tuple[int | None, int | None]:
    """A valid ``[first, last)`` inside the text, or ``(None, None)``."""
    if span is None or len(span) != 2:
        return None, None
    first, last = span
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (first, last)):
        return None, None
    if 0 <= first < last <= length:
        return first, last
    return None, None
