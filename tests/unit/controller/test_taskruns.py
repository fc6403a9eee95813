"""The TaskRun reconciler and the intake of TaskRun, Task and pod events, against in-memory fakes:
what it writes to the store and the API server, and what it queues, for each situation."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from cairn.controller.deps import ADMISSION, IN_FLIGHT_COALESCE, TASKRUN_STATUS, TASKRUNS
from cairn.controller.statuses import TaskRunStatusWriter
from cairn.controller.taskruns import TaskRunReconciler, on_pod, on_task, on_taskrun
from cairn.domain.admission import WaitReason
from cairn.domain.lifecycle import Register
from tests.unit.builders import NAMESPACE, RUN_UID, T0, admission, snapshot, task, taskrun
from tests.unit.controller.fakes import World, body, world


def reconcile(w: World, uid: str = RUN_UID, *, write_status: bool = True) -> None:
    """One reconcile, then (as the operator's status writer would, unless told not to) its status write."""
    # One reconciler per world, as in the operator: what it remembers between reconciles counts.
    reconciler = w.keep.setdefault("taskruns", TaskRunReconciler(w.deps))
    asyncio.run(reconciler.reconcile(uid))
    if write_status:
        asyncio.run(TaskRunStatusWriter(w.deps).reconcile(uid))


def with_run(w: World, run_body: dict[str, Any] | None = None, *, with_task: bool = True) -> None:
    on_taskrun(w.deps, "ADDED", run_body or body(taskrun()))
    if with_task:
        w.cache.tasks[(NAMESPACE, "transcode")] = body(task())
    w.enqueued.calls.clear()


def test_a_new_run_of_an_existing_task_is_registered_in_its_queue_and_an_admission_round_is_asked_for() -> None:
    w = world()
    with_run(w, body(taskrun(payload='{"n": 1}', priority=3)))
    reconcile(w)
    (register,) = [x[1] for x in w.store.writes if x[0] == "register_run"]
    assert register == Register(
        uid=RUN_UID,
        namespace=NAMESPACE,
        name="video-42",
        payload='{"n": 1}',
        queue="default",
        priority=3,
        key=None,
        created=T0,
        snapshot=snapshot(task()),
        first_pod="video-42-1",
    )
    assert (ADMISSION, (NAMESPACE, "default"), 0.0) in w.enqueued.calls
    assert w.kube.status_patches() == []  # nothing to say until the store has its row


def test_a_run_whose_task_is_missing_waits_with_TaskNotFound_and_is_not_registered() -> None:
    w = world()
    with_run(w, with_task=False)
    reconcile(w)
    assert "register_run" not in w.store.names()
    (patch,) = w.kube.status_patches()
    assert (patch["phase"], patch["reason"]) == ("Queued", "TaskNotFound")
    assert [e[2] for e in w.kube.events()] == ["TaskNotFound"]


def test_an_admitted_run_begins_its_attempt_in_the_store_before_its_pod_is_created_and_is_starting() -> None:
    w = world()
    with_run(w)
    w.store.admit(RUN_UID, NAMESPACE, admission(task(), "admitted"))
    reconcile(w)
    assert w.store.writes == [("begin_attempt", RUN_UID, 1, NAMESPACE, "video-42-1")]
    assert w.kube.names() == ["create_pod", "patch_taskrun_status"]
    assert w.kube.writes[0][1] == "video-42-1"
    (patch,) = w.kube.status_patches()
    assert (patch["phase"], patch["attempt"]) == ("Starting", 1)
    # Looked at again when the pod should have appeared in the watch.
    assert w.enqueued.of(TASKRUNS) == [(RUN_UID, 30.0)]


def test_what_was_written_is_what_the_next_reconcile_sees_until_the_watch_brings_it_back() -> None:
    w = world()
    with_run(w)
    w.store.admit(RUN_UID, NAMESPACE, admission(task(), "admitted"))
    reconcile(w)
    assert w.cache.taskruns[RUN_UID]["status"]["phase"] == "Starting"
    w.kube.writes.clear()
    reconcile(w)
    assert "create_pod" not in w.kube.names()  # the attempt is in status: not started twice


def test_a_pod_the_api_server_refuses_fails_the_run_on_the_next_reconcile_and_releases_its_slot() -> None:
    w = world()
    w.kube.reject = 'pods "video-42-1" is forbidden: violates PodSecurity "restricted:latest"'
    with_run(w)
    w.store.admit(RUN_UID, NAMESPACE, admission(task(), "admitted"))
    reconcile(w)
    assert w.kube.writes == []  # the rejection is the domain's to decide, from the next view
    assert w.enqueued.of(TASKRUNS) == [(RUN_UID, 0.0)]
    reconcile(w)
    (patch,) = w.kube.status_patches()
    assert (patch["phase"], patch["reason"]) == ("Failed", "PodRejected")
    assert "violates PodSecurity" in patch["message"]
    assert ("finish", RUN_UID, "Failed", timedelta(hours=168)) in w.store.writes
    assert (ADMISSION, (NAMESPACE, "default"), 0.0) in w.enqueued.calls
    assert "create_pod" not in w.kube.names()


def test_a_run_in_a_namespace_being_deleted_gets_no_pod_and_no_status() -> None:
    w = world()
    w.kube.terminating = True
    with_run(w)
    w.store.admit(RUN_UID, NAMESPACE, admission(task(), "admitted"))
    reconcile(w)
    assert w.kube.writes == []
    assert w.enqueued.of(TASKRUNS) == []


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"taskRef": {}}, "spec.taskRef.name"),
        ({"taskRef": {"name": "transcode"}, "priority": "high"}, "spec.priority"),
        ({"taskRef": {"name": "transcode"}, "colour": "blue"}, "spec.colour"),
    ],
)
def test_an_unreadable_taskrun_fails_once_naming_the_field(spec: dict[str, Any], field: str) -> None:
    w = world()
    bad = body(taskrun())
    bad["spec"] = spec
    with_run(w, bad)
    reconcile(w)
    (patch,) = w.kube.status_patches()
    assert (patch["phase"], patch["reason"]) == ("Failed", "InvalidSpec")
    assert field in patch["message"]
    assert [e[2] for e in w.kube.events()] == ["InvalidSpec"]
    w.kube.writes.clear()
    reconcile(w)
    assert w.kube.writes == []  # once: it is Failed now


