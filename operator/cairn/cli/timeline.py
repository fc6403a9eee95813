"""`cairn describe`: a run as a person reads it. Its fields, then a timeline of its attempts (when each
started and ended, where, why it ended) with the steps each attempt ran, its conditions and events.
Pure: the run, its events and `now` in, text out."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from cairn.api.taskrun import STEPS_SHOWN, Attempt, StepEntry, TaskRun
from cairn.cli.render import (
    NONE,
    age,
    attempt_outcome,
    attempt_seconds,
    between,
    clock,
    elapsed,
    phase_text,
    plain,
    queue_of,
    table,
)
from cairn.domain.timefmt import parse_time

SHOWN_CHARS = 1000  # of the payload and the result
EVENTS_SHOWN = 20
LABEL_WIDTH = 18


def shorten(text: str, limit: int = SHOWN_CHARS) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text.encode())} bytes in all: -o json shows everything)"


def indent(text: str, prefix: str) -> list[str]:
    """Multi-line text, each line after the first aligned under the first."""
    first, *rest = text.splitlines() or [""]
    return [first, *(prefix + line for line in rest)]


def field(label: str, value: str) -> list[str]:
    head = f"{label}:".ljust(LABEL_WIDTH)
    return [head + line if i == 0 else line for i, line in enumerate(indent(value, " " * LABEL_WIDTH))]


def steps_by_attempt(run: TaskRun) -> dict[int, list[StepEntry]]:
    out: dict[int, list[StepEntry]] = {}
    for step in (run.status.steps if run.status else None) or []:
        out.setdefault(step.attempt, []).append(step)
    return out


def steps_summary(run: TaskRun) -> str:
    """Which attempt ran which steps: `attempt 1: one#0, two#0; attempt 2: three#0`."""
    grouped = steps_by_attempt(run)
    return (
        "; ".join(
            f"{'copied' if n == 0 else f'attempt {n}'}: {', '.join(s.key for s in grouped[n])}" for n in sorted(grouped)
        )
        or NONE
    )


def _day(run: TaskRun) -> str | None:
    stamp = run.metadata.creation_timestamp or (run.status.start_time if run.status else None)
    return parse_time(stamp).strftime("%Y-%m-%d") if stamp else None


def header(run: TaskRun, now: datetime) -> list[str]:
    spec, status = run.spec, run.status
    snapshot = status.task if status else None
    lines = field("Name", run.metadata.name)
    lines += field("Namespace", run.metadata.namespace or NONE)
    task = spec.task_ref.name
    if snapshot is not None and snapshot.generation is not None:
        task += f" (generation {snapshot.generation})"
    lines += field("Task", task)
    if snapshot is not None:
        lines += field("Image", snapshot.spec.template.spec.containers[0].image)
    lines += field("Queue", queue_of(run))
    lines += field("Priority", str(spec.priority))
    lines += field("Key", spec.concurrency_key or NONE)
    phase = phase_text(run)
    if spec.cancel and phase not in ("Cancelled", "Succeeded", "Failed"):
        phase += " (cancellation requested)"
    lines += field("Phase", phase)
    if status is not None:
        lines += field("Reason", status.reason or NONE)
        lines += field("Message", status.message or NONE)
    created = run.metadata.creation_timestamp
    lines += field("Created", f"{created} ({age(created, now)} ago)" if created else NONE)
    if status is not None and status.start_time:
        lines += field("Started", status.start_time)
    if status is not None and status.completion_time:
        took = between(status.start_time or created, status.completion_time)
        lines += field("Completed", status.completion_time + (f" (took {elapsed(took)})" if took is not None else ""))
    if status is not None and status.next_attempt_time:
        wait = (parse_time(status.next_attempt_time) - now).total_seconds()
        lines += field("Next attempt", f"{status.next_attempt_time} (in {elapsed(max(wait, 0))})")
    if status is not None and status.forked_from is not None:
        ff = status.forked_from
        lines += field("Forked from", f"{ff.run} at step {ff.step} ({ff.steps_copied} steps copied, not run again)")
    lines += field("Attempts", attempts_summary(run))
    lines += field("Progress", progress_summary(run))
    if status is not None and status.progress is not None and status.progress.state:
        lines += field("State", status.progress.state)
    lines += field("Payload", shorten(spec.payload) if spec.payload is not None else NONE)
    lines += field("Result", result_summary(run))
    return lines


def attempts_summary(run: TaskRun) -> str:
    attempts = (run.status.attempts if run.status else None) or []
    snapshot = run.status.task if run.status else None
    text = str(len(attempts))
    if snapshot is not None:
        text += f" (maxAttempts {snapshot.spec.retry.max_attempts}"
        uncounted = sum(1 for a in attempts if a.counted is False)
        text += f"; {uncounted} not counted)" if uncounted else ")"
    return text


def progress_summary(run: TaskRun) -> str:
    progress = run.status.progress if run.status else None
    if progress is None or not progress.steps_completed:
        return "no step completed"
    plural = "" if progress.steps_completed == 1 else "s"
    text = f"{progress.steps_completed} step{plural} completed"
    if progress.last_step:
        text += f", the last {progress.last_step}"
    if progress.updated_time:
        text += f" at {progress.updated_time}"
    return text


def result_summary(run: TaskRun) -> str:
    status = run.status
    if status is None:
        return NONE
    if status.result_truncated:
        return "too large for the TaskRun's status: it is kept in PostgreSQL"
    return shorten(status.result) if status.result is not None else NONE


def attempt_title(a: Attempt) -> str:
    parts = [f"Attempt {a.number}: pod {a.pod}"]
    if a.node:
        parts.append(f"on {a.node}")
    text = " ".join(parts)
    if a.memory_limit is not None:
        text += f", memory limit {a.memory_limit}"
    return text


def attempt_lines(
    a: Attempt, steps: Sequence[StepEntry], previous: Attempt | None, day: str | None, now: datetime
) -> list[str]:
    pad = "    "
    out = [f"  {attempt_title(a)}"]
    if a.start_time:
        note = ""
        gap = between(previous.finish_time, a.start_time) if previous is not None else None
        if gap is not None:
            note = f" ({elapsed(gap)} after attempt {previous.number if previous else '?'} ended)"
        out.append(f"{pad}{clock(a.start_time, day)}  started{note}")
    for step in steps:
        when = step.completion_time or step.start_time
        took = between(step.start_time, step.completion_time)
        text = f"step {step.key} completed" + (f" (took {elapsed(took)})" if took is not None else "")
        if step.tries and step.tries > 1:
            text += f" after {step.tries} tries"
        out.append(f"{pad}{clock(when, day) if when else '?':<12}  {text}")
    if a.finish_time:
        ran = attempt_seconds(a, steps)
        text = f"ended{f' after {elapsed(ran)}' if ran is not None else ''}: {attempt_outcome(a)}"
        out.append(f"{pad}{clock(a.finish_time, day)}  {text}")
        if a.message:
            width = len(clock(a.finish_time, day))
            message_pad = pad + " " * (width + 2)
            out += [message_pad + line for line in ["message:", *("  " + m for m in a.message.splitlines())]]
    elif a.start_time:
        so_far = (now - parse_time(a.start_time)).total_seconds()
        out.append(f"{pad}{'':<12}  running ({elapsed(so_far)} so far)")
    if not steps:
        out.append(f"{pad}{'':<12}  (no step completed in this attempt)")
    return out


def timeline(run: TaskRun, now: datetime) -> list[str]:
    """Attempts in order, each with its start, the steps it completed, and its end."""
    status = run.status
    day = _day(run)
    out = [f"Timeline (UTC{', ' + day if day else ''}):"]
    if run.metadata.creation_timestamp:
        out.append(f"  {clock(run.metadata.creation_timestamp, day)}  created")
    grouped = steps_by_attempt(run)
    attempts = (status.attempts if status else None) or []
    previous: Attempt | None = None
    copied = grouped.pop(0, [])  # a fork's steps, copied from its source run
    if copied and status is not None and status.forked_from is not None:
        out.append(f"  copied from {status.forked_from.run}: {', '.join(s.key for s in copied)}")
    for a in attempts:
        out += attempt_lines(a, grouped.pop(a.number, []), previous, day, now)
        previous = a
    for number, steps in sorted(grouped.items()):  # steps of attempts no longer listed
        out.append(f"  Attempt {number} (not in status.attempts)")
        out += [
            f"    {clock(s.completion_time, day) if s.completion_time else '?'}  step {s.key} completed" for s in steps
        ]
    if status is not None and status.next_attempt_time and not status.completion_time:
        out.append(f"  {clock(status.next_attempt_time, day)}  next attempt starts")
    if status is not None and status.completion_time:
        out.append(
            f"  {clock(status.completion_time, day)}  {phase_text(run)}: {status.message or status.reason or ''}"
        )
    if not attempts:
        out.append("  (no attempt yet)")
    shown = len(status.steps or []) if status else 0
    total = status.progress.steps_completed if status and status.progress else 0
    if total > shown:
        out.append(
            f"  (the last {shown} of {total} completed steps: the status keeps {STEPS_SHOWN}, PostgreSQL keeps all)"
        )
    return out


def conditions_lines(run: TaskRun, now: datetime) -> list[str]:
    conditions = (run.status.conditions if run.status else None) or []
    if not conditions:
        return field("Conditions", NONE)
    rows = [[c.type, c.status, c.reason, age(c.last_transition_time, now), c.message] for c in conditions]
    return [
        "Conditions:",
        *(
            "  " + line
            for line in plain(table(["TYPE", "STATUS", "REASON", "AGE", "MESSAGE"], rows), 1000).splitlines()
        ),
    ]


def event_time(event: dict[str, Any]) -> str:
    return str(
        event.get("lastTimestamp")
        or event.get("eventTime")
        or event.get("firstTimestamp")
        or (event.get("metadata") or {}).get("creationTimestamp")
        or ""
    )


def events_lines(events: Sequence[dict[str, Any]], now: datetime) -> list[str]:
    if not events:
        return field("Events", NONE)
    ordered = sorted(events, key=event_time)[-EVENTS_SHOWN:]
    rows = []
    for e in ordered:
        count = int(e.get("count") or 1)
        when = age(event_time(e) or None, now) + (f" (x{count})" if count > 1 else "")
        source = (e.get("source") or {}).get("component") or e.get("reportingComponent") or ""
        rows.append([str(e.get("type", "")), str(e.get("reason", "")), when, source, str(e.get("message", ""))])
    head = "Events:" if len(events) <= EVENTS_SHOWN else f"Events (the last {EVENTS_SHOWN} of {len(events)}):"
    return [
        head,
        *("  " + line for line in plain(table(["TYPE", "REASON", "AGE", "FROM", "MESSAGE"], rows), 1000).splitlines()),
    ]


def describe(run: TaskRun, events: Sequence[dict[str, Any]], now: datetime) -> str:
    lines = header(run, now)
    lines += field("Steps by attempt", steps_summary(run))
    lines += ["", *timeline(run, now), "", *conditions_lines(run, now), "", *events_lines(events, now)]
    return "\n".join(lines)
