"""The console's SQLite store, on a real file."""

from __future__ import annotations

import sqlite3

import pytest

from kernel import protocol as p
from console.errors import BadRequest, Forbidden, StoreError
from console.store import MIGRATIONS, FlagCounts, Store
from console_kit import FakeClock


def _start(seq: int, call_id: str = "c1", partner: str = "ann") -> p.CallStarted:
    return p.CallStarted(seq=seq, event_id=f"e{seq}-{call_id}", call_id=call_id, partner=partner, seat="4", source="wav", started_at="2025-03-01T09:00:00Z", sample_rate=8000)


def _level(seq: int, level: str, previous: str, call_id: str = "c1") -> p.LevelChanged:
    return p.LevelChanged(seq=seq, event_id=f"e{seq}-{call_id}", call_id=call_id, level=level, previous=previous, reason="why", at=float(seq), suggestion="say this")


def _store(tmp_path, clock=None) -> Store:
    store = Store.open(tmp_path / "data" / "console.db", clock=clock or FakeClock())
    store.add_user("agent-1", "agent", "token-1")
    store.add_user("agent-2", "agent", "token-2")
    return store


def test_migrates_an_empty_file_and_uses_wal(tmp_path):
    store = _store(tmp_path)
    assert store.schema_version() == len(MIGRATIONS) >= 1
    assert store.pragma("journal_mode") == "wal"
    assert store.pragma("synchronous") == 2  # FULL: an acknowledged event survives a power cut
    tables = {r[0] for r in sqlite3.connect(store.path).execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"users", "sessions", "agents", "calls", "utterances", "findings", "alerts", "authorizations", "audit_log", "checkins", "help_requests", "schema_version"} <= tables
    store.close()
    again = Store.open(tmp_path / "data" / "console.db")
    assert again.schema_version() == len(MIGRATIONS)
    again.close()


def test_refuses_a_store_from_a_newer_callshield(tmp_path):
    _store(tmp_path).close()
    with sqlite3.connect(tmp_path / "data" / "console.db") as conn:
        conn.execute("UPDATE schema_version SET version = 999")
    with pytest.raises(StoreError, match="newer"):
        Store.open(tmp_path / "data" / "console.db")


def test_not_a_database_is_a_one_line_error(tmp_path):
    bad = tmp_path / "console.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a usable store"):
        Store.open(bad)


def test_event_writes_are_idempotent_and_survive_reopen(tmp_path):
    store = _store(tmp_path)
    said = p.UtteranceFinal(seq=2, event_id="u-1", call_id="c1", speaker="customer", start=1.0, end=2.0, text="hello", words=({"word": "hello", "start": 1.0, "end": 2.0, "conf": 0.9},))
    assert store.record_event("agent-1", _start(1)).new
    first = store.record_event("agent-1", said)
    assert first.new and first.record.text == "hello" and first.record.words[0]["word"] == "hello"
    assert not store.record_event("agent-1", said).new
    assert store.last_seq("agent-1") == 2
    store.close()

    store = Store.open(tmp_path / "data" / "console.db")
    assert not store.record_event("agent-1", said).new
    assert store.counts()["utterances"] == 1
    assert store.check_agent("agent-1", "token-1") == 2
    detail = store.call_detail("c1")
    assert [u.text for u in detail.utterances] == ["hello"]
    store.close()