def test_a_deleted_run_gives_back_what_it_held_and_its_queue_gets_a_round() -> None:
    w = world()
    with_run(w)
    w.store.admit(RUN_UID, NAMESPACE, admission(task(), "admitted"))
    on_taskrun(w.deps, "DELETED", body(taskrun()))
    assert w.enqueued.of(TASKRUNS) == [(RUN_UID, 0.0)]
    reconcile(w)
    assert w.store.writes == [("forget", RUN_UID, timedelta(hours=168))]
    assert (ADMISSION, (NAMESPACE, "default"), 0.0) in w.enqueued.calls
    assert RUN_UID not in w.cache.deleted_runs
    w.store.writes.clear()
    reconcile(w)
    assert w.store.writes == []  # forgotten once


def test_a_new_task_wakes_the_runs_that_waited_for_it_and_only_those() -> None:
    w = world()
    waiting = taskrun("a", uid="uid-a", status={"phase": "Queued", "reason": "TaskNotFound"})
    unseen = taskrun("b", uid="uid-b")
    queued = taskrun("c", uid="uid-c", status={"phase": "Queued", "reason": "QueueFull"})
    other = taskrun("d", uid="uid-d", task_name="other")
    for run in (waiting, unseen, queued, other):
        on_taskrun(w.deps, "ADDED", body(run))
    w.enqueued.calls.clear()
    on_task(w.deps, "ADDED", body(task()))
    assert sorted(k for k, _ in w.enqueued.of(TASKRUNS)) == ["uid-a", "uid-b"]
    assert (NAMESPACE, "transcode") in w.cache.tasks
    on_task(w.deps, "DELETED", body(task()))
    assert (NAMESPACE, "transcode") not in w.cache.tasks


