"""Figures, percentiles, and how busy the machine was while they were measured.

Every figure is reported as the median of several repetitions together with the coefficient of
variation (CV = standard deviation / mean) of those repetitions: a CV above ~10 % means the
machine (or the thing measured) was noisy, and the figure should be read as a range, not a point.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear between closest ranks (numpy's default)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def cv(values: Sequence[float]) -> float:
    """Coefficient of variation of repetitions (0 when there is only one)."""
    finite = [v for v in values if math.isfinite(v)]
    if len(finite) < 2:
        return 0.0
    mean = statistics.fmean(finite)
    return statistics.stdev(finite) / mean if mean else math.nan


@dataclass
class Figure:
    """One line of the table: a value (the median of `reps`), its unit, an optional baseline (the
    median of the baseline's repetitions, measured in the same run) and target."""

    bench: str
    name: str
    unit: str
    reps: list[float]
    baseline: list[float] | None = None
    baseline_name: str = ""
    # Target: value <= target ("max"), value >= target ("min"), or Cairn / baseline <= target
    # ("ratio_max": for a figure whose target is relative to a peer measured in the same run).
    target: float | None = None
    target_kind: str = "max"
    # A second condition beside an absolute target: Cairn / baseline at least this (e.g. admissions/s
    # >= 20 and >= the Job controller's).
    min_ratio: float | None = None
    # "lower" or "higher" is better: how the ratio reads.
    better: str = "lower"
    samples: int = 0  # observations behind each repetition (e.g. runs per repetition)
    note: str = ""

    @property
    def value(self) -> float:
        return median(self.reps)

    @property
    def base(self) -> float | None:
        return median(self.baseline) if self.baseline else None

    @property
    def ratio(self) -> float | None:
        """Cairn / baseline."""
        base = self.base
        if base is None or base == 0 or not math.isfinite(base):
            return None
        return self.value / base

    @property
    def met(self) -> bool | None:
        if self.target is None or not math.isfinite(self.value):
            return None if self.target is None else False
        if self.target_kind == "ratio_max":
            ratio = self.ratio
            return ratio is not None and ratio <= self.target
        if self.min_ratio is not None and not (self.ratio is not None and self.ratio >= self.min_ratio):
            return False
        return self.value <= self.target if self.target_kind == "max" else self.value >= self.target

    def as_json(self) -> dict[str, Any]:
        return {
            "bench": self.bench,
            "name": self.name,
            "unit": self.unit,
            "value": _finite(self.value),
            "reps": [_finite(v) for v in self.reps],
            "cv": _finite(cv(self.reps)),
            "samples_per_rep": self.samples,
            "baseline_name": self.baseline_name or None,
            "baseline": _finite(self.base) if self.base is not None else None,
            "baseline_reps": [_finite(v) for v in self.baseline] if self.baseline else None,
            "baseline_cv": _finite(cv(self.baseline)) if self.baseline else None,
            "ratio": _finite(self.ratio) if self.ratio is not None else None,
            "better": self.better,
            "target": self.target,
            "target_kind": self.target_kind if self.target is not None else None,
            "min_ratio": self.min_ratio,
            "met": self.met,
            "note": self.note or None,
        }


def _finite(v: float) -> float | None:
    return round(v, 6) if math.isfinite(v) else None


# -- the machine ------------------------------------------------------------------------------------
def _cpu_times() -> list[int]:
    with open("/proc/stat") as f:
        first = f.readline().split()
    return [int(x) for x in first[1:]]


def _other_harness_slots(mine: int | None) -> list[int]:
    """Harness slots held by other processes (another engineer's cluster), from /proc/locks: reading
    it takes no lock, so it never disturbs them."""
    lock_dir = Path("/run/cairn-harness")
    inodes: dict[int, int] = {}
    for i in range(8):
        try:
            inodes[os.stat(lock_dir / f"slot{i}.lock").st_ino] = i
        except OSError:
            continue
    held: set[int] = set()
    try:
        with open("/proc/locks") as f:
            for line in f:
                parts = line.split()
                if len(parts) > 5 and parts[1] == "FLOCK":
                    inode = int(parts[5].split(":")[-1])
                    if inode in inodes:
                        held.add(inodes[inode])
    except OSError:
        return []
    return sorted(s for s in held if s != mine)


@dataclass
class Machine:
    """CPU use, steal and load over an interval (a benchmark)."""

    started: float = field(default_factory=time.monotonic)
    cpu0: list[int] = field(default_factory=_cpu_times)
    load_start: tuple[float, float, float] = field(default_factory=os.getloadavg)
    slot: int | None = None

    def reading(self) -> dict[str, Any]:
        cpu1 = _cpu_times()
        delta = [b - a for a, b in zip(self.cpu0, cpu1, strict=False)]
        total = sum(delta) or 1
        # user nice system idle iowait irq softirq steal guest guest_nice
        idle = delta[3] + (delta[4] if len(delta) > 4 else 0)
        steal = delta[7] if len(delta) > 7 else 0
        return {
            "seconds": round(time.monotonic() - self.started, 1),
            "cpus": os.cpu_count(),
            "cpu_busy_pct": round(100 * (total - idle) / total, 1),
            "cpu_steal_pct": round(100 * steal / total, 2),
            "load_start": [round(x, 2) for x in self.load_start],
            "load_end": [round(x, 2) for x in os.getloadavg()],
            "other_harness_clusters": _other_harness_slots(self.slot),
        }


def load_now() -> dict[str, Any]:
    one, five, fifteen = os.getloadavg()
    return {"load1": round(one, 2), "load5": round(five, 2), "load15": round(fifteen, 2), "cpus": os.cpu_count()}
