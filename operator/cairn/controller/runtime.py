"""The operator's runtime: the cache, one work queue per registry entry with its workers, and the
background loops. It knows no kind: what to watch, reconcile and loop over comes from registry.py."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

from cairn import metrics
from cairn.clock import Clock, utcnow
from cairn.config import Settings
from cairn.controller import registry
from cairn.controller.cache import Body, Cache
from cairn.controller.deps import Deps
from cairn.controller.workqueue import WorkQueue, run_workers
from cairn.domain import lifecycle
from cairn.domain.podspec import Runtime as PodRuntime
from cairn.k8s.base import KubeWriter
from cairn.k8s.client import Kube, load_config
from cairn.k8s.writer import ApiServerWriter
from cairn.store.base import Store
from cairn.store.faulty import with_commit_faults
from cairn.store.postgres import PostgresStore, make_store, migrate

log = logging.getLogger(__name__)
GAUGE_INTERVAL = 5.0  # seconds


class Runtime:
    def __init__(
        self,
        settings: Settings,
        *,
        store: Store,
        kube: KubeWriter,
        clock: Clock = utcnow,
        work: tuple[registry.Work, ...] = registry.WORK,
        loops: tuple[registry.Loop, ...] = registry.LOOPS,
        watches: tuple[registry.Watch, ...] = registry.WATCHES,
        requests: Counter[str] | None = None,
    ) -> None:
        self.settings = settings
        self.cache = Cache(watching_since=clock())  # the watches start right after (kopf startup)
        self.queues: dict[str, WorkQueue[Hashable]] = {w.name: WorkQueue(w.name) for w in work}
        self.deps = Deps(
            store=store,
            kube=kube,
            cache=self.cache,
            clock=clock,
            settings=settings,
            lifecycle=lifecycle.Settings(
                runtime=PodRuntime(api_url=settings.api_url, token_audience=settings.token_audience)
            ),
            enqueue=self.enqueue,
        )
        self._work = work
        self._loops = loops
        self._intake = {w.plural: w.intake for w in watches}
        self._requests = requests  # the Kubernetes client's request counts, exported as a counter
        self._tasks: list[asyncio.Task[None]] = []
        self.on_stop: list[Callable[[], Awaitable[Any]]] = []

    def enqueue(self, queue: str, key: Hashable, after: float = 0.0, *, later: bool = False) -> None:
        if later and after <= 0:
            self.queues[queue].add(key, later=True)
        else:
            self.queues[queue].add_after(key, after)

    def intake(self, plural: str, event: str | None, body: Body) -> None:
        """What a watch saw (kopf calls this): the kind's intake updates the cache and queues work."""
        self._intake[plural](self.deps, event, body)

    def start(self) -> None:
        coros: list[Awaitable[None]] = [
            run_workers(self.queues[w.name], w.reconciler(self.deps).reconcile, w.workers(self.settings))
            for w in self._work
        ]
        coros += [loop.run(self.deps)() for loop in self._loops]
        coros.append(self._export_gauges_forever())
        self._tasks = [asyncio.create_task(c) for c in coros]  # type: ignore[arg-type]
        for task in self._tasks:
            task.add_done_callback(_crashed)

    async def stop(self) -> None:
        for q in self.queues.values():
            q.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for close in self.on_stop:
            await close()

    async def _export_gauges_forever(self) -> None:
        seen: dict[str, int] = {}
        while True:
            await asyncio.sleep(GAUGE_INTERVAL)
            for name, q in self.queues.items():
                metrics.WORKQUEUE_DEPTH.labels(name).set(len(q))
            for what, count in (self._requests or {}).items():
                metrics.KUBE_REQUESTS.labels(what).inc(count - seen.get(what, 0))
                seen[what] = count


def _crashed(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.critical("a background loop died: %r", task.exception())


async def start_operator(settings: Settings, clock: Clock = utcnow, *, start: bool = True) -> Runtime:
    """The operator of a process: the schema migrated, the store and the API server's client opened,
    the loops started (with start=False, not yet: a standby fills its cache and queues, and starts
    its workers and loops when it leads)."""
    await migrate(settings.dsn)
    store: PostgresStore = with_commit_faults(
        make_store(settings.dsn, max_size=max(4, settings.workers + 2), name="cairn-operator")
    )
    await store.open()
    kube = Kube(
        load_config(settings.kubeconfig),
        qps=settings.kube_qps,
        burst=settings.kube_burst,
        event_qps=settings.event_qps,
    )
    runtime = Runtime(settings, store=store, kube=ApiServerWriter(kube), clock=clock, requests=kube.requests)
    runtime.on_stop += [store.close, kube.close]
    if start:
        runtime.start()
        log.info("operator started", extra={"namespaces": settings.namespaces or "all"})
    return runtime
