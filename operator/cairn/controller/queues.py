"""Queue objects: kept in the store (their limits) and their status kept current."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from cairn import metrics
from cairn.api.queue import Queue, QueueStatus
from cairn.controller.workqueue import WorkQueue
from cairn.domain.conditions import set_condition
from cairn.domain.timefmt import format_time
from cairn.k8s import ops
from cairn.store.base import QueueRow

if TYPE_CHECKING:
    from cairn.controller.operator import Operator

log = logging.getLogger(__name__)
QueueKey = tuple[str, str]
STATUS_COALESCE = 0.5  # seconds: bursts of admissions make one status write


class QueueStatusWriter:
    def __init__(self, op: Operator, clock: Callable[[], datetime]) -> None:
        self.op = op
        self.clock = clock
        self.queue: WorkQueue[QueueKey] = WorkQueue("queue-status")

    def kick(self, namespace: str, queue: str) -> None:
        self.queue.add_after((namespace, queue), STATUS_COALESCE)

    async def update(self, key: QueueKey) -> None:
        body = self.op.cache.queues.get(key)
        if body is None:
            return
        try:
            q = Queue.model_validate(body)
        except ValidationError as e:
            log.error("Queue %s/%s does not parse: %s", *key, e)
            return
        stats = await self.op.store.queue_stats(*key)
        metrics.QUEUE_DEPTH.labels(key[0], key[1]).set(stats.queued)
        metrics.QUEUE_RUNNING.labels(key[0], key[1]).set(stats.running)
        old = q.status or QueueStatus()
        active = not q.spec.paused
        conditions = set_condition(
            old.conditions,
            "Active",
            "True" if active else "False",
            "Admitting" if active else "Paused",
            "admitting runs" if active else "paused: running runs finish, none are admitted",
            now=self.clock(),
            generation=q.metadata.generation,
        )
        new = QueueStatus(
            queued=stats.queued,
            running=stats.running,
            admitted_total=stats.admitted_total,
            oldest_queued_time=format_time(stats.oldest_queued) if stats.oldest_queued else None,
            observed_generation=q.metadata.generation,
            conditions=conditions,
        )
        # Compare with what is stored (not with the model's defaults), so that zeros get written too.
        before: dict[str, Any] = body.get("status") or {}
        after: dict[str, Any] = new.model_dump(mode="json", by_alias=True)
        patch = {k: v for k, v in after.items() if before.get(k) != v}
        if patch:
            await ops.patch_queue_status(self.op.kube, key[0], key[1], patch)


def queue_row(body: dict[str, Any]) -> QueueRow:
    q = Queue.model_validate(body)
    return QueueRow(
        namespace=q.metadata.namespace or "",
        name=q.metadata.name,
        uid=q.metadata.uid or "",
        concurrency_limit=q.spec.concurrency_limit,
        per_key_limit=q.spec.per_key_limit,
        paused=q.spec.paused,
    )
