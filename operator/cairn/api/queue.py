"""Queue: admission with concurrency limits that are never exceeded."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cairn.api.common import CONDITIONS_LIST, Condition, Model, ObjectMeta, cel


class QueueSpec(Model):
    """How many runs of this queue may hold a pod at once, overall and per concurrency key."""

    model_config = cel(
        "!has(self.perKeyLimit) || self.perKeyLimit <= self.concurrencyLimit",
        "perKeyLimit must not exceed concurrencyLimit",
        field_paths={0: ".perKeyLimit"},
    )

    concurrency_limit: int = Field(
        10,
        ge=1,
        le=100000,
        description=(
            "At most this many runs hold a pod at any moment (running, or between attempts). Never "
            "exceeded: lowering it lets running runs finish and admits none until below it. Default 10."
        ),
    )
    per_key_limit: int | None = Field(
        None,
        ge=1,
        description=(
            "At most this many running runs per concurrencyKey. A key at its limit never blocks runs of "
            "other keys. Unset: no per-key limit."
        ),
    )
    paused: bool = Field(False, description="Stop admitting runs; those already running finish.")


class QueueStatus(Model):
    """The queue's current usage."""

    queued: int = Field(0, description="Runs waiting for a slot.")
    running: int = Field(0, description="Runs holding a slot.")
    waiting: int = Field(0, description="Runs in a durable wait (a sleep, a token, child runs): they hold no slot.")
    admitted_total: int = Field(0, description="Runs admitted since the queue was created.")
    oldest_queued_time: str | None = Field(None, description="When the longest-waiting run was queued.")
    observed_generation: int | None = Field(None, description="The generation this status reflects.")
    conditions: list[Condition] | None = Field(
        None, description="Active: admitting runs (False when paused).", json_schema_extra=CONDITIONS_LIST
    )


class Queue(Model):
    """A Queue as stored in Kubernetes."""

    api_version: Literal["cairn.dev/v1alpha1"] = "cairn.dev/v1alpha1"
    kind: Literal["Queue"] = "Queue"
    metadata: ObjectMeta
    spec: QueueSpec = Field(default_factory=QueueSpec)
    status: QueueStatus | None = None
