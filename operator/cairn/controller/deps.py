"""What a reconciler is given: the store, the Kubernetes writer, the cache, the clock, the settings,
and `enqueue` to hand work to another reconciler (or to itself, later). Reconcilers know each other
only by the name of their work queue, so none imports another (no circle, and each can be tested
alone with fakes of these parts)."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from cairn import metrics
from cairn.clock import Clock
from cairn.config import Settings
from cairn.controller.cache import Cache
from cairn.domain import lifecycle
from cairn.k8s.base import KubeWriter
from cairn.store.base import Store

# The work queues, by name (the registry gives each its reconciler).
TASKRUNS = "taskruns"  # key: a TaskRun's uid
QUEUES = "queues"  # key: (namespace, name) of a Queue; keeps the store's copy of its limits
ADMISSION = "admission"  # key: (namespace, queue); one admission round
QUEUE_STATUS = "queue-status"  # key: (namespace, name); the Queue's status
SCHEDULES = "schedules"  # key: (namespace, name) of a Schedule
TOKENS = "token-completions"  # key: (namespace, name) of a TokenCompletion
TASKRUN_STATUS = "taskrun-status"  # key: a TaskRun's uid; writes its waiting status patch
STATUS_COALESCE = 0.5  # seconds: bursts of admissions make one Queue status write
# A run's Starting and Running are written this long after they happen: a short run's Starting,
# Running and end then make one request, not three. Its end, a retry or a wait is written at once.
IN_FLIGHT_COALESCE = 1.0  # seconds
IN_FLIGHT_PHASES = ("Starting", "Running")
# How long after a rate's next chance its round runs: past it for certain, and little enough that a
# queue pacing one admission every 0.5 s loses under 1 % to the lag (10 ms lost 2 %: burst 1 read 0.979).
KICK_MARGIN = 0.003  # seconds


class Enqueue(Protocol):
    def __call__(self, queue: str, key: Hashable, after: float = 0.0, *, later: bool = False) -> None:
        """Process `key` on work queue `queue`, after `after` seconds (the earliest request wins);
        `later`: behind the work already queued (see WorkQueue)."""
        ...


@dataclass(frozen=True)
class Deps:
    store: Store
    kube: KubeWriter
    cache: Cache
    clock: Clock
    settings: Settings
    lifecycle: lifecycle.Settings
    enqueue: Enqueue

    def reconcile_run(self, uid: str, after: float = 0.0, *, later: bool = False) -> None:
        self.enqueue(TASKRUNS, uid, after, later=later)

    def write_status(self, uid: str, namespace: str, name: str, patch: dict[str, Any]) -> None:
        """Hand a TaskRun's status patch to the status writer, merged into any still waiting."""
        waiting = self.cache.pending_status.get(uid)
        if waiting is not None:
            metrics.STATUS_WRITES_MERGED.inc()
            patch = {**waiting[1], **patch}
        self.cache.pending_status[uid] = ((namespace, name), patch)
        metrics.STATUS_WRITES_WAITING.set(len(self.cache.pending_status))
        # A run that only waits in its queue says so after the writes of runs that moved: under load
        # its Queued often merges into the Running it gets next (one request instead of two).
        phase = patch.get("phase")
        after = IN_FLIGHT_COALESCE if phase in IN_FLIGHT_PHASES else 0.0
        self.enqueue(TASKRUN_STATUS, uid, after, later=phase == "Queued")

    def kick(self, namespace: str, queue: str, at: datetime | None = None) -> None:
        """An admission round on the queue: now, or just after `at` (when a backoff ends)."""
        delay = 0.0 if at is None else max(0.0, (at - self.clock()).total_seconds()) + KICK_MARGIN
        self.enqueue(ADMISSION, (namespace, queue), delay)

    def queue_status(self, namespace: str, queue: str, at: datetime | None = None) -> None:
        """A Queue status write: soon (bursts coalesce into one), or at `at`."""
        delay = STATUS_COALESCE if at is None else max(STATUS_COALESCE, (at - self.clock()).total_seconds())
        self.enqueue(QUEUE_STATUS, (namespace, queue), delay)
