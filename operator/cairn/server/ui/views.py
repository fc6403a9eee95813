"""What the pages show, from the records: pure shaping (no I/O), so that it is tested on its own."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cairn.domain.timefmt import parse_time

SHOWN_BYTES = 16 * 1024  # of a JSON value on a page; the whole of it is a link away
STATE_PHASES = {"queued": "Queued", "admitted": "Running", "waiting": "Waiting"}
FINISHED = ("Succeeded", "Failed", "Cancelled")


def list_phase(row: dict[str, Any]) -> str:
    """A row's phase from PostgreSQL's record: the final phase, or what its state means while live."""
    if row.get("stage") == "finished":
        return str(row.get("phase") or "Finished")
    return STATE_PHASES.get(str(row.get("stage")), str(row.get("stage")))


@dataclass(frozen=True)
class Shown:
    text: str
    truncated: bool
    size: int


def pretty(value: Any, *, is_json_text: bool = False, limit: int = SHOWN_BYTES) -> Shown:
    """A value as indented JSON, cut at `limit` bytes (the page links to the whole). A payload is JSON
    text already: it is parsed to be indented, or shown as it is if it does not parse."""
    if is_json_text and isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raw = value
        else:
            raw = json.dumps(value, indent=2, ensure_ascii=False)
    else:
        raw = json.dumps(value, indent=2, ensure_ascii=False)
    size = len(raw.encode())
    if size <= limit:
        return Shown(raw, False, size)
    return Shown(raw.encode()[:limit].decode(errors="ignore"), True, size)


def seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return max(0.0, (parse_time(end) - parse_time(start)).total_seconds())


def success_rate(succeeded: int, failed: int) -> int | None:
    """Percent of the runs that ended that succeeded (cancelled runs aside); none ended: None."""
    ended = succeeded + failed
    return round(100 * succeeded / ended) if ended else None


def duration(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


@dataclass(frozen=True)
class Bar:
    """One bar of the timeline, in the units of its SVG's viewBox (0 to WIDTH)."""

    row: int
    x: float
    width: float
    label: str
    kind: str  # attempt-<outcome> or step
    title: str
    anchor: str  # the id of the table row it stands for


WIDTH = 1000.0
MIN_WIDTH = 2.0
CHILD_BARS = 20  # child runs drawn on the timeline (all of them are listed below it)


def timeline(run: dict[str, Any], now: datetime) -> tuple[list[Bar], int]:
    """The waterfall: a row per attempt, then a row per step and per durable wait under it, then a row
    per child run; and the number of rows."""
    attempts = run.get("attempts") or []
    steps = run.get("steps") or []
    waits = run.get("waits") or []
    children = (run.get("children") or [])[:CHILD_BARS]
    times = [parse_time(t) for a in attempts for t in (a.get("startedAt"), a.get("endedAt")) if t]
    times += [parse_time(t) for s in steps for t in (s.get("startedAt"), s.get("completedAt")) if t]
    times += [parse_time(t) for w in [*waits, *children] for t in (w.get("createdAt"), w.get("endedAt")) if t]
    if not times:
        return [], 0
    start = min(times)
    end = max([*times, now if run.get("stage") != "finished" else max(times)])
    span = max((end - start).total_seconds(), 0.001)

    def x(t: datetime) -> float:
        return (t - start).total_seconds() / span * WIDTH

    bars: list[Bar] = []
    row = 0
    for a in attempts:
        if not a.get("startedAt"):
            continue
        a_start = parse_time(a["startedAt"])
        a_end = parse_time(a["endedAt"]) if a.get("endedAt") else end
        outcome = "ok" if a.get("exitCode") == 0 else ("live" if not a.get("endedAt") else "failed")
        why = a.get("reason") or ("running" if outcome == "live" else f"exit {a.get('exitCode')}")
        took = duration(seconds(a["startedAt"], a["endedAt"])) if a.get("endedAt") else "so far"
        bars.append(
            Bar(
                row,
                x(a_start),
                max(x(a_end) - x(a_start), MIN_WIDTH),
                f"attempt {a['number']}",
                f"attempt-{outcome}",
                f"attempt {a['number']} on {a.get('pod') or '?'}: {why}, {took}",
                f"attempt-{a['number']}",
            )
        )
        row += 1
        for s in (s for s in steps if s.get("attempt") == a["number"]):
            done = parse_time(s["completedAt"])
            began = parse_time(s["startedAt"]) if s.get("startedAt") else done
            bars.append(
                Bar(
                    row,
                    x(began),
                    max(x(done) - x(began), MIN_WIDTH),
                    s["key"],
                    "step",
                    f"{s['key']} (attempt {a['number']}): {duration(seconds(s.get('startedAt'), s['completedAt']))}",
                    f"step-{s['seq']}",
                )
            )
            row += 1
        for w in (w for w in waits if w.get("attempt") == a["number"] and w.get("createdAt")):
            began = parse_time(w["createdAt"])
            ended = parse_time(w["endedAt"]) if w.get("endedAt") else end
            took = duration((ended - began).total_seconds()) + ("" if w.get("endedAt") else " so far")
            label = f"{w['kind']} {w['key']}"
            bars.append(
                Bar(row, x(began), max(x(ended) - x(began), MIN_WIDTH), label, "wait", f"{label}: {took}", "waits")
            )
            row += 1
    for c in (c for c in children if c.get("createdAt")):
        began = parse_time(c["createdAt"])
        ended = parse_time(c["endedAt"]) if c.get("endedAt") else end
        what = c.get("phase") if c.get("endedAt") else c.get("stage")
        bars.append(
            Bar(
                row,
                x(began),
                max(x(ended) - x(began), MIN_WIDTH),
                c["name"],
                "child",
                f"child {c['name']}: {what}",
                "children",
            )
        )
        row += 1
    return bars, row


