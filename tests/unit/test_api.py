"""The pydantic models of Task, TaskRun and Queue: strict about what they accept, generous in defaults."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from cairn.api.common import PAYLOAD_MAX_BYTES, Condition, ObjectMeta, parse_duration
from cairn.api.queue import Queue, QueueSpec
from cairn.api.task import Backoff, RetryPolicy, Task, TaskSpec
from cairn.api.taskrun import Attempt, Phase, TaskRun, TaskRunSpec, TaskRunStatus
from tests.unit.builders import task_spec_dict

# -- parse_duration --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("500ms", timedelta(milliseconds=500)),
        ("1.5h", timedelta(hours=1, minutes=30)),
        ("2h45m30s500ms", timedelta(hours=2, minutes=45, seconds=30, milliseconds=500)),
        ("0s", timedelta(0)),
        ("168h", timedelta(days=7)),
        ("90m", timedelta(minutes=90)),
        ("1m1ms", timedelta(minutes=1, milliseconds=1)),
    ],
)
def test_parse_duration_reads_go_style_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", ["", "5", "1d", "-5s", "5 s", "5S", "1h 30m", "ms", ".5s", "5.s", "PT5M", "5sec", "1h-30m", "s5"]
)
def test_parse_duration_rejects_what_is_not_a_duration_with_an_example(text: str) -> None:
    with pytest.raises(ValueError, match=r"is not a duration such as 30s, 5m, 1h30m or 500ms"):
        parse_duration(text)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=0, max_value=1000),
    st.integers(min_value=0, max_value=59),
    st.integers(min_value=0, max_value=59),
    st.integers(min_value=0, max_value=999),
)
def test_parse_duration_adds_up_its_parts(h: int, m: int, s: int, ms: int) -> None:
    text = f"{h}h{m}m{s}s{ms}ms"
    assert parse_duration(text) == timedelta(hours=h, minutes=m, seconds=s, milliseconds=ms)


# -- Duration fields -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("attemptTimeout",), "10 minutes"),
        (("maxDuration",), "1d"),
        (("startTimeout",), "5"),
        (("checkpointRetention",), "1w"),
        (("retry", "backoff", "initialDelay"), "ten seconds"),
        (("retry", "backoff", "maxDelay"), "-1m"),
    ],
)
def test_duration_fields_reject_bad_strings_naming_the_field(path: tuple[str, ...], value: str) -> None:
    spec = task_spec_dict()
    node: dict[str, Any] = spec
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value
    with pytest.raises(ValidationError) as err:
        TaskSpec.model_validate(spec)
    assert err.value.error_count() == 1
    error = err.value.errors()[0]
    assert tuple(error["loc"]) == path
    assert "is not a duration such as 30s, 5m, 1h30m or 500ms" in error["msg"]


def test_duration_fields_reject_numbers() -> None:
    with pytest.raises(ValidationError, match="valid string"):
        TaskSpec.model_validate(task_spec_dict(attemptTimeout=300))


def test_duration_fields_accept_good_strings_as_written() -> None:
    spec = TaskSpec.model_validate(task_spec_dict(attemptTimeout="10m", maxDuration="2h30m", startTimeout="90s"))
    assert (spec.attempt_timeout, spec.max_duration, spec.start_timeout) == ("10m", "2h30m", "90s")


# -- unknown fields --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("model", "body"),
    [
        (TaskSpec, task_spec_dict(retries=3)),
        (TaskSpec, task_spec_dict(retry={"maxAttempts": 3, "backoffLimit": 6})),
        (TaskSpec, task_spec_dict(retry={"backoff": {"initialDelay": "1s", "multiplier": 2}})),
        (TaskSpec, task_spec_dict(container_fields={"imagePullPolicy": "Never", "stdin": True})),
        (TaskSpec, task_spec_dict(pod_spec={"hostNetwork": True})),
        (TaskRunSpec, {"taskRef": {"name": "t"}, "parallelism": 2}),
        (TaskRunSpec, {"taskRef": {"name": "t", "namespace": "other"}}),
        (QueueSpec, {"concurrencyLimit": 3, "maxConcurrency": 3}),
        (RetryPolicy, {"max_attempts": 2, "max_attemps": 3}),
    ],
)
def test_models_reject_unknown_fields(model: type[BaseModel], body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        model.model_validate(body)


def test_snake_case_names_of_the_same_fields_are_accepted_too() -> None:
    assert RetryPolicy.model_validate({"max_attempts": 2}) == RetryPolicy.model_validate({"maxAttempts": 2})


def test_object_metadata_passes_kubernetes_own_fields() -> None:
    meta = ObjectMeta.model_validate(
        {"name": "r", "managedFields": [{"manager": "kubectl"}], "finalizers": ["x"], "resourceVersion": "7"}
    )
    assert (meta.name, meta.resource_version) == ("r", "7")


def test_models_are_frozen() -> None:
    spec = TaskSpec.model_validate(task_spec_dict())
    with pytest.raises(ValidationError):
        spec.queue = "other"  # type: ignore[misc]


def test_wire_form_is_camel_case_without_unset_fields() -> None:
    spec = TaskSpec.model_validate(task_spec_dict(ttlSecondsAfterFinished=60))
    wire = spec.wire()
    assert wire["ttlSecondsAfterFinished"] == 60
    assert "attemptTimeout" not in wire
    assert wire["retry"]["backoff"] == {"initialDelay": "10s", "factor": 2.0, "maxDelay": "5m", "jitter": 0.1}
    assert TaskSpec.model_validate(wire) == spec


# -- defaults --------------------------------------------------------------------------------------
def test_task_spec_defaults() -> None:
    spec = TaskSpec.model_validate(task_spec_dict())
    assert spec.queue == "default"
    assert spec.attempt_timeout is None
    assert spec.max_duration is None
    assert spec.start_timeout == "5m"
    assert spec.ttl_seconds_after_finished is None
    assert spec.checkpoint_retention == "168h"
    assert spec.retry == RetryPolicy(
        max_attempts=3,
        backoff=Backoff(initial_delay="10s", factor=2.0, max_delay="5m", jitter=0.1),
        pod_failure_policy=None,
        out_of_memory=None,
        max_disruptions=10,
    )
    assert spec.template.spec.containers[0].name == "task"


def test_out_of_memory_defaults_to_doubling() -> None:
    policy = RetryPolicy.model_validate({"outOfMemory": {"maxMemory": "4Gi"}})
    assert policy.out_of_memory is not None
    assert policy.out_of_memory.memory_factor == 2.0


def test_out_of_memory_needs_a_cap() -> None:
    with pytest.raises(ValidationError, match="maxMemory"):
        RetryPolicy.model_validate({"outOfMemory": {"memoryFactor": 2}})


def test_taskrun_spec_defaults() -> None:
    spec = TaskRunSpec.model_validate({"taskRef": {"name": "transcode"}})
    assert (spec.priority, spec.payload, spec.concurrency_key, spec.queue, spec.cancel) == (0, None, None, None, None)


def test_queue_defaults() -> None:
    q = Queue.model_validate({"metadata": {"name": "default"}})
    assert q.spec == QueueSpec(concurrency_limit=10, per_key_limit=None, paused=False)


# -- bounds ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "retry",
    [
        {"maxAttempts": 0},
        {"maxAttempts": 1001},
        {"maxDisruptions": -1},
        {"backoff": {"factor": 0.5}},
        {"backoff": {"factor": 11}},
        {"backoff": {"jitter": -0.1}},
        {"backoff": {"jitter": 1.5}},
        {"outOfMemory": {"memoryFactor": 0.5, "maxMemory": "1Gi"}},
        {"podFailurePolicy": {"rules": [{"action": "Retry", "onExitCodes": {"operator": "In", "values": [1]}}]}},
        {"podFailurePolicy": {"rules": [{"action": "FailRun", "onExitCodes": {"operator": "Between", "values": [1]}}]}},
        {"podFailurePolicy": {"rules": [{"action": "FailRun", "onExitCodes": {"operator": "In", "values": []}}]}},
    ],
)
def test_retry_policy_rejects_values_out_of_bounds(retry: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        TaskSpec.model_validate(task_spec_dict(retry=retry))


@pytest.mark.parametrize(
    "spec",
    [
        {"taskRef": {"name": ""}},
        {"taskRef": {"name": "t"}, "priority": 1001},
        {"taskRef": {"name": "t"}, "priority": -1001},
        {"taskRef": {"name": "t"}, "concurrencyKey": ""},
        {"taskRef": {"name": "t"}, "concurrencyKey": "k" * 129},
        {"taskRef": {"name": "t"}, "queue": ""},
        {"taskRef": {"name": "t"}, "payload": "x" * (PAYLOAD_MAX_BYTES + 1)},
        {},
    ],
)
def test_taskrun_spec_rejects_values_out_of_bounds(spec: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        TaskRunSpec.model_validate(spec)


def test_taskrun_payload_of_exactly_the_cap_is_accepted() -> None:
    payload = '"' + "x" * (PAYLOAD_MAX_BYTES - 2) + '"'
    assert TaskRunSpec.model_validate({"taskRef": {"name": "t"}, "payload": payload}).payload == payload


@pytest.mark.parametrize("spec", [{"concurrencyLimit": 0}, {"perKeyLimit": 0}, {"concurrencyLimit": 100001}])
def test_queue_spec_rejects_values_out_of_bounds(spec: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        QueueSpec.model_validate(spec)


@pytest.mark.parametrize(
    "pod_spec",
    [
        {"securityContext": {"runAsUser": 0}},
        {"securityContext": {"runAsGroup": 0}},
        {"terminationGracePeriodSeconds": -1},
    ],
)
def test_pod_template_rejects_root_and_negative_values(pod_spec: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        TaskSpec.model_validate(task_spec_dict(pod_spec=pod_spec))


def test_pod_template_has_exactly_one_container() -> None:
    body = task_spec_dict()
    body["template"]["spec"]["containers"] = []
    with pytest.raises(ValidationError):
        TaskSpec.model_validate(body)
    body["template"]["spec"]["containers"] = [{"image": "a:1"}, {"image": "b:1"}]
    with pytest.raises(ValidationError):
        TaskSpec.model_validate(body)


def test_container_needs_an_image() -> None:
    body = task_spec_dict()
    body["template"]["spec"]["containers"] = [{"name": "task"}]
    with pytest.raises(ValidationError, match="image"):
        TaskSpec.model_validate(body)


# -- the kinds -------------------------------------------------------------------------------------
def test_task_reads_a_manifest_as_kubectl_returns_it() -> None:
    t = Task.model_validate(
        {
            "apiVersion": "cairn.dev/v1alpha1",
            "kind": "Task",
            "metadata": {"name": "transcode", "namespace": "media", "uid": "u", "generation": 3, "labels": {"a": "b"}},
            "spec": task_spec_dict(queue="gpu"),
        }
    )
    assert (t.metadata.name, t.metadata.generation, t.spec.queue) == ("transcode", 3, "gpu")


def test_kinds_reject_another_api_version_or_kind() -> None:
    with pytest.raises(ValidationError):
        Task.model_validate(
            {"apiVersion": "cairn.dev/v1", "kind": "Task", "metadata": {"name": "t"}, "spec": task_spec_dict()}
        )
    with pytest.raises(ValidationError):
        TaskRun.model_validate({"kind": "Task", "metadata": {"name": "r"}, "spec": {"taskRef": {"name": "t"}}})


def test_taskrun_status_round_trips_through_its_wire_form() -> None:
    status = TaskRunStatus(
        phase=Phase.RETRYING,
        reason="OOMKilled",
        attempt=1,
        attempts=[Attempt(number=1, pod="r-1", exit_code=137, reason="OOMKilled", counted=True, memory_limit="512Mi")],
        conditions=[
            Condition(
                type="Admitted", status="False", reason="BackingOff", last_transition_time="2026-01-01T00:00:00.000Z"
            )
        ],
    )
    wire = status.wire()
    assert wire["attempts"][0] == {
        "number": 1,
        "pod": "r-1",
        "exitCode": 137,
        "reason": "OOMKilled",
        "counted": True,
        "memoryLimit": "512Mi",
    }
    assert TaskRunStatus.model_validate(wire) == status


@pytest.mark.parametrize(
    ("phase", "finished"),
    [
        (Phase.QUEUED, False),
        (Phase.RUNNING, False),
        (Phase.RETRYING, False),
        (Phase.SUCCEEDED, True),
        (Phase.FAILED, True),
        (Phase.CANCELLED, True),
    ],
)
def test_phase_is_finished_only_when_terminal(phase: Phase, finished: bool) -> None:
    assert phase.finished is finished


def test_condition_message_longer_than_the_cap_is_rejected() -> None:
    with pytest.raises(ValidationError):
        Condition(type="A", status="True", reason="R", message="m" * 1025, last_transition_time="t")
