"""The CRDs, generated from the pydantic models (the single source of truth).

`make crds` (python -m cairn.api.crd crds/) writes them; a test fails when crds/ is out of date.
The JSON schema pydantic produces is made structural, as Kubernetes requires: references inlined,
optional fields un-wrapped, free-form objects marked x-kubernetes-preserve-unknown-fields, quantities
x-kubernetes-int-or-string.
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from cairn.api.common import GROUP, VERSION
from cairn.api.queue import QueueSpec, QueueStatus
from cairn.api.schedule import ScheduleSpec, ScheduleStatus
from cairn.api.task import TaskSpec
from cairn.api.taskrun import TaskRunSpec, TaskRunStatus
from cairn.api.tokencompletion import TokenCompletionSpec, TokenCompletionStatus

JSON = dict[str, Any]


@dataclass(frozen=True)
class KindInfo:
    kind: str
    plural: str
    short_names: list[str]
    description: str
    spec: type[BaseModel]
    status: type[BaseModel] | None  # None: nothing writes a status (no status subresource)
    columns: list[JSON] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.plural}.{GROUP}"


def _col(name: str, path: str, type_: str = "string", description: str = "", priority: int = 0) -> JSON:
    col: JSON = {"name": name, "type": type_, "jsonPath": path, "description": description}
    if priority:
        col["priority"] = priority
    return col


AGE = _col("Age", ".metadata.creationTimestamp", "date", "Time since the object was created.")

KINDS = [
    KindInfo(
        kind="Task",
        plural="tasks",
        short_names=["ctask"],
        description=(
            "A Task is the definition of a durable task: the pod that runs it, the Queue that admits its "
            "runs, and how failed attempts are retried. Each TaskRun executes it; a run that loses its pod "
            "resumes in a new pod from its last completed step."
        ),
        spec=TaskSpec,
        status=None,
        columns=[
            _col("Queue", ".spec.queue", description="The Queue that admits its runs."),
            _col("Image", ".spec.template.spec.containers[0].image", description="The task's image."),
            _col("Max-Attempts", ".spec.retry.maxAttempts", "integer", "Attempts per run, the first included."),
            AGE,
        ],
    ),
    KindInfo(
        kind="TaskRun",
        plural="taskruns",
        short_names=["crun"],
        description=(
            "A TaskRun is one execution of a Task with a payload. It waits in its Queue until admitted, runs "
            "as one pod per attempt, and resumes from its last completed step after a failure. Created with "
            "kubectl, the cairn CLI or the HTTP trigger API."
        ),
        spec=TaskRunSpec,
        status=TaskRunStatus,
        columns=[
            _col("Task", ".spec.taskRef.name", description="The Task it runs."),
            _col(
                "Phase",
                ".status.phase",
                description="Queued, Starting, Running, Retrying, Waiting, Succeeded, Failed, Cancelled.",
            ),
            # Why a run waits (TaskNotFound, QueueFull, QueueMissing, ...) belongs in the default view.
            _col("Reason", ".status.reason", description="Why it is in its phase."),
            _col("Attempt", ".status.attempt", "integer", "The current attempt."),
            _col("Step", ".status.progress.lastStep", description="The last completed step."),
            _col("Queue", ".status.queue", description="The Queue it goes through."),
            AGE,
            _col("Steps", ".status.progress.stepsCompleted", "integer", "Completed steps.", priority=1),
            _col("Priority", ".spec.priority", "integer", "Admission priority.", priority=1),
            _col("Key", ".spec.concurrencyKey", description="Concurrency key.", priority=1),
        ],
    ),
    KindInfo(
        kind="Queue",
        plural="queues",
        short_names=["cqueue"],
        description=(
            "A Queue admits TaskRuns: at most concurrencyLimit hold a pod at once (and at most perKeyLimit "
            "per concurrency key), higher priority first, then oldest first. The limit is never exceeded. "
            "It may pace admissions too (rateLimit, perKeyRateLimit) and bound how many wait (maxQueued)."
        ),
        spec=QueueSpec,
        status=QueueStatus,
        columns=[
            _col("Limit", ".spec.concurrencyLimit", "integer", "Most runs holding a pod at once."),
            _col("Per-Key", ".spec.perKeyLimit", "integer", "Most running runs per concurrency key."),
            _col("Running", ".status.running", "integer", "Runs holding a slot."),
            _col("Queued", ".status.queued", "integer", "Runs waiting."),
            _col("Rate", ".status.rate.summary", description="Admissions in the last period / the rate limit."),
            _col("Waiting", ".status.waiting", "integer", "Runs in a durable wait (no slot held).", priority=1),
            _col("Paused", ".spec.paused", "boolean", "Not admitting."),
            _col("Oldest-Queued", ".status.oldestQueuedTime", "date", "Age of the longest-waiting run."),
            AGE,
        ],
    ),
    KindInfo(
        kind="Schedule",
        plural="schedules",
        short_names=["cschedule"],
        description=(
            "A Schedule starts TaskRuns of a Task at cron times in a time zone: exactly one per fire time (its "
            "name comes from the fire time), with an overlap policy for runs still going and a catch-up window "
            "for fire times missed while the operator was down or the schedule suspended."
        ),
        spec=ScheduleSpec,
        status=ScheduleStatus,
        columns=[
            _col("Schedule", ".spec.cron[0]", description="Its (first) cron expression."),
            _col("Time-Zone", ".spec.timeZone", description="The time zone its cron times are read in."),
            _col("Suspended", ".spec.suspend", "boolean", "Firing no runs."),
            _col("Last", ".status.lastFireTime", "date", "The latest fire time handled."),
            _col("Next", ".status.nextFireTime", "string", "The next fire time."),
            _col("Active", ".status.active[*]", description="Its runs not finished yet."),
            _col("Task", ".spec.taskRef.name", description="The Task it runs.", priority=1),
            _col("Policy", ".spec.overlapPolicy", description="What it does when runs overlap.", priority=1),
            AGE,
        ],
    ),
    KindInfo(
        kind="TokenCompletion",
        plural="tokencompletions",
        short_names=["ctoken"],
        description=(
            "A TokenCompletion completes a run's wait token (an approval, an external event) with data: "
            "the run waiting for it resumes. Who may create one in a namespace is who may complete that "
            "namespace's tokens (RBAC); the first completion of a token wins, a later one says so in status."
        ),
        spec=TokenCompletionSpec,
        status=TokenCompletionStatus,
        columns=[
            _col("Token", ".spec.token", description="The token it completes."),
            _col("Outcome", ".status.outcome", description="Completed, AlreadyCompleted, TimedOut, NotFound."),
            AGE,
        ],
    ),
]


def structural(model: type[BaseModel], *, defaults: bool = True) -> JSON:
    """The model's JSON schema, made structural (see the module docstring). Without `defaults`, no
    default values are declared (status is written by the operator, not defaulted by the server)."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    return _convert(raw, defs, defaults)