@pytest.mark.parametrize(
    ("labels", "known", "queued"),
    [
        ({"cairn.dev/run-uid": RUN_UID, "cairn.dev/attempt": "1"}, True, True),
        ({"cairn.dev/run-uid": RUN_UID, "cairn.dev/attempt": "1"}, False, False),
        ({"cairn.dev/run-uid": RUN_UID}, True, False),
        ({"cairn.dev/run-uid": RUN_UID, "cairn.dev/attempt": "one"}, True, False),
    ],
)
def test_a_pod_event_queues_its_run_when_the_pod_names_a_known_run_and_attempt(
    labels: dict[str, str], known: bool, queued: bool
) -> None:
    w = world()
    if known:
        with_run(w)
    pod = {"metadata": {"name": "video-42-1", "namespace": NAMESPACE, "uid": "pod-uid", "labels": labels}}
    on_pod(w.deps, "ADDED", pod)
    assert w.enqueued.of(TASKRUNS) == ([(RUN_UID, 0.0)] if queued else [])


def test_a_pod_event_changing_only_conditions_that_decide_nothing_yet_queues_no_reconcile_but_is_cached() -> None:
    w = world()
    with_run(w)
    labels = {"cairn.dev/run-uid": RUN_UID, "cairn.dev/attempt": "1"}

    def pod(phase: str, *conditions: tuple[str, str]) -> dict[str, Any]:
        return {
            "metadata": {"name": "video-42-1", "namespace": NAMESPACE, "uid": "pod-uid", "labels": labels},
            "spec": {"nodeName": "node-1"},
            "status": {"phase": phase, "conditions": [{"type": t, "status": st} for t, st in conditions]},
        }

    steps: list[tuple[str, dict[str, Any], bool]] = [
        ("ADDED", pod("Pending"), True),
        ("MODIFIED", pod("Pending", ("Initialized", "True")), False),
        ("MODIFIED", pod("Pending", ("Initialized", "True"), ("Ready", "False")), False),
        ("MODIFIED", pod("Pending", ("Ready", "False"), ("DisruptionTarget", "True")), True),  # a disruption mark
        ("MODIFIED", pod("Running", ("Ready", "True"), ("DisruptionTarget", "True")), True),  # its phase
        ("MODIFIED", pod("Running", ("Ready", "True"), ("DisruptionTarget", "True")), False),  # a resync
        ("DELETED", pod("Running", ("Ready", "True"), ("DisruptionTarget", "True")), True),
    ]
    for event, body_, queues in steps:
        before = len(w.enqueued.of(TASKRUNS))
        on_pod(w.deps, event, body_)
        assert len(w.enqueued.of(TASKRUNS)) == before + (1 if queues else 0), (event, body_["status"])
        if event != "DELETED":
            assert w.cache.pods[RUN_UID][1] is body_  # what a later reconcile reads is the newest body


def test_a_run_never_registered_waits_behind_runs_in_flight_and_a_run_with_a_phase_does_not() -> None:
    w = world()
    fresh = body(taskrun())
    on_taskrun(w.deps, "ADDED", fresh)
    assert w.enqueued.later == [(TASKRUNS, RUN_UID)]
    w.enqueued.later.clear()
    on_taskrun(w.deps, "MODIFIED", {**fresh, "spec": {**fresh["spec"], "cancel": True}})
    assert w.enqueued.of(TASKRUNS)[-1] == (RUN_UID, 0.0) and not w.enqueued.later  # a change: now
    other = body(taskrun(name="seen", uid="another-uid"))
    on_taskrun(w.deps, "ADDED", {**other, "status": {"phase": "Running"}})  # e.g. after a restart
    assert not w.enqueued.later


