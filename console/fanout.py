"""Fan-out to browsers: one bounded outbox and one sender task per browser.

A message is encoded once and queued for every browser that should see it
(every supervisor, and the call's partner). A browser whose outbox is full
is disconnected (it reconnects and gets a fresh snapshot), never waited
for, so one stuck screen cannot delay an alert for the others.

Under load, live partial transcripts are shed first: a browser whose outbox
is more than :data:`SHED_AT` full is sent no partials until it catches up
(each one not queued is counted, ``on_shed``). A partial is replaced by the
next one within a fraction of a second and its final line follows; final
utterances, findings, alerts and authorizations are never shed.

A browser's sender writes what is waiting in its outbox at once: one write
to the socket for many messages (each still its own websocket message), at
most every :data:`FLUSH_EVERY` while messages keep coming. A supervisor
watching a thousand calls is sent thousands of messages a second, and one
socket write each was the console's largest cost; a partner's screen, sent a
few a second, gets each at once, never held back.

A message is encoded to its UTF-8 frame before it is queued. One that cannot
be (a lone UTF-16 surrogate in a text, NaN or Infinity in a number: issue 13,
#4 and #9) is sent to no one, counted (``on_unsendable``) and logged; no
browser's socket is closed or its sender stopped because of it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from console import browser_protocol as b
from console.roles import WATCHES_ALL_CALLS
from console.store import Call

log = logging.getLogger("callshield.console")

SHED_AT = 0.5
"""Share of a browser's outbox above which live partials to it are shed (counted), before it can fill."""

FLUSH_EVERY = 0.01
"""Seconds: a browser's sender writes at most this often while messages keep coming, so what
arrives meanwhile goes out in one write, unless a quarter of its outbox (half the shedding
mark) is waiting sooner. A message after a quiet spell is written at once."""

WRITE_BUFFER_LIMIT = 64 * 1024
"""Bytes a sender lets wait in a browser socket's write buffer: one write takes from the outbox
only what keeps the buffer under it. Once it is reached (the browser is slow) the sender writes
one message at a time and waits for the socket to drain (websockets' ``write_limit``, 32 KiB by
default, must stay under this); the outbox fills, partials are shed, and a browser a whole
outbox behind is dropped, as before."""


