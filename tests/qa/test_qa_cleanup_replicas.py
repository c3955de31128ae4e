"""The retention clean-up on several console replicas: two stores on one real
PostgreSQL database (``tests/postgres_kit.py``) cleaning at the same moment
remove and audit each thing once."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

from console.qa import CLEANUP_LOCK, cleanup
from console.store import Store, StoreUnavailable
from qa_kit import FakeClock
from kernel import protocol as p
from kernel.retention import RetentionPolicy

POLICY = RetentionPolicy(keep_unflagged_audio=False, keep_unflagged_transcripts=False)


def _ended_calls(store: Store, recordings: Path, names: list[str]) -> None:
    """Unflagged calls that ended, each with a transcript line and a recording on disk."""
    for n, call_id in enumerate(names):
        events = (
            p.CallStarted(seq=1, event_id=f"{call_id}-s", call_id=call_id, partner="ann", seat="4", source="wav",
                          started_at="2025-03-01T09:00:00Z", sample_rate=8000),
            p.UtteranceFinal(seq=2, event_id=f"{call_id}-u", call_id=call_id, speaker="customer", start=0.5, end=1.5, text="thanks"),
            p.CallEnded(seq=3, event_id=f"{call_id}-e", call_id=call_id, at=10.0, reason="hangup"),
        )
        for event in events:
            store.record_event("agent-1", event)
        (recordings / f"{call_id}.wav").write_bytes(b"RIFF" + bytes(100 + n))
        store.add_recording(call_id, path=f"{call_id}.wav", sha256="0" * 64, bytes=104 + n, duration=10.0, sample_rate=8000,
                            finalized_at="2025-03-01T09:05:00.000Z")


@contextlib.contextmanager
def two_replicas_stores(postgresql_server) -> Iterator[tuple[Store, Store, str]]:
    """Two consoles' stores on one fresh database (dropped after), and its URL."""
    url = postgresql_server.new_database()
    a = Store.open(url, clock=FakeClock())
    a.add_user("agent-1", "agent", "token-1")
    b = Store.open(url, clock=FakeClock())
    try:
        yield a, b, url
    finally:
        a.close()
        b.close()
        postgresql_server.drop_database(url)


def _removals_audited(store: Store) -> list[tuple[str, str]]:
    return [(e["call_id"], e["action"]) for e in store.audit_entries(limit=100_000) if e["action"].startswith("retention_removed")]


def test_two_replicas_cleaning_at_once_remove_and_audit_each_thing_once(postgresql_server, tmp_path):
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    skipped = 0
    with two_replicas_stores(postgresql_server) as (a, b, _):
        for round_ in range(5):
            names = [f"r{round_}-c{n}" for n in range(30)]
            _ended_calls(a, recordings, names)
            now = a._clock() + timedelta(minutes=1)
            start = threading.Barrier(2)
            reports: dict[str, object] = {}

            def clean(name: str, store: Store) -> None:
                start.wait()
                reports[name] = cleanup(store, recordings, POLICY, now)

            threads = [threading.Thread(target=clean, args=(name, store)) for name, store in (("a", a), ("b", b))]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            done = [r for r in reports.values() if r is not None and r.removed]
            skipped += sum(r is None for r in reports.values())
            assert len(reports) == 2 and len(done) == 1, reports  # one replica did this round's work, the other none of it
            assert {(r.removal.call_id, r.removal.what) for r in done[0].removed} == {(c, w) for c in names for w in ("audio", "transcript")}
            assert not done[0].failed and not any(recordings.glob("r*.wav"))
        audited = _removals_audited(a)
        assert len(audited) == 5 * 30 * 2 and len(set(audited)) == len(audited)  # every removal audited, none twice
        assert skipped >= 1  # the two did meet: one found the other cleaning and stood aside
        assert all(call.recording is None and not call.has_transcript for call in a.retention_calls())


def test_a_replica_finding_another_mid_clean_up_skips_its_round_and_the_turn_is_free_after(postgresql_server, tmp_path):
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    with two_replicas_stores(postgresql_server) as (a, b, _):
        _ended_calls(a, recordings, ["c1", "c2"])
        now = a._clock() + timedelta(minutes=1)
        inside, release = threading.Event(), threading.Event()
        remove = a.remove_transcript

        def slow_remove(call_id: str) -> int:  # replica a stops halfway through its clean-up
            inside.set()
            assert release.wait(30)
            return remove(call_id)

        a.remove_transcript = slow_remove
        got: list = []
        worker = threading.Thread(target=lambda: got.append(cleanup(a, recordings, POLICY, now)))
        worker.start()
        assert inside.wait(30)
        assert cleanup(b, recordings, POLICY, now) is None  # b skips: a holds the turn
        assert cleanup(b, recordings, POLICY, now, only="c2") is None
        release.set()
        worker.join(30)
        assert {(r.removal.call_id, r.removal.what) for r in got[0].removed} == {(c, w) for c in ("c1", "c2") for w in ("audio", "transcript")}
        again = cleanup(b, recordings, POLICY, now)  # the turn is free again, and nothing is left to do
        assert again is not None and again.removed == () and again.failed == ()
        assert sorted(_removals_audited(b)) == sorted((c, f"retention_removed_{w}") for c in ("c1", "c2") for w in ("audio", "transcript"))


def test_the_turn_goes_with_a_lost_connection_and_sqlite_always_has_it(postgresql_server, tmp_path):
    with two_replicas_stores(postgresql_server) as (a, b, url):
        with a.exclusively(CLEANUP_LOCK) as mine:
            assert mine
            with b.exclusively(CLEANUP_LOCK) as theirs:
                assert not theirs
            assert postgresql_server.cut_connections(url) == 2  # a's connection dies holding the turn: the server frees it
            with contextlib.suppress(StoreUnavailable):
                b.schema_version()  # b meets its own cut connection once, then connects again
            with b.exclusively(CLEANUP_LOCK) as theirs:
                assert theirs
        with a.exclusively(CLEANUP_LOCK) as mine:  # a connects again; b has released it
            assert mine
    lite = Store.open(tmp_path / "console.db")
    with lite.exclusively(CLEANUP_LOCK) as first, lite.exclusively(CLEANUP_LOCK) as second:
        assert first and second  # one console per SQLite file: cleaning as before
    lite.close()
