"""The Schedule reconciler and the intake of Schedule events, against in-memory fakes: what it creates,
cancels, deletes and writes, and that the API server's list, not the cache, decides what exists."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from cairn.api.schedule import Schedule
from cairn.controller.deps import SCHEDULES
from cairn.controller.schedules import ScheduleReconciler, on_schedule
from cairn.controller.taskruns import on_taskrun
from cairn.domain.schedule import run_body
from tests.unit.controller.fakes import World, world

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
KEY = ("ops", "report")


def schedule_body(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "cairn.dev/v1alpha1",
        "kind": "Schedule",
        "metadata": {
            "name": "report",
            "namespace": "ops",
            "uid": "s-uid",
            "generation": 1,
            "creationTimestamp": "2026-12-01T12:00:00Z",
        },
        "spec": {"taskRef": {"name": "make-report"}, "cron": ["*/5 * * * *"], **spec},
    }


def reconcile(w: World) -> None:
    asyncio.run(ScheduleReconciler(w.deps).reconcile(KEY))


def test_at_a_fire_time_it_creates_the_run_writes_the_status_and_waits_for_the_next_one() -> None:
    w = world(now=T0 + timedelta(minutes=5, seconds=0.2))
    on_schedule(w.deps, "ADDED", schedule_body())
    assert w.enqueued.of(SCHEDULES) == [(KEY, 0.0)]
    reconcile(w)
    assert [x[0] for x in w.kube.writes] == ["create_taskrun", "patch_schedule_status", "post_event"]
    assert w.kube.writes[0][1] == "report-20261201120500"
    status = w.kube.writes[1][3]
    assert (status["lastRun"], status["nextFireTime"]) == ("report-20261201120500", "2026-12-01T12:10:00.000Z")
    ((_, after),) = w.enqueued.of(SCHEDULES)[1:]
    assert round(after, 1) == 299.8  # until 12:10


def test_a_run_the_cache_has_not_seen_yet_is_found_by_listing_and_not_created_again() -> None:
    w = world(now=T0 + timedelta(minutes=5, seconds=1))
    s = Schedule.model_validate(schedule_body())
    existing = run_body(s, T0 + timedelta(minutes=5))
    w.kube.runs[existing["metadata"]["name"]] = existing  # created before a restart; not in the cache
    on_schedule(w.deps, "ADDED", schedule_body())
    reconcile(w)
    assert "create_taskrun" not in w.kube.names()
    status = w.kube.writes[0][3]
    assert status["lastFireTime"] == "2026-12-01T12:05:00.000Z"


def test_a_change_of_one_of_its_runs_queues_the_schedule() -> None:
    w = world()
    s = Schedule.model_validate(schedule_body())
    on_taskrun(w.deps, "MODIFIED", {**run_body(s, T0), "metadata": {**run_body(s, T0)["metadata"], "uid": "r-1"}})
    assert (SCHEDULES, KEY, 0.5) in w.enqueued.calls


def test_cancel_previous_cancels_the_run_going_on_before_starting_the_next_and_history_beyond_the_limit_is_deleted() -> (
    None
):
    w = world(now=T0 + timedelta(minutes=10, seconds=1))
    s = Schedule.model_validate(schedule_body(overlapPolicy="CancelPrevious", successfulRunsHistoryLimit=0))
    going = run_body(s, T0 + timedelta(minutes=5))
    going["status"] = {"phase": "Running"}
    done = run_body(s, T0)
    done["status"] = {"phase": "Succeeded"}
    for i, b in enumerate((going, done)):
        b["metadata"]["uid"] = f"r-{i}"
        w.kube.runs[b["metadata"]["name"]] = b
        w.cache.taskruns[f"r-{i}"] = b
    on_schedule(
        w.deps,
        "ADDED",
        {
            **schedule_body(overlapPolicy="CancelPrevious", successfulRunsHistoryLimit=0),
            "status": {"lastFireTime": "2026-12-01T12:05:00.000Z"},
        },
    )
    reconcile(w)
    cancel = w.kube.writes.index(("cancel_taskrun", "ops", "report-20261201120500"))
    # The previous run is told to stop before its successor exists.
    assert cancel < w.kube.writes.index(("create_taskrun", "report-20261201121000"))
    assert ("delete_taskrun", "ops", "report-20261201120000") in w.kube.writes


def test_a_schedule_that_cannot_be_evaluated_says_so_once() -> None:
    w = world()
    body = schedule_body(cron=["0 0 31 2 *"])  # the CRD's pattern lets it through; there is no February 31st
    on_schedule(w.deps, "ADDED", body)
    reconcile(w)
    (patch,) = [x[3] for x in w.kube.writes if x[0] == "patch_schedule_status"]
    assert patch["conditions"][0]["reason"] == "InvalidSpec"
    assert "day-of-month" in patch["conditions"][0]["message"]
    assert [e[2] for e in w.kube.events()] == ["InvalidSpec"]
    w.kube.writes.clear()
    reconcile(w)
    assert w.kube.writes == []
