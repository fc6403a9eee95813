"""The runtime, on the registry's real reconcilers with fakes of the store and the API server: what
a watch delivers reaches the reconciler of its kind through the work queues, and a reconciler's
work for another reaches that one. Also: the registry itself is whole."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from cairn.config import Settings
from cairn.controller import deps as deps_module
from cairn.controller import registry
from cairn.controller.runtime import Runtime
from cairn.domain.admission import WaitReason
from cairn.store.base import RoundResult
from tests.unit.builders import NAMESPACE, RUN_UID, admission, task, taskrun
from tests.unit.controller.fakes import FakeKube, FakeStore, body
from tests.unit.controller.test_queues import queue_body


async def until(check: Callable[[], bool], seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not reached in time")


def test_every_work_queue_a_reconciler_can_name_has_a_reconciler_and_every_watch_an_intake() -> None:
    names = {w.name for w in registry.WORK}
    assert len(names) == len(registry.WORK)
    named = {v for k, v in vars(deps_module).items() if k.isupper() and isinstance(v, str) and k != "STATUS_COALESCE"}
    assert named == names
    assert {w.plural for w in registry.WATCHES} == {
        "taskruns",
        "tasks",
        "queues",
        "schedules",
        "tokencompletions",
        "pods",
    }


def test_events_flow_from_intake_through_the_reconcilers_to_the_store_and_the_api_server() -> None:
    store, kube = FakeStore(), FakeKube()
    settings = Settings.model_validate({"database_url": "postgresql://cairn@localhost/cairn"})
    waiting = admission(task(), "queued", wait_reason=WaitReason.QUEUE_FULL)

    async def scenario() -> None:
        runtime = Runtime(settings, store=store, kube=kube, loops=())
        runtime.start()
        try:
            # A Queue: copied to the store, then an admission round, then its status.
            store.rounds[(NAMESPACE, "default")] = RoundResult(reason_changed=[RUN_UID])
            runtime.intake(
                "queues", "ADDED", {**queue_body(), "metadata": {**queue_body()["metadata"], "name": "default"}}
            )
            runtime.intake("tasks", "ADDED", body(task()))
            store.admit(RUN_UID, NAMESPACE, waiting)
            runtime.intake("taskruns", "ADDED", body(taskrun()))
            await until(lambda: "upsert_queue" in store.names() and "admission_round" in store.names())
            await until(lambda: any(p.get("reason") == "QueueFull" for p in kube.status_patches()))
            await until(lambda: "patch_queue_status" in kube.names())
        finally:
            await runtime.stop()

    asyncio.run(scenario())
    assert store.names().index("upsert_queue") < store.names().index("admission_round")
