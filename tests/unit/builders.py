"""Builders for the pure-layer unit tests: Tasks, TaskRuns, store rows, pods as the API server returns
them, and the views `lifecycle.plan()` reads. Small functions with defaults, overridden per test."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from cairn.api.task import Task, TaskSpec
from cairn.api.taskrun import TaskRun, TaskRunStatus, TaskSnapshot
from cairn.domain.admission import Limits, WaitReason
from cairn.domain.lifecycle import Admission, Plan, Recorded, RunView, Settings
from cairn.domain.podspec import Runtime
from cairn.domain.termination import PodView
from cairn.domain.timefmt import format_time
from cairn.domain.waits import ChildView, WaitView

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
IMAGE = "registry.example/tasks/transcode:1.4.2"
NAMESPACE = "media"
RUN_UID = "5f0c6a2e-9d1b-4c53-8e6a-3f7b2d1c0a99"
TASK_UID = "0b7e9f3c-1a2d-4e5f-9a8b-7c6d5e4f3a21"
RUNTIME = Runtime(api_url="http://cairn-api.cairn-system.svc:8080", token_audience="cairn.dev", token_seconds=3600)
SETTINGS = Settings(runtime=RUNTIME, pod_appear_grace=timedelta(seconds=30))


def ts(t: datetime) -> str:
    return format_time(t)


# -- the resources --------------------------------------------------------------------------------
def container(
    *,
    image: str = IMAGE,
    memory: str | None = None,
    memory_request: str | None = None,
    cpu: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    out: dict[str, Any] = {"name": "task", "image": image, **fields}
    limits: dict[str, Any] = {}
    requests: dict[str, Any] = {}
    if memory is not None:
        limits["memory"] = memory
    if memory_request is not None:
        requests["memory"] = memory_request
    if cpu is not None:
        requests["cpu"] = cpu
    if limits or requests:
        out["resources"] = {k: v for k, v in (("limits", limits), ("requests", requests)) if v}
    return out


def task_spec_dict(*, container_fields: Mapping[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    """A Task spec as a user writes it (camelCase), with one container."""
    pod_spec = spec.pop("pod_spec", {})
    template_meta = spec.pop("template_metadata", None)
    template: dict[str, Any] = {"spec": {"containers": [container(**dict(container_fields or {}))], **pod_spec}}
    if template_meta is not None:
        template["metadata"] = template_meta
    return {"template": template, **spec}


def task_spec(*, container_fields: Mapping[str, Any] | None = None, **spec: Any) -> TaskSpec:
    return TaskSpec.model_validate(task_spec_dict(container_fields=container_fields, **spec))


def task(
    name: str = "transcode",
    *,
    namespace: str = NAMESPACE,
    uid: str = TASK_UID,
    generation: int = 1,
    container_fields: Mapping[str, Any] | None = None,
    **spec: Any,
) -> Task:
    return Task.model_validate(
        {
            "apiVersion": "cairn.dev/v1alpha1",
            "kind": "Task",
            "metadata": {"name": name, "namespace": namespace, "uid": uid, "generation": generation},
            "spec": task_spec_dict(container_fields=container_fields, **spec),
        }
    )


def snapshot(t: Task) -> TaskSnapshot:
    return TaskSnapshot(name=t.metadata.name, uid=t.metadata.uid, generation=t.metadata.generation, spec=t.spec)


def taskrun(
    name: str = "video-42",
    *,
    task_name: str = "transcode",
    namespace: str = NAMESPACE,
    uid: str = RUN_UID,
    generation: int = 1,
    created: datetime = T0,
    deleting: datetime | None = None,
    status: TaskRunStatus | Mapping[str, Any] | None = None,
    **spec: Any,
) -> TaskRun:
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "uid": uid,
        "generation": generation,
        "resourceVersion": "1234",
        "creationTimestamp": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "managedFields": [{"manager": "kubectl-client-side-apply"}],  # ignored: Kubernetes owns metadata
    }
    if deleting is not None:
        metadata["deletionTimestamp"] = deleting.strftime("%Y-%m-%dT%H:%M:%SZ")
    body: dict[str, Any] = {
        "apiVersion": "cairn.dev/v1alpha1",
        "kind": "TaskRun",
        "metadata": metadata,
        "spec": {"taskRef": {"name": task_name}, **spec},
    }
    if isinstance(status, TaskRunStatus):
        body["status"] = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    elif status is not None:
        body["status"] = dict(status)
    return TaskRun.model_validate(body)


def with_status(run: TaskRun, status: TaskRunStatus | None) -> TaskRun:
    return run.model_copy(update={"status": status})


def with_spec(run: TaskRun, **changes: Any) -> TaskRun:
    return run.model_copy(update={"spec": run.spec.model_copy(update=changes)})


def admission(
    t: Task,
    state: str = "admitted",
    *,
    queue: str | None = None,
    wait_reason: WaitReason | None = None,
    limits: Limits | None = None,
    wait: WaitView | None = None,
) -> Admission:
    assert state in ("queued", "admitted", "waiting", "finished")
    return Admission(
        state=state,  # type: ignore[arg-type]
        queue=queue or t.spec.queue,
        snapshot=snapshot(t),
        wait_reason=wait_reason,
        limits=limits,
        wait=wait,
    )


def view(
    run: TaskRun,
    t: Task | None,
    adm: Admission | None,
    *,
    now: datetime = T0,
    pods: Mapping[int, PodView] | None = None,
    recorded: Recorded | None = None,
    jitter: float = 0.5,
    rejected_pod: tuple[int, str] | None = None,
    children: tuple[ChildView, ...] = (),
    watching_since: datetime | None = None,
) -> RunView:
    return RunView(
        run=run,
        task=t,
        admission=adm,
        pods=dict(pods or {}),
        recorded=recorded or Recorded(),
        now=now,
        jitter=jitter,
        rejected_pod=rejected_pod,
        children=children,
        watching_since=watching_since,
    )


def apply_status(run: TaskRun, plan: Plan) -> TaskRun:
    """The TaskRun after the controller applied the plan's merge patch to its status."""
    if plan.status is None:
        return run
    current = run.status.model_dump(mode="json", by_alias=True, exclude_none=True) if run.status else {}
    for key, value in plan.status.items():
        if value is None:
            current.pop(key, None)
        else:
            current[key] = value
    return with_status(run, TaskRunStatus.model_validate(current))


