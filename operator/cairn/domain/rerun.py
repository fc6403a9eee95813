"""A rerun, or a fork from a step, of an earlier run: the new TaskRun's body. The same for the CLI
(`cairn rerun`) and the dashboard, so that both make the same run."""

from __future__ import annotations

from typing import Any

from cairn.api.common import API_VERSION, GROUP
from cairn.api.taskrun import ForkFrom, TaskRunSpec

ANNOTATION_RERUN_OF = f"{GROUP}/rerun-of"


def run_body(
    name: str | None, task: str, spec: TaskRunSpec, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name} if name else {"generateName": f"{task[:57]}-"}
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": API_VERSION, "kind": "TaskRun", "metadata": metadata, "spec": spec.wire()}


def rerun_body(
    source: str, spec: TaskRunSpec, *, payload: str | None = None, fork: ForkFrom | None = None, name: str | None = None
) -> dict[str, Any]:
    """A new run of `source` (whose spec is `spec`): its task, payload (unless another is given),
    priority, concurrency key and queue (and its own fork source, if a fork), not cancelled; from
    `fork`'s step if given."""
    updates: dict[str, Any] = {"cancel": None}
    if fork is not None:
        updates["from_"] = fork
    if payload is not None:
        updates["payload"] = payload
    new = spec.model_copy(update=updates)
    return run_body(name, spec.task_ref.name, new, {ANNOTATION_RERUN_OF: source})
