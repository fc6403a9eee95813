"""Admission rounds, one queue at a time: kicked when a run arrives or a slot frees up, when a
queue changes, and when a backoff ends. A round admits as many runs as there are free slots (the
decision is the domain's, taken inside the store's transaction with the queue's row locked)."""

from __future__ import annotations

import logging

from cairn import faults, metrics
from cairn.controller.cache import Key
from cairn.controller.deps import Deps

log = logging.getLogger(__name__)


class AdmissionReconciler:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    async def reconcile(self, key: Key) -> None:
        deps = self.deps
        namespace, queue = key
        with metrics.RECONCILE_SECONDS.labels("admission").time():
            result = await deps.store.admission_round(namespace, queue, deps.clock())
        if result.admitted:
            faults.point("operator.after_slot_taken")
        for uid in (*result.admitted, *result.reason_changed):
            deps.reconcile_run(uid)
        if result.admitted:
            metrics.ADMISSIONS.inc(len(result.admitted))
            log.debug("queue %s/%s admitted %d", namespace, queue, len(result.admitted))
        if result.paced:
            metrics.RATE_LIMITED_ROUNDS.labels(namespace, queue).inc()
        if result.next_due is not None:
            deps.kick(namespace, queue, at=result.next_due)
        deps.queue_status(namespace, queue)
