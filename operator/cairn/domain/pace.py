"""A queue's pace: at most `limit` admissions in any window of `period`, and at most `burst` of them
close together (pure).

The rule is a sliding window over the admissions actually made (the store keeps their times, taken
from PostgreSQL's clock under the queue's row lock), not a bucket that refills: so it holds with any
number of operators and across restarts, and a limit changed on a live queue applies to the
admissions already made. `burst` < `limit` spreads them out: no more than `burst` in any window of
`burst * period / limit` (10 per 10 s with burst 1: one a second; with burst 10: ten at once, then
none until the first is 10 s old). Excess runs are never dropped: they wait, and the admission
round says when each one's chance comes.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from cairn.api.queue import RateLimit


@dataclass(frozen=True)
class Rate:
    limit: int
    period: timedelta
    burst: int  # 1 ≤ burst ≤ limit

    @property
    def burst_window(self) -> timedelta:
        return self.period * self.burst / self.limit

    def describe(self) -> str:
        seconds = self.period.total_seconds()
        if seconds % 3600 == 0:
            period = f"{seconds / 3600:g}h"
        elif seconds % 60 == 0:
            period = f"{seconds / 60:g}m"
        else:
            period = f"{seconds:g}s"
        burst = f", burst {self.burst}" if self.burst != self.limit else ""
        return f"{self.limit} per {period}{burst}"


def rate_of(spec: RateLimit | None) -> Rate | None:
    return Rate(spec.limit, spec.period.delta, spec.burst or spec.limit) if spec is not None else None


class Window:
    """The admissions that still count against one rate, oldest first."""

    def __init__(self, rate: Rate, times: Iterable[datetime] = ()) -> None:
        self.rate = rate
        self.times = sorted(times)[-rate.limit :]  # older ones can never decide anything

    def copy(self) -> Window:
        return Window(self.rate, self.times)

    def next_chance(self, now: datetime) -> datetime:
        """The earliest instant ≥ now at which one more admission keeps both windows within bounds.

        Windows are half-open, (t - period, t]: an admission exactly `period` after another no longer
        shares a window with it."""
        r, t = self.rate, now
        if len(self.times) >= r.limit:
            t = max(t, self.times[-r.limit] + r.period)
        if len(self.times) >= r.burst:
            t = max(t, self.times[-r.burst] + r.burst_window)
        return t

    def take(self, at: datetime) -> None:
        insort(self.times, at)
        del self.times[: -self.rate.limit]

    def used(self, now: datetime) -> int:
        """Admissions within the last period."""
        return sum(1 for t in self.times if t > now - self.rate.period)


def chance(now: datetime, *windows: Window | None) -> datetime:
    """The earliest instant ≥ now at which all the given windows allow one more admission."""
    return max((w.next_chance(now) for w in windows if w is not None), default=now)