def test_alerts_and_checkins_follow_the_ladder(tmp_path):
    store = _store(tmp_path)
    store.record_event("agent-1", _start(1))
    caution = store.record_event("agent-1", _level(2, "caution", "none"))
    assert caution.alert is None and caution.checkin is None and caution.call.level == "caution"
    alert = store.record_event("agent-1", _level(3, "alert", "caution"))
    assert alert.alert.level == "alert" and alert.checkin.partner == "ann"
    higher = store.record_event("agent-1", _level(4, "end_call_recommended", "alert"))
    assert higher.alert.level == "end_call_recommended" and higher.checkin is None  # one check-in per call
    calmer = store.record_event("agent-1", _level(5, "caution", "end_call_recommended"))
    assert calmer.alert is None and calmer.call.level == "caution" and calmer.call.peak_level == "end_call_recommended"
    assert len(store.open_alerts()) == 2 and len(store.open_checkins()) == 1

    acked, changed = store.acknowledge_alert(alert.alert.id, "sup")
    assert changed and acked.acknowledged_by == "sup"
    assert store.acknowledge_alert(alert.alert.id, "other")[1] is False
    done = store.checkin_done(alert.checkin.id, "sup", "talked, fine")
    assert done.done_by == "sup" and store.open_checkins() == []


def test_a_critical_finding_queues_a_checkin(tmp_path):
    store = _store(tmp_path)
    store.record_event("agent-1", _start(1))
    finding = p.FindingRaised(seq=2, event_id="f", call_id="c1", category="threat", severity="critical", score=1.0, rule="r", evidence="kill", start=0.0, end=1.0, text="i will kill you", span=(7, 11))
    rec = store.record_event("agent-1", finding)
    assert rec.checkin.reason == "critical threat finding"
    assert rec.record.span == (7, 11)
    bad_span = p.FindingRaised(seq=3, event_id="g", call_id="c1", category="insult", severity="low", score=0.5, rule="r", evidence="x", start=0.0, end=1.0, text="short", span=(2, 99))
    assert store.record_event("agent-1", bad_span).record.span is None


def test_calls_belong_to_the_agent_that_started_them(tmp_path):
    store = _store(tmp_path)
    store.record_event("agent-1", _start(1))
    before = store.counts()
    with pytest.raises(Forbidden) as err:
        store.record_event("agent-2", _level(5, "none", "alert"))
    assert err.value.code == "not_your_call"
    with pytest.raises(Forbidden):
        store.record_event("agent-2", _start(2))  # same call id, other agent
    with pytest.raises(BadRequest) as err:
        store.record_event("agent-1", _level(2, "alert", "none", call_id="never-started"))
    assert err.value.code == "unknown_call"
    with pytest.raises(Forbidden) as err:  # replaying another agent's event id
        store.record_event("agent-2", _start(1))
    assert err.value.code == "not_your_event"
    assert store.counts() == before and store.last_seq("agent-2") == 0


def test_a_refused_agent_is_told_once_per_call_by_an_indexed_read(tmp_path):
    store = _store(tmp_path)
    store.record_event("agent-1", _start(1))
    event = _level(5, "none", "alert")
    error = Forbidden("call 'c1' is not this agent's", code="not_your_call")
    first = store.refusal_notice("agent-2", event, error)
    assert first is not None and first.code == "events_refused" and "agent-1" in first.message
    writes = store._conn.total_changes
    assert [store.refusal_notice("agent-2", event, error) for _ in range(50)] == [None] * 50
    assert store._conn.total_changes == writes  # told already: nothing written again
    assert store.refusal_notice("agent-2", _level(6, "none", "alert", call_id="c2"), error) is not None  # another call: told
    from console.store.calls import REFUSAL_TOLD
    plan = " ".join(row[3] for row in store._conn.execute(f"EXPLAIN QUERY PLAN {REFUSAL_TOLD}", ("agent-2", "c1")))
    assert "USING" in plan and "INDEX notices_told" in plan, plan  # a refusal flood is not a table scan per event


