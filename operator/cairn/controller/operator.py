"""The operator's runtime: caches, work queues and background loops, fed by kopf's watch events."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import Any

import psycopg

from cairn import metrics
from cairn.clock import Clock, utcnow
from cairn.config import Settings
from cairn.controller.admission import AdmissionScheduler
from cairn.controller.cache import Body, Cache, key_of
from cairn.controller.queues import QueueStatusWriter, queue_row
from cairn.controller.runs import RunReconciler
from cairn.controller.workqueue import WorkQueue, run_workers
from cairn.domain import lifecycle
from cairn.domain.podspec import Runtime
from cairn.k8s import ops
from cairn.k8s.client import Kube, load_config
from cairn.k8s.ops import taskrun_exists
from cairn.store.faulty import make_store
from cairn.store.postgres import migrate
from cairn.store.queries import LISTEN_PROGRESS

log = logging.getLogger(__name__)


class Operator:
    def __init__(self, settings: Settings, *, clock: Clock = utcnow) -> None:
        self.settings = settings
        self.clock = clock
        self.cache = Cache()
        self.store = make_store(settings.dsn, max_size=max(4, settings.workers + 2), name="cairn-operator")
        self.kube = Kube(
            load_config(settings.kubeconfig),
            qps=settings.kube_qps,
            burst=settings.kube_burst,
            event_qps=settings.event_qps,
        )
        self.lifecycle_settings = lifecycle.Settings(
            runtime=Runtime(api_url=settings.api_url, token_audience=settings.token_audience)
        )
        self.runs: WorkQueue[str] = WorkQueue("taskruns")
        self.reconciler = RunReconciler(self, clock)
        self.admission = AdmissionScheduler(self, clock)
        self.queue_status = QueueStatusWriter(self, clock)
        self._tasks: list[asyncio.Task[None]] = []

    # -- life ------------------------------------------------------------------------------------
    async def start(self) -> None:
        await migrate(self.settings.dsn)
        await self.store.open()
        loops = [
            run_workers(self.runs, self.reconciler.reconcile, self.settings.workers),
            run_workers(self.admission.queue, self.admission.round, 2),
            run_workers(self.queue_status.queue, self.queue_status.update, 2),
            self._sweep_forever(),
            self._resync_forever(),
            self._listen_forever(),
            self._export_gauges_forever(),
        ]
        self._tasks = [asyncio.create_task(loop) for loop in loops]
        for task in self._tasks:
            task.add_done_callback(self._crashed)
        log.info("operator started", extra={"namespaces": self.settings.namespaces or "all"})

    def _crashed(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.critical("a background loop died: %r", task.exception())

    async def stop(self) -> None:
        for q in (self.runs, self.admission.queue, self.queue_status.queue):
            q.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.store.close()
        await self.kube.close()

    # -- what the watches report -----------------------------------------------------------------
    def on_taskrun(self, event: str | None, body: Body) -> None:
        if event == "DELETED":
            uid = self.cache.drop_taskrun(body)
            self._spawn(self._forget(uid))
            return
        uid = self.cache.put_taskrun(body)
        self.runs.add(uid)

    async def _forget(self, uid: str) -> None:
        """A TaskRun was deleted: release its slot (its pods go with it, by owner reference)."""
        released = await self.store.forget(uid, self.settings.retention_default.delta)
        if released:
            self.admission.kick(*released)

    def on_task(self, event: str | None, body: Body) -> None:
        ns, name = key_of(body)
        if event == "DELETED":
            self.cache.tasks.pop((ns, name), None)
            return
        self.cache.tasks[(ns, name)] = body
        # Runs that were waiting for this Task can start now.
        for uid in self.cache.runs_of_task(ns, name):
            status = self.cache.taskruns[uid].get("status") or {}
            if status.get("reason") == "TaskNotFound" or not status:
                self.runs.add(uid)

    def on_queue(self, event: str | None, body: Body) -> None:
        ns, name = key_of(body)
        if event == "DELETED":
            self.cache.queues.pop((ns, name), None)
            self._spawn(self._queue_deleted(ns, name, body["metadata"]["uid"]))
            return
        self.cache.queues[(ns, name)] = body
        self._spawn(self._queue_changed(body))

    async def _queue_changed(self, body: Body) -> None:
        row = queue_row(body)
        await self.store.upsert_queue(row)
        self.admission.kick(row.namespace, row.name)
        self.queue_status.kick(row.namespace, row.name)

    async def _queue_deleted(self, ns: str, name: str, uid: str) -> None:
        await self.store.delete_queue(ns, name, uid)
        self.admission.kick(ns, name)

    def on_pod(self, event: str | None, body: Body) -> None:
        uid = self.cache.drop_pod(body) if event == "DELETED" else self.cache.put_pod(body)
        if uid is not None and uid in self.cache.taskruns:
            self.runs.add(uid)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.append(task)
        task.add_done_callback(self._spawned_done)

    def _spawned_done(self, task: asyncio.Task[None]) -> None:
        if task in self._tasks:
            self._tasks.remove(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background step failed: %r", task.exception())

    # -- background loops ------------------------------------------------------------------------
    async def _sweep_forever(self) -> None:
        """Reclaim slots held by runs that no longer exist (deleted while the operator was down),
        re-kick queues with waiting runs, purge expired history."""
        while True:
            await asyncio.sleep(self.settings.sweep_interval)
            try:
                await self.sweep()
            except Exception:
                log.exception("sweep failed; next one in %ss", self.settings.sweep_interval)

    async def sweep(self) -> int:
        reclaimed = 0
        for uid, ns, queue, name in await self.store.live_runs(
            self.clock() - timedelta(seconds=self.settings.orphan_grace)
        ):
            # Not in the cache is only a hint (the watch may still be listing): ask the API server.
            if uid in self.cache.taskruns or await taskrun_exists(self.kube, ns, name, uid):
                continue
            released = await self.store.forget(uid, self.settings.retention_default.delta)
            if released:
                reclaimed += 1
                message = f"repaired: reclaimed the slot of run {name}: its TaskRun no longer exists"
                log.warning(message, extra={"namespace": ns, "run": name, "run_uid": uid, "queue": queue})
                queue_body = self.cache.queues.get((ns, queue))
                if queue_body is not None:
                    await ops.post_event(self.kube, queue_body, "Warning", "SlotReclaimed", message, self.clock())
                self.admission.kick(ns, queue)
        for ns, queue in await self.store.queues_with_waiting_runs():
            self.admission.kick(ns, queue)
        await self.store.purge_expired()
        return reclaimed

    async def _resync_forever(self) -> None:
        """Reconcile every run now and then: what a lost event would have triggered happens anyway."""
        while True:
            await asyncio.sleep(self.settings.resync_interval)
            for uid in list(self.cache.taskruns):
                self.runs.add(uid)

    async def _listen_forever(self) -> None:
        """Progress notifications from the checkpoint API (PostgreSQL NOTIFY): mirror steps into
        status, at most about once a second per run."""
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.settings.dsn, autocommit=True) as conn:
                    await conn.execute(LISTEN_PROGRESS)
                    async for note in conn.notifies():
                        if note.payload in self.cache.taskruns:
                            self.runs.add_after(note.payload, 1.0)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - the database restarts; listen again
                log.warning("progress listener lost its connection (%s); reconnecting", e)
                await asyncio.sleep(1)

    async def _export_gauges_forever(self) -> None:
        seen: dict[str, int] = {}
        while True:
            await asyncio.sleep(5)
            metrics.WORKQUEUE_DEPTH.labels("taskruns").set(len(self.runs))
            metrics.WORKQUEUE_DEPTH.labels("admission").set(len(self.admission.queue))
            for what, count in self.kube.requests.items():
                metrics.KUBE_REQUESTS.labels(what).inc(count - seen.get(what, 0))
                seen[what] = count
