"""Which queued runs to admit, decided on a snapshot of one queue (pure).

The store takes the snapshot and applies the decision in one transaction with the queue's row
locked, so two operators can never both spend the same free slot (see store/postgres.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from cairn.domain.pace import Rate, Window, chance
from cairn.domain.timefmt import format_time


class WaitReason(StrEnum):
    QUEUE_MISSING = "QueueMissing"
    QUEUE_PAUSED = "QueuePaused"
    QUEUE_FULL = "QueueFull"
    KEY_FULL = "KeyFull"
    BACKING_OFF = "BackingOff"  # waiting out the delay before its next attempt
    DELAYED = "Delayed"  # a run for later (spec.delay, spec.notBefore): not admitted before its time
    RATE_LIMITED = "RateLimited"  # the queue admitted as many as its rateLimit allows for now
    KEY_RATE_LIMITED = "KeyRateLimited"  # its concurrency key did (perKeyRateLimit)
    REJECTED = "Rejected"  # the queue held maxQueued runs when it arrived: never queued


@dataclass(frozen=True)
class Limits:
    concurrency_limit: int
    per_key_limit: int | None = None
    paused: bool = False
    rate: Rate | None = None
    key_rate: Rate | None = None
    max_queued: int | None = None


@dataclass(frozen=True)
class Candidate:
    uid: str
    priority: int
    created: datetime
    key: str | None = None
    not_before: datetime | None = None
    registered: int = 0  # the store's registration order: breaks ties of creation time (1 s resolution)
    resumed: bool = False  # it started before and waited: ahead of its priority's runs that never started
    started: bool = False  # an attempt has run: a not_before is its backoff, not a delay it was created with


@dataclass(frozen=True)
class Usage:
    """Slots held now: in all, and per concurrency key."""

    total: int = 0
    by_key: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Recent:
    """The queue's admissions that may still count against its rates: all, and per concurrency key."""

    times: Sequence[datetime] = ()
    by_key: Mapping[str, Sequence[datetime]] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    admitted: list[str]
    waiting: dict[str, WaitReason]
    # For each run waiting on a rate: when its chance comes if nothing else changes (runs ahead of it
    # take theirs first). Stable from round to round, so it is written once, not at every admission.
    chances: dict[str, datetime] = field(default_factory=dict)
    wake: datetime | None = None  # the earliest instant a rate lets the next waiting run in


def order(candidates: Iterable[Candidate]) -> list[Candidate]:
    """Higher priority first, then runs resuming after a wait, then oldest first (then first registered,
    then uid: the order is total)."""
    return sorted(candidates, key=lambda c: (-c.priority, not c.resumed, c.created, c.registered, c.uid))


def decide(
    limits: Limits | None,
    usage: Usage,
    candidates: Iterable[Candidate],
    now: datetime,
    recent: Recent | None = None,
) -> Decision:
    """Admit as many queued runs as there are free slots and as the rates allow, in order, skipping
    (not stopping at) runs whose key is full or at its rate: one busy key never blocks the others."""
    ordered = order(candidates)
    if limits is None:
        return Decision([], {c.uid: WaitReason.QUEUE_MISSING for c in ordered})
    if limits.paused:
        return Decision([], {c.uid: WaitReason.QUEUE_PAUSED for c in ordered})
    recent = recent or Recent()
    free = limits.concurrency_limit - usage.total
    per_key = Counter(usage.by_key)
    queue_window = Window(limits.rate, recent.times) if limits.rate else None
    key_windows: dict[str, Window] = {}

    def key_window(key: str | None) -> Window | None:
        if key is None or limits.key_rate is None:
            return None
        if key not in key_windows:
            key_windows[key] = Window(limits.key_rate, recent.by_key.get(key, ()))
        return key_windows[key]

    admitted: list[str] = []
    waiting: dict[str, WaitReason] = {}
    paced: list[Candidate] = []
    for c in ordered:
        kw = key_window(c.key)
        if c.not_before is not None and c.not_before > now:
            waiting[c.uid] = WaitReason.BACKING_OFF if c.started else WaitReason.DELAYED
        elif free <= 0:
            waiting[c.uid] = WaitReason.QUEUE_FULL
        elif limits.per_key_limit is not None and c.key is not None and per_key[c.key] >= limits.per_key_limit:
            waiting[c.uid] = WaitReason.KEY_FULL
        elif queue_window is not None and queue_window.next_chance(now) > now:
            waiting[c.uid] = WaitReason.RATE_LIMITED
            paced.append(c)
        elif kw is not None and kw.next_chance(now) > now:
            waiting[c.uid] = WaitReason.KEY_RATE_LIMITED
            paced.append(c)
        else:
            admitted.append(c.uid)
            free -= 1
            for w in (queue_window, kw):
                if w is not None:
                    w.take(now)
            if c.key is not None:
                per_key[c.key] += 1
    return Decision(admitted, waiting, *_forecast(paced, now, queue_window, key_windows))


