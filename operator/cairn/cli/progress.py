"""What `trigger --wait` shows while a run goes on. Pure: a run (and the previous sight of it) in,
lines or a renderable out.

- On a terminal, a live view: the run's phase, each attempt (node, duration, outcome, steps) and the
  progress, redrawn as the run moves.
- Elsewhere (a pipe, CI logs), one line per change: an attempt started or ended, a step completed,
  the phase changed. Each line carries the time it happened (UTC)."""

from __future__ import annotations

from datetime import datetime

from rich.console import Group, RenderableType
from rich.text import Text

from cairn.api.taskrun import Attempt, Phase, StepEntry, TaskRun
from cairn.cli.errors import ExitCode
from cairn.cli.render import (
    attempt_outcome,
    attempt_seconds,
    attempt_text,
    between,
    clock,
    elapsed,
    phase_text,
    queue_of,
    styled_phase,
    table,
)
from cairn.domain.timefmt import format_time, parse_time

MESSAGE_CHARS = 200

OUTCOME_CODES = {
    Phase.SUCCEEDED: ExitCode.OK,
    Phase.FAILED: ExitCode.RUN_FAILED,
    Phase.CANCELLED: ExitCode.RUN_CANCELLED,
}


def finished(run: TaskRun) -> bool:
    phase = run.status.phase if run.status else None
    return phase is not None and phase.finished


def outcome_code(run: TaskRun) -> ExitCode:
    """0 Succeeded, 1 Failed, 2 Cancelled."""
    phase = run.status.phase if run.status else None
    if phase is None or phase not in OUTCOME_CODES:
        raise ValueError(f"run {run.metadata.name} has not finished (phase {phase})")
    return OUTCOME_CODES[phase]


def short_message(message: str | None) -> str:
    """The most telling line of a message (the last non-empty one: a log tail ends with the error)."""
    lines = [line.strip() for line in (message or "").splitlines() if line.strip()]
    if not lines:
        return ""
    last = lines[-1]
    return last if len(last) <= MESSAGE_CHARS else last[: MESSAGE_CHARS - 1] + "…"


def _time(stamp: str) -> str:
    return clock(stamp, parse_time(stamp).strftime("%Y-%m-%d"))


def _attempts(run: TaskRun | None) -> dict[int, Attempt]:
    attempts = (run.status.attempts if run and run.status else None) or []
    return {a.number: a for a in attempts}


def changes(prev: TaskRun | None, cur: TaskRun, now: datetime) -> list[str]:
    """One line per thing that happened between two sights of a run: per attempt, its start, the steps
    it completed and its end; then the phase if it changed. Each line carries the time it happened
    (the kubelet reports an attempt's end to the second, so times of one attempt may look unordered)."""
    events: list[tuple[tuple[float, int], str, str]] = []  # (order, time, text)
    stamp_now = format_time(now)
    last = float("inf")
    before, after = _attempts(prev), _attempts(cur)
    for number, a in sorted(after.items()):
        old = before.get(number)
        if old is None:
            where = f" on {a.node}" if a.node else ""
            events.append(((number, 0), a.start_time or stamp_now, f"attempt {number} started: pod {a.pod}{where}"))
        elif a.node and not old.node:
            events.append(((number, 0), stamp_now, f"attempt {number}: pod {a.pod} is on {a.node}"))
        if a.finish_time and (old is None or not old.finish_time):
            took = attempt_seconds(a, (cur.status.steps if cur.status else None) or [])
            text = f"attempt {number} ended{f' after {elapsed(took)}' if took is not None else ''}: "
            message = short_message(a.message)
            events.append(((number, 2), a.finish_time, text + attempt_outcome(a) + (f": {message}" if message else "")))
    seen = {(s.key, s.attempt) for s in (prev.status.steps if prev and prev.status else None) or []}
    for step in (cur.status.steps if cur.status else None) or []:
        if (step.key, step.attempt) not in seen:
            when = step.completion_time or stamp_now
            by = "copied by the fork" if step.attempt == 0 else f"attempt {step.attempt}"
            events.append(((step.attempt, 1), when, f"step {step.key} completed ({by})"))
    old_progress = prev.status.progress if prev and prev.status else None
    new_progress = cur.status.progress if cur.status else None
    if new_progress and new_progress.state and new_progress.state != (old_progress.state if old_progress else None):
        events.append(
            ((max(after, default=0), 1), new_progress.updated_time or stamp_now, f"state: {new_progress.state}")
        )
    old_status, new_status = (prev.status if prev else None), cur.status
    old_key = (old_status.phase, old_status.reason) if old_status else (None, None)
    if new_status is not None and new_status.phase is not None and (new_status.phase, new_status.reason) != old_key:
        text = str(new_status.phase) + (f": {new_status.message}" if new_status.message else "")
        events.append(((last, 3), new_status.completion_time or stamp_now, text))
    events.sort(key=lambda e: (e[0], parse_time(e[1])))
    return [f"{_time(stamp)}  {text}" for _, stamp, text in events]


