"""A Task's onFailure hook (pure): a run that fails for good starts one run of the hook's Task, named
after it, with a payload that says what failed; cancelled and succeeded runs start none, and a
failing onFailure run starts no other."""

from __future__ import annotations

import json

from cairn.api.task import Task
from cairn.api.taskrun import TaskRun
from cairn.domain.lifecycle import Recorded, plan
from cairn.domain.naming import ANNOTATION_FAILED_RUN, dead_letter_name
from tests.unit.builders import SETTINGS, T0, admission, apply_status, failed_pod, task, taskrun, view, with_spec

HOOK = {"task": "page-oncall", "queue": "alerts"}


def _failed_once() -> tuple[Task, TaskRun]:
    t = task(retry={"maxAttempts": 1}, onFailure=HOOK)
    run = taskrun()
    run = apply_status(run, plan(view(run, t, admission(t, "admitted"), now=T0), SETTINGS))
    return t, run


def test_a_run_that_fails_for_good_starts_one_run_of_its_tasks_on_failure_task_saying_what_failed() -> None:
    t, run = _failed_once()
    p = plan(
        view(
            run, t, admission(t, "admitted"), now=T0, pods={1: failed_pod(exit_code=3)}, recorded=Recorded(1, "fetch#0")
        ),
        SETTINGS,
    )
    assert p.status is not None and p.status["phase"] == "Failed"
    assert len(p.create_runs) == 1
    body = p.create_runs[0]
    assert body["metadata"]["name"] == dead_letter_name(run.metadata.name) == "video-42-onfailure"
    assert body["metadata"]["annotations"] == {ANNOTATION_FAILED_RUN: "video-42"}
    assert body["spec"]["taskRef"] == {"name": "page-oncall"} and body["spec"]["queue"] == "alerts"
    payload = json.loads(body["spec"]["payload"])
    assert payload["run"] == "video-42" and payload["lastStep"] == "fetch#0" and payload["reason"] == "Error"
    assert "OnFailure" in [e.reason for e in p.events]


def test_cancelled_and_succeeded_runs_start_no_on_failure_run() -> None:
    t, run = _failed_once()
    cancelled = plan(view(with_spec(run, cancel=True), t, admission(t, "admitted"), now=T0), SETTINGS)
    assert cancelled.status is not None and cancelled.status["phase"] == "Cancelled" and cancelled.create_runs == []


def test_an_on_failure_run_that_fails_starts_no_other() -> None:
    t = task(retry={"maxAttempts": 1}, onFailure=HOOK)
    run = taskrun()
    run = run.model_copy(
        update={"metadata": run.metadata.model_copy(update={"annotations": {ANNOTATION_FAILED_RUN: "x"}})}
    )
    run = apply_status(run, plan(view(run, t, admission(t, "admitted"), now=T0), SETTINGS))
    p = plan(view(run, t, admission(t, "admitted"), now=T0, pods={1: failed_pod()}), SETTINGS)
    assert p.status is not None and p.status["phase"] == "Failed" and p.create_runs == []
