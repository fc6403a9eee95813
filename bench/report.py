"""The table printed at the end of `make bench`, and the JSON written beside it."""

from __future__ import annotations

import json
import math
import platform
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.stats import Figure, cv
from harness import config


@dataclass
class Result:
    """What one benchmark measured: its figures, its details, and how busy the machine was."""

    bench: str
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def _fmt(v: float | None, unit: str = "") -> str:
    if v is None or not math.isfinite(v):
        return "-"
    if abs(v) < 10:
        return f"{v:.2f}"
    if unit in ("ms", "s", "MiB"):
        return f"{v:.1f}"
    return f"{v:,.0f}"


def _target(f: Figure) -> str:
    if f.target is None:
        return ""
    sign = "<=" if f.target_kind == "max" else ">="
    mark = {True: "met", False: "MISSED", None: ""}[f.met]
    if f.target_kind == "ratio_max":
        return f"ratio <= {f.target:.2f}x {mark}"
    also = f", ratio >= {f.min_ratio:.2f}x" if f.min_ratio is not None else ""
    return f"{sign} {_fmt(f.target, f.unit)}{also} {mark}".strip()


def table(results: list[Result]) -> str:
    header = ("benchmark", "figure", "unit", "Cairn", "cv", "baseline", "base", "ratio", "target")
    rows: list[tuple[str, ...]] = []
    for r in results:
        if r.error:
            rows.append((r.bench, f"FAILED: {r.error[:90]}", "", "", "", "", "", "", ""))
            continue
        for f in r.figures:
            rows.append(
                (
                    f.bench,
                    f.name,
                    f.unit,
                    _fmt(f.value, f.unit),
                    f"{100 * cv(f.reps):.0f}%" if len(f.reps) > 1 else "",
                    f.baseline_name,
                    _fmt(f.base, f.unit) if f.base is not None else "",
                    f"{f.ratio:.2f}x" if f.ratio is not None else "",
                    _target(f),
                )
            )
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]
    numeric = {3, 4, 6, 7}
    lines = []
    for row in [header, *rows]:
        cells = [c.rjust(widths[i]) if i in numeric else c.ljust(widths[i]) for i, c in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
        if row is header:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def machine_lines(results: list[Result]) -> str:
    lines = ["how busy the machine was (per benchmark):"]
    for r in results:
        m = r.machine
        if not m:
            continue
        others = m.get("other_harness_clusters") or []
        lines.append(
            f"  {r.bench:<16} {m['seconds']:>6.0f}s  cpu busy {m['cpu_busy_pct']:>5.1f}%"
            f"  steal {m['cpu_steal_pct']:.2f}%"
            f"  load {m['load_start'][0]:.2f} -> {m['load_end'][0]:.2f} ({m['cpus']} cpus)"
            + (f"  other harness clusters running: {len(others)}" if others else "")
        )
    return "\n".join(lines)


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=config.REPO, capture_output=True, text=True, timeout=10, check=False
        ).stdout.strip()
    except OSError:
        return ""


def write_json(results: list[Result], out_dir: Path, meta: dict[str, Any]) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = out_dir / f"{stamp}.json"
    doc = {
        "started": meta.get("started"),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": _git("rev-parse", "HEAD"),
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "host": {"python": platform.python_version(), "kernel": platform.release(), "machine": platform.machine()},
        **meta,
        "benchmarks": [
            {
                "bench": r.bench,
                "error": r.error,
                "machine": r.machine,
                "figures": [f.as_json() for f in r.figures],
                "details": r.details,
            }
            for r in results
        ],
    }
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return path
