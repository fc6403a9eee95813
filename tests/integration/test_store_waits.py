"""Durable waits in the store against a real PostgreSQL: a wait frees the slot, every way a wait ends
records its result as the step and queues the run again (ahead of fresh runs), the last child's end
wakes its parent in the same transaction, and the first completion of a token wins even when
completions and the pod's suspension race."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import UTC, datetime, timedelta

from cairn.domain.lifecycle import Register
from cairn.store.base import Ending, QueueRow
from cairn.store.postgres import PostgresStore, migrate
from tests.integration.test_store import SNAPSHOT
from tests.support.figures import report

NOW = datetime.now(UTC)
DAY = timedelta(days=1)


def _run(name: str, parent: tuple[str, str, int] | None = None) -> Register:
    return Register(
        uid=str(uuid.uuid4()),
        namespace="ns",
        name=name,
        queue="q",
        priority=0,
        key=None,
        created=NOW,
        snapshot=SNAPSHOT,
        payload=None,
        parent=parent,
    )


async def _state(store: PostgresStore, uid: str) -> str:
    async with store.pool.connection() as conn:
        row = await (await conn.execute("SELECT state FROM runs WHERE uid = %s", (uid,))).fetchone()
    assert row is not None
    return str(row[0])


SUSPENDED = Ending(1, 0, "Suspended")  # attempt 1's pod stopped for its wait


async def _start(store: PostgresStore, run: Register, attempt: int = 1) -> None:
    """Admit the run and begin its attempt (the queue has room for it)."""
    await store.admission_round("ns", "q", datetime.now(UTC))
    assert await _state(store, run.uid) == "admitted"
    await store.begin_attempt(run.uid, attempt, "ns", f"{run.name}-{attempt}")


async def _store(database: str, limit: int = 1) -> PostgresStore:
    await migrate(database)
    store = PostgresStore(database, name="waits")
    await store.open()
    await store.upsert_queue(QueueRow("ns", "q", "uid", limit, None, False))
    return store


def test_a_sleep_frees_the_slot_and_when_it_is_over_the_run_goes_ahead_of_a_fresh_one(database: str) -> None:
    async def go() -> None:
        store = await _store(database)
        sleeper, fresh = _run("sleeper"), _run("fresh")
        await store.register_run(sleeper)
        await _start(store, sleeper)
        await store.register_run(fresh)
        until = datetime.now(UTC) + timedelta(seconds=1)
        answer = await store.register_wait(sleeper.uid, 1, "nap#0", "sleep", until=until)
        assert answer.allowed and answer.suspend and not answer.done
        assert await _state(store, sleeper.uid) == "admitted"  # the pod still runs: its slot stays
        assert (await store.admission_round("ns", "q", datetime.now(UTC))).admitted == []
        await store.suspend(sleeper.uid, SUSPENDED)
        assert await _state(store, sleeper.uid) == "waiting"
        assert (await store.admission_round("ns", "q", datetime.now(UTC))).admitted == [fresh.uid]
        assert await store.wake(sleeper.uid, "nap#0") is None  # not yet
        await asyncio.sleep(1.1)
        assert await store.wake(sleeper.uid, "nap#0") == ("ns", "q")
        assert await _state(store, sleeper.uid) == "queued"
        late = _run("late")
        await store.register_run(late)
        await store.finish(fresh.uid, "Succeeded", DAY)
        # The resumed run goes first, though `late` is as old (same creation time, registered later).
        assert (await store.admission_round("ns", "q", datetime.now(UTC))).admitted == [sleeper.uid]
        await store.begin_attempt(sleeper.uid, 2, "ns", "sleeper-2")
        context = await store.run_context(sleeper.uid)
        assert context is not None and ("nap#0", None) in context[1]
        # A retried call of the same wait by the new attempt: over, recorded.
        again = await store.register_wait(sleeper.uid, 2, "nap#0", "sleep", until=until)
        assert again.done and not again.suspend
        # The same key as another kind of wait is refused by name.
        clash = await store.register_wait(sleeper.uid, 2, "tok#0", "sleep", until=until + DAY)
        assert clash.suspend
        other = await store.register_wait(sleeper.uid, 2, "tok#0", "token", token="tok-0000000000000000")
        assert other.conflict is not None
        await store.close()

    asyncio.run(go())


def test_the_first_completion_of_a_token_wins_and_a_completion_racing_the_suspension_is_never_lost(
    database: str,
) -> None:
    async def go() -> None:
        store = await _store(database, limit=50)
        rounds, woke = 20, 0
        for i in range(rounds):
            run = _run(f"approve-{i}")
            await store.register_run(run)
            await _start(store, run)
            secret = f"s-{i}"
            token_id = f"tok-{i:016x}"
            created = await store.create_token(
                run.uid,
                1,
                "approval#0",
                namespace="ns",
                token_id=token_id,
                secret_hash=hashlib.sha256(secret.encode()).hexdigest(),
                tags=["deploy"],
                timeout_at=None,
                result={"id": token_id},
            )
            assert created == {"id": token_id}
            answer = await store.register_wait(run.uid, 1, "approved#0", "token", token=token_id)
            assert answer.suspend
            # Five completions race the pod's suspension; exactly one wins.
            outcomes = await asyncio.gather(
                store.suspend(run.uid, SUSPENDED),
                *(
                    store.complete_token(
                        token_id, {"n": n}, by=f"c{n}", secret=hashlib.sha256(secret.encode()).hexdigest()
                    )
                    for n in range(5)
                ),
            )
            completions = [o.outcome for o in outcomes[1:]]  # type: ignore[union-attr]
            assert sorted(completions) == ["AlreadyCompleted"] * 4 + ["Completed"], completions
            assert await _state(store, run.uid) == "queued", i  # woken, whichever came first
            woke += 1
            winner = next(o for o in outcomes[1:] if o.outcome == "Completed")  # type: ignore[union-attr]
            context = await store.run_context(run.uid)
            assert context is not None
            recorded = dict(context[1])["approved#0"]
            assert recorded["ok"] is True and recorded["data"] == {"n": int(winner.completed_by[1:])}  # type: ignore[union-attr,index]
            wrong = await store.complete_token(token_id, {}, by="x", secret="not-it")
            assert wrong.outcome == "Forbidden"
            elsewhere = await store.complete_token(token_id, {}, by="x", namespace="other")
            assert elsewhere.outcome == "NotFound"
        report(f"\n{rounds} tokens, each completed 5 times at once while its pod suspended: {woke} woke, 1 winner each")
        await store.close()

    asyncio.run(go())


def test_the_last_child_to_end_wakes_its_parent_in_the_same_transaction_and_a_deleted_child_counts(
    database: str,
) -> None:
    async def go() -> None:
        store = await _store(database, limit=10)
        parent = _run("parent")
        await store.register_run(parent)
        await _start(store, parent)
        children = [_run(f"child-{i}", parent=(parent.uid, "work#0", i)) for i in range(3)]
        for c in children:
            await store.register_run(c)
        await store.admission_round("ns", "q", datetime.now(UTC))
        # One child ends before the parent even reaches its wait.
        await store.record_result(children[0].uid, 0, None)
        await store.finish(children[0].uid, "Succeeded", DAY)
        answer = await store.register_wait(parent.uid, 1, "work#0", "children", children=3)
        assert answer.suspend
        await store.suspend(parent.uid, SUSPENDED)
        assert await _state(store, parent.uid) == "waiting"
        await store.finish(children[1].uid, "Failed", DAY)
        assert await _state(store, parent.uid) == "waiting"
        await store.forget(children[2].uid, DAY)  # deleted by hand: it counts as ended
        assert await _state(store, parent.uid) == "queued"
        context = await store.run_context(parent.uid)
        assert context is not None
        result = dict(context[1])["work#0"]
        assert [(r["run"], r["phase"], r["ok"]) for r in result] == [
            ("child-0", "Succeeded", True),
            ("child-1", "Failed", False),
            ("child-2", "Deleted", False),
        ]
        await store.close()

    asyncio.run(go())


def test_a_token_of_a_run_that_ended_is_refused_for_what_it_is(database: str) -> None:
    async def go() -> None:
        store = await _store(database)
        run = _run("cancelled")
        await store.register_run(run)
        await _start(store, run)
        await store.create_token(
            run.uid,
            1,
            "approval#0",
            namespace="ns",
            token_id="tok-00000000000000aa",
            secret_hash="h",
            tags=[],
            timeout_at=None,
            result={"id": "tok-00000000000000aa"},
        )
        await store.finish(run.uid, "Cancelled", DAY)
        late = await store.complete_token("tok-00000000000000aa", {"approved": True}, by="alice", secret="h")
        assert late.outcome == "RunEnded"
        await store.close()

    asyncio.run(go())


def test_a_wait_given_back_again_after_a_restart_releases_nothing_and_keeps_the_woken_runs_slot(
    database: str,
) -> None:
    """The operator suspended attempt 1 and the woken run was admitted again, then it restarted before the
    status said so: the plan made again from the old status must not suspend the run a second time."""

    async def go() -> None:
        store = await _store(database)
        run = _run("nap")
        await store.register_run(run)
        await _start(store, run)
        answer = await store.register_wait(
            run.uid, 1, "nap#0", "sleep", until=datetime.now(UTC) + timedelta(seconds=0.3)
        )
        assert answer.suspend
        await asyncio.sleep(0.5)
        assert await store.suspend(run.uid, SUSPENDED) == ("ns", "q")
        assert await _state(store, run.uid) == "queued"  # its wait was over as the pod stopped
        assert (await store.admission_round("ns", "q", datetime.now(UTC))).admitted == [run.uid]
        assert await store.suspend(run.uid, SUSPENDED) is None  # the same plan, made again
        assert await _state(store, run.uid) == "admitted"
        assert (await store.queue_stats("ns", "q")).admitted_total == 2  # its first admission and the wake's
        await store.close()

    asyncio.run(go())
