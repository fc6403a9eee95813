"""Queues: the store keeps a copy of each Queue's limits (admission reads them there, under a row
lock), and each Queue's status says how many runs wait and run.

Also the intake of what the watch sees of Queues."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError

from cairn import metrics
from cairn.api.queue import Queue, QueueStatus, RateStatus
from cairn.controller.cache import Body, Key, key_of
from cairn.controller.deps import QUEUES, Deps
from cairn.domain.conditions import set_condition
from cairn.domain.pace import rate_of
from cairn.domain.timefmt import format_time
from cairn.store.base import QueueRow

log = logging.getLogger(__name__)


def on_queue(deps: Deps, event: str | None, body: Body) -> None:
    key = key_of(body)
    if event == "DELETED":
        deps.cache.queues.pop(key, None)
        deps.cache.deleted_queues[key] = body["metadata"]["uid"]
    else:
        deps.cache.queues[key] = body
    deps.enqueue(QUEUES, key)


class QueueReconciler:
    """Keeps the store's row of a Queue as the Queue is: written when it changes, removed with it."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    async def reconcile(self, key: Key) -> None:
        deps = self.deps
        namespace, name = key
        deleted = deps.cache.deleted_queues.get(key)
        if deleted is not None:
            # Only the row of the deleted Queue (its uid): a new Queue of the same name stays.
            await deps.store.delete_queue(namespace, name, deleted)
            if deps.cache.deleted_queues.get(key) == deleted:
                del deps.cache.deleted_queues[key]
        body = deps.cache.queues.get(key)
        if body is not None:
            await deps.store.upsert_queue(queue_row(body))
            deps.queue_status(namespace, name)
        deps.kick(namespace, name)


class QueueStatusReconciler:
    """Writes what changed in a Queue's status: counts from the store, its Active condition."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    async def reconcile(self, key: Key) -> None:
        deps = self.deps
        body = deps.cache.queues.get(key)
        if body is None:
            return
        try:
            q = Queue.model_validate(body)
        except ValidationError as e:
            log.error("Queue %s/%s does not parse: %s", *key, e)
            return
        stats = await deps.store.queue_stats(*key)
        metrics.QUEUE_DEPTH.labels(key[0], key[1]).set(stats.queued)
        metrics.QUEUE_RUNNING.labels(key[0], key[1]).set(stats.running)
        metrics.QUEUE_WAITING.labels(key[0], key[1]).set(stats.waiting)
        metrics.QUEUE_RATE_LIMITED.labels(key[0], key[1]).set(stats.rate_limited)
        old = q.status or QueueStatus()
        rate = None
        if q.spec.rate_limit is not None:
            r = q.spec.rate_limit
            rate = RateStatus(
                limit=r.limit,
                period=str(r.period),
                used=stats.rate_used,
                summary=f"{stats.rate_used}/{r.limit} per {r.period}",
            )
            if stats.rate_used:
                # The count falls as admissions age out of the window, with nothing else to say so.
                deps.queue_status(key[0], key[1], at=deps.clock() + r.period.delta)
        active = not q.spec.paused
        conditions = set_condition(
            old.conditions,
            "Active",
            "True" if active else "False",
            "Admitting" if active else "Paused",
            "admitting runs" if active else "paused: running runs finish, none are admitted",
            now=deps.clock(),
            generation=q.metadata.generation,
        )
        new = QueueStatus(
            queued=stats.queued,
            running=stats.running,
            waiting=stats.waiting,
            admitted_total=stats.admitted_total,
            oldest_queued_time=format_time(stats.oldest_queued) if stats.oldest_queued else None,
            observed_generation=q.metadata.generation,
            rate=rate,
            rate_limited=stats.rate_limited,
            conditions=conditions,
        )
        # Compare with what is stored (not with the model's defaults), so that zeros get written too.
        before: dict[str, Any] = body.get("status") or {}
        after: dict[str, Any] = new.model_dump(mode="json", by_alias=True)
        patch = {k: v for k, v in after.items() if before.get(k) != v}
        if patch:
            await deps.kube.patch_queue_status(key[0], key[1], patch)


def queue_row(body: Body) -> QueueRow:
    q = Queue.model_validate(body)
    return QueueRow(
        namespace=q.metadata.namespace or "",
        name=q.metadata.name,
        uid=q.metadata.uid or "",
        concurrency_limit=q.spec.concurrency_limit,
        per_key_limit=q.spec.per_key_limit,
        paused=q.spec.paused,
        rate=rate_of(q.spec.rate_limit),
        key_rate=rate_of(q.spec.per_key_rate_limit),
        max_queued=q.spec.max_queued,
    )