_DROP = {"title", "additionalProperties", "$defs"}


def _convert(node: JSON, defs: JSON, defaults: bool) -> JSON:
    node = copy.deepcopy(node)
    if not defaults:
        node.pop("default", None)
    if "$ref" in node:
        target = defs[node.pop("$ref").rsplit("/", 1)[1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "description"}}
        if "description" in node:
            merged["description"] = node["description"]
        node = merged
    if "anyOf" in node:
        options = [o for o in node.pop("anyOf") if o.get("type") != "null"]
        types = sorted(o.get("type", "") for o in options)
        if types == ["integer", "string"]:
            node["x-kubernetes-int-or-string"] = True
            node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        elif len(options) == 1:
            # The field's own keys (description, default, rules) win over its type's.
            return _convert(
                {**options[0], **{k: v for k, v in node.items() if k != "default" or v is not None}},
                defs,
                defaults,
            )
        else:
            raise ValueError(f"cannot express anyOf {options} structurally")
    if (
        "default" in node
        and node["default"] not in (None, {})
        and "description" in node
        and "Default" not in node["description"]
    ):
        shown = str(node["default"]).lower() if isinstance(node["default"], bool) else node["default"]
        node["description"] = f"{node['description'].rstrip()} Default: {shown}."
    out: JSON = {}
    additional = node.get("additionalProperties")
    for key, value in node.items():
        if key in _DROP or (key == "default" and value is None):
            continue
        if key == "properties":
            out[key] = {name: _convert(prop, defs, defaults) for name, prop in value.items()}
        elif key == "items":
            out[key] = _convert(value, defs, defaults)
        elif key == "anyOf":
            out[key] = value
        else:
            out[key] = value
    if out.get("type") == "object" and "properties" not in out:
        if additional is True or additional is None:
            out["x-kubernetes-preserve-unknown-fields"] = True
        elif isinstance(additional, dict):
            out["additionalProperties"] = _convert(additional, defs, defaults)
    return out


def crd(info: KindInfo) -> JSON:
    spec = structural(info.spec)
    spec["description"] = (info.spec.__doc__ or "").strip()
    spec_optional = all(not f.is_required() for f in info.spec.model_fields.values())
    if spec_optional:
        spec["default"] = {}
    properties: JSON = {
        "apiVersion": {"type": "string", "description": "cairn.dev/v1alpha1"},
        "kind": {"type": "string", "description": info.kind},
        "metadata": {"type": "object"},
        "spec": spec,
    }
    if info.status is not None:
        properties["status"] = structural(info.status, defaults=False)
        properties["status"]["description"] = (info.status.__doc__ or "").strip()
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": info.name,
            "labels": {"app.kubernetes.io/name": "cairn", "app.kubernetes.io/part-of": "cairn"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": info.kind,
                "listKind": f"{info.kind}List",
                "plural": info.plural,
                "singular": info.kind.lower(),
                "shortNames": info.short_names,
                "categories": ["cairn"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}} if info.status is not None else {},
                    "additionalPrinterColumns": info.columns,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": info.description,
                            **({} if spec_optional else {"required": ["spec"]}),
                            "properties": properties,
                        }
                    },
                }
            ],
        },
    }


def all_crds() -> list[JSON]:
    return [crd(info) for info in KINDS]


def render_yaml(doc: JSON) -> str:
    import yaml  # only the generator needs it; the api layer itself stays dependency-light

    header = "# GENERATED from operator/cairn/api by `make crds`: do not edit by hand.\n"
    return header + yaml.safe_dump(doc, sort_keys=False, width=120, allow_unicode=True)


def crd_files() -> dict[str, str]:
    """File name -> content, for crds/ and the Helm chart."""
    return {f"{GROUP}_{info.plural}.yaml": render_yaml(crd(info)) for info in KINDS}


def main(argv: list[str]) -> int:
    out = Path(argv[1] if len(argv) > 1 else "crds")
    out.mkdir(parents=True, exist_ok=True)
    for name, text in crd_files().items():
        (out / name).write_text(text)
        print(f"wrote {out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
