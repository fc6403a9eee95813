"""Queues that pace, against a real PostgreSQL: the rate holds with several operators racing and one
restarting (its clock is the database's), a held-back run's reason and chance are written once, and
maxQueued rejects what arrives past it, exactly, even when registrations race."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from cairn.domain.admission import WaitReason
from cairn.domain.pace import Rate
from cairn.store.base import QueueRow
from cairn.store.postgres import PostgresStore, migrate
from tests.integration.test_store import _run
from tests.support.figures import report

S = timedelta(seconds=1)


def _most_in_a_window(times: list[datetime], period: timedelta) -> int:
    return max((sum(1 for u in times if t - period < u <= t) for t in times), default=0)


async def _admission_log(store: PostgresStore, queue: str) -> list[tuple[datetime, str | None]]:
    async with store.pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT admitted_at, concurrency_key FROM runs WHERE namespace = 'ns' AND queue = %s "
                "AND admitted_at IS NOT NULL ORDER BY admitted_at",
                (queue,),
            )
        ).fetchall()
    return [(r[0], r[1]) for r in rows]


def test_four_racing_operators_and_a_restart_never_exceed_the_rate_or_a_keys_rate(database: str) -> None:
    asyncio.run(migrate(database))
    rate, key_rate = Rate(6, S, 3), Rate(2, S, 2)
    row = QueueRow("ns", "paced", "uid", 1000, None, False, rate=rate, key_rate=key_rate)

    async def operator(i: int, deadline: float) -> int:
        rounds = 0
        store = PostgresStore(database, max_size=2, name=f"op{i}")
        await store.open()
        restarted = i != 0
        try:
            while time.monotonic() < deadline:
                if not restarted and time.monotonic() > deadline - 2.5:
                    await store.close()  # a restart: nothing of the pace lives in the process
                    store = PostgresStore(database, max_size=2, name=f"op{i}-again")
                    await store.open()
                    restarted = True
                await store.admission_round("ns", "paced", datetime.now(UTC))
                rounds += 1
                await asyncio.sleep(0.005 * (i + 1))
        finally:
            await store.close()
        return rounds

    async def race() -> tuple[int, list[tuple[datetime, str | None]]]:
        store = PostgresStore(database, name="setup")
        await store.open()
        await store.upsert_queue(row)
        for n in range(120):
            await store.register_run(_run("paced", key=["a", "b", None][n % 3]))
        deadline = time.monotonic() + 5
        rounds = sum(await asyncio.gather(*(operator(i, deadline) for i in range(4))))
        log = await _admission_log(store, "paced")
        await store.close()
        return rounds, log

    rounds, log = asyncio.run(race())
    times = [t for t, _ in log]
    by_key = {k: [t for t, kk in log if kk == k] for k in ("a", "b")}
    report(
        f"\n4 operators (one restarted) made {rounds} rounds over 5 s and admitted {len(log)} runs at "
        f"{rate.describe()} (keys {key_rate.describe()}): most in any 1 s {_most_in_a_window(times, S)}, "
        f"in any {rate.burst_window.total_seconds()} s {_most_in_a_window(times, rate.burst_window)}, "
        f"per key {[_most_in_a_window(t, S) for t in by_key.values()]}"
    )
    assert rounds > 200 and len(log) >= 4 * rate.limit  # it went on admitting, at about its pace
    assert _most_in_a_window(times, S) <= rate.limit
    assert _most_in_a_window(times, rate.burst_window) <= rate.burst
    for key_times in by_key.values():
        assert key_times and _most_in_a_window(key_times, S) <= key_rate.limit


def test_a_held_back_run_gets_its_reason_and_chance_once_and_keeps_them(database: str) -> None:
    asyncio.run(migrate(database))

    async def go() -> None:
        store = PostgresStore(database, name="t")
        await store.open()
        await store.upsert_queue(QueueRow("ns", "slow", "uid", 10, None, False, rate=Rate(1, 60 * S, 1)))
        runs = [_run("slow", created=datetime(2026, 1, 1, tzinfo=UTC) + n * S) for n in range(3)]
        for r in runs:
            await store.register_run(r)
        first = await store.admission_round("ns", "slow", datetime.now(UTC))
        assert first.admitted == [runs[0].uid]
        assert sorted(first.reason_changed) == sorted([runs[1].uid, runs[2].uid])
        assert first.paced and first.next_due is not None
        again = await store.admission_round("ns", "slow", datetime.now(UTC))
        assert again.admitted == [] and again.reason_changed == []  # nothing to write: nothing moved
        one, two = await store.admission(runs[1].uid), await store.admission(runs[2].uid)
        assert one is not None and two is not None
        assert one.wait_reason is WaitReason.RATE_LIMITED and one.wait_until is not None
        assert two.wait_until is not None and two.wait_until - one.wait_until == 60 * S
        assert abs(one.wait_until - first.next_due) < S
        stats = await store.queue_stats("ns", "slow")
        assert (stats.rate_used, stats.rate_limited, stats.queued) == (1, 2, 2)
        # The rate removed: its admissions are forgotten, and the next round admits both.
        await store.upsert_queue(QueueRow("ns", "slow", "uid", 10, None, False))
        assert sorted((await store.admission_round("ns", "slow", datetime.now(UTC))).admitted) == sorted(
            [runs[1].uid, runs[2].uid]
        )
        await store.close()

    asyncio.run(go())


def test_max_queued_rejects_exactly_what_arrives_past_it_even_when_registrations_race(database: str) -> None:
    asyncio.run(migrate(database))

    async def go() -> None:
        store = PostgresStore(database, max_size=8, name="t")
        await store.open()
        await store.upsert_queue(QueueRow("ns", "capped", "uid", 1, None, True, max_queued=5))
        runs = [_run("capped") for _ in range(12)]
        await asyncio.gather(*(store.register_run(r) for r in runs))
        states = [await store.admission(r.uid) for r in runs]
        queued = [a for a in states if a is not None and a.state == "queued"]
        rejected = [a for a in states if a is not None and a.wait_reason is WaitReason.REJECTED]
        report(
            f"\n12 registrations at once on a queue with maxQueued 5: {len(queued)} queued, {len(rejected)} rejected"
        )
        assert (len(queued), len(rejected)) == (5, 7)
        assert all(a.state == "finished" and a.limits and a.limits.max_queued == 5 for a in rejected)
        assert await store.queue_depth("ns", "capped") == (5, 5)
        # Ending a rejected run records its retention and keeps the reason it was never queued.
        victim = next(r for r, a in zip(runs, states, strict=True) if a and a.wait_reason is WaitReason.REJECTED)
        assert await store.finish(victim.uid, "Failed", timedelta(days=1)) is not None
        after = await store.admission(victim.uid)
        assert after is not None and after.wait_reason is WaitReason.REJECTED
        assert await store.finish(victim.uid, "Failed", timedelta(days=1)) is None  # once
        # Nothing already queued is touched; without a cap, registration is one statement again.
        await store.upsert_queue(QueueRow("ns", "capped", "uid", 1, None, True))
        extra = _run("capped")
        await store.register_run(extra)
        got = await store.admission(extra.uid)
        assert got is not None and got.state == "queued"
        assert await store.queue_depth("ns", "capped") == (None, 0)  # unbounded: not even counted
        assert (await store.queue_stats("ns", "capped")).queued == 6
        await store.close()

    asyncio.run(go())
