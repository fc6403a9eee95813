"""The sweep (repair of leaked slots) and the resync, against in-memory fakes."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from cairn.controller.deps import ADMISSION, TASKRUNS
from cairn.controller.sweep import Sweeper
from tests.unit.builders import NAMESPACE, admission, task, taskrun
from tests.unit.controller.fakes import body, world

LIVE = ("uid-1", NAMESPACE, "default", "video-42")


@pytest.mark.parametrize(
    ("in_cache", "in_api_server", "reclaimed"),
    [(True, False, 0), (False, True, 0), (False, False, 1)],
)
def test_a_sweep_reclaims_the_slot_of_a_run_only_when_the_api_server_says_its_taskrun_is_gone(
    in_cache: bool, in_api_server: bool, reclaimed: int
) -> None:
    w = world()
    w.store.live = [LIVE]
    w.store.admit("uid-1", NAMESPACE, admission(task(), "admitted"))
    w.cache.queues[(NAMESPACE, "default")] = {"kind": "Queue", "metadata": {"name": "default", "namespace": NAMESPACE}}
    if in_cache:
        w.cache.taskruns["uid-1"] = body(taskrun(uid="uid-1"))
    if in_api_server:
        w.kube.taskruns.add((NAMESPACE, "video-42", "uid-1"))
    assert asyncio.run(Sweeper(w.deps).sweep()) == reclaimed
    forgotten = [x for x in w.store.writes if x[0] == "forget"]
    assert forgotten == ([("forget", "uid-1", timedelta(hours=168))] if reclaimed else [])
    events = w.kube.events()
    assert [e[2] for e in events] == (["SlotReclaimed"] if reclaimed else [])
    assert ((ADMISSION, (NAMESPACE, "default"), 0.0) in w.enqueued.calls) == bool(reclaimed)
    assert w.store.names()[-1] == "purge_expired"


def test_a_sweep_asks_for_a_round_on_every_queue_with_waiting_runs() -> None:
    w = world()
    w.store.waiting_queues = [(NAMESPACE, "a"), ("other", "b")]
    assert asyncio.run(Sweeper(w.deps).sweep()) == 0
    assert w.enqueued.of(ADMISSION) == [((NAMESPACE, "a"), 0.0), (("other", "b"), 0.0)]


def test_a_resync_reconciles_every_run_in_the_cache() -> None:
    w = world()
    for uid in ("a", "b", "c"):
        w.cache.taskruns[uid] = body(taskrun(uid=uid))
    assert Sweeper(w.deps).resync() == 3
    assert sorted(k for k, _ in w.enqueued.of(TASKRUNS)) == ["a", "b", "c"]
