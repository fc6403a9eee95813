"""The store's interface, as its users see it (the operator's controller and the checkpoint API)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from cairn.api.taskrun import TaskSnapshot
from cairn.domain.admission import WaitReason

RunState = Literal["queued", "admitted", "finished"]


@dataclass(frozen=True)
class QueueRow:
    namespace: str
    name: str
    uid: str
    concurrency_limit: int
    per_key_limit: int | None
    paused: bool


@dataclass(frozen=True)
class NewRun:
    uid: str
    namespace: str
    name: str
    task: str
    queue: str
    priority: int
    key: str | None
    created: datetime
    snapshot: TaskSnapshot
    payload: str | None


@dataclass(frozen=True)
class RunRow:
    uid: str
    state: RunState
    queue: str
    snapshot: TaskSnapshot
    wait_reason: WaitReason | None
    attempt: int


@dataclass(frozen=True)
class RoundResult:
    """One admission round on one queue."""

    admitted: list[str] = field(default_factory=list)
    reason_changed: list[str] = field(default_factory=list)
    next_due: datetime | None = None


@dataclass(frozen=True)
class QueueStats:
    queued: int
    running: int
    oldest_queued: datetime | None
    admitted_total: int


@dataclass(frozen=True)
class RecordedRow:
    steps_completed: int
    last_step: str | None
    last_step_at: datetime | None
    state_note: str | None
    state_at: datetime | None
    result: str | None
    recent: list[tuple[str, int, datetime | None, datetime]] = field(default_factory=list)


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
class StepWrite:
    allowed: bool  # the attempt is the run's current one and the run holds its slot
    inserted: bool  # False: the step was already recorded (its first result stands)
    result: Any = None  # the recorded result (the first one)


class ControllerStore(Protocol):
    """What the operator needs."""

    async def upsert_queue(self, row: QueueRow) -> None: ...
    async def delete_queue(self, namespace: str, name: str, uid: str) -> None: ...
    async def register_run(self, run: NewRun) -> None: ...
    async def get_runs(self, uids: Sequence[str]) -> dict[str, RunRow]: ...
    async def admission_round(self, namespace: str, queue: str, now: datetime) -> RoundResult: ...
    async def requeue(self, uid: str, not_before: datetime) -> tuple[str, str] | None: ...
    async def finish(self, uid: str, phase: str, retention: timedelta) -> tuple[str, str] | None: ...
    async def forget(self, uid: str, retention: timedelta) -> tuple[str, str] | None: ...
    async def begin_attempt(self, uid: str, attempt: int, namespace: str, pod: str) -> None: ...
    async def end_attempt(self, uid: str, attempt: int, exit_code: int | None, reason: str) -> None: ...
    async def recorded(self, uid: str) -> RecordedRow | None: ...
    async def queue_stats(self, namespace: str, queue: str) -> QueueStats: ...