class Outbox:
    """A browser's bounded queue of encoded messages. A message stays in it until it is
    written, so its length is what the browser has not been sent; its sender waits for a
    number of messages (:meth:`wait`)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._frames: deque[bytes] = deque()
        self._wanted = 0
        self._waiter: asyncio.Future | None = None  # the sender's wait, ended by put once _wanted wait

    def __len__(self) -> int:
        return len(self._frames)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._frames)

    def put(self, frame: bytes) -> bool:
        """Queue ``frame``; False, and nothing queued, when the outbox is full."""
        if len(self._frames) >= self.limit:
            return False
        self._frames.append(frame)
        if self._waiter is not None and len(self._frames) >= self._wanted:
            _settle(self._waiter)
        return True

    def take(self) -> bytes:
        return self._frames.popleft()

    def next_size(self) -> int:
        """Bytes of the next message waiting; the outbox must not be empty."""
        return len(self._frames[0])

    async def wait(self, count: int, timeout: float | None = None) -> None:
        """Until ``count`` messages wait, or ``timeout`` seconds have passed."""
        if len(self._frames) >= count:
            return
        loop = asyncio.get_running_loop()
        self._wanted = count
        self._waiter = waiter = loop.create_future()
        timer = loop.call_later(timeout, _settle, waiter) if timeout is not None else None
        try:
            await waiter
        finally:
            if timer is not None:
                timer.cancel()
            self._waiter = None


class BrowserLink:
    """One browser connection: who is logged in, its bounded outbox, its sender."""

    def __init__(self, ws: ServerConnection, limit: int) -> None:
        self.ws = ws
        self.outbox = Outbox(limit)
        self._user: str | None = None
        self._role: str | None = None
        self._token: str | None = None
        self.bad = 0
        self.dropped = False
        self.sender: asyncio.Task | None = None
        self.shed_at = max(1, int(limit * SHED_AT))
        self.flush_at = max(1, self.shed_at // 2)
        """Messages waiting that end a sender's wait (:data:`FLUSH_EVERY`) at once: half the shedding mark."""
        self.shed = 0
        """Partials not queued for this browser because it was behind."""

    @property
    def peer(self) -> str:
        return peer(self.ws)

    # Who the browser is, read-only: only Screens.sign_in and Screens.sign_out change it, so
    # the index that decides what each browser is sent cannot go stale behind their back.
    @property
    def user(self) -> str | None:
        return self._user

    @property
    def role(self) -> str | None:
        return self._role

    @property
    def token(self) -> str | None:
        return self._token

    def _identify(self, user: str | None, role: str | None, token: str | None) -> None:
        self._user, self._role, self._token = user, role, token

    def offer(self, frame: bytes, *, sheddable: bool = False) -> bool:
        """Queue a message (its UTF-8 text); False when the outbox is full (the
        browser is too slow). A ``sheddable`` message (a live partial) is not
        queued, and counted in :attr:`shed`, once the outbox is :data:`SHED_AT` full."""
        if sheddable and len(self.outbox) >= self.shed_at:
            self.shed += 1
            return True
        return self.outbox.put(frame)

    async def pump(self) -> None:
        """Send queued messages in order until the socket closes: what is waiting
        in one write, at most every :data:`FLUSH_EVERY` while messages keep coming
        (sooner once :attr:`flush_at` wait)."""
        loop = asyncio.get_running_loop()
        flushed = -FLUSH_EVERY
        try:
            while True:
                await self.outbox.wait(1)
                wait = flushed + FLUSH_EVERY - loop.time()
                if wait > 0:  # a stream: what comes meanwhile joins this write
                    await self.outbox.wait(self.flush_at, wait)
                if self._keeping_up():
                    self._write()
                else:  # slow, or closing: one message, waiting for the socket as send does
                    await self.ws.send(self.outbox.take(), text=True)
                flushed = loop.time()
        except ConnectionClosed:
            pass

    def _keeping_up(self) -> bool:
        """The socket is open, not in a fragmented send, and has less than
        :data:`WRITE_BUFFER_LIMIT` waiting to go out."""
        ws = self.ws
        return (ws.protocol.state is State.OPEN and ws.send_in_progress is None
                and ws.transport.get_write_buffer_size() < WRITE_BUFFER_LIMIT)

    def _write(self) -> None:
        """Write what waits in the outbox, in order, each its own text message, in
        one write: as many as keep the socket's buffer under
        :data:`WRITE_BUFFER_LIMIT` (the rest stay queued, so shedding and dropping
        still go by the outbox), at least one."""
        ws = self.ws
        frame = self.outbox.take()
        room = WRITE_BUFFER_LIMIT - ws.transport.get_write_buffer_size() - len(frame)
        ws.protocol.send_text(frame)
        while self.outbox and self.outbox.next_size() <= room:
            frame = self.outbox.take()
            room -= len(frame)
            ws.protocol.send_text(frame)
        # No await since the state was checked: the socket is open, so what the protocol has to
        # send is these frames alone (websockets writes a pong or a close as soon as it makes
        # one, and an end of stream only comes after the socket has left the open state).
        ws.transport.writelines(ws.protocol.data_to_send())

    async def drain(self, rounds: int = 20) -> None:
        """Give the sender a moment to flush the outbox before a deliberate close."""
        for _ in range(rounds):
            if not self.outbox:
                return
            await asyncio.sleep(0.01)


