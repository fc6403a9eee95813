"""TaskRun: one execution of a Task."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from cairn.api.common import (
    CONDITIONS_LIST,
    PAYLOAD_MAX_BYTES,
    RESULT_STATUS_MAX_BYTES,
    Condition,
    Duration,
    DurationStr,
    Model,
    ObjectMeta,
    cel,
)
from cairn.api.podtemplate import Quantity
from cairn.api.task import TaskSpec


class Phase(StrEnum):
    QUEUED = "Queued"
    STARTING = "Starting"  # the attempt's pod exists but its container is not running yet
    RUNNING = "Running"
    RETRYING = "Retrying"
    WAITING = "Waiting"  # a durable wait (sleep, token, children): no pod, no slot
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"

    @property
    def finished(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED)


def _payload_fits(value: str | None) -> str | None:
    if value is not None and len(value.encode()) > PAYLOAD_MAX_BYTES:
        raise ValueError(f"the payload is {len(value.encode())} bytes, over the cap of {PAYLOAD_MAX_BYTES}")
    return value


class TaskRef(Model):
    """The Task to run, in the TaskRun's namespace."""

    name: str = Field(min_length=1, max_length=253, description="The Task's name.")


class TaskRevision(StrEnum):
    SOURCE = "Source"
    CURRENT = "Current"


class ForkFrom(Model):
    """Start from a step of an earlier run: the steps it recorded before that step are copied into this
    run (never executed again); that step and the rest run."""

    run: str = Field(
        min_length=1,
        max_length=253,
        description="The earlier TaskRun, in this namespace; it may be finished or deleted (its record is kept "
        "for the Task's checkpointRetention).",
    )
    step: str = Field(
        min_length=1,
        max_length=256,
        pattern=r"^[^#]+#[0-9]+$",
        description="The step to start from, by key (name#occurrence, e.g. transcode#0): it and every step after it "
        "run again. A key the source never recorded fails the fork with the list of those it did.",
    )
    task_revision: TaskRevision = Field(
        TaskRevision.SOURCE,
        description="Source (the default): the Task as the earlier run had it, so the fork behaves like it. "
        "Current: the Task as it is now.",
    )


