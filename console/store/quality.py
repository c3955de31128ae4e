"""QA: the calls' recordings, what retention needs, flagged calls and QA's marks.

A recording's row is stored once, with the hash the agent took when it
finalized the file; it is never replaced (later checks compare against it),
and keeps its row when retention removes the file (``removed_at``).
"""

from __future__ import annotations

from console.errors import BadRequest
from console.store import rows
from console.store.audit import write_audit
from console.store.records import FlagCounts, FlaggedCall, FlaggedCalls, MarkedFinding, QaMark, Recording
from console.store.schema import Room, retried
from kernel.clock import parse_iso
from kernel.retention import CallRecord

VERDICTS = ("confirmed", "false_alarm")


class Quality(Room):
    """Recordings, retention facts, flagged calls and QA marks."""

    @retried
    def add_recording(self, call_id: str, *, path: str, sha256: str, bytes: int, duration: float, sample_rate: int,
                      finalized_at: str, recovered: bool = False) -> Recording | None:
        """Store a finished recording once (the first-stored hash is never replaced); returns its row."""
        with self._tx() as c:
            stored = c.execute(
                "INSERT INTO recordings (call_id, path, sha256, bytes, duration, sample_rate, finalized_at, recovered, stored_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (call_id) DO NOTHING RETURNING call_id",
                (call_id, path, sha256, bytes, duration, sample_rate, finalized_at, int(recovered), self._now()),
            ).fetchone()
            if stored:
                write_audit(c, "console", "recording_stored", call_id, f"{path}: {bytes} bytes, {duration:.1f} s, sha256 {sha256}", self._now())
        return self.recording(call_id)

    def recording(self, call_id: str) -> Recording | None:
        """The call's recording (``removed_at`` set once retention removed the file), or None."""
        return rows.recording(self._conn, call_id)

    @retried
    def recording_removed(self, call_id: str) -> None:
        with self._tx() as c:
            c.execute("UPDATE recordings SET removed_at = ? WHERE call_id = ? AND removed_at IS NULL", (self._now(), call_id))

    @retried
    def remove_transcript(self, call_id: str) -> int:
        """Delete a call's utterances (retention); returns how many."""
        with self._tx() as c:
            return c.execute("DELETE FROM utterances WHERE call_id = ?", (call_id,)).rowcount

    def retention_calls(self, call_id: str | None = None) -> list[CallRecord]:
        """What retention needs per call (every call, or only ``call_id``), in the
        order they were stored: times, whether it is flagged (any finding), its
        recording's path (None if none or removed), whether it has a transcript."""
        sql = (
            "SELECT c.id, c.started_at, c.ended_at,"
            " EXISTS (SELECT 1 FROM findings f WHERE f.call_id = c.id) AS flagged,"
            " (SELECT r.path FROM recordings r WHERE r.call_id = c.id AND r.removed_at IS NULL) AS recording,"
            " EXISTS (SELECT 1 FROM utterances u WHERE u.call_id = c.id) AS has_transcript"
            " FROM calls c"
        )
        args: tuple = ()
        if call_id is not None:
            sql += " WHERE c.id = ?"
            args = (call_id,)
        return [
            CallRecord(
                call_id=r["id"],
                started_at=parse_iso(r["started_at"]),
                ended_at=parse_iso(r["ended_at"]) if r["ended_at"] else None,
                flagged=bool(r["flagged"]),
                recording=r["recording"],
                has_transcript=bool(r["has_transcript"]),
            )
            for r in self._conn.execute(sql + " ORDER BY c.rowid", args)
        ]

    def qa_calls(self, *, since: str | None = None, until: str | None = None, category: str = "", level: str = "",
                 partner: str = "", limit: int = 200) -> FlaggedCalls:
        """Flagged calls (at least one finding), newest first, filtered by start
        (``since`` <= started_at < ``until``, ISO prefixes), a finding category,
        the call's peak level and partner; with counts and the filter choices."""
        filters = (
            (since, "c.started_at >= ?"),
            (until, "c.started_at < ?"),
            (category, "EXISTS (SELECT 1 FROM findings f WHERE f.call_id = c.id AND f.category = ?)"),
            (level, "c.peak_level = ?"),
            (partner, "c.partner = ?"),
        )
        where = ["EXISTS (SELECT 1 FROM findings f WHERE f.call_id = c.id)"] + [clause for value, clause in filters if value]
        args = [value for value, _ in filters if value]
        c = self._conn
        found = c.execute(f"SELECT c.id, c.peak_level FROM calls c WHERE {' AND '.join(where)} ORDER BY c.started_at DESC, c.rowid DESC", args).fetchall()
        calls = []
        by_category: dict[str, int] = {}
        by_level: dict[str, int] = {}
        findings_total = 0
        for n, (call_id, peak) in enumerate(found):
            cats = [r[0] for r in c.execute("SELECT category FROM findings WHERE call_id = ? ORDER BY start, id", (call_id,))]
            findings_total += len(cats)
            for cat in cats:
                by_category[cat] = by_category.get(cat, 0) + 1
            by_level[peak] = by_level.get(peak, 0) + 1
            if n < limit:
                marked = c.execute("SELECT count(*) FROM qa_marks WHERE call_id = ?", (call_id,)).fetchone()[0]
                calls.append(FlaggedCall(**vars(rows.call(c, call_id)), findings=len(cats), categories=tuple(sorted(set(cats))), marked=marked))
        return FlaggedCalls(
            calls=tuple(calls),
            counts=FlagCounts(calls=len(found), findings=findings_total, by_category=by_category, by_level=by_level),
            partners=tuple(r[0] for r in c.execute("SELECT DISTINCT c.partner FROM calls c JOIN findings f ON f.call_id = c.id ORDER BY 1")),
            categories=tuple(r[0] for r in c.execute("SELECT DISTINCT category FROM findings ORDER BY 1")),
        )

    @retried
    def qa_mark(self, finding_id: int, verdict: str, note: str, by: str) -> QaMark:
        """QA's verdict on a finding (the latest replaces the previous; every one is audited)."""
        if verdict not in VERDICTS:
            raise BadRequest(f"verdict must be 'confirmed' or 'false_alarm', not {verdict!r}", code="bad_verdict")
        now = self._now()
        with self._tx() as c:
            row = c.execute("SELECT call_id FROM findings WHERE id = ?", (finding_id,)).fetchone()
            if row is None:
                raise BadRequest(f"no finding {finding_id}", code="no_finding")
            c.execute(
                "INSERT INTO qa_marks (finding_id, call_id, verdict, note, by_user, at) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(finding_id) DO UPDATE SET verdict = excluded.verdict, note = excluded.note, by_user = excluded.by_user, at = excluded.at",
                (finding_id, row["call_id"], verdict, note, by, now),
            )
            write_audit(c, by, "qa_mark", row["call_id"], f"finding {finding_id}: {verdict}{': ' + note if note else ''}", now)
        return rows.qa_mark(self._conn, finding_id)

    def qa_marks(self, call_id: str) -> list[QaMark]:
        return rows.many(self._conn, rows.qa_mark, "SELECT finding_id FROM qa_marks WHERE call_id = ? ORDER BY id", (call_id,))

    def qa_marks_for_training(self) -> list[MarkedFinding]:
        """Every marked finding with what the detector saw (for tuning lexicons and rules)."""
        found = self._conn.execute(
            "SELECT m.verdict, m.note, m.by_user AS by, m.at, f.id AS finding_id, f.call_id, f.category, f.subtype, f.severity,"
            ' f.score, f.rule, f.evidence, f.text, f.span_first, f.span_last, f.start, f."end"'
            " FROM qa_marks m JOIN findings f ON f.id = m.finding_id ORDER BY m.id"
        ).fetchall()
        out = []
        for r in found:
            d = dict(r)
            span = rows.span(d.pop("span_first"), d.pop("span_last"))
            out.append(MarkedFinding(**d, span=span))
        return out