class Screens:
    """The connected browsers and what they are sent.

    ``on_drop`` is called once per browser dropped for being too slow (the
    console counts it); ``on_unsendable`` once per message that could not be
    encoded and was sent to no one; ``spawn`` runs the close of a dropped
    socket as a kept task."""

    def __init__(self, *, on_drop: Callable[[], None], spawn: Callable[[Coroutine[Any, Any, Any]], asyncio.Task],
                 on_unsendable: Callable[[], None] = lambda: None) -> None:
        self._links: set[BrowserLink] = set()
        self._watching: set[BrowserLink] = set()  # signed in with a role that watches every call
        self._partners: dict[str, set[BrowserLink]] = {}  # a partner's signed-in browsers, by user
        self.partials_shed = 0
        """Live partials not queued for a browser that was behind (:data:`SHED_AT`), over all browsers."""
        self._on_drop = on_drop
        self._on_unsendable = on_unsendable
        self._spawn = spawn
        self.relay: Callable[[bytes, bool, str | None, bool], None] | None = None
        """With several replicas (``console/cluster.py``): hands what is published here to the others."""

    def publish(self, message: Any, *, call: Call | None, supervisors: bool = True, partner: str | None = None,
                everywhere: bool = True) -> None:
        """Send to every supervisor (if ``supervisors``) and to the partner of
        ``call`` (or the named ``partner``). Encoded once, queued per browser,
        and (``everywhere``, with replicas) handed once to :attr:`relay` for
        the other replicas' browsers."""
        frame = self.frame(message)
        if frame is None:
            return
        partner = partner or (call.partner if call else None)
        sheddable = isinstance(message, b.PartialShown)
        self.deliver(frame, supervisors, partner, sheddable)
        if everywhere and self.relay is not None:
            self.relay(frame, supervisors, partner, sheddable)

    @property
    def links(self) -> frozenset[BrowserLink]:
        """The connected browsers, signed in or not (a copy: :meth:`add` and :meth:`remove` change them)."""
        return frozenset(self._links)

    def add(self, link: BrowserLink) -> None:
        """A browser connected (not signed in yet: it is sent nothing published)."""
        self._links.add(link)

    def remove(self, link: BrowserLink) -> None:
        """A browser's socket is gone."""
        self._links.discard(link)
        self._unindex(link)

    def sign_in(self, link: BrowserLink, user: str, role: str, token: str) -> None:
        """``link`` is ``user`` as ``role`` from now on: sent what that role sees."""
        self._unindex(link)
        link._identify(user, role, token)
        if link.dropped or link not in self._links:
            return
        if role in WATCHES_ALL_CALLS:
            self._watching.add(link)
        elif role == "partner":
            self._partners.setdefault(user, set()).add(link)

    def sign_out(self, link: BrowserLink) -> None:
        """``link`` loses its rights at once: sent nothing published from now on."""
        self._unindex(link)
        link._identify(None, None, None)

    def _unindex(self, link: BrowserLink) -> None:
        self._watching.discard(link)
        mine = self._partners.get(link.user) if link.role == "partner" else None
        if mine is not None:
            mine.discard(link)
            if not mine:
                del self._partners[link.user]

    def deliver(self, frame: bytes, supervisors: bool, partner: str | None, sheddable: bool) -> None:
        """Queue an encoded message for this console's browsers that should see
        it: found by role and user (an index kept by :meth:`sign_in` and
        :meth:`sign_out`), not by looking at every connected browser, which at a
        thousand partners cost more than the sending."""
        targets = list(self._watching) if supervisors else []
        if partner is not None and partner in self._partners:
            targets.extend(self._partners[partner])
        for link in targets:
            if link.dropped:
                continue
            shed = link.shed
            if not link.offer(frame, sheddable=sheddable):
                self.drop(link)
            self.partials_shed += link.shed - shed

    def reply(self, link: BrowserLink, message: Any) -> None:
        """Queue an answer for one browser."""
        frame = self.frame(message)
        if frame is not None and not link.offer(frame):
            self.drop(link)

    def frame(self, message: Any) -> bytes | None:
        """The UTF-8 text of ``message`` for browsers, or None (counted and
        logged) when it is no valid JSON in UTF-8: NaN or Infinity in a number,
        a lone surrogate in a text."""
        try:
            return b.encode(message).encode("utf-8")
        except ValueError as exc:  # UnicodeEncodeError is one
            self._on_unsendable()
            log.error("a %s message for browsers cannot be encoded and was sent to no one: %s",
                      getattr(message, "TYPE", type(message).__name__), str(exc)[:200].encode("unicode_escape").decode("ascii"))
            return None

    def drop(self, link: BrowserLink) -> None:
        link.dropped = True
        self._on_drop()
        log.warning("dropping slow browser %s (%s): %d messages behind", link.user, link.peer, len(link.outbox))
        self.remove(link)
        if link.sender is not None:
            link.sender.cancel()
        self._spawn(link.ws.close(1013, "too slow: reconnect"))


def _settle(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


def peer(ws: ServerConnection) -> str:
    """The client's address, for the audit log."""
    address = ws.remote_address
    return str(address[0]) if address else "?"
