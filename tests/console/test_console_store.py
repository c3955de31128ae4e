"""The console's store, on a real SQLite file and a real PostgreSQL database:
every test runs against both (the ``store_where`` fixture, ``tests/conftest.py``)."""

from __future__ import annotations

import dataclasses
import re
import threading

import pytest

from kernel import protocol as p
from console.errors import BadRequest, Forbidden, StoreError
from console.store import MIGRATIONS, FlagCounts, Store, StoreUnavailable
from console.store.schema import migrate, open_connection
from console_kit import FakeClock
from postgres_kit import _free_port


def _start(seq: int, call_id: str = "c1", partner: str = "ann") -> p.CallStarted:
    return p.CallStarted(seq=seq, event_id=f"e{seq}-{call_id}", call_id=call_id, partner=partner, seat="4", source="wav", started_at="2025-03-01T09:00:00Z", sample_rate=8000)


def _level(seq: int, level: str, previous: str, call_id: str = "c1") -> p.LevelChanged:
    return p.LevelChanged(seq=seq, event_id=f"e{seq}-{call_id}", call_id=call_id, level=level, previous=previous, reason="why", at=float(seq), suggestion="say this")


def _store(where, clock=None) -> Store:
    store = Store.open(where, clock=clock or FakeClock())
    store.add_user("agent-1", "agent", "token-1")
    store.add_user("agent-2", "agent", "token-2")
    return store


_TABLES = {
    "sqlite": "SELECT name FROM sqlite_master WHERE type = 'table'",
    "postgresql": "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()",
}


def test_migrates_an_empty_store_and_keeps_acknowledged_events_durable(store_where):
    store = _store(store_where)
    assert store.schema_version() == len(MIGRATIONS) >= 1
    if store.dialect == "sqlite":
        assert store.setting("journal_mode") == "wal"
        assert store.setting("synchronous") == 2  # FULL: an acknowledged event survives a power cut
    else:  # the test cluster runs with synchronous_commit off: the store turns it on for itself
        assert store.setting("synchronous_commit") == "on"
    tables = {r[0] for r in store._conn.execute(_TABLES[store.dialect])}
    assert {"users", "sessions", "agents", "calls", "utterances", "findings", "alerts", "authorizations", "audit_log", "checkins", "help_requests", "schema_version"} <= tables
    store.close()
    again = Store.open(store_where)
    assert again.schema_version() == len(MIGRATIONS)
    again.close()


def test_refuses_a_store_from_a_newer_callshield(store_where):
    store = _store(store_where)
    store._conn.execute("UPDATE schema_version SET version = 999")
    store.close()
    with pytest.raises(StoreError, match="newer") as err:
        Store.open(store_where)
    assert err.value.code == "store_newer"


def test_not_a_database_is_a_one_line_error(tmp_path):
    bad = tmp_path / "console.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a usable store"):
        Store.open(bad)


def test_a_postgresql_database_with_other_tables_is_not_a_store(postgresql_server):
    url = postgresql_server.new_database()
    with open_connection(url) as conn:
        conn.execute("CREATE TABLE users (id INTEGER)")  # someone else's application
    with pytest.raises(StoreError, match="not a usable store.*users") as err:
        Store.open(url)
    assert "\n" not in str(err.value)


def test_an_unreachable_postgresql_is_a_one_line_error_without_the_password():
    url = f"postgresql://callshield:s3cret@127.0.0.1:{_free_port()}/callshield?connect_timeout=3"
    with pytest.raises(StoreUnavailable) as err:
        Store.open(url)
    message = str(err.value)
    assert "cannot reach the store at postgresql://callshield:***@127.0.0.1" in message
    assert "s3cret" not in message and "\n" not in message


def test_event_writes_are_idempotent_and_survive_reopen(store_where):
    store = _store(store_where)
    said = p.UtteranceFinal(seq=2, event_id="u-1", call_id="c1", speaker="customer", start=1.0, end=2.0, text="hello", words=({"word": "hello", "start": 1.0, "end": 2.0, "conf": 0.9},))
    assert store.record_event("agent-1", _start(1)).new
    first = store.record_event("agent-1", said)
    assert first.new and first.record.text == "hello" and first.record.words[0]["word"] == "hello"
    assert not store.record_event("agent-1", said).new
    assert store.last_seq("agent-1") == 2
    store.close()

    store = Store.open(store_where)
    assert not store.record_event("agent-1", said).new
    assert store.counts()["utterances"] == 1
    assert store.check_agent("agent-1", "token-1") == 2
    detail = store.call_detail("c1")
    assert [u.text for u in detail.utterances] == ["hello"]
    store.close()


