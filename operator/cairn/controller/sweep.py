"""Repair, now and then: reclaim slots held by runs that no longer exist (deleted while the operator
was down), re-kick queues with waiting runs, purge expired history; and reconcile every run, so that
what a lost event would have triggered happens anyway."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from cairn.controller.deps import Deps

log = logging.getLogger(__name__)


class Sweeper:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    async def sweep(self) -> int:
        """One sweep; returns how many slots it reclaimed."""
        deps = self.deps
        reclaimed = 0
        for uid, ns, queue, name in await deps.store.live_runs(
            deps.clock() - timedelta(seconds=deps.settings.orphan_grace)
        ):
            # Not in the cache is only a hint (the watch may still be listing): ask the API server.
            if uid in deps.cache.taskruns or await deps.kube.taskrun_exists(ns, name, uid):
                continue
            released = await deps.store.forget(uid, deps.settings.retention_default.delta)
            if released:
                reclaimed += 1
                message = f"repaired: reclaimed the slot of run {name}: its TaskRun no longer exists"
                log.warning(message, extra={"namespace": ns, "run": name, "run_uid": uid, "queue": queue})
                queue_body = deps.cache.queues.get((ns, queue))
                if queue_body is not None:
                    await deps.kube.post_event(queue_body, "Warning", "SlotReclaimed", message, deps.clock())
                deps.kick(ns, queue)
        for ns, queue in await deps.store.queues_with_waiting_runs():
            deps.kick(ns, queue)
        await deps.store.purge_expired(deps.settings.history_purge_batch, deps.settings.history_keep)
        return reclaimed

    async def sweep_forever(self) -> None:
        interval = self.deps.settings.sweep_interval
        while True:
            await asyncio.sleep(interval)
            try:
                await self.sweep()
            except Exception:
                log.exception("sweep failed; next one in %ss", interval)

    def resync(self) -> int:
        """Queue a reconcile of every run; returns how many."""
        uids = list(self.deps.cache.taskruns)
        for uid in uids:
            self.deps.reconcile_run(uid)
        return len(uids)

    async def resync_forever(self) -> None:
        while True:
            await asyncio.sleep(self.deps.settings.resync_interval)
            self.resync()
