"""The ids an agent gives its calls: never one it already gave (agent.call.CallIds)."""

from __future__ import annotations

import pytest

from agent.call import CallIds


def test_an_unused_id_is_given_as_asked_and_none_gets_a_fresh_uuid():
    ids = CallIds()
    assert ids.take("c1", running=set()) == ("c1", None)
    fresh, reused = ids.take(None, running=set())
    assert len(fresh) == 32 and int(fresh, 16) >= 0 and reused is None


def test_a_running_or_ended_calls_id_is_never_given_again():
    ids = CallIds()
    assert ids.take("c1", running={"c1"}) == ("c1.2", "c1")
    ids.ended("c1")
    assert ids.take("c1", running=set()) == ("c1.2", "c1")
    ids.ended("c1.2")
    assert ids.take("c1", running={"c1.3"}) == ("c1.4", "c1")


def test_ended_ids_are_remembered_up_to_a_bound_the_oldest_forgotten_first():
    ids = CallIds(remember=3)
    for n in range(5):
        ids.ended(f"c{n}")
    assert [f"c{n}" in ids for n in range(5)] == [False, False, True, True, True] and ids.forgotten == 2
    assert ids.take("c0", running=set()) == ("c0", None)
    with pytest.raises(ValueError):
        CallIds(remember=0)