def test_alerts_and_checkins_follow_the_ladder(store_where):
    store = _store(store_where)
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


def test_a_critical_finding_queues_a_checkin(store_where):
    store = _store(store_where)
    store.record_event("agent-1", _start(1))
    finding = p.FindingRaised(seq=2, event_id="f", call_id="c1", category="threat", severity="critical", score=1.0, rule="r", evidence="kill", start=0.0, end=1.0, text="i will kill you", span=(7, 11))
    rec = store.record_event("agent-1", finding)
    assert rec.checkin.reason == "A threat during the call (grave)"
    assert rec.record.span == (7, 11)
    bad_span = p.FindingRaised(seq=3, event_id="g", call_id="c1", category="insult", severity="low", score=0.5, rule="r", evidence="x", start=0.0, end=1.0, text="short", span=(2, 99))
    assert store.record_event("agent-1", bad_span).record.span is None


def test_calls_belong_to_the_agent_that_started_them(store_where):
    store = _store(store_where)
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


def test_a_refused_agent_is_told_once_per_call_by_an_indexed_read(store_where):
    store = _store(store_where)
    store.record_event("agent-1", _start(1))
    event = _level(5, "none", "alert")
    error = Forbidden("call 'c1' is not this agent's", code="not_your_call")
    first = store.refusal_notice("agent-2", event, error)
    assert first is not None and first.code == "events_refused" and "agent-1" in first.message
    writes = store._conn.transactions
    changes = store._conn._conn.total_changes if store.dialect == "sqlite" else None
    assert [store.refusal_notice("agent-2", event, error) for _ in range(50)] == [None] * 50
    assert store._conn.transactions == writes  # told already: nothing written again
    if changes is not None:
        assert store._conn._conn.total_changes == changes
    assert store.refusal_notice("agent-2", _level(6, "none", "alert", call_id="c2"), error) is not None  # another call: told
    from console.store.calls import REFUSAL_TOLD
    with store._conn.transaction() as c:  # a site's worth of notices, so the planner chooses as it would there
        for n in range(2000):
            c.execute("INSERT INTO notices (event_id, agent, code, message, dropped, received_at) VALUES (?, ?, ?, 'm', 0, 't')",
                      (f"n{n}", f"agent-{n % 400}", ("events_refused", "queue_overflow")[n % 2]))
    store._conn.execute("ANALYZE")
    plan = store._conn.plan(REFUSAL_TOLD, ("agent-2", "c1"))
    assert "notices_told" in plan, plan  # a refusal flood is not a table scan per event


def test_an_ended_call_takes_no_new_evidence_but_resends_and_notices(store_where):
    store = _store(store_where)
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


def test_a_second_start_of_a_call_by_its_agent_is_refused_as_taken_live_lost_or_ended_and_a_resend_is_not(store_where):
    clock = FakeClock()
    store = _store(store_where, clock)
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


def test_authorization_needs_a_reason_a_live_call_and_is_audited(store_where):
    clock = FakeClock()
    store = _store(store_where, clock)
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


def test_users_agents_and_ensure_user(store_where):
    store = _store(store_where)
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


def test_qa_calls_filters_and_counts_every_match_beyond_the_limit(store_where):
    store = _store(store_where)
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


def test_a_finding_keeps_whom_it_is_aimed_at_and_old_stores_gain_the_column(store_where):
    with open_connection(store_where) as conn:  # a store as issue 6 left it: schema 2, one finding, no "why"
        migrate(conn, upto=2)
        conn.execute("INSERT INTO calls (id, agent, partner, seat, source, sample_rate, started_at) VALUES ('c0', 'agent-1', 'ann', '4', 'wav', 8000, '2025-03-01T09:00:00Z')")
        conn.execute('INSERT INTO findings (event_id, call_id, category, severity, score, rule, evidence, start, "end", text)'
                     " VALUES ('old', 'c0', 'insult', 'medium', 0.9, 'r', 'idiot', 0, 1, 'you idiot')")
        assert conn.execute("SELECT version FROM schema_version").fetchone()[0] == 2
    store = Store.open(store_where, clock=FakeClock())
    assert store.schema_version() == len(MIGRATIONS) >= 3
    assert [f.why for f in store.call_detail("c0").findings] == [""]
    store.add_user("agent-1", "agent", "token-1")
    store.record_event("agent-1", _start(1))
    finding = p.FindingRaised(seq=2, event_id="w", call_id="c1", category="insult", severity="medium", score=0.9, rule="insult.you_are",
                              evidence="you are a clown", start=0.0, end=1.0, text="you are a clown", why="aimed at the partner: 'you are'")
    assert store.record_event("agent-1", finding).record.why == "aimed at the partner: 'you are'"
    store.close()