class TaskRunSpec(Model):
    """One execution of a Task: which Task, with what payload, at what priority."""

    model_config = cel(
        "self.taskRef == oldSelf.taskRef",
        "taskRef is immutable: create a new TaskRun to run another task",
        "has(self.payload) == has(oldSelf.payload) && (!has(self.payload) || self.payload == oldSelf.payload)",
        "payload is immutable: create a new TaskRun (cairn rerun) to run with another payload",
        "has(self.queue) == has(oldSelf.queue) && (!has(self.queue) || self.queue == oldSelf.queue)",
        "queue is immutable once the TaskRun exists",
        "!has(oldSelf.cancel) || !oldSelf.cancel || (has(self.cancel) && self.cancel)",
        "a cancelled TaskRun cannot be un-cancelled: create a new one",
        "!(has(self.delay) && has(self.notBefore))",
        "set delay or notBefore, not both",
        "has(self.delay) == has(oldSelf.delay) && (!has(self.delay) || self.delay == oldSelf.delay)",
        "delay is immutable once the TaskRun exists",
        "has(self.notBefore) == has(oldSelf.notBefore) && "
        "(!has(self.notBefore) || self.notBefore == oldSelf.notBefore)",
        "notBefore is immutable once the TaskRun exists",
        "has(self.expireAfter) == has(oldSelf.expireAfter) && "
        "(!has(self.expireAfter) || self.expireAfter == oldSelf.expireAfter)",
        "expireAfter is immutable once the TaskRun exists",
        "has(self.from) == has(oldSelf.from) && (!has(self.from) || self.from == oldSelf.from)",
        "from is immutable: create a new TaskRun to start from another step",
        field_paths={
            0: ".taskRef",
            1: ".payload",
            2: ".queue",
            3: ".cancel",
            4: ".notBefore",
            5: ".delay",
            6: ".notBefore",
            7: ".expireAfter",
            8: ".from",
        },
    )

    task_ref: TaskRef = Field(description="The Task to run (immutable).")
    payload: Annotated[str | None, AfterValidator(_payload_fits)] = Field(
        None,
        max_length=PAYLOAD_MAX_BYTES,
        description=(
            f"Input of the run: JSON text, at most {PAYLOAD_MAX_BYTES} bytes (immutable). The task receives "
            "it parsed; text that is not JSON fails the run with reason InvalidPayload. "
            'Example: \'{"url": "https://example.com/a.mp4"}\'.'
        ),
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": f"size(bytes(self)) <= {PAYLOAD_MAX_BYTES}",
                    "message": f"is over the payload cap of {PAYLOAD_MAX_BYTES} bytes (UTF-8): pass large inputs by "
                    "reference, e.g. a URL",
                }
            ]
        },
    )
    priority: int = Field(
        0,
        ge=-1000,
        le=1000,
        description="Higher runs are admitted first; equal priorities go oldest first. -1000 to 1000.",
    )
    concurrency_key: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        description="Groups runs for the queue's perKeyLimit, e.g. a tenant or customer id.",
    )
    queue: str | None = Field(
        None,
        min_length=1,
        max_length=253,
        description="Run through this Queue instead of the Task's (immutable).",
    )
    cancel: bool | None = Field(
        None,
        description="Set to true to cancel: the pod is stopped and the run ends Cancelled. One way only.",
    )
    delay: DurationStr | None = Duration(
        "Not admitted until this long after the TaskRun was created (a run for later; immutable; not with "
        "notBefore). It waits in its queue meanwhile, holding nothing, with reason Delayed.",
        default=None,
    )
    not_before: datetime | None = Field(
        None,
        description="Not admitted before this time, RFC 3339 (e.g. 2026-12-24T18:00:00Z; immutable; not with "
        "delay). It waits in its queue meanwhile, holding nothing, with reason Delayed.",
    )
    expire_after: DurationStr | None = Duration(
        "A run that has not started this long after the TaskRun was created ends Failed with reason Expired "
        "(a time to live before start; it held nothing; immutable). Default: the Task's expireAfter; unset: "
        "never.",
        default=None,
    )

    from_: ForkFrom | None = Field(
        None,
        alias="from",
        description="A fork: start from a step of an earlier run (cairn rerun RUN --from-step KEY), copying the "
        "steps it recorded before that step. The payload is this spec's if set, else the earlier run's; taskRef "
        "must name the earlier run's Task. Immutable.",
    )

    @model_validator(mode="after")
    def _one_of_delay_and_not_before(self) -> TaskRunSpec:
        if self.delay is not None and self.not_before is not None:
            raise ValueError("set delay or notBefore, not both")
        return self


class Attempt(Model):
    """One attempt: one pod."""

    number: int = Field(description="1 for the first attempt.")
    pod: str = Field(description="The pod's name.")
    node: str | None = Field(None, description="The node it ran on.")
    start_time: str | None = Field(None, description="When the pod was created.")
    finish_time: str | None = Field(None, description="When it ended.")
    exit_code: int | None = Field(None, description="The task container's exit code.")
    reason: str | None = Field(
        None,
        description=(
            "Why it ended: Completed, Error, OOMKilled, DeadlineExceeded, Evicted, NodeLost, PodDeleted, "
            "ImagePullFailed, ConfigError, Cancelled, MaxDurationExceeded, Suspended (its pod stopped for a "
            "durable wait; not counted)."
        ),
    )
    message: str | None = Field(None, max_length=1024, description="The termination message or last log line.")
    counted: bool | None = Field(None, description="Whether it spent one of maxAttempts (disruptions do not).")
    memory_limit: Quantity | None = Field(None, description="The memory limit it ran with (raised after OOM kills).")


class Progress(Model):
    """Steps recorded so far (the full history is in PostgreSQL: cairn describe)."""

    steps_completed: int = Field(0, description="Number of completed steps.")
    last_step: str | None = Field(None, description="Key of the last completed step, e.g. transcode#0.")
    state: str | None = Field(None, max_length=256, description="The task's own progress note, if it saves one.")
    updated_time: str | None = Field(None, description="When the last step completed.")


STEPS_SHOWN = 50


class StepEntry(Model):
    """A completed step: which attempt ran it, and when."""

    key: str = Field(description="The step's key: its name and occurrence, e.g. fetch#2.")
    attempt: int = Field(description="The attempt that ran it.")
    start_time: str | None = Field(None, description="When its work began.")
    completion_time: str | None = Field(None, description="When it was recorded.")
    tries: int | None = Field(None, description="How many tries it took, when it was retried in its pod (step retry).")


