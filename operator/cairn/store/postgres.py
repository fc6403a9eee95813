"""The store on PostgreSQL (psycopg 3, async, pooled). All SQL is in queries.py."""

from __future__ import annotations

import hmac
import logging
import select
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import psycopg
from psycopg import pq
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from cairn.api.taskrun import TOKENS_SHOWN, TaskSnapshot, TokenEntry
from cairn.domain import admission, waits
from cairn.domain.admission import WaitReason
from cairn.domain.lifecycle import Admission, ForkSource, Recorded, Register, StoredAttempt
from cairn.domain.pace import Rate
from cairn.domain.timefmt import format_time
from cairn.domain.waits import WaitView
from cairn.store import queries as q
from cairn.store.base import (
    Completion,
    Ending,
    PodIdentity,
    QueueRow,
    QueueStats,
    Registration,
    RoundResult,
    StepWrite,
    WaitAnswer,
)

log = logging.getLogger(__name__)
CANDIDATE_LIMIT = 20_000  # queued runs considered per admission round
_FAR = datetime(9999, 1, 1, tzinfo=UTC)  # prunes every admission of a queue that has no rate any more


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration shipped with the package, in order."""
    found = []
    for entry in resources.files("cairn.store").joinpath("migrations").iterdir():
        if entry.name.endswith(".sql"):
            version, _, rest = entry.name.partition("_")
            found.append((int(version), rest.removesuffix(".sql"), entry.read_text()))
    return sorted(found)


async def migrate(dsn: str) -> list[int]:
    """Apply the migrations not yet applied, each in its own transaction, under an advisory lock so
    that replicas starting together do not race. Returns the versions applied now."""
    applied_now = []
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(q.MIGRATIONS_TABLE)
        for version, name, sql in migrations():
            async with conn.transaction():
                await conn.execute(q.MIGRATION_LOCK)
                done = {row[0] for row in await (await conn.execute(q.APPLIED_VERSIONS)).fetchall()}
                if version in done:
                    continue
                await conn.execute(sql.encode())  # shipped files, not user input
                await conn.execute(q.RECORD_MIGRATION, (version, name))
                applied_now.append(version)
                log.info("applied migration %04d_%s", version, name)
    return applied_now


def _snapshot(value: Any) -> TaskSnapshot:
    return TaskSnapshot.model_validate(value)


def _limits(row: Sequence[Any]) -> admission.Limits | None:
    """A queue's limits from its columns (LOCK_QUEUE's order; all None: no row, the Queue does not exist)."""
    limit, per_key, paused, rate_limit, rate_period, rate_burst, key_limit, key_period, key_burst, cap = row
    if limit is None:
        return None
    return admission.Limits(
        limit,
        per_key,
        bool(paused),
        rate=Rate(rate_limit, rate_period, rate_burst or rate_limit) if rate_limit else None,
        key_rate=Rate(key_limit, key_period, key_burst or key_limit) if key_limit else None,
        max_queued=cap,
    )


def _rate_columns(rate: Rate | None) -> tuple[int | None, timedelta | None, int | None]:
    return (rate.limit, rate.period, rate.burst) if rate else (None, None, None)


async def check_connection(conn: psycopg.AsyncConnection[Any]) -> None:
    """Before the pool hands a connection out: is it still working? An idle connection whose socket
    has nothing to read is: a server that restarted, crashed or dropped it has closed the socket,
    which makes it readable (end of file) -- one poll(), no round trip. Anything else (something to
    read, a transaction left open) gets the pool's own check, a query, which fails if it is broken."""
    pgconn = conn.pgconn
    if pgconn.status == pq.ConnStatus.OK and pgconn.transaction_status == pq.TransactionStatus.IDLE:
        poller = select.poll()
        poller.register(pgconn.socket, select.POLLIN | select.POLLPRI)  # POLLHUP/POLLERR always count
        if not poller.poll(0):
            return
    await AsyncConnectionPool.check_connection(conn)