def _together(*jobs):
    """Run the jobs at once on threads (each with its own store); their results or errors, in order."""
    results: list = [None] * len(jobs)
    start = threading.Barrier(len(jobs))

    def run(n, job):
        start.wait()
        try:
            results[n] = job()
        except Exception as exc:  # noqa: BLE001 - handed back for the test to judge
            results[n] = exc

    threads = [threading.Thread(target=run, args=(n, job)) for n, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_two_consoles_starting_at_once_on_a_new_store_migrate_it_once(store_where):
    if not isinstance(store_where, str):
        store_where.parent.mkdir(parents=True)
    opened = _together(*[lambda: Store.open(store_where, clock=FakeClock()) for _ in range(3)])
    assert all(isinstance(store, Store) for store in opened), opened
    assert {store.schema_version() for store in opened} == {len(MIGRATIONS)}
    assert opened[0]._conn.execute("SELECT count(*) FROM schema_version").fetchone()[0] == 1
    for store in opened:
        store.close()


def test_two_consoles_writing_at_once_store_each_event_once_and_authorize_once(store_where):
    """Two stores on one database (two console replicas): an agent's resend reaching
    both at once is stored once; two supervisors authorizing one end: one wins."""
    first, second = _store(store_where), Store.open(store_where, clock=FakeClock())
    first.record_event("agent-1", _start(1))
    events = [_level(n, ("caution", "alert")[n % 2], ("alert", "caution")[n % 2]) for n in range(2, 42)]

    def replay(store):
        return lambda: [store.record_event("agent-1", e).new for e in events]

    a, b = _together(replay(first), replay(second))
    assert not isinstance(a, Exception) and not isinstance(b, Exception), (a, b)
    assert [x + y for x, y in zip(a, b)] == [1] * len(events)  # each event new on exactly one replica
    counts = first.counts()
    assert counts["level_changes"] == len(events) and counts["events"] == len(events) + 1
    assert counts["alerts"] == len(events) // 2 and counts["checkins"] == 1
    assert first.last_seq("agent-1") == 41

    results = _together(lambda: first.authorize_end("c1", "sup", "threats"), lambda: second.authorize_end("c1", "sup2", "threats"))
    won = [r for r in results if not isinstance(r, Exception)]
    lost = [r for r in results if isinstance(r, Exception)]
    assert len(won) == 1 and len(lost) == 1 and getattr(lost[0], "code", None) == "already_authorized", results
    assert len(first.authorizations("c1")) == 1 and len(first.audit_entries(action="authorize_end")) == 1
    first.close()
    second.close()


def _calls_of(agent: str, calls: int) -> list[p.Message]:
    """What ``agent`` sends for ``calls`` calls of its own, turn by turn across them as live calls interleave:
    starts, three customer lines each, a high finding (a check-in), the level rising to alert (an alert), a line, the ends."""
    ids = [f"{agent}-call{n}" for n in range(calls)]
    turns = [[_start(0, call, partner=f"{call}-partner") for call in ids]]
    turns += [[p.UtteranceFinal(seq=0, event_id="", call_id=call, speaker="customer", start=float(t), end=t + 0.5, text="hello", words=())
               for call in ids] for t in range(3)]
    turns.append([p.FindingRaised(seq=0, event_id="", call_id=call, category="threat", severity="high", score=0.9, rule="threat.x",
                                  evidence="x", start=3.0, end=3.5, text="x", why="") for call in ids])
    turns.append([_level(0, "alert", "none", call) for call in ids])
    turns.append([p.UtteranceFinal(seq=0, event_id="", call_id=call, speaker="customer", start=4.0, end=4.5, text="hi", words=()) for call in ids])
    turns.append([p.CallEnded(seq=0, event_id="", call_id=call, at=9.0, reason="hangup") for call in ids])
    events = [m for turn in turns for m in turn]
    return [dataclasses.replace(m, seq=n, event_id=f"{agent}-e{n}") for n, m in enumerate(events, 1)]


def test_two_consoles_writing_many_calls_at_once_lose_no_event_to_their_races(postgresql_server):
    """Issue 15: two replicas storing events of different calls at once, as in a burst of alerts,
    conflict rarely and never give an event up (every write retried at most CONFLICT_TRIES times
    succeeds), and every row is there; the same events sent to both at once are still stored once."""
    url = postgresql_server.new_database()
    replicas = [Store.open(url, clock=FakeClock()) for _ in range(2)]
    agents = [[f"agent-{r}-{a}" for a in range(2)] for r in range(2)]
    for name in (*agents[0], *agents[1], "agent-both"):
        replicas[0].add_user(name, "agent", f"token-{name}")
    sent = {name: _calls_of(name, 40) for name in (*agents[0], *agents[1], "agent-both")}

    def replay(store, names):
        def run():
            by_agent = [[(name, m) for m in sent[name]] for name in names]
            return [store.record_event(name, m).new for pair in zip(*by_agent) for name, m in pair]
        return run

    own = _together(*(replay(store, names) for store, names in zip(replicas, agents)))
    assert not any(isinstance(r, Exception) for r in own), own
    written = sum(len(sent[name]) for names in agents for name in names)
    assert sum(map(sum, own)) == written  # every event new, none refused or lost
    conflicts = [store.conflicts for store in replicas]
    assert sum(c.total("exhausted") for c in conflicts) == 0, [c.health() for c in conflicts]
    assert sum(c.total() for c in conflicts) <= written // 100, [c.health() for c in conflicts]  # rare: at most one write in 100 ran again
    counts = replicas[0].counts()
    assert counts["calls"] == 160 and counts["utterances"] == 160 * 4 and counts["alerts"] == 160 and counts["checkins"] == 160
    assert counts["events"] == written and all(replicas[0].last_seq(name) == len(sent[name]) for names in agents for name in names)

    both = _together(*(replay(store, ["agent-both"]) for store in replicas))  # an agent's resend reaching both replicas at once
    assert not any(isinstance(r, Exception) for r in both), both
    assert [x + y for x, y in zip(*both)] == [1] * len(sent["agent-both"])  # each event new on exactly one replica
    assert sum(c.total("exhausted") for c in conflicts) == 0, [c.health() for c in conflicts]
    counts = replicas[1].counts()
    assert counts["calls"] == 200 and counts["checkins"] == 200 and replicas[1].last_seq("agent-both") == len(sent["agent-both"])
    for store in replicas:
        store.close()


def test_a_run_of_events_is_stored_in_one_transaction_as_one_at_a_time_would_store_it(store_where):
    """A group commit (``record_events``): an agent's run of events in one
    transaction, up to RECORD_BATCH, each recorded as ``record_event`` records
    it alone, but for the call's summary: read once the run is committed, it
    shows the call after the whole run. A resent run is found stored."""
    from console.store.calls import RECORD_BATCH

    batched, alone = _store(store_where), Store.open(store_where, clock=FakeClock())
    alone.add_user("agent-3", "agent", "token-3")
    sent = _calls_of("agent-1", 10)
    again = [dataclasses.replace(m, event_id=m.event_id.replace("agent-1", "agent-3"),
                                 call_id=m.call_id.replace("agent-1", "agent-3")) for m in sent]
    began = batched._conn.transactions
    runs = [sent[n:n + RECORD_BATCH] for n in range(0, len(sent), RECORD_BATCH)]
    results = []
    for run in runs:
        recorded, refused = batched.record_events("agent-1", run)
        assert refused is None and len(recorded) == len(run)
        after = {m.call_id: batched.call(m.call_id) for m in run}
        assert [r.call for r in recorded] == [after[m.call_id] for m in run]
        results += recorded
    assert len(runs) == 2 and batched._conn.transactions - began == len(runs)  # a transaction a run
    one_by_one = [alone.record_event("agent-3", m) for m in again]
    assert [_same(r) for r in results] == [_same(r, "agent-3", "agent-1") for r in one_by_one]
    assert all(r.new for r in results) and batched.last_seq("agent-1") == len(sent)
    counts = batched.counts()
    assert counts["calls"] == 20 and counts["utterances"] == 20 * 4 and counts["alerts"] == 20 and counts["checkins"] == 20
    transactions = batched._conn.transactions
    resent, refused = batched.record_events("agent-1", sent[:RECORD_BATCH + 5])
    assert refused is None and len(resent) == RECORD_BATCH and not any(r.new for r in resent)  # at most a batch looked at
    assert batched._conn.transactions == transactions + 1 and batched.counts() == counts
    batched.close()
    alone.close()


def _same(recorded, agent: str = "", instead: str = ""):
    """What a Recorded says but its call's summary and row ids, with one agent's name written as another's (to compare two agents' calls)."""
    text = re.sub(r"\b(\w*id)=\d+", r"\1=#", repr(dataclasses.replace(recorded, call=None)))
    return text.replace(agent, instead) if agent else text


def test_a_run_stops_at_an_event_refused_which_stores_nothing_and_what_follows_is_not_looked_at(store_where):
    store = _store(store_where)
    store.record_event("agent-1", _start(1, "c0"))
    before = store.counts()
    said = [p.UtteranceFinal(seq=n, event_id=f"u{n}", call_id="c0", speaker="customer", start=float(n), end=n + 0.5, text=f"line {n}", words=())
            for n in range(2, 8)]
    stray = _level(5, "alert", "none", call_id="never-started")
    run = said[:3] + [stray] + said[3:]
    transactions = store._conn.transactions
    recorded, refused = store.record_events("agent-1", run)
    assert [r.record.text for r in recorded] == ["line 2", "line 3", "line 4"]
    assert isinstance(refused, BadRequest) and refused.code == "unknown_call"
    assert store._conn.transactions == transactions + 1
    assert store.counts()["utterances"] == before["utterances"] + 3 and store.counts()["events"] == before["events"] + 3
    assert store.last_seq("agent-1") == 4  # the refused event's writes (its events row, the seq) rolled back with it
    taken = [_start(9, "c0")] + said[3:]  # a new call under a used id: refused, and nothing after it looked at
    recorded, refused = store.record_events("agent-1", taken)
    assert recorded == [] and refused.code == "call_id_taken"
    recorded, refused = store.record_events("agent-1", said[3:])
    assert refused is None and [r.record.text for r in recorded] == ["line 5", "line 6", "line 7"]
    recorded, refused = store.record_events("agent-2", said[:2])  # another agent's event ids: the first is refused
    assert recorded == [] and isinstance(refused, Forbidden) and refused.code == "not_your_event"
    with pytest.raises(BadRequest):
        store.record_events("agent-1", [p.Heartbeat(calls=())])


def test_a_run_that_keeps_racing_other_writers_is_stored_one_event_at_a_time(store_where, monkeypatch):
    """When the run's transaction lost all its tries to other replicas (a
    StoreConflict out of ``_record_batch``), each event is stored alone."""
    from console.store.connection import StoreConflict

    store = _store(store_where)
    sent = _calls_of("agent-1", 2)

    batch = store._record_batch

    def racing(agent, messages):  # a run, or the one event below, always loses; one event of the run alone does not
        if len(messages) > 1 or messages[0].event_id == "other":
            raise StoreConflict("raced every time")
        return batch(agent, messages)

    monkeypatch.setattr(store, "_record_batch", racing)
    transactions = store._conn.transactions
    recorded, refused = store.record_events("agent-1", sent)
    assert refused is None and len(recorded) == len(sent) and all(r.new for r in recorded)
    assert store._conn.transactions == transactions + len(sent)
    with pytest.raises(StoreConflict):  # one event alone: its own transaction lost all its tries
        store.record_events("agent-1", [dataclasses.replace(sent[0], event_id="other", seq=99)])


def test_a_store_error_amid_a_raced_run_stored_one_at_a_time_returns_what_was_committed(store_where, monkeypatch):
    """The one-event transactions of a raced run: when one fails (the
    database gone) after others were committed, those come back, no refusal,
    so the console shows and acknowledges them; the rest meets the error when
    it is sent again, and nothing is stored twice."""
    from console.errors import StoreError
    from console.store.connection import StoreConflict

    store = _store(store_where)
    sent = _calls_of("agent-1", 3)[:3]  # the three calls' starts
    batch, down = store._record_batch, [False]

    def failing(agent, messages):  # the run races; its third event alone meets the database gone
        if len(messages) > 1:
            raise StoreConflict("raced every time")
        if messages[0] is sent[2] or down[0]:
            down[0] = True
            raise StoreError("injected: the database is gone")
        return batch(agent, messages)

    monkeypatch.setattr(store, "_record_batch", failing)
    recorded, refused = store.store_events("agent-1", sent)
    assert refused is None and len(recorded) == 2 and all(r.new for r in recorded)
    with pytest.raises(StoreError):  # the rest, sent again, meets the error: nothing hides behind it
        store.store_events("agent-1", sent[2:])
    monkeypatch.setattr(store, "_record_batch", batch)
    recorded, refused = store.record_events("agent-1", sent)
    assert refused is None and [r.new for r in recorded] == [False, False, True]
    assert all(r.call is not None for r in recorded[2:])


def test_two_consoles_storing_runs_of_many_calls_at_once_lose_no_event_to_their_races(postgresql_server):
    """The group commit on two replicas: runs of 16 events of different calls,
    in one transaction each, race rarely and never give a run up."""
    url = postgresql_server.new_database()
    replicas = [Store.open(url, clock=FakeClock()) for _ in range(2)]
    agents = [[f"agent-{r}-{a}" for a in range(2)] for r in range(2)]
    for name in (*agents[0], *agents[1]):
        replicas[0].add_user(name, "agent", f"token-{name}")
    sent = {name: _calls_of(name, 40) for name in (*agents[0], *agents[1])}

    def replay(store, names):
        def run():
            new = 0
            for start in range(0, len(sent[names[0]]), 16):
                for name in names:
                    recorded, refused = store.record_events(name, sent[name][start:start + 16])
                    assert refused is None
                    new += sum(r.new for r in recorded)
            return new
        return run

    own = _together(*(replay(store, names) for store, names in zip(replicas, agents)))
    assert not any(isinstance(r, Exception) for r in own), own
    written = sum(len(sent[name]) for names in agents for name in names)
    assert sum(own) == written
    conflicts = [store.conflicts for store in replicas]
    assert sum(c.total("exhausted") for c in conflicts) == 0, [c.health() for c in conflicts]
    counts = replicas[0].counts()
    assert counts["calls"] == 160 and counts["utterances"] == 160 * 4 and counts["alerts"] == 160 and counts["events"] == written
    for store in replicas:
        store.close()


def test_a_write_that_raced_another_writer_runs_again_and_gives_up_after_conflict_tries(tmp_path, monkeypatch):
    """``retried``: a StoreConflict runs the method again from the start, at most CONFLICT_TRIES times."""
    from console.store import schema
    from console.store.connection import StoreConflict

    waits: list[float] = []
    monkeypatch.setattr(schema.time, "sleep", waits.append)

    class Racing(schema.Room):
        runs = 0

        @schema.retried
        def write(self, conflicts: int) -> int:
            self.runs += 1
            if self.runs <= conflicts:
                raise StoreConflict("raced")
            return self.runs

    with open_connection(tmp_path / "s.db") as conn:
        room = Racing(conn, FakeClock())
        first = schema.CONFLICT_BACKOFF.initial
        assert room.write(2) == 3 and len(waits) == 2 and first / 4 <= waits[0] <= first and first / 2 <= waits[1] <= 2 * first
        room.runs = 0
        with pytest.raises(StoreConflict):
            room.write(schema.CONFLICT_TRIES)
        assert room.runs == schema.CONFLICT_TRIES and len(waits) == 2 + schema.CONFLICT_TRIES - 1 and sum(waits[2:]) < 1.0
        assert room.conflicts.health() == {"write": {"serialization": 2 + schema.CONFLICT_TRIES - 1, "exhausted": 1}}


def test_a_lost_postgresql_connection_is_one_clear_error_then_the_next_call_reconnects(postgresql_server):
    url = postgresql_server.new_database()
    store = _store(url)
    store.record_event("agent-1", _start(1))
    assert postgresql_server.cut_connections(url) == 1
    with pytest.raises(StoreUnavailable, match="lost the connection to the store") as err:
        store.call("c1")
    assert "\n" not in str(err.value)
    assert store.call("c1").partner == "ann"  # the next call connects again
    said = p.UtteranceFinal(seq=2, event_id="u-2", call_id="c1", speaker="customer", start=1.0, end=2.0, text="hello", words=())
    postgresql_server.cut_connections(url)
    with pytest.raises(StoreUnavailable):  # lost while writing: not stored, not acknowledged
        store.record_event("agent-1", said)
    assert store.record_event("agent-1", said).new  # the agent's resend is stored once
    assert not store.record_event("agent-1", said).new
    assert store.counts()["utterances"] == 1 and store.setting("synchronous_commit") == "on"
    store.close()


def test_a_postgresql_store_backed_up_with_pg_dump_restores_whole_and_goes_on(postgresql_server, tmp_path):
    """docs/deployment.md's backup and restore: pg_dump -Fc, pg_restore into an empty database."""
    import subprocess

    url = postgresql_server.new_database()
    store = _store(url)
    for event in (_start(1), _level(2, "alert", "none"), _level(3, "caution", "alert")):
        store.record_event("agent-1", event)
    store.close()
    dump = tmp_path / "callshield.dump"
    subprocess.run([str(postgresql_server.bin / "pg_dump"), "-Fc", "-f", str(dump), url], check=True, timeout=60)
    copy = postgresql_server.new_database()
    subprocess.run([str(postgresql_server.bin / "pg_restore"), "--no-owner", "-d", copy, str(dump)], check=True, timeout=60)
    restored = Store.open(copy, clock=FakeClock())
    assert restored.schema_version() == len(MIGRATIONS)
    assert [c.level for c in restored.live_calls()] == ["caution"] and len(restored.open_alerts()) == 1
    assert not restored.record_event("agent-1", _level(3, "caution", "alert")).new  # its event ids came along
    before = [a.id for a in restored.open_alerts()]
    after = restored.record_event("agent-1", _level(4, "alert", "caution"))  # ids go on from the dump's, no collision
    assert after.alert.id > max(before) and [a.id for a in restored.open_alerts()] == [after.alert.id, *before]
    restored.record_event("agent-1", _start(5, "c2"))
    assert [c.id for c in restored.recent_calls()] == ["c2", "c1"]  # the stored order (rowid) came along too
    restored.close()


def test_the_console_config_names_the_store(tmp_path):
    from console.config import ConsoleConfig
    from kernel.errors import ConfigError

    sqlite = ConsoleConfig.from_table({}, data_dir=tmp_path)
    assert sqlite.store_location == tmp_path / "console.db"
    url = "postgresql://callshield@db.site.example:5432/callshield?sslmode=verify-full"
    assert ConsoleConfig.from_table({"store": url}, data_dir=tmp_path).store_location == url
    with pytest.raises(ConfigError, match=r"\[console\] store must be a postgresql:// URL, not 'mysql'") as err:
        ConsoleConfig.from_table({"store": "mysql://root:hunter2@db/x"}, data_dir=tmp_path)
    assert "hunter2" not in str(err.value)
    from console.store import shown
    assert shown("postgresql://callshield:hunter2@db:5432/x?sslmode=require") == "postgresql://callshield:***@db:5432/x?sslmode=require"
    assert shown(url) == url and shown(tmp_path / "console.db") == str(tmp_path / "console.db")


def test_switching_a_new_sqlite_store_to_wal_waits_out_another_consoles_switch():
    """SQLite answers "database is locked" at once, not after its busy timeout, while another
    connection switches the same new file to WAL: the switch is tried again (the race of
    three consoles opening one new store failed about one start in twenty before)."""
    import sqlite3

    from console.store.connection import _switch_to_wal

    class Switching:
        def __init__(self, locked_times: int, error: str = "database is locked") -> None:
            self.left, self.error, self.tries = locked_times, error, 0

        def execute(self, sql: str):
            assert sql == "PRAGMA journal_mode=WAL"
            self.tries += 1
            if self.left:
                self.left -= 1
                raise sqlite3.OperationalError(self.error)
            return type("Row", (), {"fetchone": lambda _self: ("wal",)})()

    conn = Switching(locked_times=3)
    assert _switch_to_wal(conn) == "wal" and conn.tries == 4
    with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
        _switch_to_wal(Switching(locked_times=1, error="disk I/O error"))