# -- pods, as the API server returns them ----------------------------------------------------------
def pod_json(
    name: str = "video-42-1",
    *,
    phase: str = "Running",
    created: datetime = T0,
    node: str | None = "worker-a",
    reason: str | None = None,
    message: str | None = None,
    deleting: datetime | None = None,
    conditions: list[dict[str, Any]] | None = None,
    waiting: dict[str, Any] | None = None,
    terminated: dict[str, Any] | None = None,
    memory_limit: str | None = "512Mi",
    container_statuses: bool = True,
) -> dict[str, Any]:
    """A pod of one attempt, shaped as `kubectl get pod -o json` shows it."""
    stamp = created.strftime("%Y-%m-%dT%H:%M:%SZ")
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": NAMESPACE,
        "uid": f"uid-{name}",
        "resourceVersion": "98765",
        "creationTimestamp": stamp,
        "labels": {"cairn.dev/run": "video-42", "cairn.dev/attempt": name.rsplit("-", 1)[-1]},
        "ownerReferences": [
            {
                "apiVersion": "cairn.dev/v1alpha1",
                "kind": "TaskRun",
                "name": "video-42",
                "uid": RUN_UID,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }
    if deleting is not None:
        metadata["deletionTimestamp"] = deleting.strftime("%Y-%m-%dT%H:%M:%SZ")
        metadata["deletionGracePeriodSeconds"] = 30
    resources: dict[str, Any] = {"requests": {"cpu": "100m"}}
    if memory_limit is not None:
        resources["limits"] = {"memory": memory_limit}
        resources["requests"]["memory"] = memory_limit
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [
            {
                "name": "task",
                "image": IMAGE,
                "resources": resources,
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "FallbackToLogsOnError",
            }
        ],
        "schedulerName": "default-scheduler",
        "serviceAccountName": "default",
    }
    if node is not None:
        spec["nodeName"] = node
    state: dict[str, Any] = {}
    if waiting is not None:
        state["waiting"] = waiting
    elif terminated is not None:
        state["terminated"] = {"containerID": "containerd://abc", "startedAt": stamp, **terminated}
    elif phase == "Running":
        state["running"] = {"startedAt": stamp}
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": conditions
        if conditions is not None
        else [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": stamp, "lastProbeTime": None},
            {"type": "Initialized", "status": "True", "lastTransitionTime": stamp, "lastProbeTime": None},
        ],
        "hostIP": "10.88.0.2",
        "podIP": "10.244.1.7",
        "qosClass": "Burstable",
        "startTime": stamp,
    }
    if reason is not None:
        status["reason"] = reason
    if message is not None:
        status["message"] = message
    if container_statuses:
        status["containerStatuses"] = [
            {
                "name": "task",
                "image": IMAGE,
                "imageID": "",
                "ready": phase == "Running",
                "restartCount": 0,
                "started": phase == "Running",
                "lastState": {},
                "state": state,
            }
        ]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec, "status": status}


def condition(type_: str, status: str = "True", reason: str | None = None, message: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"type": type_, "status": status, "lastTransitionTime": "2026-03-01T12:00:05Z"}
    if reason is not None:
        out["reason"] = reason
    if message:
        out["message"] = message
    return out


def terminated(
    exit_code: int, reason: str = "Error", *, message: str | None = None, finished: datetime | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {"exitCode": exit_code, "reason": reason}
    if finished is not None:
        out["finishedAt"] = finished.strftime("%Y-%m-%dT%H:%M:%SZ")
    if message is not None:
        out["message"] = message
    return out


def pod(attempt: int = 1, run_name: str = "video-42", **kw: Any) -> PodView:
    """The PodView of attempt `attempt`, parsed from realistic pod JSON."""
    return PodView.parse(pod_json(f"{run_name}-{attempt}", **kw), attempt)


def running_pod(attempt: int = 1, **kw: Any) -> PodView:
    return pod(attempt, phase="Running", **kw)


def succeeded_pod(attempt: int = 1, *, message: str | None = None, finished: datetime | None = None) -> PodView:
    return pod(attempt, phase="Succeeded", terminated=terminated(0, "Completed", message=message, finished=finished))


def failed_pod(
    attempt: int = 1,
    exit_code: int = 1,
    reason: str = "Error",
    *,
    message: str | None = None,
    finished: datetime | None = None,
    **kw: Any,
) -> PodView:
    return pod(
        attempt, phase="Failed", terminated=terminated(exit_code, reason, message=message, finished=finished), **kw
    )
