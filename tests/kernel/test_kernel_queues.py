"""The one bounded drop-oldest queue (kernel.queues)."""

from __future__ import annotations

import asyncio

import pytest

from kernel.queues import DropOldestQueue


def test_a_full_queue_drops_the_oldest_and_counts_it():
    queue: DropOldestQueue[int] = DropOldestQueue(3)
    assert [queue.put(i) for i in range(5)] == [None, None, None, 0, 1]
    assert queue.dropped == 2 and len(queue) == 3 and queue.peek() == 2
    assert [queue.get_nowait() for _ in range(3)] == [2, 3, 4]
    assert not queue and queue.peek() is None
    with pytest.raises(IndexError):
        queue.get_nowait()


def test_clear_is_not_counted_as_dropped():
    queue: DropOldestQueue[str] = DropOldestQueue(2)
    queue.put("a")
    queue.put("b")
    assert queue.clear() == 2 and queue.dropped == 0 and len(queue) == 0


def test_get_waits_for_an_item_and_returns_none_once_closed_and_empty():
    async def main():
        queue: DropOldestQueue[int] = DropOldestQueue(2)
        getter = asyncio.create_task(queue.get())
        await asyncio.sleep(0)
        assert not getter.done()
        queue.put(7)
        first = await getter
        queue.put(8)
        queue.close()
        return first, await queue.get(), await queue.get(), queue.closed

    assert asyncio.run(main()) == (7, 8, None, True)


def test_put_wait_waits_for_room_and_drops_nothing():
    async def main():
        queue: DropOldestQueue[int] = DropOldestQueue(2)

        async def produce():
            for i in range(10):
                await queue.put_wait(i)
            queue.close()

        producer = asyncio.create_task(produce())
        got = []
        while (item := await queue.get()) is not None:
            got.append(item)
            assert len(queue) <= 2
        await producer
        return got, queue.dropped

    assert asyncio.run(main()) == (list(range(10)), 0)


def test_a_slow_consumer_loses_the_oldest_and_the_count_adds_up():
    async def main():
        queue: DropOldestQueue[int] = DropOldestQueue(4)
        for i in range(100):
            queue.put(i)
        queue.close()
        got = []
        while (item := await queue.get()) is not None:
            got.append(item)
        return got, queue.dropped

    got, dropped = asyncio.run(main())
    assert got == [96, 97, 98, 99] and dropped + len(got) == 100


def test_the_bound_is_at_least_one():
    with pytest.raises(ValueError):
        DropOldestQueue(0)


def test_iterating_shows_what_is_held_without_taking_it():
    queue: DropOldestQueue[int] = DropOldestQueue(2)
    for i in range(3):
        queue.put(i)
    assert list(queue) == [1, 2] and len(queue) == 2 and queue.dropped == 1


def test_closing_releases_a_producer_waiting_for_room():
    async def main():
        queue: DropOldestQueue[int] = DropOldestQueue(1)
        queue.put(1)
        waiting = asyncio.create_task(queue.put_wait(2))
        await asyncio.sleep(0)
        assert not waiting.done()
        queue.close()
        await asyncio.wait_for(waiting, 1)
        return list(queue), queue.dropped

    assert asyncio.run(main()) == ([2], 1)
