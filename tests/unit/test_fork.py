"""Forks (TaskRun spec.from): what the domain decides when a run starts from a step of an earlier one."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from pydantic import ValidationError

from cairn.api.taskrun import Phase, TaskRun
from cairn.domain.lifecycle import Finish, ForkSource, Plan, RunView, plan, steps_to_copy
from tests.unit.builders import SETTINGS, snapshot, task, taskrun, view

SOURCE_UID = "0d7c1f3e-0000-4000-8000-000000000001"
STEPS = ("work#0", "work#1", "work#2", "work#3", "work#4")


def source(**changes: object) -> ForkSource:
    old = task(generation=3, retry={"maxAttempts": 7})
    fork = ForkSource(uid=SOURCE_UID, task="transcode", payload='{"n": 1}', snapshot=snapshot(old), steps=STEPS)
    return replace(fork, **changes)  # type: ignore[arg-type]


def fork_run(step: str = "work#3", payload: str | None = None, revision: str = "Source") -> TaskRun:
    spec: dict[str, Any] = {"from": {"run": "first", "step": step, "taskRevision": revision}}
    if payload is not None:
        spec["payload"] = payload
    return taskrun(**spec)


def decide(v: RunView) -> Plan:
    return plan(v, SETTINGS)


def test_a_fork_registers_with_the_source_s_task_snapshot_and_payload_and_copies_the_steps_before_its_step() -> None:
    p = decide(replace(view(fork_run(), task(generation=9), None), fork=source()))
    assert p.register is not None
    assert p.register.fork == (SOURCE_UID, "work#3")
    assert p.register.payload == '{"n": 1}'
    assert p.register.snapshot.generation == 3 and p.register.snapshot.spec.retry.max_attempts == 7
    assert p.status is not None
    assert p.status["forkedFrom"] == {"run": "first", "uid": SOURCE_UID, "step": "work#3", "stepsCopied": 3}


def test_a_fork_with_its_own_payload_and_the_current_task_uses_them() -> None:
    run = fork_run(payload='{"n": 2}', revision="Current")
    current = task(generation=9)
    p = decide(replace(view(run, current, None), fork=source()))
    assert p.register is not None
    assert p.register.payload == '{"n": 2}'
    assert p.register.snapshot == snapshot(current)


@pytest.mark.parametrize(
    ("run", "fork", "says"),
    [
        (
            fork_run("work#9"),
            source(),
            'spec.from.step: run "first" recorded no step "work#9"; its steps: work#0, work#1',
        ),
        (fork_run(), None, 'spec.from.run: no run "first" in namespace'),
        (fork_run(), source(task="thumbnail"), 'but run "first" ran "thumbnail": a fork runs its source\'s Task'),
    ],
    ids=["unknown step", "unknown run", "another task"],
)
def test_a_fork_that_cannot_be_honoured_fails_at_once_naming_the_field_and_what_exists(
    run: TaskRun, fork: ForkSource | None, says: str
) -> None:
    p = decide(replace(view(run, task(), None), fork=fork))
    assert p.register is None
    assert p.release == Finish(Phase.FAILED)
    assert p.status is not None and p.status["reason"] == "InvalidFork"
    assert says in p.status["message"], p.status["message"]


def test_a_fork_step_must_be_a_step_key() -> None:
    with pytest.raises(ValidationError, match="String should match pattern"):
        fork_run("work")


@pytest.mark.parametrize(
    ("key", "copied"),
    [
        ("work#0", 0),
        ("work#3", 3),
        ("work#5", 5),  # the next occurrence: where the source stopped (the step it failed in)
        ("upload#0", 5),  # a name it never reached
        ("work#6", None),
        ("upload#1", None),
        ("work#x", None),
    ],
)
def test_a_fork_copies_the_steps_before_a_recorded_step_or_all_of_them_from_the_step_the_source_stopped_in(
    key: str, copied: int | None
) -> None:
    assert steps_to_copy(STEPS, key) == copied


def test_a_fork_from_the_step_its_source_failed_in_copies_every_recorded_step() -> None:
    p = decide(replace(view(fork_run("work#5"), task(), None), fork=source()))
    assert p.register is not None and p.register.fork == (SOURCE_UID, "work#5")
    assert p.status is not None and p.status["forkedFrom"]["stepsCopied"] == 5