TOKENS_SHOWN = 20


class TokenEntry(Model):
    """A wait token the run created (its URL, which holds its secret, is given only to the task)."""

    id: str = Field(description="The token's id: cairn tokens complete ID, or a TokenCompletion naming it.")
    step: str = Field(description="The step that created it, e.g. approval#0.")
    status: str = Field(description="waiting, completed or timedOut.")
    tags: list[str] | None = Field(None, description="The task's tags, for cairn tokens list --tag.")
    timeout_time: str | None = Field(None, description="When it times out, if it does.")
    completion_time: str | None = Field(None, description="When it was completed or timed out.")


class ForkedFrom(Model):
    """Where a fork came from."""

    run: str = Field(description="The earlier run.")
    uid: str = Field(description="Its uid (a run of that name made later is another run).")
    step: str = Field(description="The step this run started from.")
    steps_copied: int = Field(description="The steps recorded before it, copied into this run (not executed again).")


class TaskSnapshot(Model):
    """The Task as it was when the run started. Edits to the Task never change a run in flight."""

    name: str = Field(description="The Task's name.")
    uid: str | None = Field(None, description="The Task's uid.")
    generation: int | None = Field(None, description="The Task's generation that was copied.")
    spec: TaskSpec = Field(description="The copied spec.")


class TaskRunStatus(Model):
    """What happened to the run so far."""

    phase: Phase | None = Field(
        None,
        description="Queued, Starting (its pod exists, its container does not run yet), Running, Retrying "
        "(waiting out a backoff), Waiting (a durable wait: a sleep, a token, child runs; it holds no pod and "
        "no queue slot), Succeeded, Failed or Cancelled.",
    )
    reason: str | None = Field(None, description="Why it is in this phase, in one word (e.g. QueueFull, OOMKilled).")
    message: str | None = Field(None, max_length=1024, description="Why, for a person.")
    observed_generation: int | None = Field(None, description="The generation of the spec this reflects.")
    conditions: list[Condition] | None = Field(
        None,
        description="Admitted (has a queue slot, or why not) and Succeeded (the outcome, once known).",
        json_schema_extra=CONDITIONS_LIST,
    )
    queue: str | None = Field(None, description="The Queue the run goes through.")
    task: TaskSnapshot | None = Field(None, description="The Task this run started with.")
    attempt: int | None = Field(None, description="The current (or last) attempt number.")
    attempts: list[Attempt] | None = Field(None, description="Every attempt so far, oldest first.")
    start_time: str | None = Field(None, description="When the first attempt started.")
    completion_time: str | None = Field(None, description="When the run ended.")
    next_attempt_time: str | None = Field(None, description="When the next attempt starts (phase Retrying).")
    progress: Progress | None = Field(None, description="Steps completed so far.")
    steps: list[StepEntry] | None = Field(
        None,
        max_length=STEPS_SHOWN,
        description=(
            f"The last {STEPS_SHOWN} completed steps, oldest first, with the attempt that ran each (all of them: "
            "cairn describe)."
        ),
    )
    result: str | None = Field(
        None,
        max_length=RESULT_STATUS_MAX_BYTES,
        description=(
            f"The task's result as JSON, when it fits in {RESULT_STATUS_MAX_BYTES} bytes; the full result "
            "is always in PostgreSQL (cairn get RUN -o json)."
        ),
    )
    result_truncated: bool | None = Field(None, description="True when the result was too large for status.")
    forked_from: ForkedFrom | None = Field(None, description="A fork's source run and step (spec.from).")
    tokens: list[TokenEntry] | None = Field(
        None, max_length=TOKENS_SHOWN, description=f"The wait tokens it created (the last {TOKENS_SHOWN})."
    )


class TaskRun(Model):
    """A TaskRun as stored in Kubernetes."""

    api_version: Literal["cairn.dev/v1alpha1"] = "cairn.dev/v1alpha1"
    kind: Literal["TaskRun"] = "TaskRun"
    metadata: ObjectMeta
    spec: TaskRunSpec
    status: TaskRunStatus | None = None