def _forecast(
    paced: list[Candidate], now: datetime, queue_window: Window | None, key_windows: Mapping[str, Window]
) -> tuple[dict[str, datetime], datetime | None]:
    """When each run held back by a rate gets its chance, in order, as if each took it (on copies)."""
    fq = queue_window.copy() if queue_window else None
    fk = {k: w.copy() for k, w in key_windows.items()}
    chances: dict[str, datetime] = {}
    wake: datetime | None = None
    for c in paced:
        kw = fk.get(c.key) if c.key is not None else None
        at = chance(now, fq, kw)
        wake = at if wake is None else min(wake, at)
        # Shown to whole seconds: a round that runs a few milliseconds late moves no one's chance.
        chances[c.uid] = _ceil_second(at)
        for w in (fq, kw):
            if w is not None:
                w.take(at)
    return chances, wake


def _ceil_second(t: datetime) -> datetime:
    return t if t.microsecond == 0 else t.replace(microsecond=0) + timedelta(seconds=1)


def next_due(candidates: Iterable[Candidate], now: datetime) -> datetime | None:
    """When the earliest backing-off or delayed candidate becomes admissible (to schedule the next round)."""
    due = [c.not_before for c in candidates if c.not_before is not None and c.not_before > now]
    return min(due) if due else None


def explain(
    reason: WaitReason, queue: str, limits: Limits | None, key: str | None, until: datetime | None = None
) -> str:
    """The message a queued run shows for why it waits. It names no changing counts, so it changes
    only when the reason does (a status write per change, not per admission)."""
    if reason is WaitReason.QUEUE_MISSING:
        # spec.queue is immutable once the run exists: the fix is the Queue, or a new run.
        return (
            f'Queue "{queue}" does not exist in this namespace: create it (see examples/queue.yaml), '
            "and the run is admitted; or cancel this run and create it again with another spec.queue"
        )
    if reason is WaitReason.QUEUE_PAUSED:
        return f'Queue "{queue}" is paused (spec.paused): the run is admitted when it is resumed'
    if reason is WaitReason.QUEUE_FULL and limits is not None:
        return f'Queue "{queue}" is full: all {limits.concurrency_limit} slots are in use'
    if reason is WaitReason.KEY_FULL and limits is not None:
        return f'concurrency key "{key}" already has {limits.per_key_limit} runs holding slots in queue "{queue}"'
    when = f": its chance comes at {format_time(until)}" if until is not None else ""
    if reason is WaitReason.RATE_LIMITED and limits is not None and limits.rate is not None:
        return f'Queue "{queue}" admits at most {limits.rate.describe()} (spec.rateLimit){when}'
    if reason is WaitReason.KEY_RATE_LIMITED and limits is not None and limits.key_rate is not None:
        return (
            f'concurrency key "{key}" is admitted at most {limits.key_rate.describe()} in queue "{queue}" '
            f"(spec.perKeyRateLimit){when}"
        )
    if reason is WaitReason.REJECTED and limits is not None:
        return (
            f'Queue "{queue}" already held {limits.max_queued} waiting runs (spec.maxQueued) when this run '
            "arrived: it was never queued; create it again when the queue has drained"
        )
    if reason is WaitReason.DELAYED:
        return "a run for later (spec.delay or spec.notBefore): not admitted before its time"
    return "waiting out the delay before the next attempt"
