"""Schedule: TaskRuns started at cron times, exactly one per fire time."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, Field

from cairn.api.common import (
    CONDITIONS_LIST,
    PAYLOAD_MAX_BYTES,
    Condition,
    Duration,
    DurationStr,
    GoDuration,
    Model,
    ObjectMeta,
    cel,
)
from cairn.api.cron import CRON_HELP, CRON_PATTERN, check_cron
from cairn.api.taskrun import TaskRef

TIME_ZONE_HELP = "an IANA time zone such as Europe/Berlin, America/New_York or UTC"
RECENT_MAX = 10  # runs listed in status.recent


class OverlapPolicy(StrEnum):
    ALLOW = "Allow"  # start the run even if earlier ones are still going
    SKIP = "Skip"  # do not start it while one is going (counted as skipped)
    BUFFER_ONE = "BufferOne"  # start it when the one going ends; at most one waits so
    CANCEL_PREVIOUS = "CancelPrevious"  # cancel the ones going, then start it


def _check_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ValueError(f"{value!r} is not {TIME_ZONE_HELP}") from e
    return value


def _check_time(value: str | None) -> str | None:
    if value is not None:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value


CronExpression = Annotated[
    str,
    AfterValidator(check_cron),
    Field(
        max_length=200,
        json_schema_extra={
            "x-kubernetes-validations": [{"rule": f"self.matches('{CRON_PATTERN}')", "message": f"must be {CRON_HELP}"}]
        },
    ),
]
RFC3339 = Annotated[str | None, AfterValidator(_check_time)]


class ScheduleSpec(Model):
    """When to start runs of a Task, with what, and what to do when runs overlap or fire times are missed."""

    model_config = cel(
        "!has(self.startTime) || !has(self.endTime) || timestamp(self.startTime) < timestamp(self.endTime)",
        "endTime must be after startTime",
        field_paths={0: ".endTime"},
    )

    task_ref: TaskRef = Field(description="The Task each run executes.")
    cron: list[CronExpression] = Field(
        min_length=1,
        max_length=10,
        description=(
            f"When to start a run: each entry is {CRON_HELP}. Several entries fire at the union of their times "
            "(a time two share fires once)."
        ),
    )
    time_zone: Annotated[str, AfterValidator(_check_zone)] = Field(
        "UTC",
        max_length=64,
        description=(
            f"The time zone the cron times are read in: {TIME_ZONE_HELP}. Across daylight-saving changes, a "
            "time skipped by the clock moving forward fires once, at the first instant after the gap; a time "
            "the clock moving back repeats fires once, the first time it occurs (for schedules with a fixed "
            "hour; one whose hour field is * fires on every occurrence)."
        ),
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "timestamp('2000-01-01T00:00:00Z').getHours(self) >= 0",
                    "message": f"must be {TIME_ZONE_HELP}",
                }
            ]
        },
    )
    payload: str | None = Field(
        None,
        max_length=PAYLOAD_MAX_BYTES,
        description=(
            "Input of every run (JSON text), as TaskRun.spec.payload. Each run also gets the schedule's name and "
            "its fire time (labels cairn.dev/schedule, annotation cairn.dev/fire-time; in the task, ctx.schedule "
            "and ctx.fire_time)."
        ),
    )
    queue: str | None = Field(None, max_length=253, description="The Queue of its runs; unset: the Task's.")
    priority: int = Field(0, ge=-1000, le=1000, description="Admission priority of its runs.")
    concurrency_key: str | None = Field(None, max_length=253, description="Concurrency key of its runs.")
    start_time: RFC3339 = Field(
        None,
        description="No fire time before this (RFC 3339, e.g. 2027-01-01T00:00:00Z).",
        json_schema_extra={"format": "date-time"},
    )
    end_time: RFC3339 = Field(
        None, description="No fire time after this (RFC 3339).", json_schema_extra={"format": "date-time"}
    )
    suspend: bool = Field(
        False,
        description=(
            "Fire no runs while true. When set back to false, the fire times missed meanwhile are run if they "
            "are within catchupWindow (oldest first, under overlapPolicy); older ones are counted as missed."
        ),
    )
    overlap_policy: OverlapPolicy = Field(
        OverlapPolicy.SKIP,
        description=(
            "When a fire time comes while a run of this schedule has not finished: Skip (default) starts none "
            "(counted in status.skipped); Allow starts it anyway; BufferOne starts it when the running one ends "
            "(one at most waits; more are skipped); CancelPrevious cancels the running ones and starts it."
        ),
    )
    catchup_window: DurationStr = Duration(
        "After an outage of the operator (or a suspend), fire times missed by at most this long are still run, "
        "oldest first; older ones are counted in status.missed and reported in an Event. No cliff: any number "
        "of fire times within the window is run.",
        default=GoDuration("1h"),
    )
    successful_runs_history_limit: int = Field(
        3, ge=0, le=1000, description="Succeeded runs kept; older ones are deleted."
    )
    failed_runs_history_limit: int = Field(
        1, ge=0, le=1000, description="Failed or cancelled runs kept; older ones are deleted."
    )


class ScheduledRun(Model):
    """A run the schedule started."""

    fire_time: str = Field(description="The fire time it was started for.")
    name: str = Field(description="The TaskRun.")


class ScheduleStatus(Model):
    """What the schedule did and will do."""

    last_fire_time: str | None = Field(None, description="The latest fire time handled (run, skipped or buffered).")
    next_fire_time: str | None = Field(None, description="The next fire time (none while suspended or after endTime).")
    last_run: str | None = Field(None, description="The TaskRun started last.")
    active: list[str] | None = Field(None, description="Its runs that have not finished.")
    recent: list[ScheduledRun] | None = Field(None, description=f"The last {RECENT_MAX} runs it started.")
    buffered_fire_time: str | None = Field(None, description="BufferOne: the fire time waiting for the running run.")
    runs_started: int = Field(0, description="Runs started since the schedule was created.")
    skipped: int = Field(0, description="Fire times not run because a run was still going (overlapPolicy).")
    missed: int = Field(0, description="Fire times older than catchupWindow when the schedule could fire again.")
    observed_generation: int | None = Field(None, description="The generation this status reflects.")
    conditions: list[Condition] | None = Field(
        None,
        description="Ready: the spec can be evaluated. Active: firing (False when suspended or past endTime).",
        json_schema_extra=CONDITIONS_LIST,
    )


class Schedule(Model):
    """A Schedule as stored in Kubernetes."""

    api_version: Literal["cairn.dev/v1alpha1"] = "cairn.dev/v1alpha1"
    kind: Literal["Schedule"] = "Schedule"
    metadata: ObjectMeta
    spec: ScheduleSpec
    status: ScheduleStatus | None = None
