"""The work queue: one worker per key at a time, adds deduplicated, and work added for later behind
the work in flight without being starved by it."""

from __future__ import annotations

import asyncio

from cairn.controller.workqueue import LATER_SHARE, WorkQueue


async def _drain(q: WorkQueue[str], n: int) -> list[str]:
    got = []
    for _ in range(n):
        key = await q.get()
        got.append(key)
        q.done(key)
    return got


def test_a_key_added_twice_while_waiting_is_processed_once() -> None:
    async def go() -> list[str]:
        q: WorkQueue[str] = WorkQueue("t")
        for key in ("a", "b", "a"):
            q.add(key)
        assert len(q) == 2
        return await _drain(q, 2)

    assert asyncio.run(go()) == ["a", "b"]


def test_a_key_added_while_processed_runs_once_more_afterwards() -> None:
    async def go() -> list[str]:
        q: WorkQueue[str] = WorkQueue("t")
        q.add("a")
        key = await q.get()
        q.add("a")
        assert len(q) == 0  # not twice at once
        q.done(key)
        return await _drain(q, 1)

    assert asyncio.run(go()) == ["a"]


def test_work_added_for_later_waits_behind_work_in_flight_but_gets_a_share_of_the_gets() -> None:
    async def go() -> list[str]:
        q: WorkQueue[str] = WorkQueue("t")
        for i in range(8):
            q.add(f"new{i}", later=True)
        for i in range(12):
            q.add(f"pod{i}")
        return await _drain(q, 20)

    order = asyncio.run(go())
    first = order[: 3 * LATER_SHARE]
    assert sum(k.startswith("new") for k in first) == 3  # one get in LATER_SHARE takes a new one
    assert [k for k in order if k.startswith("new")] == [f"new{i}" for i in range(8)]  # oldest first
    assert [k for k in order if k.startswith("pod")] == [f"pod{i}" for i in range(12)]
    assert sorted(order) == sorted([f"new{i}" for i in range(8)] + [f"pod{i}" for i in range(12)])


def test_a_key_waiting_for_later_that_is_wanted_now_moves_to_the_front_line() -> None:
    async def go() -> list[str]:
        q: WorkQueue[str] = WorkQueue("t")
        for key in ("x", "y", "z"):
            q.add(key, later=True)
        q.add("a")
        q.add("z")  # e.g. a run waiting to be registered was admitted meanwhile
        q.add("y", later=True)  # later again: stays where it was
        assert len(q) == 4
        return await _drain(q, 4)

    assert asyncio.run(go()) == ["a", "z", "x", "y"]


def test_later_work_alone_is_taken_at_once() -> None:
    async def go() -> list[str]:
        q: WorkQueue[str] = WorkQueue("t")
        q.add("only", later=True)
        return await asyncio.wait_for(_drain(q, 1), timeout=5)

    assert asyncio.run(go()) == ["only"]
