"""Pure rendering: times and durations as people read them, the `runs` and `queues` tables, and
objects as JSON or YAML. Nothing here talks to the cluster; `now` is always passed in."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

import yaml
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from cairn.api.queue import Queue, RateLimit
from cairn.api.schedule import Schedule
from cairn.api.taskrun import Attempt, Phase, StepEntry, TaskRun
from cairn.domain.pace import rate_of
from cairn.domain.timefmt import parse_time

NONE = "<none>"
PHASE_STYLES = {
    Phase.QUEUED: "blue",
    Phase.STARTING: "bright_cyan",
    Phase.RUNNING: "cyan",
    Phase.RETRYING: "magenta",
    Phase.WAITING: "bright_blue",
    Phase.SUCCEEDED: "green",
    Phase.FAILED: "red",
    Phase.CANCELLED: "yellow",
}


class Output(StrEnum):
    """-o: the default is a table."""

    WIDE = "wide"
    JSON = "json"
    YAML = "yaml"
    NAME = "name"


# -- times and durations ---------------------------------------------------------------------------


def human_duration(seconds: float) -> str:
    """A duration the way kubectl prints ages: 45s, 3m12s, 25m, 4h10m, 30h, 3d4h, 90d, 2y30d."""
    s = int(seconds)
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = s // 3600
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    if h < 24 * 8:
        return f"{h // 24}d{h % 24}h" if h % 24 else f"{h // 24}d"
    if h < 24 * 365 * 2:
        return f"{h // 24}d"
    y, d = h // (24 * 365), (h // 24) % 365
    return f"{y}y{d}d" if d and y < 8 else f"{y}y"


def age(stamp: str | None, now: datetime) -> str:
    if not stamp:
        return "-"
    return human_duration((now - parse_time(stamp)).total_seconds())


def elapsed(seconds: float) -> str:
    """A precise short duration: 15ms, 0.6s, 12.3s, 2m05s, 1h02m."""
    if seconds < 0.1:
        return f"{max(seconds, 0) * 1000:.0f}ms"
    if seconds < 60:
        return f"{max(seconds, 0):.1f}s"
    s = int(seconds)
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return (parse_time(end) - parse_time(start)).total_seconds()


def clock(stamp: str, day: str | None = None) -> str:
    """HH:MM:SS.mmm (UTC), with the date in front when it is not `day` (YYYY-MM-DD). A time on a whole
    second is printed as HH:MM:SS, padded: the kubelet reports container ends to the second, and the
    operator copies them as .000, which would be a false precision."""
    t = parse_time(stamp)
    text = t.strftime("%H:%M:%S") + (f".{t.microsecond // 1000:03d}" if t.microsecond else "    ")
    date = t.strftime("%Y-%m-%d")
    return text if date == day else f"{date} {text}"


# -- run fields ------------------------------------------------------------------------------------


def phase_text(run: TaskRun) -> str:
    if run.metadata.deletion_timestamp:
        return "Terminating"
    phase = run.status.phase if run.status else None
    return str(phase) if phase else "Pending"


def styled_phase(text: str) -> Text:
    try:
        return Text(text, style=PHASE_STYLES[Phase(text)])
    except ValueError:
        return Text(text)


def max_attempts(run: TaskRun) -> int | None:
    snapshot = run.status.task if run.status else None
    return snapshot.spec.retry.max_attempts if snapshot else None


def attempt_text(run: TaskRun) -> str:
    current = (run.status.attempt if run.status else None) or 0
    limit = max_attempts(run)
    return f"{current}/{limit}" if limit else str(current)


def step_text(run: TaskRun) -> str:
    """Steps completed and the last one: `3 (two#0)`; `0` before the first."""
    progress = run.status.progress if run.status else None
    if progress is None or not progress.steps_completed:
        return "0"
    return f"{progress.steps_completed} ({progress.last_step})" if progress.last_step else str(progress.steps_completed)


def queue_of(run: TaskRun) -> str:
    if run.status and run.status.queue:
        return run.status.queue
    return run.spec.queue or "-"


def last_attempt(run: TaskRun) -> Attempt | None:
    attempts = run.status.attempts if run.status else None
    return attempts[-1] if attempts else None


def attempt_seconds(a: Attempt, steps: Sequence[StepEntry] = ()) -> float | None:
    """How long an attempt ran. The kubelet reports its end to the second (12:00:04 may be 12:00:04.9),
    so an attempt is taken to have run at least until the last step it recorded."""
    if not a.start_time or not a.finish_time:
        return None
    end = parse_time(a.finish_time)
    for step in steps:
        if step.attempt == a.number and step.completion_time:
            end = max(end, parse_time(step.completion_time))
    return (end - parse_time(a.start_time)).total_seconds()


def attempt_outcome(a: Attempt) -> str:
    """Why an attempt ended, in a few words: `Error, exit code 1`."""
    parts = [a.reason or "ended"]
    if a.exit_code is not None:
        parts.append(f"exit code {a.exit_code}")
    if a.counted is False:
        parts.append("not counted")
    return ", ".join(parts)


# -- tables ----------------------------------------------------------------------------------------

RUN_COLUMNS = ["NAME", "TASK", "PHASE", "ATTEMPT", "STEP", "QUEUE", "AGE"]
RUN_WIDE_COLUMNS = ["PRIORITY", "KEY", "NODE", "REASON", "MESSAGE"]
QUEUE_COLUMNS = ["NAME", "LIMIT", "PER-KEY", "RATE", "RUNNING", "QUEUED", "PAUSED", "OLDEST QUEUED", "AGE"]
QUEUE_WIDE_COLUMNS = ["RATE-LIMITED", "PER-KEY RATE", "MAX QUEUED", "ADMITTED", "ACTIVE"]


def run_row(run: TaskRun, now: datetime, *, wide: bool = False, namespace: bool = False) -> list[str]:
    row = [
        run.metadata.name,
        run.spec.task_ref.name,
        phase_text(run),
        attempt_text(run),
        step_text(run),
        queue_of(run),
        age(run.metadata.creation_timestamp, now),
    ]
    if wide:
        last = last_attempt(run)
        status = run.status
        row += [
            str(run.spec.priority),
            run.spec.concurrency_key or NONE,
            (last.node if last else None) or NONE,
            (status.reason if status else None) or NONE,
            (status.message if status else None) or NONE,
        ]
    return [run.metadata.namespace or "", *row] if namespace else row


def runs_table(runs: Sequence[TaskRun], now: datetime, *, wide: bool = False, namespace: bool = False) -> Table:
    headers = (["NAMESPACE"] if namespace else []) + RUN_COLUMNS + (RUN_WIDE_COLUMNS if wide else [])
    ordered = sorted(
        runs, key=lambda r: (r.metadata.namespace or "", r.metadata.creation_timestamp or "", r.metadata.name)
    )
    rows = [run_row(r, now, wide=wide, namespace=namespace) for r in ordered]
    return table(headers, rows, styles={"PHASE": styled_phase})


def queue_row(queue: Queue, now: datetime, *, wide: bool = False, namespace: bool = False) -> list[str]:
    spec, status = queue.spec, queue.status
    row = [
        queue.metadata.name,
        str(spec.concurrency_limit),
        str(spec.per_key_limit) if spec.per_key_limit else "-",
        _rate(queue),
        str(status.running) if status else "0",
        str(status.queued) if status else "0",
        "yes" if spec.paused else "no",
        age(status.oldest_queued_time if status else None, now),
        age(queue.metadata.creation_timestamp, now),
    ]
    if wide:
        active = next((c for c in (status.conditions if status else None) or [] if c.type == "Active"), None)
        row += [
            str(status.rate_limited) if status else "0",
            _describe(spec.per_key_rate_limit),
            str(spec.max_queued) if spec.max_queued is not None else "-",
            str(status.admitted_total) if status else "0",
            f"{active.status} ({active.reason})" if active else "-",
        ]
    return [queue.metadata.namespace or "", *row] if namespace else row


def _describe(spec: RateLimit | None) -> str:
    rate = rate_of(spec)
    return rate.describe() if rate else "-"


def _rate(queue: Queue) -> str:
    """The pace and its use: "7/10 per 10s" (from status), the rate alone before a status says, or "-"."""
    if queue.spec.rate_limit is None:
        return "-"
    if queue.status is not None and queue.status.rate is not None:
        return queue.status.rate.summary
    return _describe(queue.spec.rate_limit)


SCHEDULE_COLUMNS = ["NAME", "SCHEDULE", "TIME ZONE", "SUSPENDED", "LAST", "NEXT", "ACTIVE", "AGE"]


def schedule_row(s: Schedule, now: datetime, *, namespace: bool = False) -> list[str]:
    spec, status = s.spec, s.status
    nxt = status.next_fire_time if status else None
    row = [
        s.metadata.name,
        " | ".join(spec.cron),
        spec.time_zone,
        "yes" if spec.suspend else "no",
        f"{age(status.last_fire_time, now)} ago" if status and status.last_fire_time else "-",
        f"in {human_duration(max(0.0, (parse_time(nxt) - now).total_seconds()))}" if nxt else "-",
        str(len(status.active or [])) if status else "0",
        age(s.metadata.creation_timestamp, now),
    ]
    return [s.metadata.namespace or "", *row] if namespace else row


def schedules_table(schedules: Sequence[Schedule], now: datetime, *, namespace: bool = False) -> Table:
    headers = (["NAMESPACE"] if namespace else []) + SCHEDULE_COLUMNS
    ordered = sorted(schedules, key=lambda s: (s.metadata.namespace or "", s.metadata.name))
    return table(headers, [schedule_row(s, now, namespace=namespace) for s in ordered])


def queues_table(queues: Sequence[Queue], now: datetime, *, wide: bool = False, namespace: bool = False) -> Table:
    headers = (["NAMESPACE"] if namespace else []) + QUEUE_COLUMNS + (QUEUE_WIDE_COLUMNS if wide else [])
    ordered = sorted(queues, key=lambda q: (q.metadata.namespace or "", q.metadata.name))
    return table(headers, [queue_row(q, now, wide=wide, namespace=namespace) for q in ordered])


def table(headers: list[str], rows: list[list[str]], styles: dict[str, Any] | None = None) -> Table:
    """A kubectl-style table: no borders, three spaces between columns, headers in capitals."""
    t = Table(box=None, show_edge=False, pad_edge=False, padding=(0, 3, 0, 0), header_style="bold")
    for header in headers:
        t.add_column(header, no_wrap=True)
    for row in rows:
        cells: list[RenderableType] = []
        for header, cell in zip(headers, row, strict=True):
            style = (styles or {}).get(header)
            cells.append(style(cell) if style else Text(cell))
        t.add_row(*cells)
    return t


# -- objects ---------------------------------------------------------------------------------------


def as_list(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Several objects as kubectl prints them: a v1 List."""
    return {"apiVersion": "v1", "kind": "List", "items": items, "metadata": {"resourceVersion": ""}}


def without_managed_fields(obj: dict[str, Any]) -> dict[str, Any]:
    """The object as kubectl prints it by default: without metadata.managedFields (also in List items)."""
    out = dict(obj)
    if isinstance(out.get("metadata"), dict) and "managedFields" in out["metadata"]:
        out["metadata"] = {k: v for k, v in out["metadata"].items() if k != "managedFields"}
    if isinstance(out.get("items"), list):
        out["items"] = [without_managed_fields(i) if isinstance(i, dict) else i for i in out["items"]]
    return out


def dump(obj: dict[str, Any], output: Output) -> str:
    """JSON or YAML of an object (or a List), without managedFields."""
    obj = without_managed_fields(obj)
    if output is Output.JSON:
        return json.dumps(obj, indent=2, ensure_ascii=False)
    return yaml.safe_dump(obj, sort_keys=False, allow_unicode=True).rstrip("\n")


def plain(renderable: RenderableType, width: int = 200) -> str:
    """What a renderable prints as, without colours (tests and non-terminals)."""
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None, highlight=False, markup=False).print(renderable)
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines())
