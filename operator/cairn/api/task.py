"""Task: the definition of a durable task, usually kept in Git."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cairn.api.common import (
    DURATION_PATTERN,
    Duration,
    DurationStr,
    GoDuration,
    Model,
    ObjectMeta,
    cel,
)
from cairn.api.podtemplate import PodTemplate, Quantity

_D = DURATION_PATTERN


def _both_durations(a: str, b: str) -> str:
    """CEL guard: compare two durations only once both are valid (their own rules report otherwise)."""
    return (
        f"!has(self.{a}) || !has(self.{b}) || !self.{a}.matches('{_D}') || !self.{b}.matches('{_D}') || "
        f"duration(self.{b}) >= duration(self.{a})"
    )


# The Queue a Task names when it names none.
DEFAULT_QUEUE = "default"


class Backoff(Model):
    """How long to wait between attempts: initialDelay, then times factor each time, at most maxDelay,
    each delay randomised by ±jitter."""

    model_config = cel(
        _both_durations("initialDelay", "maxDelay"),
        "maxDelay must be at least initialDelay",
        field_paths={0: ".maxDelay"},
    )

    initial_delay: DurationStr = Duration("Delay before the second attempt.", default=GoDuration("10s"))
    factor: float = Field(2.0, ge=1, le=10, description="Each delay is the previous one times this (1 to 10).")
    max_delay: DurationStr = Duration("The longest delay between two attempts.", default=GoDuration("5m"))
    jitter: float = Field(
        0.1, ge=0, le=1, description="Randomise each delay by up to this fraction either way (0.1 = ±10%)."
    )


class ExitCodeRule(Model):
    """Matches an attempt by its container's exit code (as in a Job's podFailurePolicy)."""

    operator: Literal["In", "NotIn"] = Field(description="In: the code is one of values. NotIn: it is none of them.")
    values: list[int] = Field(min_length=1, max_length=255, description="Exit codes (1-255).")


class PodConditionRule(Model):
    """Matches an attempt by a condition of its pod (e.g. DisruptionTarget)."""

    type: str = Field(description="Pod condition type, e.g. DisruptionTarget.")
    status: Literal["True", "False", "Unknown"] = Field("True", description="The condition's status.")


class PodFailureRule(Model):
    """What to do with a failed attempt that matches: the first matching rule decides."""

    model_config = cel(
        "has(self.onExitCodes) != has(self.onPodConditions)",
        "set exactly one of onExitCodes or onPodConditions",
    )

    action: Literal["FailRun", "Ignore", "Count"] = Field(
        description=(
            "FailRun: fail the run now, whatever attempts are left. Ignore: retry without spending an "
            "attempt. Count: retry if attempts are left (the default for unmatched failures)."
        )
    )
    on_exit_codes: ExitCodeRule | None = Field(None, description="Match on the container's exit code.")
    on_pod_conditions: list[PodConditionRule] | None = Field(None, description="Match on pod conditions.")


class PodFailurePolicy(Model):
    """Rules on how failed attempts count, as in a batch/v1 Job."""

    rules: list[PodFailureRule] = Field(max_length=20, description="Evaluated in order; the first match decides.")


class OutOfMemory(Model):
    """Retry an OOM-killed attempt with more memory."""

    memory_factor: float = Field(
        2.0,
        ge=1,
        le=16,
        description="The next attempt's memory limit (and request) is this times the last one.",
    )
    max_memory: Quantity = Field(description="Never raise the memory limit above this, e.g. 4Gi.")


class RetryPolicy(Model):
    """When and how a failed attempt is retried. A new attempt is a new pod that resumes from the last
    completed step."""

    max_attempts: int = Field(3, ge=1, le=1000, description="Attempts in all, the first included (at least 1).")
    backoff: Backoff = Field(
        default_factory=Backoff, description="Delays between attempts.", json_schema_extra={"default": {}}
    )
    pod_failure_policy: PodFailurePolicy | None = Field(
        None,
        description="Exit codes and pod conditions that fail the run at once or do not spend an attempt.",
    )
    out_of_memory: OutOfMemory | None = Field(
        None,
        description="Raise the memory limit after an OOM kill. Unset: an OOM kill is an ordinary failure.",
    )
    max_disruptions: int = Field(
        10,
        ge=0,
        le=1000,
        description=(
            "Attempts ended by a disruption (eviction, preemption, node lost, pod deleted) are retried "
            "without spending an attempt, up to this many times."
        ),
    )


class OnFailure(Model):
    """A dead-letter hook: a run of another Task, started once when a run of this Task fails for good."""

    task: str = Field(
        min_length=1,
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description=(
            "The Task to run (in the same namespace). Its payload is JSON naming the failed run: "
            "run, namespace, uid, task, reason, message and lastStep."
        ),
    )
    queue: str | None = Field(None, min_length=1, max_length=253, description="Its Queue; unset: the Task's.")


class KueueSpec(Model):
    """Run this task's pods inside a Kueue LocalQueue's quota (the cluster's shared quotas)."""

    local_queue: str = Field(
        min_length=1,
        max_length=63,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        description=(
            "The Kueue LocalQueue (in the run's namespace) that admits each attempt's pod against its "
            "ClusterQueue's quota: the pod carries the label kueue.x-k8s.io/queue-name and stays gated (the run "
            "Starting, reason KueueQuota, naming its Workload) until Kueue admits it. Cairn's own queue limits "
            "and rates still apply first."
        ),
    )
    priority_class: str | None = Field(
        None,
        min_length=1,
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description=(
            "A Kueue WorkloadPriorityClass for the pods' Workloads (the label kueue.x-k8s.io/priority-class): "
            "what Kueue's preemption compares. Unset: the pod's priorityClassName, if any."
        ),
    )


class TaskSpec(Model):
    """A durable task: the pod that runs it, the queue its runs go through, and its retry policy."""

    model_config = cel(
        _both_durations("attemptTimeout", "maxDuration"),
        "maxDuration must be at least attemptTimeout",
        field_paths={0: ".maxDuration"},
    )

    template: PodTemplate = Field(description="The pod that runs each attempt (as in a batch/v1 Job).")
    queue: str = Field(
        DEFAULT_QUEUE,
        min_length=1,
        max_length=253,
        description="The Queue (in the same namespace) that admits this task's runs. Defaults to default.",
    )
    retry: RetryPolicy = Field(
        default_factory=RetryPolicy,
        description="How failed attempts are retried.",
        json_schema_extra={"default": {}},
    )
    attempt_timeout: DurationStr | None = Duration(
        "Longest one attempt (one pod) may run; it then ends as DeadlineExceeded and the retry policy decides.",
        default=None,
    )
    max_duration: DurationStr | None = Duration(
        "Longest the whole run may take from its first attempt, retries and waits included; then it fails.",
        default=None,
    )
    start_timeout: DurationStr = Duration(
        "Longest an attempt's pod may take to start: waiting for its image or configuration (pull errors, "
        "a missing Secret) or for a node to schedule it on (the run is Starting meanwhile, with the reason); "
        "then the run fails.",
        default=GoDuration("5m"),
    )
    ttl_seconds_after_finished: int | None = Field(
        None,
        ge=0,
        description="Delete a finished TaskRun (and its pods) this long after it ends. Unset: keep.",
    )
    checkpoint_retention: DurationStr = Duration(
        "How long a finished run's steps, state and result stay in PostgreSQL.", default=GoDuration("168h")
    )
    on_failure: OnFailure | None = Field(
        None,
        description=(
            "When a run fails for good (its attempts spent, maxDuration passed, a FailRun rule), start one run "
            "of this Task (named <run>-onfailure, labelled cairn.dev/parent): a dead-letter queue or a "
            "manual-intervention hook. Not for runs cancelled by hand."
        ),
    )
    expire_after: DurationStr | None = Duration(
        "A run of this Task that has not started this long after it was created ends Failed with reason "
        "Expired (a run's own spec.expireAfter wins). Unset: runs never expire.",
        default=None,
    )
    kueue: KueueSpec | None = Field(
        None,
        description=(
            "Admit each attempt's pod through Kueue as well (docs/kueue.md). A pod Kueue preempts goes on in a new "
            "pod from the last recorded step, counted as a disruption (retry.maxDisruptions), not a failed attempt."
        ),
    )
    suspend_after: DurationStr = Duration(
        "A durable sleep longer than this ends the attempt's pod and gives its queue slot back; the run "
        "resumes in a new pod when the sleep is over (a shorter one sleeps in the pod). Waits for tokens "
        "and child runs always end the pod.",
        default=GoDuration("5s"),
    )


class Task(Model):
    """A Task as stored in Kubernetes."""

    api_version: Literal["cairn.dev/v1alpha1"] = "cairn.dev/v1alpha1"
    kind: Literal["Task"] = "Task"
    metadata: ObjectMeta
    spec: TaskSpec
