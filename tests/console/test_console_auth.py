"""Passwords, tokens, sessions and the login throttle."""

from __future__ import annotations

from datetime import timedelta

from console.auth import LoginThrottle, hash_password, new_token, verify_password
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


def test_session_token_works_until_it_expires(tmp_path):
    clock = FakeClock()
    store = Store.open(tmp_path / "console.db", clock=clock)
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
    assert "correct horse battery" not in (tmp_path / "console.db").read_bytes().decode("latin-1")


def test_throttle_blocks_after_repeated_failures_then_forgives():
    clock = FakeClock()
    throttle = LoginThrottle(limit=3, window=timedelta(minutes=5))
    for _ in range(3):
        assert not throttle.blocked("user:ann", clock())
        throttle.failed("user:ann", clock())
    assert throttle.blocked("user:ann", clock())
    assert not throttle.blocked("user:bob", clock())
    clock.advance(minutes=5)
    assert not throttle.blocked("user:ann", clock())
    throttle.failed("user:ann", clock())
    throttle.succeeded("user:ann")
    assert not throttle.blocked("user:ann", clock())