def test_an_ended_call_takes_no_new_evidence_but_resends_and_notices(tmp_path):
    store = _store(tmp_path)
    store.record_event("agent-1", _start(1))
    store.record_event("agent-1", _level(2, "alert", "none"))
    store.record_event("agent-1", p.CallEnded(seq=3, event_id="e3-c1", call_id="c1", at=12.5, reason="hangup"))
    before = (store.counts(), store.call("c1"))
    late = [
        _level(4, "end_call_recommended", "alert"),
        p.UtteranceFinal(seq=5, event_id="e5-c1", call_id="c1", speaker="customer", start=13.0, end=14.0, text="more words", words=()),
        _start(6),  # the id of a finished call started again (an agent restarted, a PBX reusing ids)
        p.CallEnded(seq=7, event_id="e7-c1", call_id="c1", at=30.0, reason="hangup"),
    ]
    for message in late:
        with pytest.raises(BadRequest) as err:
            store.record_event("agent-1", message)
        # a new start is a new call under a used id (the agent renames it); the rest is new evidence for an ended call
        assert err.value.code == ("call_id_taken" if isinstance(message, p.CallStarted) else "call_ended")
    assert (store.counts(), store.call("c1")) == before
    assert store.record_event("agent-1", _level(2, "alert", "none")).new is False  # a resend of what was stored
    notice = p.AgentNotice(seq=8, event_id="n8", call_id="c1", code="recording_saved", message="saved", dropped=0)
    assert store.record_event("agent-1", notice).new is True


def test_a_second_start_of_a_call_by_its_agent_is_refused_as_taken_live_lost_or_ended_and_a_resend_is_not(tmp_path):
    clock = FakeClock()
    store = _store(tmp_path, clock)
    for call_id in ("live", "lost", "ended"):
        store.record_event("agent-1", _start(1, call_id))
    store.lose_call("lost", "its agent's link closed")
    store.record_event("agent-1", p.CallEnded(seq=2, event_id="e2-ended", call_id="ended", at=5.0, reason="hangup"))
    before = (store.counts(), [store.call(c) for c in ("live", "lost", "ended")], store.audit_entries(action="call_reopened"))
    for call_id, state in (("live", "is live"), ("lost", "was lost"), ("ended", "ended at 2025-03-01T09:00:00.000Z")):
        with pytest.raises(BadRequest) as err:
            store.record_event("agent-1", _start(9, call_id))  # another event id: a new call under the id
        assert err.value.code == "call_id_taken"
        assert err.value.message == f"call {call_id!r} (started 2025-03-01T09:00:00Z) {state}: a new call cannot start under its id"
    assert (store.counts(), [store.call(c) for c in ("live", "lost", "ended")], store.audit_entries(action="call_reopened")) == before
    assert store.record_event("agent-1", _start(1, "live")).new is False  # the same start resent: a duplicate, as ever
    with pytest.raises(Forbidden) as err:
        store.record_event("agent-2", _start(9, "ended"))  # another agent: not its call, as before
    assert err.value.code == "not_your_call"


def test_authorization_needs_a_reason_a_live_call_and_is_audited(tmp_path):
    clock = FakeClock()
    store = _store(tmp_path, clock)
    store.record_event("agent-1", _start(1))
    with pytest.raises(BadRequest) as err:
        store.authorize_end("c1", "sup", "   ")
    assert err.value.code == "reason_required"
    auth, agent = store.authorize_end("c1", "sup", "threats")
    assert agent == "agent-1" and auth.by == "sup" and auth.authorized_at == "2025-03-01T09:00:00.000Z"
    with pytest.raises(BadRequest, match="already"):
        store.authorize_end("c1", "sup2", "again")
    assert store.pending_authorizations("agent-1") == [auth]
    store.record_event("agent-1", p.CallEnded(seq=2, event_id="end", call_id="c1", at=30.0, reason="authorized_end"))
    assert store.pending_authorizations("agent-1") == []
    with pytest.raises(BadRequest, match="ended"):
        store.authorize_end("c1", "sup", "late")
    [entry] = store.audit_entries(action="authorize_end")
    assert (entry.who, entry.call_id, entry.at) == ("sup", "c1", "2025-03-01T09:00:00.000Z")


