"""TaskRun status writes, off the reconcile's path and merged per run while they wait for the client's
budget: a run whose status changes three times before its write's turn comes (Starting, Running,
Succeeded, for a short run under load) costs one request, not three. A run's end, a retry, a wait
or a failure to start is written at once; Starting and Running a second after they happen (a run
that ends within it shows its end, not them); Queued after the writes of runs that moved. The
budget gives pods first call (status patches are background requests, k8s/client.py).

The reconcile hands its patch over and carries on from what it wrote (the cache holds it, and a
watch event that brings an older body gets the waiting patch laid over it), so a run never acts on
a status older than the one it will have. The store, not the status, is what admission and the
slots are decided on: a status write that waits holds nothing up."""

from __future__ import annotations

import logging

from cairn import faults, metrics
from cairn.controller.deps import Deps

log = logging.getLogger(__name__)


class TaskRunStatusWriter:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    async def reconcile(self, uid: str) -> None:
        cache = self.deps.cache
        waiting = cache.pending_status.get(uid)
        if waiting is None:
            return
        (namespace, name), patch = waiting
        # It stays in the cache's overlay until written: a watch event older than this write, arriving
        # while it is in flight, must not undo it either.
        written = await self.deps.kube.patch_taskrun_status(namespace, name, patch)
        if cache.pending_status.get(uid) is waiting:
            del cache.pending_status[uid]
        # else: more came while it was in flight, merged with it; the queue has the run again.
        metrics.STATUS_WRITES_WAITING.set(len(cache.pending_status))
        if not written:
            log.debug("TaskRun %s/%s is gone: its status was not written", namespace, name)
            return
        faults.point("operator.after_status_written")