class PostgresStore:
    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 10, name: str = "cairn") -> None:
        self.dsn = dsn
        self.pool = AsyncConnectionPool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            open=False,
            name=name,
            kwargs={"autocommit": True, "application_name": name},
            # A connection broken by a database restart is noticed and replaced, not handed out.
            check=check_connection,
        )

    async def open(self, *, wait: bool = True, wait_seconds: float = 30) -> None:
        await self.pool.open(wait=wait, timeout=wait_seconds)

    async def close(self) -> None:
        await self.pool.close()

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        async with self.pool.connection() as conn, conn.transaction():
            yield conn

    # -- queues ----------------------------------------------------------------------------------
    async def upsert_queue(self, row: QueueRow) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                q.UPSERT_QUEUE,
                {
                    "namespace": row.namespace,
                    "name": row.name,
                    "uid": row.uid,
                    "limit": row.concurrency_limit,
                    "per_key": row.per_key_limit,
                    "paused": row.paused,
                    **dict(zip(("rate_limit", "rate_period", "rate_burst"), _rate_columns(row.rate), strict=True)),
                    **dict(
                        zip(
                            ("key_rate_limit", "key_rate_period", "key_rate_burst"),
                            _rate_columns(row.key_rate),
                            strict=True,
                        )
                    ),
                    "max_queued": row.max_queued,
                },
            )
            if row.rate is None and row.key_rate is None:
                await conn.execute(q.PRUNE_ADMISSIONS, {"namespace": row.namespace, "queue": row.name, "now": _FAR})

    async def delete_queue(self, namespace: str, name: str, uid: str) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(q.DELETE_QUEUE, (namespace, name, uid))

    async def queues_with_waiting_runs(self) -> list[tuple[str, str]]:
        async with self.pool.connection() as conn:
            return [(r[0], r[1]) for r in await (await conn.execute(q.QUEUES_WITH_WAITING_RUNS)).fetchall()]

    async def admission_round(self, namespace: str, queue: str, now: datetime) -> RoundResult:
        """Admit what fits, in one transaction with the queue's row locked: a concurrent round (this
        operator or another) waits for the lock and then sees these admissions."""
        async with self._tx() as conn:
            row = await (await conn.execute(q.LOCK_QUEUE, (namespace, queue))).fetchone()
            limits = _limits(row) if row else None
            recent = None
            rates = [r for r in (limits.rate, limits.key_rate) if r is not None] if limits else []
            if rates:
                # The rates' clock is PostgreSQL's, read after the lock: every operator shares it, and
                # no admission it sees can be later than it.
                keep = max(r.period for r in rates)
                got = await (await conn.execute(q.RECENT_ADMISSIONS, (namespace, queue, keep))).fetchone()
                assert got is not None
                now, keys, times = got[0], got[1], got[2]
                by_key: dict[str, list[datetime]] = {}
                for k, t in zip(keys, times, strict=True):
                    if k is not None:
                        by_key.setdefault(k, []).append(t)
                recent = admission.Recent(times, by_key)
            usage_by_key: dict[str, int] = {}
            total = 0
            for key, count in await (await conn.execute(q.QUEUE_USAGE, (namespace, queue))).fetchall():
                total += count
                if key is not None:
                    usage_by_key[key] = count
            rows = await (await conn.execute(q.QUEUE_CANDIDATES, (namespace, queue, CANDIDATE_LIMIT))).fetchall()
            candidates = [
                admission.Candidate(
                    uid=r[0],
                    priority=r[1],
                    created=r[2],
                    key=r[3],
                    not_before=r[4],
                    registered=r[5],
                    resumed=r[6],
                    started=r[7],
                )
                for r in rows
            ]
            decision = admission.decide(limits, admission.Usage(total, usage_by_key), candidates, now, recent)
            admitted: list[str] = []
            if decision.admitted:
                admitted = [
                    r[0]
                    for r in await (await conn.execute(q.ADMIT, (now if rates else None, decision.admitted))).fetchall()
                ]
                await conn.execute(q.COUNT_ADMISSIONS, (len(admitted), namespace, queue))
                if rates:
                    keys_of = {c.uid: c.key for c in candidates}
                    await conn.execute(q.LOG_ADMISSIONS, (namespace, queue, now, [keys_of[u] for u in admitted]))
                    await conn.execute(q.PRUNE_ADMISSIONS, {"namespace": namespace, "queue": queue, "now": now})
            changed: list[str] = []
            shown = {r[0]: (r[8], r[9]) for r in rows}
            # Only the reasons that change are sent: a backlog of thousands says QueueFull once, not every round.
            moved = {
                u: reason
                for u, reason in decision.waiting.items()
                if shown.get(u) != (reason.value, decision.chances.get(u))
            }
            if moved:
                uids = list(moved)
                reasons = [moved[u].value for u in uids]
                until = [decision.chances.get(u) for u in uids]
                changed = [
                    r[0] for r in await (await conn.execute(q.SET_WAIT_REASONS, (uids, reasons, until))).fetchall()
                ]
            due = [t for t in (admission.next_due(candidates, now), decision.wake) if t is not None]
            return RoundResult(admitted, changed, min(due, default=None), paced=bool(decision.chances))

    async def queue_stats(self, namespace: str, queue: str) -> QueueStats:
        async with self.pool.connection() as conn:
            row = await (await conn.execute(q.QUEUE_STATS, {"namespace": namespace, "queue": queue})).fetchone()
        assert row is not None
        return QueueStats(
            queued=row[0],
            running=row[1],
            oldest_queued=row[2],
            admitted_total=row[3] or 0,
            waiting=row[4],
            rate_used=row[5] or 0,
            rate_limited=row[6],
        )

    async def queue_depth(self, namespace: str, queue: str) -> tuple[int | None, int]:
        """The queue's spec.maxQueued (None: unbounded, or no such queue) and how many runs wait in it."""
        async with self.pool.connection() as conn:
            row = await (await conn.execute(q.QUEUE_DEPTH, (namespace, queue))).fetchone()
        return (row[0], row[1]) if row else (None, 0)

    # -- runs ------------------------------------------------------------------------------------
    async def register_run(self, run: Register) -> Registration:
        """Put the run in its queue's line; its admission if it was admitted at once (its queue had room,
        no run waited ahead of it, no rate or delay applied), so its first pod needs no admission round
        (and no read of what was just written). Then its first attempt (run.first_pod) is begun too. A
        run the store has already is left as it is (known): nothing is written.

        Under the queue's row lock, as an admission round: two registrations never both take the last
        slot or the last place below maxQueued (past it the run is recorded as rejected, and its
        reconciler ends it). A queue that paces or is paused, a run for later, or a queue that does not
        exist (yet) go through the rounds. One round trip: the statements and the commit are sent
        together (a pipeline), each statement seeing what the one before it locked."""
        params = self._register_params(run)
        async with self.pool.connection() as conn:
            async with conn.pipeline(), conn.transaction():
                locked = await conn.execute(q.LOCK_QUEUE, (run.namespace, run.queue))
                registered = await conn.execute(q.REGISTER, params)
                if run.first_pod is not None:
                    await conn.execute(q.BEGIN_FIRST_ATTEMPT, {"uid": run.uid, "pod": run.first_pod})
                await self._copy_fork_steps(conn, run)
            row, got = await locked.fetchone(), await registered.fetchone()
        if got is None:
            return Registration(known=True)
        if got[0] != "admitted":
            return Registration()
        limits = _limits(row) if row else None
        return Registration(admitted=Admission(state="admitted", queue=run.queue, snapshot=run.snapshot, limits=limits))

    @staticmethod
    async def _copy_fork_steps(conn: psycopg.AsyncConnection[Any], run: Register) -> None:
        # In the registration's transaction: the fork's first pod, however soon, sees the copies.
        if run.fork is not None:
            await conn.execute(q.COPY_FORK_STEPS, {"uid": run.uid, "source": run.fork[0], "step": run.fork[1]})

    async def fork_source(self, namespace: str, name: str) -> ForkSource | None:
        """The run a fork starts from, by name: its TaskRun may be deleted, its record kept."""
        async with self.pool.connection() as conn:
            row = await (await conn.execute(q.FORK_SOURCE, (namespace, name))).fetchone()
            if row is None:
                return None
            steps = await (await conn.execute(q.FORK_SOURCE_STEPS, (row[0],))).fetchall()
        return ForkSource(
            uid=row[0], task=row[1], payload=row[2], snapshot=_snapshot(row[3]), steps=tuple(s[0] for s in steps)
        )

    @staticmethod
    def _register_params(run: Register) -> dict[str, Any]:
        return {
            "uid": run.uid,
            "namespace": run.namespace,
            "name": run.name,
            "task": run.snapshot.name,
            "queue": run.queue,
            "priority": run.priority,
            "key": run.key,
            "created": run.created,
            "snapshot": Jsonb(run.snapshot.wire()),
            "payload": run.payload,
            "parent_uid": run.parent[0] if run.parent else None,
            "parent_step": run.parent[1] if run.parent else None,
            "parent_index": run.parent[2] if run.parent else None,
            "not_before": run.not_before,
            "labels": Jsonb(dict(run.labels)) if run.labels else None,
        }

    async def admission(self, uid: str) -> Admission | None:
        """The run's place in its queue, with the queue's limits; None: not registered."""
        async with self.pool.connection() as conn:
            r = await (await conn.execute(q.GET_RUN, (uid,))).fetchone()
            if r is None:
                return None
            w = await (await conn.execute(q.CURRENT_WAIT, (uid,))).fetchone()
        return _admission(r, w)

    async def look(self, uid: str, recent: int = 50) -> tuple[Admission | None, Recorded]:
        """admission() and recorded() at once: the five queries sent together in one pipeline (one
        round trip to PostgreSQL, one connection from the pool), as a reconcile needs both."""
        async with self.pool.connection() as conn:
            async with conn.pipeline():
                run = await conn.execute(q.GET_RUN, (uid,))
                current = await conn.execute(q.CURRENT_WAIT, (uid,))
                rec = await conn.execute(q.RECORDED, (uid,))
                steps = await conn.execute(q.RECENT_STEPS, (uid, recent))
                tokens = await conn.execute(q.RUN_TOKENS, (uid, TOKENS_SHOWN))
            r, w, row = await run.fetchone(), await current.fetchone(), await rec.fetchone()
            step_rows, token_rows = await steps.fetchall(), await tokens.fetchall()
        if r is None:
            return None, Recorded()
        return _admission(r, w), _recorded(row, step_rows, token_rows) if row is not None else Recorded()

    async def requeue(self, uid: str, ending: Ending, not_before: datetime) -> tuple[str, str] | None:
        async with self._tx() as conn:
            if await (await conn.execute(q.LOCK_RUN, (uid,))).fetchone() is None:
                return None
            if not await self._end_current(conn, uid, ending):
                return None
            row = await (await conn.execute(q.REQUEUE, (not_before, uid))).fetchone()
        return (row[0], row[1]) if row else None

    @staticmethod
    async def _end_current(conn: psycopg.AsyncConnection[Any], uid: str, ending: Ending) -> bool:
        """End the run's current attempt (the run's row locked); False if it is not current or ended."""
        params = {"uid": uid, "attempt": ending.attempt, "exit_code": ending.exit_code, "reason": ending.reason}
        row = await (await conn.execute(q.END_CURRENT_ATTEMPT, params)).fetchone()
        return bool(row and row[0])

    async def finish(self, uid: str, phase: str, retention: timedelta) -> tuple[str, str] | None:
        """The run ended: its slot is free; a parent waiting for it (and its siblings) wakes in the same
        transaction, so that no crash can leave the parent waiting on a finished child."""
        async with self._tx() as conn:
            row = await (await conn.execute(q.FINISH, (phase, retention, uid))).fetchone()
            if row is not None and row[2] is not None:
                await self._child_ended(conn, row[2], row[3])
        return (row[0], row[1]) if row else None

    async def forget(self, uid: str, retention: timedelta) -> tuple[str, str] | None:
        """The TaskRun is gone: release whatever it held (its history stays until retention ends). A
        child deleted by hand counts as ended for its parent (phase Deleted)."""
        async with self._tx() as conn:
            row = await (await conn.execute(q.FORGET_RUN, (retention, uid))).fetchone()
            await conn.execute(q.MARK_DELETED, (uid,))  # archived: its record stays for its retention
            if row is not None and row[2] is not None:
                await self._child_ended(conn, row[2], row[3])
        return (row[0], row[1]) if row else None

    async def _child_ended(self, conn: psycopg.AsyncConnection[Any], parent: str, step: str) -> None:
        if await (await conn.execute(q.LOCK_RUN, (parent,))).fetchone() is None:
            return
        if await (await conn.execute(q.OPEN_CHILD_WAIT, (parent, step))).fetchone() is not None:
            await self._settle(conn, parent, step)

    # -- durable waits (every method takes the run's row lock first: see queries.LOCK_RUN) ---------
    async def _settle(self, conn: psycopg.AsyncConnection[Any], uid: str, key: str) -> tuple[bool, Any]:
        """End the wait `key` of run `uid` if it is over now: its result is recorded as the step's and a
        waiting run queues again. (done?, result). The caller holds the run's row lock."""
        w = await (await conn.execute(q.WAIT_OF, (uid, key))).fetchone()
        if w is None:
            return False, None
        kind, _until, token, children, done, time_is_up = w
        if done:
            _, recorded = await self._step(conn, uid, key)
            return True, recorded
        token_state: tuple[str, Any, bool] | None = None
        ended: list[tuple[str, str, Any]] = []
        if kind == "token":
            t = await (await conn.execute(q.LOCK_TOKEN, (token,))).fetchone()
            token_state = (t[0], t[1], bool(t[2])) if t is not None else None
        elif kind == "children":
            ended = [(r[0], r[1], r[2]) for r in await (await conn.execute(q.FINISHED_CHILDREN, (uid, key))).fetchall()]
        over = waits.outcome(kind, time_is_up=bool(time_is_up), token=token_state, children=children, ended=ended)
        if over is None:
            return False, None
        if over.timed_out_token:
            await conn.execute(q.TIME_OUT_TOKEN, (token,))
        await conn.execute(q.WAIT_DONE, (uid, key))
        await conn.execute(q.RECORD_WAIT_STEP, (Jsonb(over.result), uid, key))
        await conn.execute(q.WAKE_RUN, (uid,))
        await conn.execute(q.NOTIFY_PROGRESS, (q.PROGRESS_CHANNEL, uid))
        return True, over.result

    @staticmethod
    async def _step(conn: psycopg.AsyncConnection[Any], uid: str, key: str) -> tuple[bool, Any]:
        row = await (await conn.execute(q.STEP_RESULT, (uid, key))).fetchone()
        return (True, row[0]) if row else (False, None)

    async def register_wait(
        self,
        uid: str,
        attempt: int,
        key: str,
        kind: str,
        *,
        until: datetime | None = None,
        token: str | None = None,
        children: int | None = None,
    ) -> WaitAnswer:
        """A pod reached a wait: over already (its result), or the pod must stop (suspend)."""
        async with self._tx() as conn:
            run = await (await conn.execute(q.LOCK_RUN, (uid,))).fetchone()
            if run is None or run[0] != "admitted" or run[1] != attempt:
                return WaitAnswer(allowed=False)
            recorded, result = await self._step(conn, uid, key)
            if recorded:
                return WaitAnswer(allowed=True, done=True, result=result)
            if token is not None:
                owner = await (await conn.execute(q.TOKEN_OWNER, (token,))).fetchone()
                if owner is None or owner[0] != uid:
                    return WaitAnswer(allowed=True, conflict=f"token {token} is not one this run created")
                until = (await (await conn.execute(q.LOCK_TOKEN, (token,))).fetchone() or [None] * 6)[5]
            await conn.execute(
                q.INSERT_WAIT,
                {
                    "uid": uid,
                    "key": key,
                    "kind": kind,
                    "attempt": attempt,
                    "until": until,
                    "token": token,
                    "children": children,
                },
            )
            existing = await (await conn.execute(q.WAIT_OF, (uid, key))).fetchone()
            assert existing is not None
            if existing[0] != kind:
                return WaitAnswer(
                    allowed=True,
                    conflict=f"step {key!r} is a {existing[0]} wait in this run, not a {kind} wait: give each "
                    "wait its own name",
                )
            done, result = await self._settle(conn, uid, key)
            if done:
                return WaitAnswer(allowed=True, done=True, result=result)
            await conn.execute(q.SUSPEND_WAIT, (uid, key))
            await conn.execute(q.NOTIFY_PROGRESS, (q.PROGRESS_CHANNEL, uid))
            return WaitAnswer(allowed=True, suspend=True, until=existing[1])

    async def suspend(self, uid: str, ending: Ending) -> tuple[str, str] | None:
        """The pod stopped for its wait: the slot is free; the run waits, or queues if the wait is over."""
        async with self._tx() as conn:
            if await (await conn.execute(q.LOCK_RUN, (uid,))).fetchone() is None:
                return None
            if not await self._end_current(conn, uid, ending):
                return None
            row = await (await conn.execute(q.SUSPEND_RUN, (uid,))).fetchone()
            if row is None:
                return None
            open_ = await (await conn.execute(q.CURRENT_WAIT, (uid,))).fetchone()
            if open_ is not None and open_[7] is None:
                await self._settle(conn, uid, open_[0])
            else:
                await conn.execute(q.WAKE_RUN, (uid,))  # its wait ended while the pod was stopping
            return (row[0], row[1])

    async def wake(self, uid: str, key: str) -> tuple[str, str] | None:
        """End the wait if it is over (a sleep's time, a token's timeout, its children); the queue to kick."""
        async with self._tx() as conn:
            run = await (await conn.execute(q.LOCK_RUN, (uid,))).fetchone()
            if run is None:
                return None
            done, _ = await self._settle(conn, uid, key)
            return (run[2], run[3]) if done else None

    async def create_token(
        self,
        uid: str,
        attempt: int,
        key: str,
        *,
        namespace: str,
        token_id: str,
        secret_hash: str,
        tags: list[str],
        timeout_at: datetime | None,
        result: Any,
    ) -> Any:
        """Create the step's token and record the step (`result`, with its URL) in one transaction, so
        that a retried step gets the first token. The recorded result; None: the attempt may not act."""
        async with self._tx() as conn:
            run = await (await conn.execute(q.LOCK_RUN, (uid,))).fetchone()
            if run is None or run[0] != "admitted" or run[1] != attempt:
                return None
            await conn.execute(
                q.CREATE_TOKEN,
                {
                    "id": token_id,
                    "secret": secret_hash,
                    "namespace": namespace,
                    "uid": uid,
                    "key": key,
                    "tags": tags,
                    "timeout": timeout_at,
                },
            )
            await conn.execute(q.INSERT_STEP, {"uid": uid, "key": key, "attempt": attempt, "result": Jsonb(result)})
            await conn.execute(q.NOTIFY_PROGRESS, (q.PROGRESS_CHANNEL, uid))  # status.tokens shows it
            _, recorded = await self._step(conn, uid, key)
            return recorded

    async def complete_token(
        self, token_id: str, data: Any, *, by: str, secret: str | None = None, namespace: str | None = None
    ) -> Completion:
        """Complete a token with `data` (the first completion wins). Authorised by the secret of its URL
        (its hash must match) or by the caller's namespace (a TokenCompletion there)."""
        async with self._tx() as conn:
            owner = await (await conn.execute(q.TOKEN_OWNER, (token_id,))).fetchone()
            if owner is None or (namespace is not None and owner[1] != namespace):
                return Completion("NotFound")
            if secret is not None and not hmac.compare_digest(owner[2], secret):
                return Completion("Forbidden")
            uid = owner[0]
            run = await (await conn.execute(q.LOCK_RUN, (uid,))).fetchone()
            t = await (await conn.execute(q.LOCK_TOKEN, (token_id,))).fetchone()
            assert run is not None and t is not None
            status, _data, timed_out, completed_at, completed_by, _timeout = t
            if status == "completed":
                return Completion("AlreadyCompleted", completed_at, completed_by, uid)
            if run[0] == "finished":
                return Completion("RunEnded", None, None, uid)  # nothing waits for it any more
            if status == "timedOut" or timed_out:
                await conn.execute(q.TIME_OUT_TOKEN, (token_id,))
                await self._settle_token_waits(conn, uid, token_id)
                return Completion("TimedOut", completed_at or _timeout, None, uid)
            await conn.execute(q.COMPLETE_TOKEN, (Jsonb(data), by, token_id))
            woke = await self._settle_token_waits(conn, uid, token_id)
            return Completion("Completed", None, by, uid, (run[2], run[3]) if woke else None)

    async def _settle_token_waits(self, conn: psycopg.AsyncConnection[Any], uid: str, token_id: str) -> bool:
        woke = False
        for (key,) in await (await conn.execute(q.WAITS_ON_TOKEN, (uid, token_id))).fetchall():
            done, _ = await self._settle(conn, uid, key)
            woke = woke or done
        return woke

    async def live_runs(self, older_than: datetime) -> list[tuple[str, str, str, str]]:
        """(uid, namespace, queue, name) of unfinished runs not updated since `older_than`."""
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(q.LIVE_RUNS, (older_than,))).fetchall()
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    async def purge_expired(self, batch: int, keep: int) -> int:
        """Delete at most `batch` runs past their retention, then at most `batch` archived runs beyond the
        `keep` newest of their namespace: bounded work per sweep, each in its own short transaction."""
        async with self.pool.connection() as conn:
            expired = (await conn.execute(q.PURGE_EXPIRED, {"batch": batch})).rowcount
            over = (await conn.execute(q.PURGE_OVER_COUNT, {"batch": batch, "keep": keep})).rowcount
        return max(0, expired) + max(0, over)

    # -- attempts --------------------------------------------------------------------------------
    async def begin_attempt(self, uid: str, attempt: int, namespace: str, pod: str) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(q.BEGIN_ATTEMPT, {"uid": uid, "attempt": attempt, "namespace": namespace, "pod": pod})

    async def end_attempt(self, uid: str, attempt: int, exit_code: int | None, reason: str) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(q.END_ATTEMPT, (exit_code, reason, uid, attempt))

    async def recorded(self, uid: str, recent: int = 50) -> Recorded:
        """What the run's pods recorded: steps (the last `recent` of them listed), state, result."""
        async with self.pool.connection() as conn:
            row = await (await conn.execute(q.RECORDED, (uid,))).fetchone()
            if row is None:
                return Recorded()
            steps = await (await conn.execute(q.RECENT_STEPS, (uid, recent))).fetchall()
            tokens = await (await conn.execute(q.RUN_TOKENS, (uid, TOKENS_SHOWN))).fetchall()
        return _recorded(row, steps, tokens)

    async def progress(self) -> AsyncIterator[str]:
        # Its own connection, not the pool's: LISTEN lasts as long as the connection.
        async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
            await conn.execute(q.LISTEN_PROGRESS)
            async for note in conn.notifies():
                yield note.payload

    # -- the checkpoint API ----------------------------------------------------------------------
    async def resolve_pod(self, namespace: str, pod: str) -> PodIdentity | None:
        async with self.pool.connection() as conn:
            row = await (await conn.execute(q.RESOLVE_POD, (namespace, pod))).fetchone()
        if row is None:
            return None
        return PodIdentity(run_uid=row[0], attempt=row[1], run_name=row[2], current_attempt=row[3], state=row[4])

    async def run_context(self, uid: str) -> tuple[str | None, list[tuple[str, Any]], Any, str | None] | None:
        """(payload text, recorded steps in order, saved state, the Task's suspendAfter) of a run."""
        async with self.pool.connection() as conn:
            row = await (await conn.execute(q.RUN_CONTEXT, (uid,))).fetchone()
            if row is None:
                return None
            steps = [(r[0], r[1]) for r in await (await conn.execute(q.RUN_STEPS, (uid,))).fetchall()]
        return row[0], steps, row[3], row[4]

    async def step_result(self, uid: str, key: str) -> tuple[bool, Any]:
        """(recorded?, result) of one step of a run."""
        async with self.pool.connection() as conn:
            row = await (await conn.execute(q.STEP_RESULT, (uid, key))).fetchone()
        return (True, row[0]) if row else (False, None)

    async def record_step(
        self,
        uid: str,
        attempt: int,
        key: str,
        result: Any,
        started: datetime | None,
        tries: int | None = None,
        *,
        text: str | None = None,
    ) -> StepWrite:
        """`text`, when given, is `result` already encoded as JSON (the API measured it): not encoded again."""
        # No explicit transaction: RECORD_STEP is one statement (fence, insert, notification).
        async with self.pool.connection() as conn:
            row = await (
                await conn.execute(
                    q.RECORD_STEP,
                    {
                        "uid": uid,
                        "attempt": attempt,
                        "key": key,
                        "result": Jsonb(result) if text is None else Jsonb(result, dumps=lambda _: text),
                        "started": started,
                        "tries": tries,
                        "channel": q.PROGRESS_CHANNEL,
                    },
                )
            ).fetchone()
            assert row is not None
            allowed, inserted = bool(row[0]), bool(row[1])
            if not allowed:
                return StepWrite(False, False)
            if inserted:
                return StepWrite(True, True, result)
            # Recorded before (a retried call): its first result, read after the insert was refused.
            existing = await (await conn.execute(q.STEP_RESULT, (uid, key))).fetchone()
            return StepWrite(True, False, existing[0] if existing else None)

    # -- history (the history API) -----------------------------------------------------------------
    async def history_runs(self, namespace: str, filters: dict[str, Any], limit: int) -> list[dict[str, Any]]:
        """Runs of a namespace newest first, live and archived, as the history API lists them.
        filters: task, queue, search (a part of the name), phase, since, until, labels (a dict), archived
        (bool), after ((created, uid))."""
        after = filters.get("after")
        search = filters.get("search")
        escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") if search else None
        params = {
            "namespace": namespace,
            "task": filters.get("task"),
            "queue": filters.get("queue"),
            "name_like": f"%{escaped}%" if escaped else None,
            "phase": filters.get("phase"),
            "since": filters.get("since"),
            "until": filters.get("until"),
            "labels": Jsonb(filters["labels"]) if filters.get("labels") else None,
            "archived": bool(filters.get("archived")),
            "after_time": after[0] if after else None,
            "after_uid": after[1] if after else None,
            "limit": limit,
        }
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(q.HISTORY_RUNS, params)).fetchall()
        return [{**_history_fields(r), "stepsCompleted": r[11]} for r in rows]

    async def history_run(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The last run of that name (its TaskRun may be deleted): its record, attempts and steps."""
        async with self.pool.connection() as conn:
            r = await (await conn.execute(q.HISTORY_RUN, (namespace, name))).fetchone()
            if r is None:
                return None
            attempts = await (await conn.execute(q.RUN_HISTORY_ATTEMPTS, (r[0],))).fetchall()
            steps = await (await conn.execute(q.RUN_HISTORY_STEPS, (r[0],))).fetchall()
        return {
            "namespace": namespace,
            **_history_fields(r),
            "payload": r[11],
            "resultRecorded": bool(r[12]),
            "result": r[13],
            "retainUntil": _iso(r[14]),
            "taskGeneration": (r[15] or {}).get("generation"),
            "state": r[16],
            "attempts": [
                {
                    "number": a[0],
                    "pod": a[1],
                    "startedAt": _iso(a[2]),
                    "endedAt": _iso(a[3]),
                    "exitCode": a[4],
                    "reason": a[5],
                }
                for a in attempts
            ],
            "steps": [
                {
                    "key": st[0],
                    "seq": st[1],
                    "attempt": st[2],
                    "startedAt": _iso(st[3]),
                    "completedAt": _iso(st[4]),
                    "bytes": st[5] or 0,
                    "tries": st[6],
                }
                for st in steps
            ],
        }

    async def task_summary(self, namespace: str, since: datetime) -> list[dict[str, Any]]:
        """Per task, the runs created since then (live and archived): how they ended, how long the
        successful ones took from creation to the end (p50, p95, seconds), attempts per finished run."""
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(q.TASK_SUMMARY, (namespace, since))).fetchall()
        return [
            {
                "task": r[0],
                "runs": r[1],
                "succeeded": r[2],
                "failed": r[3],
                "cancelled": r[4],
                "live": r[5],
                "p50Seconds": r[6],
                "p95Seconds": r[7],
                "attemptsPerRun": float(r[8]) if r[8] is not None else None,
                "lastCreatedAt": _iso(r[9]),
            }
            for r in rows
        ]

    async def queue_activity(self, namespace: str, span: timedelta, buckets: int) -> dict[str, dict[str, list[int]]]:
        """Per queue, runs admitted and runs finished in each of `buckets` equal slices of the last
        `span`, oldest first (by PostgreSQL's clock, the one admission keeps)."""
        size = span.total_seconds() / buckets
        params = {"namespace": namespace, "bucket": size, "span": span.total_seconds()}
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(q.QUEUE_ACTIVITY, params)).fetchall()
        out: dict[str, dict[str, list[int]]] = {}
        for queue, series, ago, count in rows:
            lines = out.setdefault(queue, {"admitted": [0] * buckets, "finished": [0] * buckets})
            if 0 <= ago < buckets:
                lines[series][buckets - 1 - ago] += count
        return out

    async def history_family(self, uid: str) -> dict[str, Any]:
        """A run's parent (its name and the step that started it), its children (the first 200) and
        its durable waits (sleeps, tokens, children; the first 200), each with its times."""
        async with self.pool.connection() as conn:
            parent = await (await conn.execute(q.RUN_PARENT, (uid,))).fetchone()
            children = await (await conn.execute(q.RUN_CHILDREN, (uid,))).fetchall()
            waits = await (await conn.execute(q.RUN_WAITS, (uid,))).fetchall()
        return {
            "parent": {"name": parent[0], "step": parent[1]} if parent else None,
            "children": [
                {
                    "name": c[0],
                    "stage": c[1],
                    "phase": c[2] or "Live",
                    "step": c[3],
                    "createdAt": _iso(c[4]),
                    "endedAt": _iso(c[5]),
                }
                for c in children
            ],
            "waits": [
                {"key": w[0], "kind": w[1], "attempt": w[2], "createdAt": _iso(w[3]), "endedAt": _iso(w[4])}
                for w in waits
            ],
        }

    async def record_steps(
        self, uid: str, attempt: int, records: Sequence[tuple[str, Any, datetime | None, int | None]]
    ) -> list[StepWrite]:
        """Several steps (key, result, started, tries) in one statement, fenced as record_step is; one
        StepWrite per record, in order (a step recorded before keeps its first result)."""
        async with self.pool.connection() as conn:
            rows = await (
                await conn.execute(
                    q.RECORD_STEPS,
                    {
                        "uid": uid,
                        "attempt": attempt,
                        "keys": [r[0] for r in records],
                        "results": [Jsonb(r[1]) for r in records],
                        "started": [r[2] for r in records],
                        "tries": [r[3] for r in records],
                        "channel": q.PROGRESS_CHANNEL,
                    },
                )
            ).fetchall()
        if not rows or not rows[0][0]:
            return [StepWrite(False, False) for _ in records]
        return [StepWrite(True, bool(r[2]), r[3]) for r in rows]

    async def run_result(self, uid: str) -> tuple[bool, Any]:
        """(recorded?, result) of a run."""
        async with self.pool.connection() as conn:
            row = await (await conn.execute(q.RUN_RESULT, (uid,))).fetchone()
        return (bool(row[0]), row[1]) if row else (False, None)

    async def save_state(self, uid: str, attempt: int, state: Any, note: str | None) -> bool:
        async with self._tx() as conn:
            row = await (
                await conn.execute(
                    q.SAVE_STATE,
                    {
                        "uid": uid,
                        "attempt": attempt,
                        "state": Jsonb(state),
                        "note": note,
                    },
                )
            ).fetchone()
            if row:
                await conn.execute(q.NOTIFY_PROGRESS, (q.PROGRESS_CHANNEL, uid))
            return row is not None

    async def record_result(self, uid: str, attempt: int, result: Any) -> bool:
        async with self._tx() as conn:
            row = await (
                await conn.execute(q.RECORD_RESULT, {"uid": uid, "attempt": attempt, "result": Jsonb(result)})
            ).fetchone()
            return row is not None


def _iso(value: datetime | None) -> str | None:
    return format_time(value) if value is not None else None


def _history_fields(r: Sequence[Any]) -> dict[str, Any]:
    """What HISTORY_RUNS and HISTORY_RUN both begin with (uid .. labels), as the history API names it."""
    return {
        "uid": r[0],
        "name": r[1],
        "task": r[2],
        "queue": r[3],
        "phase": r[5] or "Live",  # a run not finished yet has no phase in the store
        "stage": r[4],
        "createdAt": _iso(r[6]),
        "finishedAt": _iso(r[7]),
        "deletedAt": _iso(r[8]),
        "attempt": r[9],
        "labels": r[10] or {},
    }


def make_store(dsn: str, *, max_size: int, name: str) -> PostgresStore:
    """The store of a process (the operator's, the API's): a pool named after it, so that
    pg_stat_activity says whose connections they are."""
    return PostgresStore(dsn, min_size=1, max_size=max_size, name=name)


def _admission(r: Any, w: Any) -> Admission:
    """An Admission from GET_RUN's row and CURRENT_WAIT's (or None)."""
    wait = None
    if w is not None:
        wait = WaitView(
            key=w[0],
            kind=w[1],
            attempt=w[2],
            created=w[3],
            until=w[4],
            token=w[5],
            children=w[6],
            done=w[7],
            children_done=w[8] or 0,
        )
    return Admission(
        state=r[0],
        queue=r[1],
        snapshot=_snapshot(r[2]),
        wait_reason=WaitReason(r[3]) if r[3] else None,
        wait_until=r[4],
        limits=_limits(r[5:15]),
        phase=r[15],
        wait=wait,
        attempts=tuple(_stored_attempt(a) for a in r[16] or ()),
    )


def _stored_attempt(a: list[Any]) -> StoredAttempt:
    """One attempt from GET_RUN's JSON (its times as PostgreSQL's json_build_array writes them)."""
    return StoredAttempt(
        number=a[0],
        pod=a[1],
        start_time=format_time(datetime.fromisoformat(a[2])) if a[2] else None,
        finish_time=format_time(datetime.fromisoformat(a[3])) if a[3] else None,
        exit_code=a[4],
        reason=a[5],
    )


def _recorded(row: Any, steps: list[Any], tokens: list[Any]) -> Recorded:
    """A Recorded from RECORDED's row, RECENT_STEPS' and RUN_TOKENS' rows."""
    return Recorded(
        steps_completed=row[0],
        last_step=row[1],
        state_note=row[3],
        updated=max((t for t in (row[2], row[4]) if t), default=None),
        result=row[5],
        recent=tuple((s[0], s[1], s[2], s[3], s[4]) for s in steps),
        tokens=tuple(
            TokenEntry(
                id=t[0],
                step=t[1],
                tags=list(t[2]) or None,
                status=t[3],
                timeout_time=format_time(t[4]) if t[4] else None,
                completion_time=format_time(t[6]) if t[6] else None,
            )
            for t in tokens
        ),
    )