def test_a_queued_status_is_written_after_the_statuses_of_runs_that_moved() -> None:
    w = world()
    w.deps.write_status(RUN_UID, NAMESPACE, "video-42", {"phase": "Queued", "reason": "QueueFull"})
    assert w.enqueued.later == [(TASKRUN_STATUS, RUN_UID)]
    w.deps.write_status("another-uid", NAMESPACE, "other", {"phase": "Failed"})
    w.deps.write_status(RUN_UID, NAMESPACE, "video-42", {"phase": "Retrying"})  # merged: written now
    assert w.enqueued.later == [(TASKRUN_STATUS, RUN_UID)]
    assert w.enqueued.of(TASKRUN_STATUS) == [(RUN_UID, 0.0), ("another-uid", 0.0), (RUN_UID, 0.0)]


def test_a_runs_starting_and_running_are_written_a_second_later_and_its_end_at_once() -> None:
    w = world()
    for phase in ("Starting", "Running", "Succeeded"):
        w.deps.write_status(RUN_UID, NAMESPACE, "video-42", {"phase": phase})
    assert w.enqueued.of(TASKRUN_STATUS) == [(RUN_UID, IN_FLIGHT_COALESCE)] * 2 + [(RUN_UID, 0.0)]
    asyncio.run(TaskRunStatusWriter(w.deps).reconcile(RUN_UID))
    assert w.kube.status_patches() == [{"phase": "Succeeded"}]  # one request for the three


def test_a_queued_run_shows_the_limit_it_waits_on_as_the_store_reports_it() -> None:
    from cairn.domain.admission import Limits

    w = world()
    with_run(w)
    adm = admission(task(), "queued", wait_reason=WaitReason.QUEUE_FULL, limits=Limits(concurrency_limit=4))
    w.store.admit(RUN_UID, NAMESPACE, adm)
    reconcile(w)
    (patch,) = w.kube.status_patches()
    assert (patch["reason"], patch["message"]) == ("QueueFull", 'Queue "default" is full: all 4 slots are in use')


# -- the fast path and the status writer ------------------------------------------------------------
def test_a_run_admitted_as_it_registers_creates_its_pod_in_the_same_reconcile_without_an_admission_round() -> None:
    w = world()
    w.store.admit_on_register = True
    with_run(w)
    reconcile(w)
    # Its registration began the first attempt: the pod follows with no other write to the store.
    assert w.store.names()[:1] == ["register_run"] and "begin_attempt" not in w.store.names()
    assert w.kube.names().count("create_pod") == 1  # its first pod, from the same reconcile
    # A run with no phase that this reconciler never saw is presumed new: no look before it registers,
    # and the start reads what the registration wrote.
    assert w.store.looks == 0
    assert not [c for c in w.enqueued.calls if c[0] == ADMISSION or c[:3] == (TASKRUNS, RUN_UID, 0.0)]


def test_a_run_presumed_new_that_the_store_had_already_is_looked_up_and_planned_from_what_the_store_says() -> None:
    # Registered and admitted before a restart, its Running status never landed: it has no phase.
    w = world()
    with_run(w)
    w.store.admit(RUN_UID, NAMESPACE, admission(task(), "admitted"))
    reconcile(w)
    assert "register_run" not in w.store.names()  # the registration found it and wrote nothing
    assert w.store.looks == 1  # then the store was read, and the plan made from it
    assert w.kube.names().count("create_pod") == 1  # its attempt 1, as an admitted run's
    (patch,) = w.kube.status_patches()
    assert patch["phase"] in ("Starting", "Running")


def test_a_run_presumed_new_that_is_not_to_be_registered_is_decided_from_the_store_not_from_the_guess() -> None:
    # Its Task is gone, but the store has the run admitted (registered before the Task was deleted).
    w = world()
    with_run(w, with_task=False)
    w.store.admit(RUN_UID, NAMESPACE, admission(task(), "admitted"))
    reconcile(w)
    assert w.store.looks == 1
    assert "TaskNotFound" not in [e[2] for e in w.kube.events()]  # the guess said TaskNotFound; the store wins
    assert w.kube.names().count("create_pod") == 1


