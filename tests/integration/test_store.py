"""The store against a real PostgreSQL: migrations give the declared schema, admission never
overspends a queue (under random sequences of events, and with several operators racing), slots are
released on every terminal path, and a step is written once."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from cairn.api.task import TaskSpec
from cairn.api.taskrun import TaskSnapshot
from cairn.domain.admission import Limits, WaitReason
from cairn.domain.lifecycle import Recorded, Register
from cairn.store import queries as q
from cairn.store.base import Ending, QueueRow
from cairn.store.postgres import PostgresStore, migrate
from harness.postgres import create_database, drop_database
from tests.support.figures import report

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
SNAPSHOT = TaskSnapshot(
    name="t", spec=TaskSpec.model_validate({"template": {"spec": {"containers": [{"image": "x:1"}]}}})
)


def _catalog(dsn: str) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(dsn) as conn:

        def rows(sql: str) -> list[tuple[Any, ...]]:
            return sorted(conn.execute(sql).fetchall())

        return {
            "columns": rows("""SELECT table_name, column_name, data_type, is_nullable, column_default
                               FROM information_schema.columns WHERE table_schema = 'public'
                               AND table_name <> 'cairn_migrations'"""),
            "indexes": rows(
                "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
                "AND tablename <> 'cairn_migrations'"
            ),
            "constraints": rows("""SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
                                   FROM pg_constraint WHERE connamespace = 'public'::regnamespace
                                   AND conrelid::regclass::text <> 'cairn_migrations'"""),
        }


def test_migrations_produce_exactly_the_declared_schema(pg_admin_dsn: str, database: str) -> None:
    applied = asyncio.run(migrate(database))
    assert applied == [1, 2, 3, 4, 5, 6]
    assert asyncio.run(migrate(database)) == []  # idempotent
    declared = create_database(pg_admin_dsn, f"declared_{uuid.uuid4().hex[:8]}")
    try:
        with psycopg.connect(declared, autocommit=True) as conn:
            conn.execute(resources.files("cairn.store").joinpath("schema.sql").read_text().encode())
        assert _catalog(database) == _catalog(declared)
    finally:
        drop_database(pg_admin_dsn, declared.rsplit("/", 1)[-1])


def _run(queue: str, priority: int = 0, key: str | None = None, created: datetime = NOW) -> Register:
    return Register(
        uid=str(uuid.uuid4()),
        namespace="ns",
        name=f"r-{uuid.uuid4().hex[:6]}",
        queue=queue,
        priority=priority,
        key=key,
        created=created,
        snapshot=SNAPSHOT,
        payload=None,
    )


async def _admitted(store: PostgresStore, queue: str) -> list[tuple[str, str | None]]:
    async with store.pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT uid::text, concurrency_key FROM runs WHERE namespace = 'ns' AND queue = %s AND state = 'admitted'",
                (queue,),
            )
        ).fetchall()
    return [(r[0], r[1]) for r in rows]


class AdmissionMachine(RuleBasedStateMachine):
    """Random arrivals, completions, cancellations, deletions, limit changes, pauses and operator
    restarts against the real store. After every admission round: no queue or key over its limit
    (safety) and every admissible run admitted (liveness)."""

    dsn: str = ""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.queue = f"q{uuid.uuid4().hex[:8]}"
        self.limit: int = 3
        self.per_key: int | None = 2
        self.paused = False
        self.store = self._open()
        self.waiting: set[str] = set()
        self.keys: dict[str, str | None] = {}
        self.over = 0  # slots held when the limit was last lowered below them

    def _open(self) -> PostgresStore:
        store = PostgresStore(self.dsn, max_size=2, name="machine")
        self.loop.run_until_complete(store.open())
        return store

    def _do(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    @initialize()
    def create_queue(self) -> None:
        self._sync_queue()

    def _sync_queue(self) -> None:
        self._do(self.store.upsert_queue(QueueRow("ns", self.queue, "uid", self.limit, self.per_key, self.paused)))

    @rule(priority=st.integers(-2, 2), key=st.sampled_from([None, "a", "b", "c"]), age=st.integers(0, 100))
    def arrive(self, priority: int, key: str | None, age: int) -> None:
        run = _run(self.queue, priority, key, NOW - timedelta(seconds=age))
        before = len(self._do(_admitted(self.store, self.queue)))
        registration = self._do(self.store.register_run(run))
        assert not registration.known  # a new uid
        admitted_at_once = registration.admitted is not None
        self.keys[run.uid] = key
        if admitted_at_once:
            # Only where the queue had room and no run waited ahead of it.
            assert not self.paused and not self.waiting and before < self.limit
            if self.per_key is not None and key is not None:
                held = [k for _, k in self._do(_admitted(self.store, self.queue))]
                assert held.count(key) <= self.per_key
        else:
            self.waiting.add(run.uid)

    @rule(data=st.data())
    def complete_or_delete(self, data: st.DataObject) -> None:
        held = self._do(_admitted(self.store, self.queue))
        if not held:
            return
        uid, _ = data.draw(st.sampled_from(held))
        if data.draw(st.booleans()):
            self._do(self.store.finish(uid, "Succeeded", timedelta(days=1)))
        else:
            self._do(self.store.forget(uid, timedelta(days=1)))  # the TaskRun was deleted

    @rule(data=st.data())
    def cancel_waiting(self, data: st.DataObject) -> None:
        if self.waiting:
            uid = data.draw(st.sampled_from(sorted(self.waiting)))
            self._do(self.store.finish(uid, "Cancelled", timedelta(days=1)))
            self.waiting.discard(uid)

    @rule(limit=st.integers(1, 6), per_key=st.one_of(st.none(), st.integers(1, 3)))
    def change_limits(self, limit: int, per_key: int | None) -> None:
        self.over = max(self.over, len(self._do(_admitted(self.store, self.queue))))
        self.limit, self.per_key = limit, (min(per_key, limit) if per_key else None)
        self._sync_queue()

    @rule()
    def toggle_pause(self) -> None:
        self.paused = not self.paused
        self._sync_queue()

    @rule()
    def restart_operator(self) -> None:
        self._do(self.store.close())
        self.store = self._open()

    @rule()
    def admission_round(self) -> None:
        before = self._do(_admitted(self.store, self.queue))
        result = self._do(self.store.admission_round("ns", self.queue, NOW))
        after = self._do(_admitted(self.store, self.queue))
        self.waiting -= set(result.admitted)
        # Safety: a round adds nothing while the queue is at (or, after a lowered limit, over) its limit.
        if len(before) >= self.limit or self.paused:
            assert result.admitted == []
        else:
            assert len(after) <= self.limit
        if self.per_key is not None:
            for uid in result.admitted:
                key = self.keys[uid]
                if key is not None:
                    assert sum(1 for _, k in after if k == key) <= self.per_key
        # Liveness: if slots are left, nothing admissible is left waiting.
        free = self.limit - len(after)
        if not self.paused and free > 0:
            held_by_key: dict[str | None, int] = {}
            for _, k in after:
                held_by_key[k] = held_by_key.get(k, 0) + 1
            for uid in self.waiting:
                key = self.keys[uid]
                blocked = self.per_key is not None and key is not None and held_by_key.get(key, 0) >= self.per_key
                assert blocked, f"run {uid} (key {key}) waits although {free} slots are free"

    @invariant()
    def never_over_the_limit_unless_it_was_lowered(self) -> None:
        # Over the limit only as far as the runs held when it was lowered: they drain, nothing is added.
        held = len(self._do(_admitted(self.store, self.queue)))
        assert held <= max(self.limit, self.over), f"{held} slots held; limit {self.limit}, {self.over} when lowered"
        self.over = min(self.over, held)

    def teardown(self) -> None:
        self._do(self.store.close())
        self.loop.close()


def test_admission_never_overspends_a_queue_and_admits_everything_admissible(database: str) -> None:
    asyncio.run(migrate(database))
    AdmissionMachine.dsn = database
    run_state_machine = AdmissionMachine.TestCase
    run_state_machine.settings = settings(
        max_examples=40, stateful_step_count=30, deadline=None, suppress_health_check=list(HealthCheck)
    )
    run_state_machine().runTest()


def test_several_operators_racing_on_one_queue_never_overspend_it(database: str) -> None:
    asyncio.run(migrate(database))
    limit, per_key = 5, 2
    observed: list[int] = []
    stop = threading.Event()

    def monitor() -> None:
        with psycopg.connect(database, autocommit=True) as conn:
            while not stop.is_set():
                row = conn.execute("SELECT count(*) FROM runs WHERE state = 'admitted'").fetchone()
                assert row is not None
                observed.append(int(row[0]))
                time.sleep(0.002)

    async def operator(n: int, deadline: float) -> int:
        store = PostgresStore(database, max_size=3, name=f"op{n}")
        await store.open()
        rounds = 0
        try:
            while time.monotonic() < deadline:
                await store.admission_round("ns", "shared", datetime.now(UTC))
                rounds += 1
                await asyncio.sleep(random.random() * 0.003)
        finally:
            await store.close()
        return rounds

    async def traffic(deadline: float) -> int:
        store = PostgresStore(database, max_size=3, name="traffic")
        await store.open()
        await store.upsert_queue(QueueRow("ns", "shared", "uid", limit, per_key, False))
        finished = 0
        try:
            while time.monotonic() < deadline:
                for _ in range(3):
                    await store.register_run(_run("shared", random.randint(0, 3), random.choice(["a", "b", "c", None])))
                held = await _admitted(store, "shared")
                for uid, _ in random.sample(held, k=min(len(held), 2)):
                    await store.finish(uid, "Succeeded", timedelta(days=1))
                    finished += 1
                await asyncio.sleep(0.01)
        finally:
            await store.close()
        return finished

    async def race() -> tuple[list[int], int]:
        deadline = time.monotonic() + 8
        *rounds, finished = await asyncio.gather(*(operator(i, deadline) for i in range(4)), traffic(deadline))
        return rounds, finished

    watcher = threading.Thread(target=monitor)
    watcher.start()
    try:
        rounds, finished = asyncio.run(race())
    finally:
        stop.set()
        watcher.join()
    report(
        f"\n4 operators made {sum(rounds)} admission rounds; {finished} runs finished; "
        f"{len(observed)} samples; most slots held at once: {max(observed)} (limit {limit})"
    )
    assert sum(rounds) > 100 and finished > 50
    assert max(observed) <= limit


def test_an_admission_round_waits_for_the_queue_lock_held_by_another(database: str) -> None:
    """Two operators at once: the second round blocks on the queue's row lock until the first
    commits, then sees its admissions, so the free slot is spent once (DBOS's lesson: SKIP LOCKED
    would let both spend it)."""
    asyncio.run(migrate(database))

    async def setup() -> None:
        store = PostgresStore(database, name="setup")
        await store.open()
        await store.upsert_queue(QueueRow("ns", "one", "uid", 1, None, False))
        for _ in range(3):
            await store.register_run(_run("one"))
        await store.close()

    asyncio.run(setup())
    first = psycopg.connect(database)
    first.execute(q.LOCK_QUEUE, ("ns", "one"))  # the first operator is inside its round
    result: dict[str, Any] = {}

    def second() -> None:
        async def go() -> None:
            store = PostgresStore(database, name="second")
            await store.open()
            result["admitted"] = (await store.admission_round("ns", "one", datetime.now(UTC))).admitted
            result["at"] = time.monotonic()
            await store.close()

        asyncio.run(go())

    thread = threading.Thread(target=second)
    thread.start()
    time.sleep(0.5)
    assert "admitted" not in result, "the second round did not wait for the queue's lock"
    uid = first.execute("SELECT uid FROM runs WHERE state = 'queued' ORDER BY created_at LIMIT 1").fetchone()
    assert uid is not None
    first.execute("UPDATE runs SET state = 'admitted' WHERE uid = %s", (uid[0],))
    released = time.monotonic()
    first.commit()
    first.close()
    thread.join(10)
    assert result["at"] >= released
    assert result["admitted"] == []  # the one slot was taken by the first round


def test_a_step_is_written_once_and_only_by_the_current_attempt(database: str) -> None:
    asyncio.run(migrate(database))

    async def go() -> None:
        store = PostgresStore(database, name="steps")
        await store.open()
        await store.upsert_queue(QueueRow("ns", "s", "uid", 5, None, False))
        run = _run("s")
        await store.register_run(run)
        await store.admission_round("ns", "s", NOW)
        await store.begin_attempt(run.uid, 1, "ns", "p-1")
        first = await store.record_step(run.uid, 1, "fetch#0", {"v": 1}, None)
        again = await store.record_step(run.uid, 1, "fetch#0", {"v": 2}, None)
        assert (first.allowed, first.inserted, first.result) == (True, True, {"v": 1})
        assert (again.allowed, again.inserted, again.result) == (True, False, {"v": 1})  # the first stands
        await store.requeue(run.uid, Ending(1, 1, "Error"), NOW)
        assert not (await store.record_step(run.uid, 1, "other#0", 1, None)).allowed  # not while it waits
        await store.admission_round("ns", "s", NOW + timedelta(seconds=1))
        await store.begin_attempt(run.uid, 2, "ns", "p-2")
        assert not (await store.record_step(run.uid, 1, "late#0", 1, None)).allowed  # attempt 1 is fenced off
        assert (await store.record_step(run.uid, 2, "next#0", 1, None)).inserted
        live = await store.admission(run.uid)
        assert live is not None and live.attempts == ()  # a live run's look reads no attempts
        await store.end_attempt(run.uid, 2, 0, "Completed")
        await store.finish(run.uid, "Succeeded", timedelta(days=1))
        assert not (await store.record_step(run.uid, 2, "after#0", 1, None)).allowed  # the run ended
        # Once finished, its look carries the attempts it recorded, for a status that never told them.
        ended = await store.admission(run.uid)
        assert ended is not None and ended.state == "finished"
        assert [(a.number, a.pod, a.exit_code, a.reason) for a in ended.attempts] == [
            (1, "p-1", 1, "Error"),
            (2, "p-2", 0, "Completed"),
        ]
        assert all(a.start_time and a.finish_time for a in ended.attempts)
        assert (await store.look(run.uid))[0] == ended
        await store.close()

    asyncio.run(go())


@pytest.mark.parametrize("path", ["finish", "forget"])
def test_every_terminal_path_releases_the_slot(database: str, path: str) -> None:
    asyncio.run(migrate(database))

    async def go() -> None:
        store = PostgresStore(database, name="release")
        await store.open()
        await store.upsert_queue(QueueRow("ns", "r", "uid", 1, None, False))
        a, b = _run("r"), _run("r", created=NOW + timedelta(seconds=1))
        assert (await store.register_run(a)).admitted  # the queue had room: admitted as it registered
        assert (await store.register_run(b)).admitted is None
        assert (await store.admission_round("ns", "r", NOW)).admitted == []
        if path == "finish":
            await store.finish(a.uid, "Failed", timedelta(days=1))
        else:
            await store.forget(a.uid, timedelta(days=1))
        assert (await store.admission_round("ns", "r", NOW)).admitted == [b.uid]
        await store.close()

    asyncio.run(go())


def test_a_runs_admission_carries_its_queues_limits_and_what_its_pods_recorded_comes_back_as_the_domain_reads_it(
    database: str,
) -> None:
    asyncio.run(migrate(database))

    async def go() -> None:
        store = PostgresStore(database, name="views")
        await store.open()
        run, orphan = _run("lim"), _run("gone")
        await store.register_run(run)
        await store.register_run(orphan)
        assert await store.admission(str(uuid.uuid4())) is None  # not registered
        before = await store.admission(run.uid)
        assert before is not None and (before.state, before.queue, before.limits) == ("queued", "lim", None)
        await store.upsert_queue(QueueRow("ns", "lim", "uid", 1, 1, True))
        await store.admission_round("ns", "lim", NOW)
        paused = await store.admission(run.uid)
        assert paused is not None and paused.limits == Limits(1, 1, True)
        assert paused.wait_reason is WaitReason.QUEUE_PAUSED
        assert paused.snapshot == run.snapshot
        await store.upsert_queue(QueueRow("ns", "lim", "uid", 1, None, False))
        await store.admission_round("ns", "lim", NOW)
        assert await store.recorded(run.uid) == Recorded()  # nothing recorded yet
        await store.begin_attempt(run.uid, 1, "ns", "p-1")
        await store.record_step(run.uid, 1, "fetch#0", {"v": 1}, NOW)
        await store.save_state(run.uid, 1, {"at": 1}, "one of two")
        await store.record_result(run.uid, 1, {"done": True})
        rec = await store.recorded(run.uid)
        assert (rec.steps_completed, rec.last_step, rec.state_note, rec.result) == (
            1,
            "fetch#0",
            "one of two",
            '{"done": true}',
        )
        assert [(key, attempt, started, tries) for key, attempt, started, _, tries in rec.recent] == [
            ("fetch#0", 1, NOW, None)
        ]
        assert rec.updated is not None
        # The reconcile's one-round-trip read agrees with the two reads it replaces.
        assert await store.look(run.uid) == (await store.admission(run.uid), rec)
        assert await store.look(str(uuid.uuid4())) == (None, Recorded())
        assert await store.look(orphan.uid) == (await store.admission(orphan.uid), Recorded())
        await store.close()

    asyncio.run(go())


def test_progress_notifications_name_the_run_whose_pod_recorded_a_step_or_its_state(database: str) -> None:
    asyncio.run(migrate(database))

    async def go() -> None:
        store = PostgresStore(database, name="progress")
        await store.open()
        await store.upsert_queue(QueueRow("ns", "p", "uid", 5, None, False))
        a, b = _run("p"), _run("p")
        for run in (a, b):
            await store.register_run(run)
        await store.admission_round("ns", "p", NOW)
        for run in (a, b):
            await store.begin_attempt(run.uid, 1, "ns", f"{run.name}-1")
        got: asyncio.Queue[str] = asyncio.Queue()

        async def listen() -> None:
            async for uid in store.progress():
                await got.put(uid)

        listener = asyncio.ensure_future(listen())
        # LISTEN is issued once the iterator starts: notify until the first notification arrives.
        for _ in range(100):
            await store.save_state(b.uid, 1, {"n": 0}, None)
            with contextlib.suppress(TimeoutError):
                assert await asyncio.wait_for(got.get(), 0.2) == b.uid
                break
        else:
            raise AssertionError("no progress notification arrived in 20 s")
        await asyncio.sleep(0.5)
        while not got.empty():
            got.get_nowait()
        await store.record_step(a.uid, 1, "a#0", 1, None)
        await store.record_step(a.uid, 1, "a#0", 1, None)  # recorded already: no notification
        await store.save_state(b.uid, 1, {"n": 1}, None)
        # Delivered in commit order: a notification of the retried step would come before b's.
        seen = [await asyncio.wait_for(got.get(), 10) for _ in range(2)]
        assert seen == [a.uid, b.uid]
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
        await store.close()

    asyncio.run(go())


def test_steps_recorded_together_are_written_once_in_order_and_only_by_the_current_attempt(database: str) -> None:
    asyncio.run(migrate(database))

    async def go() -> None:
        store = PostgresStore(database, name="batch")
        await store.open()
        await store.upsert_queue(QueueRow("ns", "b", "uid", 5, None, False))
        run = _run("b")
        await store.register_run(run)
        await store.begin_attempt(run.uid, 1, "ns", "p-1")
        assert (await store.record_step(run.uid, 1, "one#0", None, None)).inserted  # a null result, first
        writes = await store.record_steps(
            run.uid, 1, [("two#0", {"v": 2}, NOW, None), ("one#0", {"v": "again"}, None, None), ("three#0", 3, None, 2)]
        )
        assert [(w.allowed, w.inserted, w.result) for w in writes] == [
            (True, True, {"v": 2}),
            (True, False, None),  # recorded before: its first result (null) stands
            (True, True, 3),
        ]
        context = await store.run_context(run.uid)
        assert context is not None and [k for k, _ in context[1]] == ["one#0", "two#0", "three#0"]
        await store.requeue(run.uid, Ending(1, 1, "Error"), NOW)
        fenced = await store.record_steps(run.uid, 1, [("four#0", 4, None, None)])
        assert [(w.allowed, w.inserted) for w in fenced] == [(False, False)]  # not while it waits
        await store.close()

    asyncio.run(go())


def test_a_retry_planned_again_after_a_restart_gives_back_no_slot_and_admits_nothing_twice(database: str) -> None:
    """Attempt 1 failed and its run was admitted again for attempt 2; the operator restarted before the
    status said Retrying: the retry planned again from the old status must not requeue the run again."""
    asyncio.run(migrate(database))

    async def go() -> None:
        store = PostgresStore(database, name="again")
        await store.open()
        await store.upsert_queue(QueueRow("ns", "again", "uid", 1, None, False))
        run = _run("again")
        admitted = (await store.register_run(run)).admitted
        assert admitted is not None  # admitted as it registered: what it says is what a look reads
        assert admitted == await store.admission(run.uid)
        await store.begin_attempt(run.uid, 1, "ns", "p-1")
        failed = Ending(1, 1, "Error")
        assert await store.requeue(run.uid, failed, NOW) == ("ns", "again")
        assert (await store.admission_round("ns", "again", NOW + timedelta(seconds=1))).admitted == [run.uid]
        assert await store.requeue(run.uid, failed, NOW) is None  # the same plan, made again
        admission = await store.admission(run.uid)
        assert admission is not None and admission.state == "admitted"
        assert (await store.queue_stats("ns", "again")).admitted_total == 2
        await store.begin_attempt(run.uid, 2, "ns", "p-2")
        assert await store.requeue(run.uid, failed, NOW) is None  # attempt 1 is not the current one
        assert await store.requeue(run.uid, Ending(2, 1, "Error"), NOW) == ("ns", "again")
        async with store.pool.connection() as conn:
            history = await (await conn.execute(q.RUN_HISTORY_ATTEMPTS, (run.uid,))).fetchall()
        assert [(a[0], a[4], a[5]) for a in history] == [(1, 1, "Error"), (2, 1, "Error")]
        await store.close()

    asyncio.run(go())


def test_a_run_admitted_as_it_registers_has_its_first_attempt_begun_in_the_same_transaction(database: str) -> None:
    """So that its pod can be created at once (and record as soon as it runs); a run that only queues
    begins nothing, and its first attempt begins when its pod is about to be created."""
    asyncio.run(migrate(database))

    async def go() -> None:
        store = PostgresStore(database, name="first")
        await store.open()
        await store.upsert_queue(QueueRow("ns", "one", "uid", 1, None, False))
        first, second = _run("one"), _run("one")
        first = dataclasses.replace(first, first_pod=f"{first.name}-1", labels=(("team", "a"),))
        second = dataclasses.replace(second, first_pod=f"{second.name}-1")
        assert (await store.register_run(first)).admitted is not None
        waits = await store.register_run(second)
        assert waits.admitted is None and not waits.known  # the queue is full: it waits
        pod = await store.resolve_pod("ns", f"{first.name}-1")
        assert pod is not None and (pod.run_uid, pod.attempt, pod.may_record) == (first.uid, 1, True)
        assert await store.resolve_pod("ns", f"{second.name}-1") is None
        again = await store.register_run(first)
        assert again.known and again.admitted is None  # registered before: nothing is written again
        assert (await store.register_run(second)).known  # a queued run too
        async with store.pool.connection() as conn:
            row = await (await conn.execute("SELECT labels FROM runs WHERE uid = %s", (first.uid,))).fetchone()
        assert row is not None and row[0] == {"team": "a"}  # written with the row, in the same statement
        await store.close()

    asyncio.run(go())