def summary(run: TaskRun) -> list[str]:
    """The closing lines once the run has ended: outcome, attempts, duration, result."""
    status = run.status
    if status is None:
        return []
    attempts = len(status.attempts or [])
    took = between(status.start_time or run.metadata.creation_timestamp, status.completion_time)
    head = f"run {run.metadata.name} {phase_text(run)} after {attempts} attempt{'s' if attempts != 1 else ''}"
    if took is not None:
        head += f" in {elapsed(took)}"
    if status.message:
        head += f": {status.message}"
    lines = [head]
    if status.result is not None:
        lines.append(f"result: {status.result}")
    elif status.result_truncated:
        lines.append("result: too large for the TaskRun's status (kept in PostgreSQL)")
    return lines


def attempt_row(a: Attempt, steps: list[StepEntry], now: datetime) -> list[str]:
    if a.finish_time:
        took, outcome = attempt_seconds(a, steps), attempt_outcome(a)
    else:
        took = (now - parse_time(a.start_time)).total_seconds() if a.start_time else None
        outcome = "running"
    return [
        str(a.number),
        a.node or "-",
        _time(a.start_time) if a.start_time else "-",
        elapsed(took) if took is not None else "-",
        outcome,
        ", ".join(s.key for s in steps) if steps else "-",
    ]


def live_view(run: TaskRun, now: datetime) -> RenderableType:
    """The live display: a title line, the attempts table, and where the run is now."""
    status = run.status
    since = (status.start_time if status else None) or run.metadata.creation_timestamp
    until = parse_time(status.completion_time) if status and status.completion_time else now
    title = Text.assemble(
        ("run ", "dim"),
        (run.metadata.name, "bold"),
        ("  task ", "dim"),
        run.spec.task_ref.name,
        ("  queue ", "dim"),
        queue_of(run),
        "  ",
        styled_phase(phase_text(run)),
        ("  attempt ", "dim"),
        attempt_text(run),
        ("  elapsed ", "dim"),
        elapsed((until - parse_time(since)).total_seconds()) if since else "-",
    )
    parts: list[RenderableType] = [title]
    steps: dict[int, list[StepEntry]] = {}
    for step in (status.steps if status else None) or []:
        steps.setdefault(step.attempt, []).append(step)
    attempts = (status.attempts if status else None) or []
    if attempts:
        rows = [attempt_row(a, steps.get(a.number, []), now) for a in attempts]
        parts.append(table(["ATTEMPT", "NODE", "STARTED", "TOOK", "OUTCOME", "STEPS"], rows))
    progress = status.progress if status else None
    if progress is not None and progress.steps_completed:
        note = f"{progress.steps_completed} step(s) completed, the last {progress.last_step}"
        parts.append(Text(note + (f"  state: {progress.state}" if progress.state else ""), style="dim"))
    if status is not None and status.message and not finished(run):
        parts.append(Text(status.message, style="dim"))
    if status is not None and status.next_attempt_time and status.phase is Phase.RETRYING:
        wait = (parse_time(status.next_attempt_time) - now).total_seconds()
        parts.append(Text(f"next attempt in {elapsed(max(wait, 0))}", style="magenta"))
    return Group(*parts)
