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


def timeline(run: dict[str, Any], now: datetime) -> tuple[list[Bar], int]:
    """The waterfall: a row per attempt, then a row per step under it; and the number of rows."""
    attempts = run.get("attempts") or []
    steps = run.get("steps") or []
    times = [parse_time(t) for a in attempts for t in (a.get("startedAt"), a.get("endedAt")) if t]
    times += [parse_time(t) for s in steps for t in (s.get("startedAt"), s.get("completedAt")) if t]
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
    return bars, row
