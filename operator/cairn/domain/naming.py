"""Names and labels of what Cairn creates: deterministic, so creating twice is harmless."""

from __future__ import annotations

import hashlib

from cairn.api.common import GROUP

LABEL_RUN_UID = f"{GROUP}/run-uid"
LABEL_RUN = f"{GROUP}/run"
LABEL_TASK = f"{GROUP}/task"
LABEL_ATTEMPT = f"{GROUP}/attempt"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "cairn"
ANNOTATION_RUN = f"{GROUP}/run"

_MAX_NAME = 63  # pod names double as hostnames: keep them a DNS label


def _short(value: str, room: int) -> str:
    if len(value) <= room:
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:8]
    return f"{value[: room - 9].rstrip('-.')}-{digest}"


def pod_name(run_name: str, attempt: int) -> str:
    """The pod of attempt `attempt` (1-based) of a run: `<run>-<attempt>`, shortened with a hash if long."""
    suffix = f"-{attempt}"
    return _short(run_name, _MAX_NAME - len(suffix)) + suffix


def label_value(value: str) -> str:
    """A label value (at most 63 characters) standing for `value`."""
    return _short(value, 63)


def run_labels(run_name: str, run_uid: str, task: str) -> dict[str, str]:
    return {
        LABEL_RUN_UID: run_uid,
        LABEL_RUN: label_value(run_name),
        LABEL_TASK: label_value(task),
        LABEL_MANAGED_BY: MANAGED_BY,
    }


LABEL_SCHEDULE = f"{GROUP}/schedule"
ANNOTATION_FIRE_TIME = f"{GROUP}/fire-time"
_MAX_OBJECT_NAME = 253


def scheduled_run_name(schedule: str, fire_time_utc: str) -> str:
    """The one TaskRun of a schedule's fire time: `<schedule>-<YYYYMMDDhhmmss>` (UTC), so that a second
    operator, a restart or a replayed event finds it exists instead of making another."""
    suffix = f"-{fire_time_utc}"
    return _short(schedule, _MAX_OBJECT_NAME - len(suffix)) + suffix


# Child runs: labelled with their parent's name (`kubectl get taskruns -l cairn.dev/parent=NAME`),
# annotated with what the store needs to wake the parent when the last of them ends.
LABEL_PARENT = f"{GROUP}/parent"
ANNOTATION_PARENT_UID = f"{GROUP}/parent-uid"
ANNOTATION_PARENT_STEP = f"{GROUP}/parent-step"
ANNOTATION_PARENT_INDEX = f"{GROUP}/parent-index"
ANNOTATION_PARENT_CLOSE = f"{GROUP}/parent-close-policy"  # Cancel (the default) or Abandon


def child_name(parent: str, step_key: str, index: int) -> str:
    """The one TaskRun of child `index` of a parent's step: `<parent>-<step>-<n>[-<index>]`, so that a
    retried parent finds the child it started instead of making another. A DNS label, like pods."""
    step = "".join(ch if ch.isalnum() else "-" for ch in step_key.lower()).strip("-") or "child"
    suffix = f"-{_short(step, 24)}-{index}"
    digest = hashlib.sha256(f"{parent}\0{step_key}".encode()).hexdigest()[:6]
    # Room for the attempt suffix of its pods (`-NN`).
    return _short(parent, _MAX_NAME - 4 - len(suffix) - 7) + f"-{digest}" + suffix


ANNOTATION_FAILED_RUN = f"{GROUP}/failed-run"  # on a Task's onFailure run: the run whose failure started it


def dead_letter_name(run: str) -> str:
    """The one onFailure run of a failed run."""
    suffix = "-onfailure"
    return _short(run, _MAX_NAME - 4 - len(suffix)) + suffix


# Kueue (docs/kueue.md): the labels that put a pod in a LocalQueue and give its Workload a priority,
# and the scheduling gate Kueue's webhook adds and lifts when it admits the pod.
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
KUEUE_PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"
KUEUE_GATE = "kueue.x-k8s.io/admission"
# On the running pod of a Task in Kueue: when its run's last step was recorded (what a preemption would
# lose is the work since), for a preemption policy or a person choosing the pod that loses least.
ANNOTATION_LAST_STEP_AT = f"{GROUP}/last-step-at"


def kueue_workload_name(pod_name: str, pod_uid: str) -> str:
    """The name Kueue gives a plain pod's Workload (its jobframework's name for an owner: the kind and
    name, then five hex digits of a SHA-1 over kind, group, name and uid; ShortWorkloadNames off, as
    by default in v0.17). tests/e2e/test_kueue.py checks it against the Workload Kueue made."""
    digest = hashlib.sha1(f"Pod\n\n{pod_name}\n{pod_uid}".encode(), usedforsecurity=False).hexdigest()
    return f"pod-{pod_name}"[:247] + f"-{digest[:5]}"
