"""The life of a TaskRun: what plan() decides from one snapshot of the world.

Most tests drive a run through the plans themselves: the status a plan patches is applied to the
TaskRun (tests.unit.builders.apply_status) before the next reconcile, as the controller does."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cairn.api.task import Task
from cairn.api.taskrun import Phase, TaskRun
from cairn.domain.admission import Limits, WaitReason
from cairn.domain.lifecycle import (
    Admission,
    CreatePod,
    Event,
    Finish,
    Plan,
    Recorded,
    Register,
    Requeue,
    RunView,
    plan,
)
from cairn.domain.pace import Rate
from cairn.domain.podspec import RunRef, render_pod
from cairn.domain.termination import PodView
from cairn.domain.timefmt import format_time
from tests.unit.builders import (
    NAMESPACE,
    RUN_UID,
    RUNTIME,
    SETTINGS,
    T0,
    admission,
    apply_status,
    condition,
    failed_pod,
    pod,
    running_pod,
    snapshot,
    succeeded_pod,
    task,
    taskrun,
    ts,
    view,
    with_spec,
)

GRACE = SETTINGS.pod_appear_grace
S = timedelta(seconds=1)


def decide(v: RunView) -> Plan:
    return plan(v, SETTINGS)


def cond(run_or_plan: TaskRun | Plan, type_: str) -> dict[str, Any]:
    if isinstance(run_or_plan, Plan):
        assert run_or_plan.status is not None
        conditions = run_or_plan.status["conditions"]
    else:
        assert run_or_plan.status is not None
        conditions = [c.wire() for c in run_or_plan.status.conditions or []]
    found = [c for c in conditions if c["type"] == type_]
    assert len(found) == 1, conditions
    result: dict[str, Any] = found[0]
    return result


def compact(value: Any) -> Any:
    """`value` without its null fields (a status patch spells out every unset field of an attempt)."""
    if isinstance(value, dict):
        return {k: compact(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [compact(v) for v in value]
    return value


def started(t: Task, run: TaskRun | None = None, *, at: datetime = T0) -> tuple[TaskRun, Admission]:
    """A run whose attempt 1 was started at `at` (the status a first admitted reconcile wrote)."""
    run = run or taskrun()
    adm = admission(t, "admitted")
    p = decide(view(run, t, adm, now=at))
    assert p.create_pod is not None
    return apply_status(run, p), adm


def retried(run: TaskRun, t: Task, adm: Admission, ended_pod: PodView, *, at: datetime) -> tuple[TaskRun, Plan]:
    """The attempt in flight ends as `ended_pod` at `at`; the run is then admitted again and the next
    attempt starts. Returns the run with the next attempt started, and the plan that started it."""
    status = run.status
    assert status is not None and status.attempts
    p = decide(view(run, t, adm, now=at, pods={status.attempts[-1].number: ended_pod}))
    assert isinstance(p.release, Requeue), p
    run = apply_status(run, p)
    p2 = decide(view(run, t, adm, now=p.release.not_before))
    return apply_status(run, p2), p2


# -- registration ----------------------------------------------------------------------------------
def test_unknown_task_leaves_the_run_queued_with_task_not_found_and_a_warning() -> None:
    run = taskrun(task_name="missing")
    p = decide(view(run, None, None))
    assert p.register is None
    assert p.create_pod is None
    assert p.status is not None
    assert (p.status["phase"], p.status["reason"]) == ("Queued", "TaskNotFound")
    assert p.status["message"] == (
        f'Task "missing" does not exist in namespace {NAMESPACE}; the run starts when it is created'
    )
    assert cond(p, "Admitted")["status"] == "False"
    assert cond(p, "Admitted")["reason"] == "TaskNotFound"
    assert p.events == [Event("Warning", "TaskNotFound", p.status["message"])]


def test_unknown_task_warns_once_and_then_has_nothing_to_write() -> None:
    run = taskrun(task_name="missing")
    run = apply_status(run, decide(view(run, None, None)))
    again = decide(view(run, None, None, now=T0 + timedelta(minutes=5)))
    assert again.events == []
    assert again.status is None


def test_invalid_json_payload_fails_the_run_with_the_position_of_the_error() -> None:
    t = task()
    run = taskrun(payload='{"url": }')
    p = decide(view(run, t, None))
    assert p.register is None
    assert p.create_pod is None
    assert p.release == Finish(Phase.FAILED)
    assert p.status is not None
    assert (p.status["phase"], p.status["reason"]) == ("Failed", "InvalidPayload")
    assert p.status["message"] == "spec.payload is not JSON: Expecting value at line 1 column 9 (character 8)"
    assert cond(p, "Succeeded")["status"] == "False"
    assert p.events[-1].type == "Warning"
    assert p.events[-1].reason == "InvalidPayload"


def test_a_payload_postgresql_cannot_store_fails_the_run_saying_what_to_send_instead() -> None:
    for payload, said in (('{"a": "x\\u0000"}', "U+0000"), ('{"a": NaN}', "a number JSON cannot carry")):
        p = decide(view(taskrun(payload=payload), task(), None))
        assert p.register is None and p.create_pod is None, payload
        assert p.status is not None and (p.status["phase"], p.status["reason"]) == ("Failed", "InvalidPayload")
        assert p.status["message"].startswith("spec.payload ") and said in p.status["message"], p.status["message"]


def test_invalid_payload_on_a_later_line_names_that_line() -> None:
    p = decide(view(taskrun(payload='{\n  "a": 1,\n  "b": tru\n}'), task(), None))
    assert p.status is not None
    assert "at line 3 column 8" in p.status["message"]


def test_valid_run_is_registered_in_its_tasks_queue_with_a_snapshot_of_the_task() -> None:
    t = task(queue="media-queue")
    run = taskrun(payload='{"url": "https://example.com/a.mp4"}', priority=7, concurrencyKey="tenant-a")
    p = decide(view(run, t, None, now=T0 + timedelta(seconds=3)))
    assert p.register == Register(
        uid=RUN_UID,
        namespace=NAMESPACE,
        name="video-42",
        payload='{"url": "https://example.com/a.mp4"}',
        queue="media-queue",
        priority=7,
        key="tenant-a",
        created=T0,
        snapshot=snapshot(t),
        first_pod="video-42-1",  # begun with the registration if the queue admits it at once
    )
    assert p.create_pod is None
    assert p.release is None


def test_run_queue_override_wins_over_the_tasks_queue() -> None:
    p = decide(view(taskrun(queue="urgent"), task(queue="media-queue"), None))
    assert p.register is not None
    assert p.register.queue == "urgent"


def test_run_of_a_task_without_a_queue_goes_to_the_default_queue() -> None:
    p = decide(view(taskrun(), task(), None))
    assert p.register is not None
    assert p.register.queue == "default"


def test_run_waiting_for_its_task_is_registered_once_the_task_exists() -> None:
    run = taskrun()
    run = apply_status(run, decide(view(run, None, None)))
    p = decide(view(run, task(), None))
    assert p.register is not None
    assert p.status is not None
    assert (p.status["reason"], p.status["message"]) == ("Queued", 'waiting for a slot in queue "default"')


def test_a_run_for_later_is_registered_with_the_time_it_may_be_admitted() -> None:
    delayed = decide(view(taskrun(delay="10m"), task(), None))
    assert delayed.register is not None and delayed.register.not_before == T0 + timedelta(minutes=10)
    at = decide(view(taskrun(notBefore="2026-12-24T18:00:00Z"), task(), None))
    assert at.register is not None and at.register.not_before == datetime(2026, 12, 24, 18, tzinfo=UTC)
    now = decide(view(taskrun(), task(), None))
    assert now.register is not None and now.register.not_before is None


def test_a_delayed_run_says_when_it_may_start() -> None:
    t = task()
    adm = admission(t, "queued", wait_reason=WaitReason.DELAYED, limits=Limits(concurrency_limit=3))
    p = decide(view(taskrun(delay="10m"), t, adm, now=T0 + timedelta(minutes=1)))
    assert p.status is not None and p.create_pod is None and p.release is None
    assert p.status["phase"] == "Queued" and p.status["reason"] == "Delayed"
    assert p.status["message"] == (
        f'not admitted before {ts(T0 + timedelta(minutes=10))} (spec.delay 10m), then waits for queue "default"'
    )


def test_a_run_not_started_within_expire_after_ends_expired_holding_nothing() -> None:
    t = task()
    adm = admission(t, "queued", wait_reason=WaitReason.QUEUE_FULL, limits=Limits(concurrency_limit=1))
    before = decide(view(taskrun(expireAfter="30s"), t, adm, now=T0 + 29 * S))
    assert before.status is not None and before.status["phase"] == "Queued"
    assert before.recheck_at == T0 + 30 * S  # looked at again when it expires
    p = decide(view(taskrun(expireAfter="30s"), t, adm, now=T0 + 30 * S))
    assert p.status is not None and (p.status["phase"], p.status["reason"]) == ("Failed", "Expired")
    assert "not started within expireAfter (30s)" in p.status["message"]
    assert p.create_pod is None and p.release == Finish(Phase.FAILED)


def test_the_tasks_expire_after_is_the_default_and_a_started_run_never_expires() -> None:
    t = task(expireAfter="1m")
    adm = admission(t, "queued", wait_reason=WaitReason.QUEUE_FULL, limits=Limits(concurrency_limit=1))
    p = decide(view(taskrun(), t, adm, now=T0 + 2 * 60 * S))
    assert p.status is not None and p.status["reason"] == "Expired"
    # A run that has started (it waits to retry) is past "before start": it does not expire.
    retrying = taskrun(
        status={"phase": "Retrying", "attempts": [{"number": 1, "pod": "video-42-1", "finishTime": ts(T0 + S)}]}
    )
    adm = admission(t, "queued", wait_reason=WaitReason.BACKING_OFF, limits=Limits(concurrency_limit=1))
    q = decide(view(retrying, t, adm, now=T0 + 2 * 60 * S))
    assert q.status is None or q.status.get("reason") != "Expired"


def test_a_run_held_back_by_the_rate_says_so_and_when_its_chance_comes() -> None:
    t = task()
    limits = Limits(concurrency_limit=3, rate=Rate(10, 10 * S, 10))
    adm = replace(admission(t, "queued", wait_reason=WaitReason.RATE_LIMITED, limits=limits), wait_until=T0 + 20 * S)
    p = decide(view(taskrun(), t, adm, now=T0 + S))
    assert p.status is not None and p.create_pod is None
    assert (p.status["phase"], p.status["reason"]) == ("Queued", "RateLimited")
    assert p.status["message"] == (
        f'Queue "default" admits at most 10 per 10s (spec.rateLimit): its chance comes at {ts(T0 + 20 * S)}'
    )


def test_a_run_past_its_queues_max_queued_ends_rejected_holding_nothing() -> None:
    t = task()
    adm = admission(t, "finished", wait_reason=WaitReason.REJECTED, limits=Limits(1, max_queued=100))
    p = decide(view(taskrun(), t, adm))
    assert p.status is not None and (p.status["phase"], p.status["reason"]) == ("Failed", "Rejected")
    assert p.status["message"].startswith('Queue "default" already held 100 waiting runs (spec.maxQueued)')
    assert p.create_pod is None and p.release == Finish(Phase.FAILED)
    assert [e.reason for e in p.events] == ["Rejected"]


# -- waiting ---------------------------------------------------------------------------------------
def test_queued_run_shows_why_it_waits() -> None:
    t = task()
    adm = admission(t, "queued", wait_reason=WaitReason.QUEUE_FULL, limits=Limits(concurrency_limit=3))
    p = decide(view(taskrun(), t, adm))
    assert p.create_pod is None
    assert p.release is None
    assert p.status is not None
    assert p.status["phase"] == "Queued"
    assert p.status["reason"] == "QueueFull"
    assert p.status["message"] == 'Queue "default" is full: all 3 slots are in use'
    assert p.status["queue"] == "default"
    assert cond(p, "Admitted") | {"lastTransitionTime": None} == {
        "type": "Admitted",
        "status": "False",
        "reason": "QueueFull",
        "message": 'Queue "default" is full: all 3 slots are in use',
        "lastTransitionTime": None,
        "observedGeneration": 1,
    }


def test_queued_run_without_a_wait_reason_yet_says_queued() -> None:
    t = task()
    p = decide(view(taskrun(), t, admission(t, "queued")))
    assert p.status is not None
    assert (p.status["phase"], p.status["reason"]) == ("Queued", "Queued")
    assert p.status["message"] == 'waiting for a slot in queue "default"'


def test_queued_run_that_still_waits_for_the_same_reason_writes_nothing() -> None:
    t = task()
    adm = admission(t, "queued", wait_reason=WaitReason.KEY_FULL)
    run = apply_status(taskrun(), decide(view(taskrun(), t, adm)))
    assert decide(view(run, t, adm, now=T0 + timedelta(minutes=1))).status is None


# -- starting an attempt ---------------------------------------------------------------------------
def test_admitted_run_creates_the_pod_of_attempt_one_and_is_starting() -> None:
    t = task(container_fields={"memory": "512Mi"})
    run = taskrun()
    p = decide(view(run, t, admission(t, "admitted")))
    assert p.create_pod == CreatePod(
        1,
        render_pod(
            RunRef(NAMESPACE, "video-42", RUN_UID, "transcode"), t.spec, 1, RUNTIME, memory_limit_bytes=512 * 2**20
        ),
    )
    assert p.create_pod.name == "video-42-1"
    assert p.status is not None
    assert (p.status["phase"], p.status["reason"], p.status["attempt"]) == ("Starting", "Started", 1)
    assert p.status["message"] == "attempt 1 is starting in pod video-42-1"
    assert compact(p.status["attempts"]) == [
        {"number": 1, "pod": "video-42-1", "startTime": ts(T0), "memoryLimit": "512Mi"}
    ]
    assert p.status["startTime"] == ts(T0)
    assert compact(p.status["task"]) == snapshot(t).wire()
    assert p.status["queue"] == "default"
    assert p.status["observedGeneration"] == 1
    assert cond(p, "Admitted")["status"] == "True"
    assert cond(p, "Succeeded")["status"] == "Unknown"
    assert p.events == []  # a first start is in the status; an Event costs a request and says nothing more
    assert p.recheck_at == T0 + GRACE
    assert p.release is None


def test_admitted_run_adopts_the_pod_it_created_before_a_crash() -> None:
    t = task()
    existing = running_pod(1, created=T0 - timedelta(seconds=12))
    p = decide(view(taskrun(), t, admission(t, "admitted"), pods={1: existing}))
    assert p.create_pod is None
    assert p.status is not None
    assert p.status["attempts"][0]["startTime"] == ts(T0 - timedelta(seconds=12))
    assert p.status["startTime"] == ts(T0 - timedelta(seconds=12))
    assert p.status["phase"] == "Running"


def test_a_pod_adopted_after_it_ended_is_looked_at_again_at_once_and_its_attempt_then_ends() -> None:
    # A failover: the old leader created the pod and was killed before its Starting status landed;
    # the pod ran to its end meanwhile. No event of it is coming, so the grace is not waited out.
    t = task()
    done = succeeded_pod(1)
    adopted = decide(view(taskrun(), t, admission(t, "admitted"), pods={1: done}))
    assert adopted.create_pod is None and adopted.recheck_at == T0
    run = apply_status(taskrun(), adopted)
    ended = decide(view(run, t, admission(t, "admitted"), pods={1: done}))
    assert ended.ended is not None and ended.release == Finish(Phase.SUCCEEDED)


def test_starting_attempt_is_running_once_its_pod_runs_and_not_before() -> None:
    t = task()
    run, adm = started(t)
    pending = pod(1, phase="Pending", waiting={"reason": "ContainerCreating", "message": ""})
    before = decide(view(run, t, adm, now=T0 + 2 * S, pods={1: pending})).status
    assert before is not None and set(before) == {"attempts"}  # its node; still Starting
    p = decide(view(run, t, adm, now=T0 + 3 * S, pods={1: running_pod(1)}))
    now = apply_status(run, p)
    assert now.status is not None
    assert (now.status.phase, now.status.reason) == (Phase.RUNNING, "Started")
    assert now.status.message == "attempt 1 is running in pod video-42-1"
    assert cond(now, "Succeeded")["reason"] == "Running"
    assert p.events == []  # the Started event was given when the pod was created


def test_running_attempt_with_its_pod_running_writes_nothing_new() -> None:
    t = task()
    run, adm = started(t)
    run = apply_status(run, decide(view(run, t, adm, now=T0 + 5 * S, pods={1: running_pod(1)})))
    p = decide(view(run, t, adm, now=T0 + 60 * S, pods={1: running_pod(1)}))
    assert p.status is None
    assert p.create_pod is None
    assert p.release is None
    assert p.delete_pods == []


def test_running_attempt_records_the_node_its_pod_landed_on() -> None:
    t = task()
    run, adm = started(t)
    p = decide(view(run, t, adm, now=T0 + 5 * S, pods={1: running_pod(1, node="worker-b")}))
    assert p.status is not None
    assert p.status["attempts"][0]["node"] == "worker-b"


def test_running_attempt_is_rechecked_at_the_run_deadline() -> None:
    t = task(maxDuration="1h")
    run, adm = started(t)
    p = decide(view(run, t, adm, now=T0 + 5 * S, pods={1: running_pod(1)}))
    assert p.recheck_at == T0 + timedelta(hours=1)


def test_attempt_stuck_pulling_its_image_says_so_and_is_rechecked_at_start_timeout() -> None:
    t = task(startTimeout="2m")
    run, adm = started(t)
    stuck = pod(1, phase="Pending", waiting={"reason": "ImagePullBackOff", "message": "Back-off pulling image"})
    p = decide(view(run, t, adm, now=T0 + 20 * S, pods={1: stuck}))
    assert p.status is not None
    assert "phase" not in p.status  # still Running
    assert p.status["reason"] == "ImagePullBackOff"
    assert p.status["message"] == "attempt 1 waits: ImagePullBackOff"
    assert p.recheck_at == T0 + timedelta(minutes=2)
    assert p.release is None


def test_attempt_stuck_past_start_timeout_fails_the_run_and_removes_its_pod() -> None:
    t = task(startTimeout="2m", retry={"maxAttempts": 5})
    run, adm = started(t)
    stuck = pod(1, phase="Pending", waiting={"reason": "CreateContainerConfigError", "message": 'secret "k" not found'})
    p = decide(view(run, t, adm, now=T0 + timedelta(minutes=2), pods={1: stuck}))
    assert p.delete_pods == [("video-42-1", False)]
    # The slot is kept until the stopped pod has ended: the limit counts pods.
    assert p.release is None and p.recheck_at is not None
    assert p.status is not None
    assert (p.status["phase"], p.status["reason"]) == ("Failed", "ConfigError")


def test_image_that_can_never_be_pulled_fails_the_run_at_once() -> None:
    t = task(retry={"maxAttempts": 5})
    run, adm = started(t)
    never = pod(1, phase="Pending", waiting={"reason": "InvalidImageName", "message": "bad ref"})
    p = decide(view(run, t, adm, now=T0 + 3 * S, pods={1: never}))
    # The slot is kept until the stopped pod has ended: the limit counts pods.
    assert p.release is None and p.recheck_at is not None
    assert p.delete_pods == [("video-42-1", False)]
    assert p.status is not None
    assert p.status["reason"] == "ImagePullFailed"


# -- a missing pod ---------------------------------------------------------------------------------
def test_pod_not_seen_yet_within_the_grace_is_waited_for() -> None:
    t = task()
    run, adm = started(t)
    p = decide(view(run, t, adm, now=T0 + 10 * S))
    assert p.recheck_at == T0 + GRACE
    assert p.status is None
    assert p.release is None
    assert p.create_pod is None


def test_pod_missing_after_the_grace_is_a_disruption_retried_at_once_without_counting() -> None:
    t = task(retry={"maxAttempts": 1})
    run, adm = started(t)
    now = T0 + GRACE + S
    p = decide(view(run, t, adm, now=now))
    assert p.release == Requeue(not_before=now)
    assert p.status is not None
    assert (p.status["phase"], p.status["reason"]) == ("Retrying", "PodDeleted")
    ended = p.status["attempts"][0]
    assert (ended["reason"], ended["counted"], ended["finishTime"]) == ("PodDeleted", False, ts(now))
    assert "(not counted: not the task's fault)" in p.status["message"]


def test_a_pod_not_listed_yet_by_an_operator_just_started_is_waited_for_not_taken_as_deleted() -> None:
    # A restart: the attempt began long ago, the watches only now; the TaskRuns' listing came first.
    t = task(retry={"maxAttempts": 1})
    run, adm = started(t)
    now = T0 + 5 * GRACE
    p = decide(view(run, t, adm, now=now, watching_since=now - 2 * S))
    assert p.status is None and p.release is None and p.create_pod is None
    assert p.recheck_at == now - 2 * S + GRACE
    # The grace past, from the watches' start too: then it is missing.
    later = now - 2 * S + GRACE + S
    p = decide(view(run, t, adm, now=later, watching_since=now - 2 * S))
    assert p.status is not None and p.status["reason"] == "PodDeleted"


# -- endings ---------------------------------------------------------------------------------------
def test_succeeded_pod_succeeds_the_run_releases_the_slot_and_mirrors_the_result() -> None:
    t = task()
    run, adm = started(t)
    result = json.dumps({"frames": 1200, "url": "s3://out/a.mp4"})
    finished = T0 + timedelta(seconds=40)
    now = T0 + timedelta(seconds=41)
    p = decide(
        view(run, t, adm, now=now, pods={1: succeeded_pod(1, finished=finished)}, recorded=Recorded(result=result))
    )
    assert p.release == Finish(Phase.SUCCEEDED)
    assert p.status is not None
    assert (p.status["phase"], p.status["reason"]) == ("Succeeded", "Succeeded")
    assert p.status["result"] == result
    assert p.status.get("resultTruncated") is None
    assert p.status["completionTime"] == ts(now)
    assert compact(p.status["attempts"][0]) == {
        "number": 1,
        "pod": "video-42-1",
        "startTime": ts(T0),
        "finishTime": ts(finished),
        "exitCode": 0,
        "reason": "Completed",
        "counted": True,
    }
    assert cond(p, "Succeeded")["status"] == "True"
    assert cond(p, "Admitted")["status"] == "False"
    assert cond(p, "Admitted")["reason"] == "Finished"
    assert p.events == []  # a plain success: the status says it (an Event closes only a story of failures)
    assert p.delete_pods == []


def test_succeeded_run_with_a_result_too_big_for_status_says_it_was_truncated() -> None:
    t = task()
    run, adm = started(t)
    big = json.dumps({"text": "x" * 5000})
    p = decide(view(run, t, adm, now=T0 + 9 * S, pods={1: succeeded_pod(1)}, recorded=Recorded(result=big)))
    assert p.status is not None
    assert p.status.get("result") is None
    assert p.status["resultTruncated"] is True


def test_result_of_exactly_4096_bytes_still_fits_in_status() -> None:
    t = task()
    run, adm = started(t)
    exact = json.dumps("x" * 4094)  # with its quotes, 4096 bytes
    assert len(exact.encode()) == 4096
    p = decide(view(run, t, adm, now=T0 + 9 * S, pods={1: succeeded_pod(1)}, recorded=Recorded(result=exact)))
    assert p.status is not None
    assert p.status["result"] == exact
    assert p.status.get("resultTruncated") is None


def test_failed_attempt_with_attempts_left_is_retried_after_the_backoff() -> None:
    t = task(retry={"maxAttempts": 3, "backoff": {"initialDelay": "10s", "factor": 2, "maxDelay": "5m", "jitter": 0}})
    run, adm = started(t)
    now = T0 + timedelta(seconds=30)
    dead = failed_pod(1, 3, message="Traceback\nValueError: bad frame", finished=T0 + 29 * S)
    p = decide(view(run, t, adm, now=now, pods={1: dead}))
    assert p.release == Requeue(not_before=now + timedelta(seconds=10))
    assert p.create_pod is None
    assert p.delete_pods == []
    assert p.status is not None
    assert (p.status["phase"], p.status["reason"]) == ("Retrying", "Error")
    assert p.status["nextAttemptTime"] == ts(now + timedelta(seconds=10))
    assert p.status["message"] == "attempt 1 ended: Error (exit code 3); attempt 2 starts in 10.0s"
    ended = p.status["attempts"][0]
    assert (ended["exitCode"], ended["reason"], ended["message"], ended["counted"]) == (
        3,
        "Error",
        "ValueError: bad frame",
        True,
    )
    assert cond(p, "Admitted")["reason"] == "BackingOff"
    assert p.events == [Event("Warning", "AttemptFailed", p.status["message"] + ": ValueError: bad frame")]


def test_backoff_delay_uses_the_views_jitter_sample() -> None:
    t = task(retry={"backoff": {"initialDelay": "10s", "jitter": 0.5}})
    run, adm = started(t)
    now = T0 + 30 * S
    low = decide(view(run, t, adm, now=now, pods={1: failed_pod(1)}, jitter=0.0))
    high = decide(view(run, t, adm, now=now, pods={1: failed_pod(1)}, jitter=0.99))
    assert low.release == Requeue(not_before=now + timedelta(seconds=5))
    assert isinstance(high.release, Requeue)
    assert high.release.not_before == now + timedelta(seconds=14.9)


def test_retrying_run_waits_out_its_backoff_in_phase_retrying() -> None:
    t = task()
    run, adm = started(t)
    now = T0 + 30 * S
    p = decide(view(run, t, adm, now=now, pods={1: failed_pod(1)}))
    run = apply_status(run, p)
    waiting = admission(t, "queued", wait_reason=WaitReason.BACKING_OFF)
    p2 = decide(view(run, t, waiting, now=now + S))
    assert p2.create_pod is None
    assert p2.release is None
    run = apply_status(run, p2)
    assert run.status is not None
    assert (run.status.phase, run.status.reason) == (Phase.RETRYING, "BackingOff")
    assert run.status.message == f"waiting until {ts(now + timedelta(seconds=10))} before attempt 2"


def test_next_attempt_is_attempt_two_in_its_own_pod_and_keeps_the_first_start_time() -> None:
    t = task()
    run, adm = started(t)
    run, p = retried(run, t, adm, failed_pod(1), at=T0 + 30 * S)
    assert p.create_pod is not None
    assert p.create_pod.body["metadata"]["name"] == "video-42-2"
    assert p.status is not None
    assert (p.status["phase"], p.status["reason"], p.status["attempt"]) == ("Starting", "Retried", 2)
    assert "startTime" not in p.status  # unchanged: the run's first start
    assert run.status is not None
    assert run.status.start_time == ts(T0)
    assert run.status.next_attempt_time is None
    assert [a.number for a in run.status.attempts or []] == [1, 2]
    assert p.events == [Event("Normal", "Retried", "attempt 2 started in pod video-42-2")]


def test_last_attempt_failing_fails_the_run() -> None:
    t = task(retry={"maxAttempts": 2})
    run, adm = started(t)
    run, _ = retried(run, t, adm, failed_pod(1), at=T0 + 30 * S)
    now = T0 + timedelta(minutes=2)
    p = decide(view(run, t, adm, now=now, pods={2: failed_pod(2, 4, message="still broken")}))
    assert p.release == Finish(Phase.FAILED)
    assert p.create_pod is None
    assert p.status is not None
    assert (p.status["phase"], p.status["reason"]) == ("Failed", "Error")
    assert p.status["message"] == (
        "attempt 2 ended with exit code 4 (Error): still broken; that was the last of 2 attempts"
    )
    assert p.status["completionTime"] == ts(now)
    assert cond(p, "Succeeded")["status"] == "False"
    assert p.events[-1] == Event("Warning", "Error", p.status["message"])


def test_fatal_exit_code_fails_the_run_with_attempts_left() -> None:
    t = task(
        retry={
            "maxAttempts": 5,
            "podFailurePolicy": {"rules": [{"action": "FailRun", "onExitCodes": {"operator": "In", "values": [42]}}]},
        }
    )
    run, adm = started(t)
    p = decide(view(run, t, adm, now=T0 + 9 * S, pods={1: failed_pod(1, 42)}))
    assert p.release == Finish(Phase.FAILED)


def test_disruptions_are_retried_without_counting_until_max_disruptions() -> None:
    t = task(retry={"maxAttempts": 1, "maxDisruptions": 2})
    run, adm = started(t)
    preempted = [condition("DisruptionTarget", "True", "PreemptionByScheduler")]
    at = T0 + 10 * S
    for n in (1, 2):
        run, _ = retried(run, t, adm, failed_pod(n, 143, conditions=preempted), at=at)
        at += timedelta(minutes=1)
    p = decide(view(run, t, adm, now=at, pods={3: failed_pod(3, 143, conditions=preempted)}))
    assert p.release == Finish(Phase.FAILED)
    assert p.status is not None
    assert p.status["reason"] == "TooManyDisruptions"
    assert [a["counted"] for a in p.status["attempts"]] == [False, False, False]


def test_pod_on_a_lost_node_is_force_deleted_and_the_attempt_retried_without_counting() -> None:
    t = task(retry={"maxAttempts": 1})
    run, adm = started(t)
    lost = running_pod(
        1, deleting=T0 + 5 * S, conditions=[condition("DisruptionTarget", "True", "DeletionByTaintManager")]
    )
    now = T0 + timedelta(minutes=6)
    p = decide(view(run, t, adm, now=now, pods={1: lost}))
    assert p.delete_pods == [("video-42-1", True)]
    assert p.release == Requeue(not_before=now)
    assert p.status is not None
    assert p.status["attempts"][0]["reason"] == "NodeLost"
    assert p.status["attempts"][0]["counted"] is False


def test_oom_killed_attempt_is_retried_with_the_raised_memory_limit_up_to_max_memory() -> None:
    t = task(
        container_fields={"memory": "512Mi", "memory_request": "256Mi"},
        retry={"maxAttempts": 5, "outOfMemory": {"memoryFactor": 2, "maxMemory": "1536Mi"}},
    )
    run, adm = started(t)
    limits = []
    requests = []
    at = T0 + 10 * S
    for n in (1, 2, 3):
        run, p = retried(run, t, adm, failed_pod(n, 137, "OOMKilled"), at=at)
        assert p.create_pod is not None
        resources = p.create_pod.body["spec"]["containers"][0]["resources"]
        limits.append(resources["limits"]["memory"])
        requests.append(resources["requests"]["memory"])
        at += timedelta(minutes=2)
    assert limits == ["1Gi", "1536Mi", "1536Mi"]
    assert requests == ["512Mi", "768Mi", "768Mi"]
    assert run.status is not None
    assert [a.memory_limit for a in run.status.attempts or []] == ["512Mi", "1Gi", "1536Mi", "1536Mi"]


def test_oom_killed_attempt_without_an_out_of_memory_policy_keeps_the_memory_limit() -> None:
    t = task(container_fields={"memory": "512Mi"})
    run, adm = started(t)
    _, p = retried(run, t, adm, failed_pod(1, 137, "OOMKilled"), at=T0 + 10 * S)
    assert p.create_pod is not None
    assert p.create_pod.body["spec"]["containers"][0]["resources"]["limits"]["memory"] == "512Mi"


def test_raised_memory_limit_is_kept_after_a_later_disruption() -> None:
    t = task(container_fields={"memory": "512Mi"}, retry={"outOfMemory": {"maxMemory": "4Gi"}})
    run, adm = started(t)
    run, _ = retried(run, t, adm, failed_pod(1, 137, "OOMKilled"), at=T0 + 10 * S)
    _, p = retried(run, t, adm, failed_pod(2, 143, deleting=T0 + 50 * S), at=T0 + 60 * S)
    assert p.create_pod is not None
    assert p.create_pod.body["spec"]["containers"][0]["resources"]["limits"]["memory"] == "1Gi"


# -- deadlines -------------------------------------------------------------------------------------
def test_max_duration_passing_during_an_attempt_deletes_its_pod_and_fails_the_run() -> None:
    t = task(maxDuration="10m")
    run, adm = started(t)
    now = T0 + timedelta(minutes=10)
    p = decide(view(run, t, adm, now=now, pods={1: running_pod(1)}))
    assert p.delete_pods == [("video-42-1", False)]
    # The slot is kept until the stopped pod has ended: the limit counts pods.
    assert p.release is None and p.recheck_at is not None
    assert p.status is not None
    assert (p.status["phase"], p.status["reason"]) == ("Failed", "MaxDurationExceeded")
    assert p.status["message"] == "the run took longer than maxDuration (10m) since its first attempt"
    ended = p.status["attempts"][0]
    assert (ended["reason"], ended["counted"], ended["finishTime"]) == ("MaxDurationExceeded", True, ts(now))


def test_retry_that_would_start_after_max_duration_fails_the_run_now() -> None:
    t = task(maxDuration="1m", retry={"backoff": {"initialDelay": "30s", "jitter": 0}})
    run, adm = started(t)
    p = decide(view(run, t, adm, now=T0 + 40 * S, pods={1: failed_pod(1)}))
    assert p.release == Finish(Phase.FAILED)
    assert p.status is not None
    assert p.status["reason"] == "MaxDurationExceeded"
    assert p.status["message"].endswith("(the next attempt would start after it)")


def test_max_duration_passing_between_attempts_fails_the_run() -> None:
    t = task(maxDuration="5m")
    run, adm = started(t)
    run = apply_status(run, decide(view(run, t, adm, now=T0 + 30 * S, pods={1: failed_pod(1)})))
    queued = admission(t, "queued", wait_reason=WaitReason.QUEUE_FULL)
    p = decide(view(run, t, queued, now=T0 + timedelta(minutes=5)))
    assert p.release == Finish(Phase.FAILED)
    assert p.status is not None
    assert p.status["reason"] == "MaxDurationExceeded"


# -- cancellation ----------------------------------------------------------------------------------
def test_cancelled_run_deletes_its_live_pod_and_ends_cancelled() -> None:
    t = task()
    run, adm = started(t)
    run = with_spec(run, cancel=True)
    now = T0 + timedelta(minutes=1)
    p = decide(view(run, t, adm, now=now, pods={1: running_pod(1)}))
    assert p.delete_pods == [("video-42-1", False)]
    # The slot is kept until the stopped pod has ended: the limit counts pods.
    assert p.release is None and p.recheck_at is not None
    assert p.status is not None
    assert (p.status["phase"], p.status["reason"]) == ("Cancelled", "Cancelled")
    ended = p.status["attempts"][0]
    assert (ended["reason"], ended["counted"], ended["finishTime"]) == ("Cancelled", False, ts(now))


def test_cancelling_leaves_finished_and_terminating_pods_alone() -> None:
    t = task()
    run, adm = started(t)
    run = with_spec(run, cancel=True)
    pods = {1: failed_pod(1), 2: running_pod(2, deleting=T0)}
    p = decide(view(run, t, adm, now=T0 + 60 * S, pods=pods))
    assert p.delete_pods == []
    # The slot is kept until the stopped pod has ended: the limit counts pods.
    assert p.release is None and p.recheck_at is not None


def test_a_run_cancelled_just_after_a_restart_keeps_its_slot_until_its_pods_are_surely_listed() -> None:
    # Its pod may still run though the new operator's watch has not listed it: the limit counts pods.
    t = task()
    run, adm = started(t)
    run = with_spec(run, cancel=True)
    now = T0 + timedelta(minutes=1)
    p = decide(view(run, t, adm, now=now, watching_since=now - S))
    assert p.status is not None and p.status["phase"] == "Cancelled"
    assert p.release is None and p.recheck_at == now - S + GRACE
    # Its pod seen, ended: nothing is unknown, the slot goes back at once.
    p = decide(view(run, t, adm, now=now, watching_since=now - S, pods={1: failed_pod(1)}))
    assert p.release == Finish(Phase.CANCELLED)


def test_queued_run_cancelled_ends_cancelled_and_releases_its_place() -> None:
    t = task()
    run = with_spec(taskrun(), cancel=True)
    p = decide(view(run, t, admission(t, "queued")))
    assert p.release == Finish(Phase.CANCELLED)
    assert p.create_pod is None
    assert p.status is not None
    assert p.status["phase"] == "Cancelled"


# -- finished runs ---------------------------------------------------------------------------------
def _succeeded(t: Task) -> tuple[TaskRun, Admission, datetime]:
    run, adm = started(t)
    done_at = T0 + timedelta(minutes=1)
    run = apply_status(run, decide(view(run, t, adm, now=done_at, pods={1: succeeded_pod(1)})))
    return run, adm, done_at


def test_finished_run_is_rechecked_when_its_ttl_expires_and_deleted_after() -> None:
    t = task(ttlSecondsAfterFinished=600)
    run, adm, done_at = _succeeded(t)
    row_done = replace(adm, state="finished")
    before = decide(view(run, t, row_done, now=done_at + timedelta(minutes=5)))
    assert before.recheck_at == done_at + timedelta(seconds=600)
    assert before.delete_run is False
    after = decide(view(run, t, row_done, now=done_at + timedelta(seconds=600)))
    assert after.delete_run is True


def test_finishing_schedules_the_ttl_check() -> None:
    t = task(ttlSecondsAfterFinished=60)
    run, adm = started(t)
    now = T0 + timedelta(minutes=1)
    p = decide(view(run, t, adm, now=now, pods={1: succeeded_pod(1)}))
    assert p.recheck_at == now + timedelta(seconds=60)


def test_finished_run_without_a_ttl_is_kept() -> None:
    t = task()
    run, adm, done_at = _succeeded(t)
    p = decide(view(run, t, replace(adm, state="finished"), now=done_at + timedelta(days=365)))
    assert p.delete_run is False
    assert p.recheck_at is None
    assert p == Plan()


def test_finished_run_whose_store_row_is_not_finished_releases_its_slot_again() -> None:
    t = task()
    run, adm, done_at = _succeeded(t)
    p = decide(view(run, t, adm, now=done_at + S))
    assert p.release == Finish(Phase.SUCCEEDED)
    assert p.status is None


def test_finished_run_whose_store_row_is_finished_releases_nothing() -> None:
    t = task()
    run, adm, done_at = _succeeded(t)
    assert decide(view(run, t, replace(adm, state="finished"), now=done_at + S)).release is None


def test_finished_run_removes_a_pod_still_running() -> None:
    t = task()
    run, adm, done_at = _succeeded(t)
    p = decide(view(run, t, replace(adm, state="finished"), now=done_at + S, pods={1: running_pod(1)}))
    assert p.delete_pods == [("video-42-1", False)]


def test_run_whose_store_row_ended_without_an_outcome_fails_as_lost() -> None:
    t = task()
    p = decide(view(taskrun(), t, admission(t, "finished")))
    assert p.release == Finish(Phase.FAILED)
    assert p.status is not None
    assert (p.status["phase"], p.status["reason"]) == ("Failed", "Lost")


def test_run_whose_store_row_ended_before_its_status_was_written_ends_as_the_store_says() -> None:
    """A crash while its status write waited: the store recorded the phase, so the run is not called lost."""
    t = task()
    p = decide(view(taskrun(), t, replace(admission(t, "finished"), phase="Succeeded")))
    assert p.status is not None and (p.status["phase"], p.status["reason"]) == ("Succeeded", "Succeeded")
    assert "its status is written after a restart" in p.status["message"]


def test_run_being_deleted_is_left_alone() -> None:
    t = task()
    run, adm = started(t)
    deleting = run.model_copy(update={"metadata": run.metadata.model_copy(update={"deletion_timestamp": ts(T0)})})
    assert decide(view(deleting, t, adm, now=T0 + 60 * S, pods={1: failed_pod(1)})) == Plan()


# -- progress --------------------------------------------------------------------------------------
def test_recorded_progress_is_mirrored_into_status() -> None:
    t = task()
    run, adm = started(t)
    rec = Recorded(steps_completed=3, last_step="transcode#0", state_note="n" * 300, updated=T0 + 20 * S)
    p = decide(view(run, t, adm, now=T0 + 21 * S, pods={1: running_pod(1, node="worker-a")}, recorded=rec))
    assert p.status is not None
    assert p.status["progress"] == {
        "stepsCompleted": 3,
        "lastStep": "transcode#0",
        "state": "n" * 256,
        "updatedTime": ts(T0 + 20 * S),
    }


# -- determinism and status writes -----------------------------------------------------------------
def _scenarios() -> list[RunView]:
    t = task(container_fields={"memory": "512Mi"}, retry={"outOfMemory": {"maxMemory": "2Gi"}}, maxDuration="1h")
    run, adm = started(t)
    return [
        view(taskrun(), None, None),
        view(taskrun(payload="{"), t, None),
        view(taskrun(), t, None),
        view(taskrun(), t, admission(t, "queued", wait_reason=WaitReason.QUEUE_FULL)),
        view(taskrun(), t, admission(t, "admitted")),
        view(run, t, adm, now=T0 + 5 * S),
        view(run, t, adm, now=T0 + 50 * S),
        view(run, t, adm, now=T0 + 50 * S, pods={1: failed_pod(1, 137, "OOMKilled")}),
        view(run, t, adm, now=T0 + 50 * S, pods={1: succeeded_pod(1)}, recorded=Recorded(result="1")),
        view(run, t, adm, now=T0 + timedelta(hours=2), pods={1: running_pod(1)}),
        view(with_spec(run, cancel=True), t, adm, now=T0 + 50 * S, pods={1: running_pod(1)}),
    ]


@pytest.mark.parametrize("index", range(11))
def test_planning_leaves_the_view_as_it_was_and_a_copy_plans_the_same(index: int) -> None:
    v = _scenarios()[index]
    before = copy.deepcopy(v)
    first = decide(v)
    assert v == before  # the plan took nothing from the view it was given
    assert decide(copy.deepcopy(v)) == first


def test_observed_generation_rides_along_with_a_real_status_change() -> None:
    t = task()
    run, adm = started(t)
    run = apply_status(run, decide(view(run, t, adm, now=T0 + 3 * S, pods={1: running_pod(1)})))
    bumped = run.model_copy(update={"metadata": run.metadata.model_copy(update={"generation": 2})})
    p = decide(view(bumped, t, adm, now=T0 + 5 * S, pods={1: running_pod(1, node="worker-b")}))
    assert p.status is not None
    assert p.status["observedGeneration"] == 2
    assert set(p.status) == {"attempts", "observedGeneration"}  # the node is new


def test_observed_generation_alone_is_not_worth_a_status_write() -> None:
    t = task()
    run, adm = started(t)
    run = apply_status(run, decide(view(run, t, adm, now=T0 + 5 * S, pods={1: running_pod(1)})))
    bumped = run.model_copy(update={"metadata": run.metadata.model_copy(update={"generation": 2})})
    assert decide(view(bumped, t, adm, now=T0 + 6 * S, pods={1: running_pod(1)})).status is None


def test_reconcile_with_nothing_new_writes_no_status() -> None:
    t = task()
    adm = admission(t, "queued", wait_reason=WaitReason.QUEUE_FULL)
    run = apply_status(taskrun(), decide(view(taskrun(), t, adm)))
    assert decide(view(run, t, adm, now=T0 + 60 * S)).status is None


def test_generation_bump_is_reflected_in_the_conditions_it_rewrites() -> None:
    t = task()
    adm = admission(t, "queued", wait_reason=WaitReason.QUEUE_FULL)
    run = apply_status(taskrun(), decide(view(taskrun(), t, adm)))
    bumped = run.model_copy(update={"metadata": run.metadata.model_copy(update={"generation": 5})})
    p = decide(view(bumped, t, adm, now=T0 + 60 * S))
    assert p.status is not None
    assert p.status["observedGeneration"] == 5
    assert cond(p, "Admitted")["observedGeneration"] == 5
    assert cond(p, "Admitted")["lastTransitionTime"] == ts(T0)  # the status did not change


def test_condition_transition_time_is_kept_while_its_status_stays() -> None:
    t = task()
    full = admission(t, "queued", wait_reason=WaitReason.QUEUE_FULL)
    run = apply_status(taskrun(), decide(view(taskrun(), t, full)))
    key_full = admission(t, "queued", wait_reason=WaitReason.KEY_FULL)
    p = decide(view(run, t, key_full, now=T0 + 60 * S))
    assert cond(p, "Admitted")["reason"] == "KeyFull"
    assert cond(p, "Admitted")["lastTransitionTime"] == format_time(T0)


def test_status_patch_clears_the_next_attempt_time_when_the_attempt_starts() -> None:
    t = task()
    run, adm = started(t)
    after_failure = apply_status(run, decide(view(run, t, adm, now=T0 + 30 * S, pods={1: failed_pod(1)})))
    assert after_failure.status is not None
    assert after_failure.status.next_attempt_time == ts(T0 + 40 * S)
    _, p = retried(run, t, adm, failed_pod(1), at=T0 + 30 * S)
    assert p.status is not None
    assert "nextAttemptTime" in p.status
    assert p.status["nextAttemptTime"] is None


def test_ended_attempt_is_handed_to_the_store_with_the_plan() -> None:
    t = task()
    run, adm = started(t)
    p = decide(view(run, t, adm, now=T0 + 30 * S, pods={1: failed_pod(1, 5)}))
    assert p.ended is not None
    assert p.status is not None
    assert p.ended.wire() == compact(p.status["attempts"][-1])
    assert (p.ended.number, p.ended.exit_code, p.ended.counted) == (1, 5, True)


def test_plan_of_a_running_attempt_hands_no_ended_attempt() -> None:
    t = task()
    run, adm = started(t)
    assert decide(view(run, t, adm, now=T0 + 5 * S, pods={1: running_pod(1)})).ended is None


# -- a whole run, driven through plan() --------------------------------------------------------------
_ENDINGS: dict[str, Any] = {
    "exit1": lambda n: failed_pod(n, 1),
    "exit42": lambda n: failed_pod(n, 42),
    "oom": lambda n: failed_pod(n, 137, "OOMKilled"),
    "preempted": lambda n: failed_pod(
        n, 143, conditions=[condition("DisruptionTarget", "True", "PreemptionByScheduler")]
    ),
    "deleted": lambda n: failed_pod(n, 143, deleting=T0),
    "missing": lambda n: None,
    "success": lambda n: succeeded_pod(n),
}


@settings(max_examples=100, deadline=None)
@given(
    st.integers(min_value=1, max_value=4),
    st.integers(min_value=0, max_value=3),
    st.lists(st.sampled_from(sorted(_ENDINGS)), min_size=1, max_size=20),
    st.floats(min_value=0, max_value=1, exclude_max=True),
)
def test_a_run_driven_through_plans_respects_its_retry_policy_and_holds_one_pod_at_a_time(
    max_attempts: int, max_disruptions: int, endings: list[str], jitter: float
) -> None:
    t = task(
        container_fields={"memory": "256Mi"},
        retry={
            "maxAttempts": max_attempts,
            "maxDisruptions": max_disruptions,
            "outOfMemory": {"maxMemory": "1Gi"},
            "podFailurePolicy": {"rules": [{"action": "FailRun", "onExitCodes": {"operator": "In", "values": [42]}}]},
        },
    )
    run = taskrun()
    now = T0
    adm = admission(t, "admitted")
    finished = False
    for ending in endings:
        # The slot is granted: the next attempt starts.
        v = view(run, t, adm, now=now, jitter=jitter)
        p = decide(v)
        assert p == decide(v)
        assert p.create_pod is not None
        run = apply_status(run, p)
        assert run.status is not None and run.status.attempts
        number = run.status.attempts[-1].number
        assert number == len(run.status.attempts) == run.status.attempt
        assert p.create_pod.body["metadata"]["name"] == f"video-42-{number}"

        # The attempt ends.
        now += timedelta(minutes=1)
        ended_pod = _ENDINGS[ending](number)
        v = view(run, t, adm, now=now, pods={} if ended_pod is None else {number: ended_pod}, jitter=jitter)
        p = decide(v)
        assert p == decide(v)
        assert p.create_pod is None
        run = apply_status(run, p)
        assert run.status is not None
        attempts = run.status.attempts or []
        assert sum(1 for a in attempts if a.counted) <= max_attempts
        assert sum(1 for a in attempts if a.counted is False) <= max_disruptions + 1
        assert all(a.finish_time is not None for a in attempts)
        if isinstance(p.release, Finish):
            assert run.status.phase is not None and run.status.phase.finished
            assert p.release.phase is run.status.phase
            if ending == "success":
                assert run.status.phase is Phase.SUCCEEDED
            finished = True
            break
        assert isinstance(p.release, Requeue)
        assert run.status.phase is Phase.RETRYING
        assert p.release.not_before >= now
        now = p.release.not_before

    if finished:
        assert run.status is not None
        # A finished run never starts another pod, whatever the store says.
        for state in ("admitted", "queued", "finished"):
            after = decide(view(run, t, replace(adm, state=state), now=now + timedelta(hours=1)))
            assert after.create_pod is None
            assert after.register is None


def test_the_slot_of_a_finished_run_is_released_once_its_stopped_pod_has_ended() -> None:
    t = task()
    run, adm = started(t)
    now = T0 + 60 * S
    stopping = decide(view(with_spec(run, cancel=True), t, adm, now=now, pods={1: running_pod(1)}))
    assert stopping.release is None
    run = apply_status(with_spec(run, cancel=True), stopping)
    still = decide(view(run, t, adm, now=now + 2 * S, pods={1: running_pod(1, deleting=now)}))
    assert still.release is None
    gone = decide(view(run, t, adm, now=now + 4 * S, pods={}))
    assert gone.release == Finish(Phase.CANCELLED)


def test_a_run_queued_before_its_task_was_edited_or_deleted_runs_the_task_as_it_was_when_queued() -> None:
    # The Task is locked when the run is queued (as Trigger.dev locks the version at trigger time):
    # the admission carries the snapshot registered then, whatever the Task has become since.
    before = task(container_fields={"command": ["python3", "-m", "cairn.run", "old:main"]})
    registered = decide(view(taskrun(), before, None))
    assert registered.register is not None
    adm = replace(admission(before, "admitted"), snapshot=registered.register.snapshot)
    edited = task(generation=2, container_fields={"command": ["python3", "-m", "cairn.run", "new:main"]})
    for current in (edited, None):
        p = decide(view(taskrun(), current, adm))
        assert p.create_pod is not None
        assert p.create_pod.body["spec"]["containers"][0]["command"][-1] == "old:main"


def test_attempt_whose_pod_no_node_can_take_is_not_shown_as_running_but_as_waiting_with_the_schedulers_reason() -> None:
    t = task(startTimeout="2m")
    run, adm = started(t)
    why = "0/2 nodes are available: pod has unbound immediate PersistentVolumeClaims."
    stuck = pod(1, phase="Pending", conditions=[condition("PodScheduled", "False", "Unschedulable", why)])
    p = decide(view(run, t, adm, now=T0 + 20 * S, pods={1: stuck}))
    assert p.status is not None
    assert (p.status["reason"], p.status["message"]) == ("Unschedulable", f"attempt 1 waits: Unschedulable: {why}")
    assert p.recheck_at == T0 + timedelta(minutes=2)
    failed = decide(view(apply_status(run, p), t, adm, now=T0 + timedelta(minutes=2), pods={1: stuck}))
    final = apply_status(apply_status(run, p), failed).status
    assert final is not None
    assert (final.phase, final.reason) == (Phase.FAILED, "Unschedulable")
    assert final.message is not None and why in final.message
    assert failed.delete_pods == [("video-42-1", False)]


# -- Kueue -----------------------------------------------------------------------------------------
def test_the_running_pod_of_a_task_in_kueue_says_when_its_last_step_was_recorded_once_per_step() -> None:
    t = task(kueue={"localQueue": "team-a"})
    run, adm = started(t)
    stepped = Recorded(steps_completed=2, last_step="s#1", updated=T0 + 20 * S)
    p = decide(view(run, t, adm, now=T0 + 21 * S, pods={1: running_pod(1)}, recorded=stepped))
    assert p.annotate_pod == ("video-42-1", {"cairn.dev/last-step-at": ts(T0 + 20 * S)})
    # Already on the pod: no second patch.
    annotated = replace(running_pod(1), last_step_at=ts(T0 + 20 * S))
    p = decide(view(run, t, adm, now=T0 + 22 * S, pods={1: annotated}, recorded=stepped))
    assert p.annotate_pod is None
    # A Task outside Kueue spends no request on it.
    plain = task()
    run, adm = started(plain)
    p = decide(view(run, plain, adm, now=T0 + 21 * S, pods={1: running_pod(1)}, recorded=stepped))
    assert p.annotate_pod is None
