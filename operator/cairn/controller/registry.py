"""What the operator is made of: the kinds it watches, its work queues with their reconcilers, and
its background loops. The runtime builds itself from these lists and handlers/wiring.py registers a
kopf handler per watch, so a new kind is a reconciler module plus an entry here (see
docs/architecture.md)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from cairn.api.common import GROUP, VERSION
from cairn.config import Settings
from cairn.controller import admission, progress, queues, schedules, statuses, sweep, taskruns, tokens
from cairn.controller.cache import Body
from cairn.controller.deps import ADMISSION, QUEUE_STATUS, QUEUES, SCHEDULES, TASKRUN_STATUS, TASKRUNS, TOKENS, Deps
from cairn.domain import naming


class Reconciler(Protocol):
    async def reconcile(self, key: Any) -> None: ...


@dataclass(frozen=True)
class Watch:
    """A kind the operator watches; each event goes to `intake` (which updates the cache and queues
    work). `present`: only objects carrying these labels (Cairn's own pods)."""

    group: str
    version: str
    plural: str
    intake: Callable[[Deps, str | None, Body], None]
    present: tuple[str, ...] = ()


@dataclass(frozen=True)
class Work:
    """A work queue and what drains it, with how many workers."""

    name: str
    reconciler: Callable[[Deps], Reconciler]
    workers: Callable[[Settings], int]


@dataclass(frozen=True)
class Loop:
    """A background loop (it runs until the operator stops)."""

    name: str
    run: Callable[[Deps], Callable[[], Awaitable[None]]]


WATCHES: tuple[Watch, ...] = (
    Watch(GROUP, VERSION, "taskruns", taskruns.on_taskrun),
    Watch(GROUP, VERSION, "tasks", taskruns.on_task),
    Watch(GROUP, VERSION, "queues", queues.on_queue),
    Watch(GROUP, VERSION, "schedules", schedules.on_schedule),
    Watch(GROUP, VERSION, "tokencompletions", tokens.on_token_completion),
    Watch("", "v1", "pods", taskruns.on_pod, present=(naming.LABEL_RUN_UID,)),
)

WORK: tuple[Work, ...] = (
    Work(TASKRUNS, taskruns.TaskRunReconciler, lambda s: s.workers),
    # Fewer writers than reconcilers: under load, pods and admissions come first, statuses merge.
    Work(TASKRUN_STATUS, statuses.TaskRunStatusWriter, lambda s: max(1, s.workers // 4)),
    Work(QUEUES, queues.QueueReconciler, lambda s: 1),
    Work(ADMISSION, admission.AdmissionReconciler, lambda s: 2),
    Work(QUEUE_STATUS, queues.QueueStatusReconciler, lambda s: 2),
    Work(SCHEDULES, schedules.ScheduleReconciler, lambda s: s.workers),
    Work(TOKENS, tokens.TokenCompletionReconciler, lambda s: 1),
)

LOOPS: tuple[Loop, ...] = (
    Loop("sweep", lambda deps: sweep.Sweeper(deps).sweep_forever),
    Loop("resync", lambda deps: sweep.Sweeper(deps).resync_forever),
    Loop("progress", lambda deps: progress.ProgressListener(deps).listen_forever),
)
