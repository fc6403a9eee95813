"""Fire times of cron expressions in a time zone (pure: the instant to start from is passed in)."""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from itertools import islice, takewhile
from zoneinfo import ZoneInfo

from cronsim import CronSim

from cairn.api.cron import expand


def _ambiguous(local: datetime) -> bool:
    return local.replace(fold=0).utcoffset() != local.replace(fold=1).utcoffset()


class Cron:
    """One expression, parsed once."""

    def __init__(self, expression: str) -> None:
        self.expression = expand(expression)
        fields = self.expression.split()
        hour = fields[-4]
        # A fixed-hour time repeated by a fall-back fires once; an every-hour schedule fires on both.
        self.once_per_wall_time = hour != "*" and not hour.startswith("*/")

    def after(self, start: datetime, zone: ZoneInfo) -> Iterator[datetime]:
        """Fire times strictly after `start`, in UTC, in order (cronsim's, less the repeats of a fall-back)."""
        for local in CronSim(self.expression, start.astimezone(zone)):
            if self.once_per_wall_time and local.fold == 1 and _ambiguous(local):
                continue  # its first occurrence (fold 0) fired already
            yield local.astimezone(UTC)


def fire_times(crons: Sequence[Cron], zone: ZoneInfo, after: datetime) -> Iterator[datetime]:
    """The union of the expressions' fire times after `after`, in order, each instant once."""
    last: datetime | None = None
    for t in heapq.merge(*(c.after(after, zone) for c in crons)):
        if t != last:
            yield t
            last = t


def between(
    crons: Sequence[Cron], zone: ZoneInfo, after: datetime, until: datetime, limit: int
) -> tuple[list[datetime], bool]:
    """Fire times in (after, until], the first `limit` of them; and whether there are more."""
    due = list(islice(takewhile(lambda t: t <= until, fire_times(crons, zone, after)), limit + 1))
    return due[:limit], len(due) > limit


def next_after(crons: Sequence[Cron], zone: ZoneInfo, after: datetime) -> datetime | None:
    return next(fire_times(crons, zone, after), None)