def test_users_agents_and_ensure_user(tmp_path):
    store = _store(tmp_path)
    generated = store.add_user("sup", "supervisor")
    assert len(generated) >= 12 and store.check_password("sup", generated) == "supervisor"
    with pytest.raises(BadRequest, match="exists"):
        store.add_user("sup", "partner", "another password")
    with pytest.raises(BadRequest, match="role"):
        store.add_user("x", "boss", "long enough password")
    with pytest.raises(BadRequest, match="name"):
        store.add_user("<script>", "partner", "long enough password")
    with pytest.raises(BadRequest, match="short"):
        store.add_user("y", "partner", "short")
    store.ensure_user("demo", "partner", "demo password")
    store.ensure_user("demo", "supervisor", "new demo password")
    assert store.check_password("demo", "new demo password") == "supervisor"
    assert store.check_password("demo", "demo password") is None
    store.ensure_user("local", "agent", "agent-token")
    assert store.check_agent("local", "agent-token") == 0 and store.check_agent("local", "wrong") is None
    store.remove_user("demo")
    assert {u.name: u.role for u in store.list_users()} == {"agent-1": "agent", "agent-2": "agent", "local": "agent", "sup": "supervisor"}


def _finding(seq: int, call_id: str, category: str) -> p.FindingRaised:
    return p.FindingRaised(seq=seq, event_id=f"e{seq}-{call_id}", call_id=call_id, category=category, severity="high", score=0.9,
                           rule=f"{category}.test", evidence="words", start=1.0, end=2.0)


def test_qa_calls_filters_and_counts_every_match_beyond_the_limit(tmp_path):
    store = _store(tmp_path)
    for event in (_start(1, "c1", "ann"), _finding(2, "c1", "threat"), _level(3, "alert", "none", "c1"),
                  _start(4, "c2", "bob"), _finding(5, "c2", "insult"), _finding(6, "c2", "insult"),
                  _start(7, "c3", "bob")):  # c3 has no finding: never listed
        store.record_event("agent-1", event)
    found = store.qa_calls(limit=1)
    assert [c.id for c in found.calls] == ["c2"]  # same start: the later call first
    assert found.calls[0].findings == 2 and found.calls[0].categories == ("insult",)
    assert found.counts == FlagCounts(calls=2, findings=3, by_category={"threat": 1, "insult": 2}, by_level={"alert": 1, "none": 1})
    assert found.partners == ("ann", "bob") and found.categories == ("insult", "threat")
    assert [c.id for c in store.qa_calls(partner="bob", category="insult").calls] == ["c2"]
    assert [c.id for c in store.qa_calls(level="alert", since="2025-03-01T00", until="2025-03-02").calls] == ["c1"]
    assert store.qa_calls(category="threat", partner="bob").calls == ()
    store.close()


def test_a_finding_keeps_whom_it_is_aimed_at_and_old_stores_gain_the_column(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)  # a store as issue 6 left it: schema 2, one finding, no "why"
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version VALUES (2)")
    for script in MIGRATIONS[:2]:
        conn.executescript(script)
    conn.execute("INSERT INTO calls (id, agent, partner, seat, source, sample_rate, started_at) VALUES ('c0', 'agent-1', 'ann', '4', 'wav', 8000, '2025-03-01T09:00:00Z')")
    conn.execute("INSERT INTO findings (event_id, call_id, category, severity, score, rule, evidence, start, end, text) VALUES ('old', 'c0', 'insult', 'medium', 0.9, 'r', 'idiot', 0, 1, 'you idiot')")
    conn.commit()
    conn.close()
    store = Store.open(path, clock=FakeClock())
    assert store.schema_version() == len(MIGRATIONS) >= 3
    assert [f.why for f in store.call_detail("c0").findings] == [""]
    store.add_user("agent-1", "agent", "token-1")
    store.record_event("agent-1", _start(1))
    finding = p.FindingRaised(seq=2, event_id="w", call_id="c1", category="insult", severity="medium", score=0.9, rule="insult.you_are",
                              evidence="you are a clown", start=0.0, end=1.0, text="you are a clown", why="aimed at the partner: 'you are'")
    assert store.record_event("agent-1", finding).record.why == "aimed at the partner: 'you are'"
    store.close()
