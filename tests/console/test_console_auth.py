"""Passwords, tokens, sessions and the login throttle."""

from __future__ import annotations

from datetime import timedelta

from console.auth import LoginThrottle, RefusalTally, hash_password, new_token, verify_password
from console.store import Store
from console_kit import FakeClock


def test_scrypt_hash_verifies_only_the_right_password():
    stored = hash_password("correct horse battery")
    scheme, n, r, p, salt, digest = stored.split("$")
    assert scheme == "scrypt" and int(n) >= 2**14 and int(r) >= 8 and int(p) >= 1
    assert verify_password("correct horse battery", stored)
    assert not verify_password("correct horse batterY", stored)
    assert not verify_password("", stored)
    assert hash_password("correct horse battery") != stored  # salted
    assert not verify_password("x", "not a hash")


def test_session_token_works_until_it_expires(store_where):
    clock = FakeClock()
    store = Store.open(store_where, clock=clock)
    store.add_user("sup", "supervisor", "correct horse battery")
    token, session = store.create_session("sup", hours=2)
    assert session.expires_at == clock.now + timedelta(hours=2)
    assert store.session(token).role == "supervisor"
    assert store.session(new_token()) is None
    clock.advance(hours=1, minutes=59)
    assert store.session(token) is not None
    clock.advance(minutes=2)
    assert store.session(token) is None
    token2, _ = store.create_session("sup", hours=2)
    store.end_session(token2)
    assert store.session(token2) is None
    token3, _ = store.create_session("sup", hours=2)
    store.set_password("sup", "a brand new password")  # ends every session of the user
    assert store.session(token3) is None
    stored = " ".join(" ".join(map(str, row)) for table in ("users", "sessions") for row in store._conn.execute(f"SELECT * FROM {table}"))
    assert "correct horse battery" not in stored and "a brand new password" not in stored and token not in stored and token3 not in stored
    if store.dialect == "sqlite":
        assert "correct horse battery" not in store_where.read_bytes().decode("latin-1")


def test_throttle_locks_one_pair_and_backs_off():
    clock = FakeClock()
    throttle = LoginThrottle(limit=3, lockout=timedelta(minutes=5), peer_limit=100)
    for _ in range(3):
        assert throttle.reserve("ann", "10.0.0.9", clock())  # counted before the check
    assert not throttle.reserve("ann", "10.0.0.9", clock())
    assert throttle.reserve("ann", "10.0.0.7", clock())  # another address: not locked out
    assert throttle.reserve("bob", "10.0.0.9", clock())  # another user: not locked either
    clock.advance(minutes=5)
    for _ in range(3):
        assert throttle.reserve("ann", "10.0.0.9", clock())
    clock.advance(minutes=9, seconds=59)  # the second lock lasts twice as long
    assert not throttle.reserve("ann", "10.0.0.9", clock())
    clock.advance(seconds=1)
    at = clock()
    assert throttle.reserve("ann", "10.0.0.9", at)
    throttle.succeeded("ann", "10.0.0.9", at)  # forgiven: the backoff starts again
    assert not throttle.locked("ann", "10.0.0.9", clock())


def test_throttle_never_locks_an_address_that_signed_in_only_paces_it():
    clock = FakeClock()
    throttle = LoginThrottle(limit=3, lockout=timedelta(minutes=3), peer_limit=6, trust=timedelta(hours=12))
    at = clock()
    assert throttle.reserve("ann", "10.0.0.9", at)
    throttle.succeeded("ann", "10.0.0.9", at)
    for _ in range(3):
        assert throttle.reserve("ann", "10.0.0.9", clock())
    assert not throttle.reserve("ann", "10.0.0.9", clock())  # paced: one per lockout / limit
    assert not throttle.locked("ann", "10.0.0.9", clock())
    clock.advance(minutes=1)
    assert throttle.reserve("ann", "10.0.0.9", clock())
    for name in ("x1", "x2"):  # a spray of names fills the address's budget (6, ann's 4 failures with them)
        assert throttle.reserve(name, "10.0.0.9", clock())
    assert not throttle.reserve("bob", "10.0.0.9", clock())
    clock.advance(minutes=1)
    assert throttle.reserve("ann", "10.0.0.9", clock())  # ann signed in from there: not refused
    clock.advance(hours=12)
    for _ in range(3):  # trust has run out: an ordinary pair again
        assert throttle.reserve("ann", "10.0.0.9", clock())
    assert throttle.locked("ann", "10.0.0.9", clock())


def test_throttle_is_bounded_and_counts_what_it_forgets():
    clock = FakeClock()
    throttle = LoginThrottle(limit=1, lockout=timedelta(minutes=5), capacity=3)
    for i in range(5):
        assert throttle.reserve(f"user{i}", f"10.0.0.{i}", clock())
    assert throttle.evicted == 4  # two pairs and two addresses
    assert throttle.locked("user4", "10.0.0.4", clock()) and not throttle.locked("user0", "10.0.0.0", clock())


def test_refused_sign_ins_are_tallied_per_address_per_window():
    clock = FakeClock()
    tally = RefusalTally(window=timedelta(minutes=1), capacity=2)
    for i in range(40):
        tally.count("10.0.0.9", f"name{i % 8}", clock())
    tally.count("10.0.0.8", "ann", clock())
    assert tally.due(clock()) == []
    clock.advance(minutes=1)
    first, second = tally.due(clock())
    assert (first.peer, first.count, first.names, first.more_names) == ("10.0.0.9", 40, ("name0", "name1", "name2", "name3", "name4"), True)
    assert (second.peer, second.count, second.names, second.more_names) == ("10.0.0.8", 1, ("ann",), False)
    for peer in ("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"):  # more addresses than room: the oldest close early
        tally.count(peer, "ann", clock())
    assert [s.peer for s in tally.due(clock())] == ["10.0.0.1", "10.0.0.2"]
    assert [s.peer for s in tally.due(clock(), everything=True)] == ["10.0.0.3", "10.0.0.4"]
    assert tally.overflow == 0


def test_generated_tokens_and_passwords_never_begin_with_a_dash():
    """One in 64 did, and `callshield agent --token -x...` then failed as a missing argument."""
    from console.auth import new_password, new_token

    made = [new_token() for _ in range(2000)] + [new_password() for _ in range(2000)]
    assert not [value for value in made if value.startswith("-")]
    assert len(set(made)) == len(made) and {len(new_token()), len(new_password())} == {43, 16}