def test_a_run_that_registers_into_a_full_queue_is_not_looked_up_and_waits_for_a_round() -> None:
    w = world()
    with_run(w)
    reconcile(w)
    assert w.store.names() == ["register_run"]
    assert w.store.looks == 0
    assert "create_pod" not in w.kube.names()
    reconcile(w)  # reconciled again before its phase is written: now the store is read, not guessed
    assert w.store.looks == 1


def test_status_patches_waiting_for_their_turn_merge_into_one_request_newest_values_winning() -> None:
    w = world()
    w.deps.write_status(RUN_UID, NAMESPACE, "video-42", {"phase": "Starting", "attempt": 1, "message": "a"})
    w.deps.write_status(RUN_UID, NAMESPACE, "video-42", {"phase": "Running", "message": "b"})
    w.deps.write_status(RUN_UID, NAMESPACE, "video-42", {"phase": "Succeeded"})
    asyncio.run(TaskRunStatusWriter(w.deps).reconcile(RUN_UID))
    assert w.kube.status_patches() == [{"phase": "Succeeded", "attempt": 1, "message": "b"}]
    assert [c[:2] for c in w.enqueued.calls] == [(TASKRUN_STATUS, RUN_UID)] * 3  # the queue dedups them
    asyncio.run(TaskRunStatusWriter(w.deps).reconcile(RUN_UID))
    assert len(w.kube.status_patches()) == 1  # nothing was waiting any more


def test_a_watch_event_older_than_a_waiting_status_write_does_not_undo_it() -> None:
    w = world()
    with_run(w)
    w.deps.write_status(RUN_UID, NAMESPACE, "video-42", {"phase": "Starting", "attempt": 1})
    on_taskrun(w.deps, "MODIFIED", body(taskrun()))  # the object as it was before the write
    assert w.cache.taskruns[RUN_UID]["status"]["phase"] == "Starting"
    asyncio.run(TaskRunStatusWriter(w.deps).reconcile(RUN_UID))
    on_taskrun(w.deps, "MODIFIED", body(taskrun()))  # written: the watch's body is the truth again
    assert "phase" not in (w.cache.taskruns[RUN_UID].get("status") or {})


def test_a_status_write_that_fails_is_kept_under_what_came_since_and_retried() -> None:
    w = world()
    w.kube.status_failures = 1
    w.deps.write_status(RUN_UID, NAMESPACE, "video-42", {"phase": "Starting", "attempt": 1})
    with pytest.raises(ConnectionError):
        asyncio.run(TaskRunStatusWriter(w.deps).reconcile(RUN_UID))
    assert w.cache.pending_status[RUN_UID][1] == {"phase": "Starting", "attempt": 1}  # kept for the retry
    w.deps.write_status(RUN_UID, NAMESPACE, "video-42", {"phase": "Running"})
    asyncio.run(TaskRunStatusWriter(w.deps).reconcile(RUN_UID))
    assert w.kube.status_patches() == [{"phase": "Running", "attempt": 1}]
    assert RUN_UID not in w.cache.pending_status


def test_the_echo_of_a_status_write_is_not_reconciled_again_but_a_real_change_is() -> None:
    w = world()
    with_run(w)
    w.deps.write_status(RUN_UID, NAMESPACE, "video-42", {"phase": "Starting"})
    w.cache.taskruns[RUN_UID] = {**w.cache.taskruns[RUN_UID], "status": {"phase": "Starting"}}
    asyncio.run(TaskRunStatusWriter(w.deps).reconcile(RUN_UID))
    echo = {**body(taskrun()), "status": {"phase": "Starting"}}
    on_taskrun(w.deps, "MODIFIED", echo)
    assert (TASKRUNS, RUN_UID, 0.0) not in w.enqueued.calls
    cancelled = {**echo, "spec": {**echo["spec"], "cancel": True}}
    on_taskrun(w.deps, "MODIFIED", cancelled)
    assert (TASKRUNS, RUN_UID, 0.0) in w.enqueued.calls
