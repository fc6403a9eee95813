"""The store's interface, as its users see it (the operator's controller and the checkpoint API)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from cairn.domain.lifecycle import Admission, ForkSource, Recorded, Register, RunState
from cairn.domain.pace import Rate


@dataclass(frozen=True)
class QueueRow:
    namespace: str
    name: str
    uid: str
    concurrency_limit: int
    per_key_limit: int | None
    paused: bool
    rate: Rate | None = None
    key_rate: Rate | None = None
    max_queued: int | None = None


@dataclass(frozen=True)
class RoundResult:
    """One admission round on one queue."""

    admitted: list[str] = field(default_factory=list)
    reason_changed: list[str] = field(default_factory=list)
    next_due: datetime | None = None
    paced: bool = False  # a rate held back a run that had a free slot


@dataclass(frozen=True)
class Registration:
    """What registering a run did. `known`: the store had the run already and wrote nothing (the view
    that planned the registration presumed a new run; look again). Otherwise `admitted` is the run's
    admission when its queue had room at once, None when it waits for a round."""

    known: bool = False
    admitted: Admission | None = None


@dataclass(frozen=True)
class Ending:
    """How an attempt ended, given back with its slot: the two are written once, together."""

    attempt: int
    exit_code: int | None
    reason: str


@dataclass(frozen=True)
class QueueStats:
    queued: int
    running: int
    oldest_queued: datetime | None
    admitted_total: int
    waiting: int = 0  # in a durable wait: no slot held
    rate_used: int = 0  # admissions within the last spec.rateLimit.period
    rate_limited: int = 0  # queued runs held back by a rate


@dataclass(frozen=True)
class PodIdentity:
    """Who a pod is, for the checkpoint API: its run and attempt, and whether it may still record."""

    run_uid: str
    attempt: int
    run_name: str
    current_attempt: int
    state: RunState

    @property
    def may_record(self) -> bool:
        return self.state == "admitted" and self.attempt == self.current_attempt


@dataclass(frozen=True)
class WaitAnswer:
    """What a pod is told when it reaches a wait."""

    allowed: bool  # the attempt may still act for its run
    done: bool = False  # over already (recorded, or satisfied now): `result` is the step's
    result: Any = None
    suspend: bool = False  # the pod must stop; the run resumes in a new pod when the wait is over
    conflict: str | None = None  # the step key is another kind of wait, or the token is not this run's
    until: datetime | None = None


@dataclass(frozen=True)
class Completion:
    """How completing a token went: completed now, or why not (the first completion wins)."""

    outcome: str  # Completed | AlreadyCompleted | TimedOut | RunEnded | NotFound | Forbidden
    completed_at: datetime | None = None
    completed_by: str | None = None
    run_uid: str | None = None
    woke: tuple[str, str] | None = None  # (namespace, queue) of a run that queues again


@dataclass(frozen=True)
class StepWrite:
    allowed: bool  # the attempt is the run's current one and the run holds its slot
    inserted: bool  # False: the step was already recorded (its first result stands)
    result: Any = None  # the recorded result (the first one)


class Store(Protocol):
    """What the operator's reconcilers need of the store (PostgresStore; an in-memory fake in tests).
    It takes and returns the domain's types: what the domain decides is what gets written."""

    async def upsert_queue(self, row: QueueRow) -> None: ...
    async def delete_queue(self, namespace: str, name: str, uid: str) -> None: ...
    async def queues_with_waiting_runs(self) -> list[tuple[str, str]]: ...
    async def admission_round(self, namespace: str, queue: str, now: datetime) -> RoundResult: ...
    async def queue_stats(self, namespace: str, queue: str) -> QueueStats: ...
    async def register_run(self, run: Register) -> Registration:
        """Put a new run in its queue's line (admitted at once if there is room); nothing for a run the
        store already has."""
        ...

    async def admission(self, uid: str) -> Admission | None: ...
    async def look(self, uid: str) -> tuple[Admission | None, Recorded]:
        """admission() and, for a registered run, recorded(): what a reconcile reads, in one go."""
        ...

    async def fork_source(self, namespace: str, name: str) -> ForkSource | None: ...
    async def requeue(self, uid: str, ending: Ending, not_before: datetime) -> tuple[str, str] | None:
        """End the attempt and give its slot back until not_before; None if that attempt was already
        ended (a plan made again from a status written before it landed must not release twice)."""
        ...

    async def finish(self, uid: str, phase: str, retention: timedelta) -> tuple[str, str] | None: ...
    async def forget(self, uid: str, retention: timedelta) -> tuple[str, str] | None: ...
    async def live_runs(self, older_than: datetime) -> list[tuple[str, str, str, str]]: ...
    async def purge_expired(self, batch: int, keep: int) -> int: ...
    async def begin_attempt(self, uid: str, attempt: int, namespace: str, pod: str) -> None: ...
    async def end_attempt(self, uid: str, attempt: int, exit_code: int | None, reason: str) -> None: ...
    async def recorded(self, uid: str) -> Recorded: ...
    async def suspend(self, uid: str, ending: Ending) -> tuple[str, str] | None:
        """As requeue, for an attempt whose pod stopped for a wait."""
        ...

    async def wake(self, uid: str, key: str) -> tuple[str, str] | None: ...
    async def complete_token(
        self, token_id: str, data: Any, *, by: str, secret: str | None = None, namespace: str | None = None
    ) -> Completion: ...
    def progress(self) -> AsyncIterator[str]:
        """The uids of runs whose pods recorded progress, as they do (ends when the connection does)."""
        ...
