"""The one bounded queue of the house: drop the oldest when full, and count it.

A live call cannot be slowed down (``docs/architecture.md``, style rule 2):
wherever audio or events cross a task boundary, the producer puts without
waiting; when the queue is full the oldest item goes, and :attr:`dropped`
says how many went, so the overflow can be reported as an event.

:class:`DropOldestQueue` is for one event loop: one or more producers call
:meth:`~DropOldestQueue.put` on the loop (a device callback on another thread
hands over with ``loop.call_soon_threadsafe`` first), one consumer awaits
:meth:`~DropOldestQueue.get`. It takes no lock and starts no task.

:class:`RecentSet` is its counterpart for ids a side must remember (the call
ids an agent gave, the ids a console link refused as taken): bounded, the
oldest forgotten first, counted.

This module imports nothing from callshield.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class DropOldestQueue(Generic[T]):
    """A bounded FIFO: when full, :meth:`put` drops the oldest item and counts it.

    ``maxsize``: the most items held (at least 1). ``dropped``: items dropped
    to make room since the queue was made (never reset; report differences).
    Items may be anything but None (:meth:`get` returns None once the queue is
    closed and empty).

    :meth:`put_wait` is for a producer that can wait (a file read faster than
    real time): nothing is dropped, the producer waits for room instead.
    """

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self.dropped = 0
        """Items dropped because the queue was full (a running count)."""
        self._items: deque[T] = deque()
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def __iter__(self) -> Iterator[T]:
        """The items held, oldest first, left in the queue (a snapshot for reports and tests)."""
        return iter(tuple(self._items))

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called (items still held are still delivered)."""
        return self._closed

    def put(self, item: T) -> T | None:
        """Append ``item`` without waiting; returns the oldest item if it was dropped to make room, else None."""
        dropped = None
        if len(self._items) >= self.maxsize:
            dropped = self._items.popleft()
            self.dropped += 1
        self._items.append(item)
        self._ready.set()
        return dropped

    async def put_wait(self, item: T) -> None:
        """Append ``item``, waiting for room instead of dropping. Once the queue
        is closed nobody may come for more, so it no longer waits: :meth:`put`."""
        while len(self._items) >= self.maxsize and not self._closed:
            self._room.clear()
            await self._room.wait()
        self.put(item)

    def peek(self) -> T | None:
        """The oldest item, left in the queue; None if empty."""
        return self._items[0] if self._items else None

    def get_nowait(self) -> T:
        """Remove and return the oldest item; ``IndexError`` if empty."""
        item = self._items.popleft()
        self._room.set()
        return item

    def clear(self) -> int:
        """Drop every item held without counting them as dropped (the caller decided); returns how many."""
        n = len(self._items)
        self._items.clear()
        self._room.set()
        return n

    def close(self) -> None:
        """No more items are coming: :meth:`get` returns None once the queue is empty."""
        self._closed = True
        self._ready.set()
        self._room.set()  # a producer waiting for room must not wait for a consumer that may be gone

    async def get(self) -> T | None:
        """The oldest item, waiting for one; None once the queue is closed and empty."""
        while not self._items:
            if self._closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        return self.get_nowait()


class RecentSet(Generic[T]):
    """The latest ``limit`` items added, a set whose oldest are forgotten first
    (counted in :attr:`forgotten`): ids a side remembers without growing for ever.
    Adding an item again keeps its first place."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self.forgotten = 0
        self._items: dict[T, None] = {}  # insertion order: the oldest first

    def __contains__(self, item: object) -> bool:
        return item in self._items

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: T) -> None:
        self._items[item] = None
        while len(self._items) > self.limit:
            del self._items[next(iter(self._items))]
            self.forgotten += 1
