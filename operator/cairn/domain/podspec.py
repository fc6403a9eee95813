"""Rendering the pod of an attempt from the run's Task snapshot (pure: returns a dict)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cairn.api.common import API_VERSION
from cairn.api.task import TaskSpec
from cairn.domain import naming, quantity

TOKEN_DIR = "/var/run/secrets/cairn.dev"  # noqa: S105 - a path, not a secret
TOKEN_FILE = f"{TOKEN_DIR}/token"
TOKEN_VOLUME = "cairn-token"  # noqa: S105 - a volume name


@dataclass(frozen=True)
class RunRef:
    namespace: str
    name: str
    uid: str
    task: str
    schedule: str | None = None  # the Schedule that started the run, and for which fire time
    fire_time: str | None = None


@dataclass(frozen=True)
class Runtime:
    """Operator-wide settings that go into every pod."""

    api_url: str
    token_audience: str = "cairn.dev"  # noqa: S105 - an audience name
    token_seconds: int = 3600


def _memory(resources: dict[str, Any], limit: int | None) -> dict[str, Any]:
    """Resources with the memory limit set to `limit` bytes (after an OOM kill) and the request raised
    in proportion, so the bigger attempt is scheduled where the memory is."""
    if limit is None:
        return resources
    out = {k: dict(v) for k, v in resources.items()}
    limits = out.setdefault("limits", {})
    old_limit = quantity.to_bytes(limits["memory"]) if "memory" in limits else None
    limits["memory"] = quantity.from_bytes(limit)
    requests = out.get("requests", {})
    if "memory" in requests and old_limit:
        raised = quantity.to_bytes(requests["memory"]) * limit // old_limit
        requests["memory"] = quantity.from_bytes(min(limit, raised))
    return out


def memory_limit(spec: TaskSpec) -> int | None:
    """The memory limit (bytes) the Task's container declares, if any."""
    resources = spec.template.spec.containers[0].resources
    value = (resources.limits or {}).get("memory") if resources else None
    return quantity.to_bytes(value) if value is not None else None


def _kueue_labels(spec: TaskSpec) -> dict[str, str]:
    if spec.kueue is None:
        return {}
    labels = {naming.KUEUE_QUEUE_LABEL: spec.kueue.local_queue}
    if spec.kueue.priority_class:
        labels[naming.KUEUE_PRIORITY_LABEL] = spec.kueue.priority_class
    return labels


def render_pod(
    run: RunRef, spec: TaskSpec, attempt: int, runtime: Runtime, *, memory_limit_bytes: int | None = None
) -> dict[str, Any]:
    """The pod of attempt `attempt`: the team's template, plus what Cairn guarantees (restart policy,
    restricted security context, runtime environment, the run-scoped token, the deadline)."""
    template = spec.template.wire()
    pod_spec: dict[str, Any] = dict(template["spec"])
    container: dict[str, Any] = dict(pod_spec.pop("containers")[0])
    user_security = pod_spec.pop("securityContext", {})
    user_container_security = container.pop("securityContext", {})

    env = [
        {"name": "CAIRN_API_URL", "value": runtime.api_url},
        {"name": "CAIRN_NAMESPACE", "value": run.namespace},
        {"name": "CAIRN_RUN", "value": run.name},
        {"name": "CAIRN_RUN_UID", "value": run.uid},
        {"name": "CAIRN_TASK", "value": run.task},
        {"name": "CAIRN_ATTEMPT", "value": str(attempt)},
        {"name": "CAIRN_TOKEN_FILE", "value": TOKEN_FILE},
    ]
    if run.schedule and run.fire_time:
        env += [{"name": "CAIRN_SCHEDULE", "value": run.schedule}, {"name": "CAIRN_FIRE_TIME", "value": run.fire_time}]
    # Cairn's variables come last, so that they win over any the template sets (Kubernetes keeps the
    # last of duplicate names); the schema already refuses CAIRN_ names.
    user_env = [e for e in container.get("env", []) if not e["name"].startswith("CAIRN_")]
    container["env"] = user_env + env
    container["volumeMounts"] = [
        *container.get("volumeMounts", []),
        {"name": TOKEN_VOLUME, "mountPath": TOKEN_DIR, "readOnly": True},
    ]
    container["securityContext"] = {
        **user_container_security,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    # Without a termination message, the kubelet reports the last lines of the log: the attempt's story.
    container["terminationMessagePolicy"] = "FallbackToLogsOnError"
    if "resources" in container:
        container["resources"] = _memory(container["resources"], memory_limit_bytes)
    elif memory_limit_bytes is not None:
        container["resources"] = _memory({}, memory_limit_bytes)

    pod_spec["volumes"] = [
        *pod_spec.get("volumes", []),
        {
            "name": TOKEN_VOLUME,
            "projected": {
                "sources": [
                    {
                        "serviceAccountToken": {
                            "audience": runtime.token_audience,
                            "expirationSeconds": runtime.token_seconds,
                            "path": "token",
                        }
                    }
                ]
            },
        },
    ]
    pod_spec.update(
        {
            "containers": [container],
            "restartPolicy": "Never",
            "enableServiceLinks": False,
            "automountServiceAccountToken": bool(pod_spec.get("automountServiceAccountToken", False)),
            "securityContext": {
                **user_security,
                "runAsNonRoot": True,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
        }
    )
    if spec.attempt_timeout:
        pod_spec["activeDeadlineSeconds"] = max(1, int(spec.attempt_timeout.delta.total_seconds()))

    meta = template.get("metadata", {})
    labels = {
        **meta.get("labels", {}),
        **_kueue_labels(spec),
        **naming.run_labels(run.name, run.uid, run.task),
        naming.LABEL_ATTEMPT: str(attempt),
    }
    annotations = {**meta.get("annotations", {}), naming.ANNOTATION_RUN: run.name}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": naming.pod_name(run.name, attempt),
            "namespace": run.namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": "TaskRun",
                    "name": run.name,
                    "uid": run.uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": pod_spec,
    }
