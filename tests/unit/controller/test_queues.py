"""The Queue reconcilers (the store's copy of a Queue's limits; the Queue's status) and the intake of
Queue events, against in-memory fakes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cairn.controller.deps import ADMISSION, QUEUE_STATUS, QUEUES
from cairn.controller.queues import QueueReconciler, QueueStatusReconciler, on_queue
from cairn.store.base import QueueRow, QueueStats
from tests.unit.builders import NAMESPACE, T0
from tests.unit.controller.fakes import World, world

KEY = (NAMESPACE, "gpu")


def queue_body(uid: str = "q-1", *, limit: int = 3, paused: bool = False, status: dict[str, Any] | None = None) -> Any:
    out: dict[str, Any] = {
        "apiVersion": "cairn.dev/v1alpha1",
        "kind": "Queue",
        "metadata": {"name": "gpu", "namespace": NAMESPACE, "uid": uid, "generation": 2},
        "spec": {"concurrencyLimit": limit, "perKeyLimit": 1, "paused": paused},
    }
    if status is not None:
        out["status"] = status
    return out


def reconcile(w: World) -> None:
    asyncio.run(QueueReconciler(w.deps).reconcile(KEY))


def test_a_new_or_changed_queue_is_copied_to_the_store_then_gets_an_admission_round_and_a_status() -> None:
    w = world()
    on_queue(w.deps, "ADDED", queue_body(limit=5))
    assert w.enqueued.of(QUEUES) == [(KEY, 0.0)]
    reconcile(w)
    assert w.store.writes == [("upsert_queue", QueueRow(NAMESPACE, "gpu", "q-1", 5, 1, False))]
    assert w.enqueued.of(ADMISSION) == [(KEY, 0.0)]
    assert w.enqueued.of(QUEUE_STATUS) == [(KEY, 0.5)]


def test_a_deleted_queue_leaves_the_store_and_its_runs_get_a_round_that_says_the_queue_is_missing() -> None:
    w = world()
    on_queue(w.deps, "ADDED", queue_body())
    reconcile(w)
    w.store.writes.clear()
    on_queue(w.deps, "DELETED", queue_body())
    reconcile(w)
    assert w.store.writes == [("delete_queue", NAMESPACE, "gpu", "q-1")]
    assert KEY not in w.store.queues
    assert KEY not in w.cache.deleted_queues
    assert (ADMISSION, KEY, 0.0) in w.enqueued.calls


def test_a_queue_deleted_and_created_again_before_the_store_heard_keeps_only_the_new_one() -> None:
    w = world()
    on_queue(w.deps, "ADDED", queue_body("old"))
    reconcile(w)
    on_queue(w.deps, "DELETED", queue_body("old"))
    on_queue(w.deps, "ADDED", queue_body("new", limit=7))
    w.store.writes.clear()
    reconcile(w)
    assert w.store.writes == [
        ("delete_queue", NAMESPACE, "gpu", "old"),
        ("upsert_queue", QueueRow(NAMESPACE, "gpu", "new", 7, 1, False)),
    ]
    assert w.store.queues[KEY].uid == "new"


STATS = QueueStats(queued=4, running=3, oldest_queued=T0, admitted_total=10)


@pytest.mark.parametrize(
    ("paused", "condition"),
    [(False, ("True", "Admitting")), (True, ("False", "Paused"))],
)
def test_queue_status_counts_what_the_store_counts_and_says_whether_it_admits(
    paused: bool, condition: tuple[str, str]
) -> None:
    w = world()
    w.store.stats = STATS
    w.cache.queues[KEY] = queue_body(paused=paused)
    asyncio.run(QueueStatusReconciler(w.deps).reconcile(KEY))
    ((_, ns, name, patch),) = w.kube.writes
    assert (ns, name) == KEY
    assert (patch["queued"], patch["running"], patch["admittedTotal"]) == (4, 3, 10)
    assert patch["oldestQueuedTime"] == "2026-03-01T12:00:00.000Z"
    assert patch["observedGeneration"] == 2
    (active,) = patch["conditions"]
    assert (active["type"], active["status"], active["reason"]) == ("Active", *condition)


def test_queue_status_writes_only_what_changed_and_nothing_when_nothing_did() -> None:
    w = world()
    w.store.stats = STATS
    w.cache.queues[KEY] = queue_body()
    asyncio.run(QueueStatusReconciler(w.deps).reconcile(KEY))
    written = w.kube.writes[0][3]
    w.cache.queues[KEY] = queue_body(status=written)
    w.kube.writes.clear()
    asyncio.run(QueueStatusReconciler(w.deps).reconcile(KEY))
    assert w.kube.writes == []
    w.store.stats = QueueStats(queued=0, running=3, oldest_queued=None, admitted_total=14)
    asyncio.run(QueueStatusReconciler(w.deps).reconcile(KEY))
    ((_, _, _, patch),) = w.kube.writes
    # Zeros and a cleared time are written too (compared with what is stored, not with defaults).
    assert patch == {"queued": 0, "admittedTotal": 14, "oldestQueuedTime": None}


def test_queue_status_of_a_queue_not_in_the_cache_writes_nothing() -> None:
    w = world()
    asyncio.run(QueueStatusReconciler(w.deps).reconcile(KEY))
    assert w.kube.writes == []
