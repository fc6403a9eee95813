"""What a Schedule does now (pure: no I/O, the time passed in).

`plan()` reads the Schedule and the runs it started, and returns the TaskRuns to create (one per fire
time, named after it, so creating twice is harmless), the runs to cancel (CancelPrevious) and to
delete (history limits), the status patch, Events, and when to look again (the next fire time).

The cursor is status.lastFireTime: every fire time up to it was handled (run, skipped, buffered or
missed). A fire time whose run exists already counts as handled, so a restart between creating a run
and writing the status, or a second operator, starts nothing twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from cairn.api.common import API_VERSION
from cairn.api.schedule import RECENT_MAX, OverlapPolicy, Schedule, ScheduledRun, ScheduleStatus
from cairn.domain import naming
from cairn.domain.conditions import set_condition
from cairn.domain.cron import Cron, between, next_after
from cairn.domain.lifecycle import Event
from cairn.domain.timefmt import format_time, parse_time

MAX_FIRES_PER_PLAN = 500  # a long outage with a short interval is caught up over several plans


@dataclass(frozen=True)
class RunOf:
    """A TaskRun the schedule started, as its labels, annotations and status say."""

    name: str
    fire_time: datetime
    phase: str | None
    cancelling: bool = False

    @property
    def finished(self) -> bool:
        return self.phase in ("Succeeded", "Failed", "Cancelled")


@dataclass(frozen=True)
class ScheduleView:
    schedule: Schedule
    runs: Sequence[RunOf]
    now: datetime


@dataclass
class SchedulePlan:
    create: list[dict[str, Any]] = field(default_factory=list)  # TaskRun bodies, oldest fire time first
    cancel: list[str] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    status: dict[str, Any] | None = None
    events: list[Event] = field(default_factory=list)
    recheck_at: datetime | None = None


def fire_stamp(t: datetime) -> str:
    return t.strftime("%Y%m%d%H%M%S")


def run_body(schedule: Schedule, fire_time: datetime, *, manual: bool = False) -> dict[str, Any]:
    """The TaskRun of one fire time (or of a manual trigger at that instant)."""
    meta, spec = schedule.metadata, schedule.spec
    name = naming.scheduled_run_name(meta.name, fire_stamp(fire_time))
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": meta.namespace,
        "labels": {naming.LABEL_SCHEDULE: naming.label_value(meta.name), naming.LABEL_MANAGED_BY: naming.MANAGED_BY},
        "annotations": {naming.ANNOTATION_FIRE_TIME: format_time(fire_time), naming.LABEL_SCHEDULE: meta.name},
    }
    if manual:
        metadata["annotations"][f"{naming.LABEL_SCHEDULE}-trigger"] = "manual"
    if meta.uid:
        metadata["ownerReferences"] = [
            {
                "apiVersion": API_VERSION,
                "kind": "Schedule",
                "name": meta.name,
                "uid": meta.uid,
                "blockOwnerDeletion": False,
            }
        ]
    run_spec: dict[str, Any] = {"taskRef": {"name": spec.task_ref.name}, "priority": spec.priority}
    for key, value in (("payload", spec.payload), ("queue", spec.queue), ("concurrencyKey", spec.concurrency_key)):
        if value is not None:
            run_spec[key] = value
    return {"apiVersion": API_VERSION, "kind": "TaskRun", "metadata": metadata, "spec": run_spec}


def crons_of(schedule: Schedule) -> tuple[list[Cron], ZoneInfo]:
    return [Cron(c) for c in schedule.spec.cron], ZoneInfo(schedule.spec.time_zone)


def backfill(
    schedule: Schedule, existing: set[str], start: datetime, end: datetime, limit: int
) -> tuple[list[dict[str, Any]], int, bool]:
    """The runs of every fire time in [start, end] that has none yet, at most `limit`: (bodies, fire
    times that had a run already, whether the range held more than `limit` to start)."""
    crons, zone = crons_of(schedule)
    due, _ = between(crons, zone, start - timedelta(microseconds=1), end, 100_000)
    bodies: list[dict[str, Any]] = []
    had = 0
    for t in due:
        body = run_body(schedule, t)
        if body["metadata"]["name"] in existing:
            had += 1
        elif len(bodies) < limit:
            bodies.append(body)
        else:
            return bodies, had, True
    return bodies, had, False


def plan(view: ScheduleView) -> SchedulePlan:
    s, now = view.schedule, view.now
    spec, meta = s.spec, s.metadata
    old = s.status or ScheduleStatus()
    p = SchedulePlan()
    if meta.deletion_timestamp:
        return p
    crons, zone = crons_of(s)
    start = parse_time(spec.start_time) if spec.start_time else None
    end = parse_time(spec.end_time) if spec.end_time else None
    created = parse_time(meta.creation_timestamp) if meta.creation_timestamp else now
    cursor = parse_time(old.last_fire_time) if old.last_fire_time else created
    if start is not None and cursor < start:
        cursor = start - timedelta(microseconds=1)

    names = {r.name for r in view.runs}
    running = [r.name for r in sorted(view.runs, key=lambda r: r.fire_time) if not r.finished and not r.cancelling]
    buffered = parse_time(old.buffered_fire_time) if old.buffered_fire_time else None
    started: list[tuple[datetime, str]] = []
    skipped = missed = 0

    def fire(t: datetime) -> None:
        body = run_body(s, t)
        p.create.append(body)
        started.append((t, body["metadata"]["name"]))
        running.append(body["metadata"]["name"])

    if buffered is not None and not running and not spec.suspend:
        fire(buffered)
        buffered = None

    more = False
    handled: datetime | None = None  # the latest fire time this plan handled
    if not spec.suspend:
        until = min(now, end) if end is not None else now
        due, more = between(crons, zone, cursor, until, MAX_FIRES_PER_PLAN)
        oldest_to_run = now - spec.catchup_window.delta
        for t in due:
            cursor = handled = t
            if naming.scheduled_run_name(meta.name, fire_stamp(t)) in names:
                continue  # started before (a restart, another operator): handled
            if t < oldest_to_run:
                missed += 1
            elif not running or spec.overlap_policy is OverlapPolicy.ALLOW:
                fire(t)
            elif spec.overlap_policy is OverlapPolicy.CANCEL_PREVIOUS:
                p.cancel += [n for n in running if n not in {b for _, b in started}]
                running = [b for _, b in started]
                fire(t)
            elif spec.overlap_policy is OverlapPolicy.BUFFER_ONE and buffered is None:
                buffered = t
            else:
                skipped += 1

    if missed:
        p.events.append(
            Event(
                "Warning",
                "MissedFireTimes",
                f"{missed} fire time(s) up to {format_time(cursor)} were older than catchupWindow "
                f"({spec.catchup_window}) and were not run",
            )
        )
    if skipped:
        p.events.append(
            Event(
                "Normal",
                "Skipped",
                f"{skipped} fire time(s) not run: {running[0]} is still going "
                f"(overlapPolicy {spec.overlap_policy.value})",
            )
        )
    if p.cancel:
        p.events.append(
            Event("Normal", "CancelledPrevious", f"cancelled {', '.join(p.cancel)} (overlapPolicy CancelPrevious)")
        )
    for t, name in started:
        p.events.append(Event("Normal", "Fired", f"started {name} for fire time {format_time(t)}"))

    next_time = None if spec.suspend else next_after(crons, zone, max(cursor, now))
    if next_time is not None and end is not None and next_time > end:
        next_time = None
    p.recheck_at = now if more else next_time
    p.delete = _beyond_history(view, started)
    p.status = _status_patch(s, old, now, handled, next_time, running, started, buffered, skipped, missed, end)
    return p


def _beyond_history(view: ScheduleView, started: list[tuple[datetime, str]]) -> list[str]:
    spec = view.schedule.spec
    finished = sorted((r for r in view.runs if r.finished), key=lambda r: r.fire_time)
    good = [r.name for r in finished if r.phase == "Succeeded"]
    bad = [r.name for r in finished if r.phase != "Succeeded"]
    return (
        good[: max(0, len(good) - spec.successful_runs_history_limit)]
        + bad[: max(0, len(bad) - spec.failed_runs_history_limit)]
    )


def _status_patch(
    s: Schedule,
    old: ScheduleStatus,
    now: datetime,
    cursor: datetime | None,
    next_time: datetime | None,
    running: list[str],
    started: list[tuple[datetime, str]],
    buffered: datetime | None,
    skipped: int,
    missed: int,
    end: datetime | None,
) -> dict[str, Any] | None:
    spec, generation = s.spec, s.metadata.generation
    recent = [*(old.recent or []), *(ScheduledRun(fire_time=format_time(t), name=n) for t, n in started)][-RECENT_MAX:]
    conditions = set_condition(
        old.conditions, "Ready", "True", "Valid", "the schedule can be evaluated", now=now, generation=generation
    )
    active: tuple[Literal["True", "False"], str, str]
    if spec.suspend:
        active = ("False", "Suspended", "spec.suspend is set: no runs are started")
    elif next_time is None and end is not None:
        active = ("False", "Ended", f"no fire time is left before endTime ({spec.end_time})")
    else:
        active = ("True", "Firing", "runs are started at their fire times")
    conditions = set_condition(conditions, "Active", *active, now=now, generation=generation)
    new = old.model_copy(
        update={
            "last_fire_time": format_time(cursor) if cursor is not None else old.last_fire_time,
            "next_fire_time": format_time(next_time) if next_time is not None else None,
            "last_run": started[-1][1] if started else old.last_run,
            "active": running or None,
            "recent": recent or None,
            "buffered_fire_time": format_time(buffered) if buffered is not None else None,
            "runs_started": old.runs_started + len(started),
            "skipped": old.skipped + skipped,
            "missed": old.missed + missed,
            "conditions": conditions,
        }
    )
    before, after = old.model_dump(mode="json", by_alias=True), new.model_dump(mode="json", by_alias=True)
    patch = {k: v for k, v in after.items() if before.get(k) != v}
    if patch:
        patch["observedGeneration"] = generation
    return patch or None
