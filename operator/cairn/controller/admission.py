"""Admission rounds, one queue at a time: kicked when a run arrives or a slot frees up, when a
queue changes, and when a backoff ends. A round admits as many runs as there are free slots."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from cairn import faults, metrics
from cairn.controller.workqueue import WorkQueue

if TYPE_CHECKING:
    from cairn.controller.operator import Operator

log = logging.getLogger(__name__)
QueueKey = tuple[str, str]


class AdmissionScheduler:
    def __init__(self, op: Operator, clock: Callable[[], datetime]) -> None:
        self.op = op
        self.clock = clock
        self.queue: WorkQueue[QueueKey] = WorkQueue("admission")

    def kick(self, namespace: str, queue: str) -> None:
        self.queue.add((namespace, queue))

    def kick_at(self, namespace: str, queue: str, when: datetime) -> None:
        self.queue.add_after((namespace, queue), max(0.0, (when - self.clock()).total_seconds()) + 0.01)

    async def round(self, key: QueueKey) -> None:
        namespace, queue = key
        now = self.clock()
        with metrics.RECONCILE_SECONDS.labels("admission").time():
            result = await self.op.store.admission_round(namespace, queue, now)
        if result.admitted:
            faults.point("operator.after_slot_taken")
        for uid in result.admitted:
            self.op.runs.add(uid)
        for uid in result.reason_changed:
            self.op.runs.add(uid)
        if result.admitted:
            metrics.ADMISSIONS.inc(len(result.admitted))
            log.debug("queue %s/%s admitted %d", namespace, queue, len(result.admitted))
        if result.next_due is not None:
            self.kick_at(namespace, queue, result.next_due)
        self.op.queue_status.kick(namespace, queue)