@dataclass(frozen=True)
class Column:
    """One bar of a queue's activity chart: x and height in its SVG's units, and what it counts."""

    x: float
    height: float
    count: int
    series: str  # admitted or finished


CHART_WIDTH = 240.0
CHART_HEIGHT = 36.0


def activity(lines: dict[str, list[int]]) -> list[Column]:
    """Admissions and finishes per slice of time, side by side in each slice, scaled to the busiest."""
    admitted, finished = lines.get("admitted", []), lines.get("finished", [])
    slices = max(len(admitted), len(finished))
    if slices == 0:
        return []
    top = max([*admitted, *finished, 1])
    step = CHART_WIDTH / slices
    out = []
    for i in range(slices):
        for j, (series, values) in enumerate((("admitted", admitted), ("finished", finished))):
            count = values[i] if i < len(values) else 0
            out.append(Column(i * step + j * step / 2, CHART_HEIGHT * count / top, count, series))
    return out


@dataclass(frozen=True)
class ShownEnv:
    name: str
    shown: str
    reference: bool  # from a Secret, a ConfigMap or the pod: named, never read


@dataclass(frozen=True)
class ContainerView:
    name: str
    image: str
    command: str
    env: list[ShownEnv]


def containers(snapshot: dict[str, Any] | None) -> list[ContainerView]:
    """The Task's containers as the run was queued with them: image, command, env. A value from a
    Secret or ConfigMap is shown as where it comes from; the dashboard never reads either."""
    spec = ((((snapshot or {}).get("spec") or {}).get("template") or {}).get("spec")) or {}
    out = []
    for c in spec.get("containers") or []:
        env = []
        for e in c.get("env") or []:
            source = e.get("valueFrom") or {}
            if "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                env.append(ShownEnv(e["name"], f"from Secret {ref.get('name')}, key {ref.get('key')}", True))
            elif "configMapKeyRef" in source:
                ref = source["configMapKeyRef"]
                env.append(ShownEnv(e["name"], f"from ConfigMap {ref.get('name')}, key {ref.get('key')}", True))
            elif "fieldRef" in source:
                env.append(ShownEnv(e["name"], f"from the pod's {source['fieldRef'].get('fieldPath')}", True))
            else:
                env.append(ShownEnv(e["name"], str(e.get("value", "")), False))
        for f in c.get("envFrom") or []:
            kind, ref = ("Secret", f["secretRef"]) if "secretRef" in f else ("ConfigMap", f.get("configMapRef") or {})
            prefix = f" (prefixed {f['prefix']})" if f.get("prefix") else ""
            env.append(ShownEnv("*", f"every key of {kind} {ref.get('name')}{prefix}", True))
        command = " ".join([*(c.get("command") or []), *(c.get("args") or [])])
        out.append(ContainerView(c.get("name", "task"), c.get("image", ""), command or "(the image's own)", env))
    return out
