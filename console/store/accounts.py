"""People and agents: accounts, passwords and tokens, browser sessions.

Secrets are stored only as hashes (scrypt for passwords, SHA-256 for
tokens; ``console/auth.py``) and handed back once, when made. An agent's
account also holds the highest ``seq`` the store has of it (written by the
calls room, read back at its hello).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from collections.abc import Iterable
from datetime import datetime, timedelta

from console.auth import MIN_PASSWORD, ROLES, hash_password, new_password, new_token, same_token, token_hash, verify_password
from console.errors import BadRequest
from console.store.records import Account
from console.store.connection import Connection
from console.store.schema import Room, retried
from kernel.clock import iso, parse_iso

_SQL_VARIABLES = 500
"""Tokens looked up per query (SQLite allows at least 999 parameters)."""
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


@dataclass(frozen=True)
class Session:
    """A logged-in browser: ``user`` and ``role``, valid until ``expires_at``."""

    user: str
    role: str
    expires_at: datetime


class Accounts(Room):
    """Users, agents and sessions."""

    @retried
    def add_user(self, name: str, role: str, password: str | None = None) -> str:
        """Create a user (or, with role ``agent``, an agent) and return its secret.

        For people: the password (generated when None). For agents: a new token
        (``password`` is ignored unless given, then it is the token). The secret
        is stored only as a hash: show it once.
        """
        self._check_name(name)
        with self._tx() as c:
            if self._exists(c, name):
                raise BadRequest(f"user or agent {name!r} already exists", code="user_exists")
            return self._put_user(c, name, role, password)

    @retried
    def ensure_user(self, name: str, role: str, password: str) -> None:
        """Create the user or agent, or reset its role and secret to these (demo setups)."""
        self._check_name(name)
        with self._tx() as c:
            c.execute("DELETE FROM users WHERE name = ?", (name,))
            if role != "agent":
                c.execute("DELETE FROM agents WHERE name = ?", (name,))
            if role == "agent" and c.execute("SELECT 1 FROM agents WHERE name = ?", (name,)).fetchone():
                c.execute("UPDATE agents SET token_hash = ? WHERE name = ?", (token_hash(password), name))
                return
            self._put_user(c, name, role, password)

    def _put_user(self, c: Connection, name: str, role: str, password: str | None) -> str:
        if role == "agent":
            token = password or new_token()
            c.execute("INSERT INTO agents (name, token_hash, created_at) VALUES (?, ?, ?)", (name, token_hash(token), self._now()))
            return token
        if role not in ROLES:
            raise BadRequest(f"unknown role {role!r} (one of: {', '.join(ROLES + ('agent',))})", code="bad_role")
        secret = new_password() if password is None else password
        self._check_password(secret)
        c.execute("INSERT INTO users (name, role, password, created_at) VALUES (?, ?, ?, ?)", (name, role, hash_password(secret), self._now()))
        return secret

    @staticmethod
    def _check_name(name: str) -> None:
        if not _NAME.match(name):
            raise BadRequest(f"bad user name {name!r}: 1-64 letters, digits, '.', '_', '@' or '-'", code="bad_name")

    @staticmethod
    def _check_password(password: str) -> None:
        if len(password) < MIN_PASSWORD:
            raise BadRequest(f"password too short (at least {MIN_PASSWORD} characters)", code="weak_password")

    @staticmethod
    def _exists(c: Connection, name: str) -> bool:
        return bool(c.execute("SELECT 1 FROM users WHERE name = ? UNION SELECT 1 FROM agents WHERE name = ?", (name, name)).fetchone())

    @retried
    def set_password(self, name: str, password: str | None = None) -> str:
        """Replace a user's password (or an agent's token); returns the new secret
        and ends the user's sessions."""
        with self._tx() as c:
            if c.execute("SELECT 1 FROM agents WHERE name = ?", (name,)).fetchone():
                token = password or new_token()
                c.execute("UPDATE agents SET token_hash = ? WHERE name = ?", (token_hash(token), name))
                return token
            if not c.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise BadRequest(f"no user {name!r}", code="no_user")
            secret = new_password() if password is None else password
            self._check_password(secret)
            c.execute("UPDATE users SET password = ? WHERE name = ?", (hash_password(secret), name))
            c.execute('DELETE FROM sessions WHERE "user" = ?', (name,))
            return secret

    @retried
    def remove_user(self, name: str) -> None:
        with self._tx() as c:
            c.execute('DELETE FROM sessions WHERE "user" = ?', (name,))
            gone = c.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount
            gone += c.execute("DELETE FROM agents WHERE name = ?", (name,)).rowcount
            if not gone:
                raise BadRequest(f"no user or agent {name!r}", code="no_user")

    def list_users(self) -> list[Account]:
        """People and agents (role ``agent``), by name."""
        rows = self._conn.execute(
            "SELECT name, role, created_at FROM users UNION ALL SELECT name, 'agent', created_at FROM agents ORDER BY name"
        ).fetchall()
        return [Account(**r) for r in rows]

    def user_count(self) -> int:
        return self._conn.execute("SELECT count(*) FROM users").fetchone()[0]

    def credentials(self, name: str) -> tuple[str, str] | None:
        """``(role, password hash)`` of a user, for the console to verify off-thread."""
        row = self._conn.execute("SELECT role, password FROM users WHERE name = ?", (name,)).fetchone()
        return (row["role"], row["password"]) if row else None

    def check_password(self, name: str, password: str) -> str | None:
        """The user's role if the password is right, else None (slow: scrypt)."""
        found = self.credentials(name)
        if found is None:
            verify_password(password, hash_password("x" * 8))  # same cost for unknown names
            return None
        return found[0] if verify_password(password, found[1]) else None

    @retried
    def create_session(self, user: str, hours: float) -> tuple[str, Session]:
        """A new session token for ``user`` (returned once; stored hashed)."""
        now = self._clock()
        token = new_token()
        with self._tx() as c:
            row = c.execute("SELECT role FROM users WHERE name = ?", (user,)).fetchone()
            if row is None:
                raise BadRequest(f"no user {user!r}", code="no_user")
            expires = now + timedelta(hours=hours)
            c.execute("DELETE FROM sessions WHERE expires_at < ?", (iso(now),))
            c.execute("INSERT INTO sessions VALUES (?, ?, ?, ?)", (token_hash(token), user, iso(now), iso(expires)))
        return token, Session(user, row["role"], expires)

    def session(self, token: str) -> Session | None:
        """The live session of ``token``, or None if unknown, expired or its user removed."""
        return self.live_sessions((token,)).get(token)

    def live_sessions(self, tokens: Iterable[str]) -> dict[str, Session]:
        """The live sessions among ``tokens``, by token (unknown, expired or
        removed users' tokens are left out): how the console checks its open
        sockets against what ``callshield users`` changed in the store."""
        by_hash = {token_hash(t): t for t in tokens}
        hashes, now, live = list(by_hash), self._clock(), {}
        for at in range(0, len(hashes), _SQL_VARIABLES):
            chunk = hashes[at:at + _SQL_VARIABLES]
            rows = self._conn.execute(
                'SELECT s.token_hash, s."user", u.role, s.expires_at FROM sessions s JOIN users u ON u.name = s."user"'
                f" WHERE s.token_hash IN ({', '.join('?' * len(chunk))})", chunk,
            )
            for row in rows:
                expires = parse_iso(row["expires_at"])
                if expires > now:
                    live[by_hash[row["token_hash"]]] = Session(row["user"], row["role"], expires)
        return live

    @retried
    def end_session(self, token: str) -> None:
        with self._tx() as c:
            c.execute("DELETE FROM sessions WHERE token_hash = ?", (token_hash(token),))

    @retried
    def check_agent(self, name: str, token: str, site: str = "") -> int | None:
        """The agent's last stored seq if ``token`` is its token, else None."""
        row = self._conn.execute("SELECT token_hash, last_seq FROM agents WHERE name = ?", (name,)).fetchone()
        if row is None:
            same_token(token, token_hash(""))  # same work for unknown agents
            return None
        if not same_token(token, row["token_hash"]):
            return None
        with self._tx() as c:
            c.execute("UPDATE agents SET site = ?, last_seen = ? WHERE name = ?", (site, self._now(), name))
        return row["last_seq"]

    def last_seq(self, agent: str) -> int:
        row = self._conn.execute("SELECT last_seq FROM agents WHERE name = ?", (agent,)).fetchone()
        return row[0] if row else 0
