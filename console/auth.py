"""Passwords, tokens and the failed-login throttle.

Passwords are hashed with scrypt (memory-hard: n=2**14, r=8, p=1 uses 16 MiB
per guess), with a random salt per user; the parameters are stored beside the
hash so they can be raised later without breaking old hashes. Session and
agent tokens are 256-bit random strings, so a plain SHA-256 of them is enough
to store (nobody can guess the preimage); the token itself is shown once and
never stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
MIN_PASSWORD = 8

ROLES = ("partner", "supervisor", "qa", "admin")
"""Roles of people who log in to the console (agents are not people: role ``agent``)."""


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """The stored form: ``scrypt$n$r$p$salt$hash`` (salt and hash in base64)."""
    salt = secrets.token_bytes(SALT_BYTES)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=HASH_BYTES, maxmem=256 * 1024 * 1024)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches ``stored`` (constant-time compare)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(
            password.encode("utf-8"), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
            dklen=len(expected), maxmem=256 * 1024 * 1024,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


def new_token() -> str:
    """A fresh secret for a session or an agent (256 bits, URL-safe)."""
    return _no_leading_dash(32)


def new_password() -> str:
    """A generated password for a new user (about 96 bits, easy to type)."""
    return _no_leading_dash(12)


def _no_leading_dash(nbytes: int) -> str:
    """``secrets.token_urlsafe(nbytes)`` that does not begin with "-": one in 64
    did, and a command line reads ``--token -x...`` as another option
    (``callshield agent: error: argument --token: expected one argument``)."""
    while (value := secrets.token_urlsafe(nbytes)).startswith("-"):
        pass
    return value


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def same_token(token: str, stored_hash: str) -> bool:
    return hmac.compare_digest(token_hash(token), stored_hash)


@dataclass
class _Pair:
    """What the throttle knows of one (user name, client address)."""

    attempts: deque[datetime] = field(default_factory=deque)
    """Checks reserved within the window (a check counts as failed until it succeeds)."""
    locked_until: datetime | None = None
    lockouts: int = 0
    """Locks so far; the next one lasts ``lockout * 2**lockouts`` (capped)."""
    trusted_until: datetime | None = None
    """Until then the pair signed in recently: never locked, only paced."""
    last_lock_end: datetime | None = None


class LoginThrottle:
    """Which sign-in attempts may be checked, per (user name, client address).

    :meth:`reserve` is called on the event loop before the password check,
    and counts the attempt as failed straight away (:meth:`succeeded` takes
    it back), so concurrent guesses cannot all pass a "blocked?" check that
    runs before any of them is counted: at most ``limit`` checks are reserved
    per pair within ``lockout``.

    - A pair that fails ``limit`` times within ``lockout`` is locked for
      ``lockout``, then twice as long at each further lock (up to
      ``max_lockout``); a success forgives it. Only that pair is locked: a
      guesser elsewhere cannot lock a user out.
    - A pair that succeeded within ``trust`` is never locked: past ``limit``
      failures its checks are only paced, one per ``lockout / limit``.
    - An address with ``peer_limit`` failures within ``lockout`` (a spray of
      names) is refused for every name that has not succeeded from it recently.

    State is in memory and bounded: at most ``capacity`` pairs and as many
    addresses, least recently used forgotten first (counted in ``evicted``).
    The clock is the caller's (wall time).
    """

    def __init__(
        self, *, limit: int = 5, lockout: timedelta = timedelta(minutes=5), peer_limit: int = 50,
        trust: timedelta = timedelta(hours=12), max_lockout: timedelta = timedelta(hours=24), capacity: int = 10_000,
    ) -> None:
        self.limit = limit
        self.lockout = lockout
        self.peer_limit = peer_limit
        self.trust = trust
        self.max_lockout = max(max_lockout, lockout)
        self.capacity = capacity
        self.evicted = 0
        """Pairs and addresses forgotten to stay within ``capacity``."""
        self._pairs: OrderedDict[tuple[str, str], _Pair] = OrderedDict()
        self._peers: OrderedDict[str, deque[datetime]] = OrderedDict()

    def reserve(self, user: str, peer: str, now: datetime) -> bool:
        """May this attempt be checked? If so it is counted as a failure now."""
        pair = self._pair((user[:64], peer), now)
        failures = self._recent(self._peers.get(peer), now)
        trusted = pair.trusted_until is not None and now < pair.trusted_until
        if pair.locked_until is not None and now < pair.locked_until:
            return False
        if trusted:
            pace = self.lockout / self.limit
            if len(pair.attempts) >= self.limit and pair.attempts and now - pair.attempts[-1] < pace:
                return False
        elif len(failures) >= self.peer_limit:
            return False
        pair.attempts.append(now)
        self._keep(self._peers, peer, failures).append(now)
        if not trusted and len(pair.attempts) >= self.limit:
            span = min(self.lockout * 2**min(pair.lockouts, 32), self.max_lockout)
            pair.locked_until = pair.last_lock_end = now + span
            pair.lockouts += 1
            pair.attempts.clear()
        return True

    def succeeded(self, user: str, peer: str, reserved_at: datetime) -> None:
        """The attempt reserved at ``reserved_at`` was right: take it back,
        forgive the pair and trust it for ``trust`` from then."""
        pair = self._pair((user[:64], peer), reserved_at)
        pair.attempts.clear()
        pair.locked_until = pair.last_lock_end = None
        pair.lockouts = 0
        pair.trusted_until = reserved_at + self.trust
        failures = self._peers.get(peer)
        if failures and reserved_at in failures:
            failures.remove(reserved_at)

    def locked(self, user: str, peer: str, now: datetime) -> bool:
        """Whether the pair is locked now (for tests and health checks)."""
        pair = self._pairs.get((user[:64], peer))
        return pair is not None and pair.locked_until is not None and now < pair.locked_until

    def _pair(self, key: tuple[str, str], now: datetime) -> _Pair:
        pair = self._pairs.get(key)
        if pair is None:
            pair = _Pair()
        self._recent(pair.attempts, now)
        if pair.last_lock_end is not None and now - pair.last_lock_end >= self.max_lockout:
            pair.lockouts, pair.last_lock_end = 0, None  # quiet for long enough: backoff starts again
        return self._keep(self._pairs, key, pair)

    def _recent(self, times: deque[datetime] | None, now: datetime) -> deque[datetime]:
        if times is None:
            return deque()
        while times and now - times[0] >= self.lockout:
            times.popleft()
        return times

    def _keep(self, table: OrderedDict, key: Any, value: Any) -> Any:
        """Store ``value`` as the most recently used; forget the least recently used past ``capacity``."""
        table[key] = value
        table.move_to_end(key)
        while len(table) > self.capacity:
            table.popitem(last=False)
            self.evicted += 1
        return value


@dataclass
class _Tally:
    first: datetime
    count: int = 0
    names: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class ThrottledSummary:
    """Sign-ins refused by the throttle from one address in one window (one audit row)."""

    peer: str
    first: datetime
    """Wall time of the first refusal counted."""
    count: int
    names: tuple[str, ...]
    """Up to :data:`TALLY_NAMES` of the user names tried, sorted."""
    more_names: bool
    """Whether other names were tried too."""


TALLY_NAMES = 5
"""User names listed per address in a summary."""


class RefusalTally:
    """Refused sign-ins counted per address, so a flood writes one audit row
    per address per ``window`` instead of one per attempt.

    Bounded: at most ``capacity`` open tallies (the oldest is closed early
    when a new address needs room) and ``capacity`` summaries waiting to be
    written; summaries beyond that are only counted in ``overflow``.
    """

    def __init__(self, *, window: timedelta = timedelta(minutes=1), capacity: int = 1000) -> None:
        self.window = window
        self.capacity = capacity
        self.overflow = 0
        self._open: OrderedDict[str, _Tally] = OrderedDict()
        self._ready: deque[ThrottledSummary] = deque()

    def count(self, peer: str, user: str, now: datetime) -> None:
        tally = self._open.get(peer)
        if tally is not None and now - tally.first >= self.window:
            self._close(peer)
            tally = None
        if tally is None:
            tally = self._open[peer] = _Tally(first=now)
            while len(self._open) > self.capacity:
                self._close(next(iter(self._open)))
        tally.count += 1
        if len(tally.names) < TALLY_NAMES + 1:  # one more than shown, to know there are more
            tally.names.add(user[:64])

    def due(self, now: datetime, *, everything: bool = False) -> list[ThrottledSummary]:
        """Summaries to write now: windows that are over (every one with ``everything``)."""
        for peer in [p for p, t in self._open.items() if everything or now - t.first >= self.window]:
            self._close(peer)
        ready, self._ready = list(self._ready), deque()
        return ready

    def _close(self, peer: str) -> None:
        tally = self._open.pop(peer)
        if len(self._ready) >= self.capacity:
            self.overflow += 1
            return
        names = sorted(tally.names)
        self._ready.append(ThrottledSummary(peer, tally.first, tally.count, tuple(names[:TALLY_NAMES]), len(names) > TALLY_NAMES))
