"""Queue: admission with concurrency limits that are never exceeded."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field, model_validator

from cairn.api.common import CONDITIONS_LIST, DURATION_PATTERN, Condition, Duration, DurationStr, Model, ObjectMeta, cel


class RateLimit(Model):
    """At most `limit` admissions in any window of `period`; runs past it wait in the queue (never dropped)."""

    model_config = cel(
        "!has(self.burst) || self.burst <= self.limit",
        "burst must not exceed limit",
        f"!self.period.matches('{DURATION_PATTERN}') || "
        "(duration(self.period) >= duration('1s') && duration(self.period) <= duration('24h'))",
        "period must be from 1s to 24h",
        field_paths={0: ".burst", 1: ".period"},
    )

    limit: int = Field(ge=1, le=100000, description="Admissions allowed in any window of period.")
    period: DurationStr = Duration("The window, from 1s to 24h, e.g. 10s or 1m.")
    burst: int | None = Field(
        None,
        ge=1,
        le=100000,
        description=(
            "At most this many admissions close together (within burst x period / limit): 1 spreads them "
            "evenly (10 per 10s: one a second). Default: limit (all of a window's admissions may go at once)."
        ),
    )

    @model_validator(mode="after")
    def _within_bounds(self) -> RateLimit:
        if not MIN_PERIOD <= self.period.delta <= MAX_PERIOD:
            raise ValueError("period must be from 1s to 24h")
        if self.burst is not None and self.burst > self.limit:
            raise ValueError("burst must not exceed limit")
        return self


MIN_PERIOD, MAX_PERIOD = timedelta(seconds=1), timedelta(hours=24)


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
    rate_limit: RateLimit | None = Field(
        None,
        description=(
            "A pace as well as a limit: at most rateLimit.limit admissions in any window of rateLimit.period "
            "(a sliding window over the admissions made, by PostgreSQL's clock, so it holds across operators "
            "and restarts). Runs past it wait with reason RateLimited and the time of their chance. A change "
            "applies at once. Unset: no pace."
        ),
    )
    per_key_rate_limit: RateLimit | None = Field(
        None,
        description=(
            "The same pace per concurrencyKey: a key at its rate waits (reason KeyRateLimited) and never "
            "blocks runs of other keys. Runs without a key are not paced by it."
        ),
    )
    max_queued: int | None = Field(
        None,
        ge=0,
        le=10000000,
        description=(
            "Backpressure: at most this many runs wait in the queue. Past it the trigger API answers 429 "
            "with the queue's depth, and a TaskRun created anyway ends at once, Failed with reason "
            "Rejected; nothing already queued is touched. Unset: unbounded."
        ),
    )


class RateStatus(Model):
    """The pace in force and how much of it is in use."""

    limit: int = Field(description="Admissions allowed per period (spec.rateLimit.limit).")
    period: str = Field(description="The window (spec.rateLimit.period).")
    used: int = Field(0, description="Admissions within the last period, when this status was written.")
    summary: str = Field(description='used/limit per period, e.g. "7/10 per 10s", for kubectl get.')


class QueueStatus(Model):
    """The queue's current usage."""

    queued: int = Field(0, description="Runs waiting for a slot.")
    running: int = Field(0, description="Runs holding a slot.")
    waiting: int = Field(0, description="Runs in a durable wait (a sleep, a token, child runs): they hold no slot.")
    admitted_total: int = Field(0, description="Runs admitted since the queue was created.")
    oldest_queued_time: str | None = Field(None, description="When the longest-waiting run was queued.")
    observed_generation: int | None = Field(None, description="The generation this status reflects.")
    rate: RateStatus | None = Field(None, description="spec.rateLimit in force and its use; unset without one.")
    rate_limited: int = Field(0, description="Queued runs held back by a rate (reasons RateLimited, KeyRateLimited).")
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
