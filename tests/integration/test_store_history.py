"""History in the store against a real PostgreSQL: a fork copies its source's steps before the chosen
one in its registration; retention cleanup is bounded per call, runs beside admission and checkpoints,
and loses nothing still in retention; archived runs are listed and read back."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import timedelta

from cairn.store.base import QueueRow
from cairn.store.postgres import PostgresStore, migrate
from tests.integration.test_store import NOW, _run
from tests.support.figures import report


async def _store(database: str, name: str) -> PostgresStore:
    await migrate(database)
    store = PostgresStore(database, max_size=4, name=name)
    await store.open()
    return store


async def _finished_with_steps(store: PostgresStore, queue: str, steps: int, retention: timedelta) -> str:
    run = _run(queue)
    await store.register_run(run)
    await store.admission_round("ns", queue, NOW)
    await store.begin_attempt(run.uid, 1, "ns", f"{run.name}-1")
    for i in range(steps):
        assert (await store.record_step(run.uid, 1, f"work#{i}", {"i": i}, None)).inserted
    await store.finish(run.uid, "Failed", retention)
    return run.uid


def test_a_fork_gets_the_source_s_steps_before_its_step_in_order_and_runs_on_from_there(database: str) -> None:
    async def go() -> None:
        store = await _store(database, "fork")
        await store.upsert_queue(QueueRow("ns", "f", "uid", 5, None, False))
        source_uid = await _finished_with_steps(store, "f", 4, timedelta(days=1))
        source = await store.history_run("ns", (await store.history_runs("ns", {}, 10))[0]["name"])
        assert source is not None
        found = await store.fork_source("ns", source["name"])
        assert found is not None and found.uid == source_uid
        assert found.steps == ("work#0", "work#1", "work#2", "work#3")
        fork = replace(_run("f"), fork=(source_uid, "work#2"), labels=(("team", "a"),))
        assert await store.register_run(fork)  # room: admitted at once, with its copies in place
        await store.begin_attempt(fork.uid, 1, "ns", "fork-1")
        context = await store.run_context(fork.uid)
        assert context is not None and context[1] == [("work#0", {"i": 0}), ("work#1", {"i": 1})]
        assert (await store.record_step(fork.uid, 1, "work#2", {"i": 20}, None)).inserted
        detail = await store.history_run("ns", fork.name)
        assert detail is not None
        assert [(s["key"], s["seq"], s["attempt"]) for s in detail["steps"]] == [
            ("work#0", 1, 0),
            ("work#1", 2, 0),
            ("work#2", 3, 1),
        ]
        assert detail["labels"] == {"team": "a"}
        assert [r["name"] for r in await store.history_runs("ns", {"labels": {"team": "a"}}, 10)] == [fork.name]
        await store.close()

    asyncio.run(go())


def test_retention_cleanup_is_bounded_runs_beside_admission_and_checkpoints_and_loses_nothing_in_retention(
    database: str,
) -> None:
    async def go() -> None:
        store = await _store(database, "retention")
        await store.upsert_queue(QueueRow("ns", "h", "uid", 50, None, False))
        expired = [await _finished_with_steps(store, "h", 3, timedelta(seconds=-1)) for _ in range(25)]
        kept = [await _finished_with_steps(store, "h", 3, timedelta(days=1)) for _ in range(5)]
        # A live run recording steps, and new runs registering and being admitted, while the sweeps run.
        live = _run("h")
        await store.register_run(live)
        await store.begin_attempt(live.uid, 1, "ns", "live-1")
        recorded = 0

        async def checkpoints() -> None:
            nonlocal recorded
            for i in range(60):
                if (await store.record_step(live.uid, 1, f"live#{i}", {"i": i}, None)).inserted:
                    recorded += 1

        async def arrivals() -> list[str]:
            made = []
            for _ in range(15):
                run = _run("h")
                await store.register_run(run)
                made.append(run.uid)
            await store.admission_round("ns", "h", NOW)
            return made

        async def sweeps() -> list[int]:
            counts = []
            for _ in range(4):
                counts.append(await store.purge_expired(10, 100_000))
            return counts

        _, arrived, counts = await asyncio.gather(checkpoints(), arrivals(), sweeps())
        # Bounded: never more than the batch in one call; the backlog of 25 went in three calls.
        assert all(c <= 10 for c in counts) and sum(counts) == 25, counts
        async with store.pool.connection() as conn:
            rows = await (await conn.execute("SELECT uid::text FROM runs")).fetchall()
            live_steps = await (
                await conn.execute("SELECT count(*) FROM steps WHERE run_uid = %s", (live.uid,))
            ).fetchone()
        left = {r[0] for r in rows}
        assert left.isdisjoint(expired)
        assert set(kept) <= left and live.uid in left and set(arrived) <= left  # nothing in retention lost
        assert live_steps is not None and live_steps[0] == recorded == 60
        report(
            f"retention: {len(expired)} expired runs deleted in calls of {counts} (batch 10); {len(kept)} in "
            f"retention and {len(arrived)} new runs kept; {recorded} steps recorded meanwhile"
        )
        await store.close()

    asyncio.run(go())


def test_past_the_count_the_oldest_archived_runs_go_first_and_live_runs_never(database: str) -> None:
    async def go() -> None:
        store = await _store(database, "count")
        await store.upsert_queue(QueueRow("ns", "c", "uid", 50, None, False))
        archived = []
        for _ in range(6):
            uid = await _finished_with_steps(store, "c", 1, timedelta(days=1))
            await store.forget(uid, timedelta(days=1))  # its TaskRun deleted: archived
            archived.append(uid)
        finished_not_deleted = await _finished_with_steps(store, "c", 1, timedelta(days=1))
        assert await store.purge_expired(2, 3) == 2  # bounded: two of the three over the count
        assert await store.purge_expired(2, 3) == 1
        listed = await store.history_runs("ns", {"archived": True}, 50)
        assert {r["uid"] for r in listed} == set(archived[3:])  # the newest three stay
        assert all(r["deletedAt"] for r in listed)
        everything = {r["uid"] for r in await store.history_runs("ns", {}, 50)}
        assert finished_not_deleted in everything
        page = await store.history_runs("ns", {"archived": True}, 2)
        assert len(page) == 2 and uuid.UUID(page[0]["uid"])
        await store.close()

    asyncio.run(go())
