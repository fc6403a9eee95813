"""Which queued runs to admit, decided on a snapshot of one queue (pure).

The store takes the snapshot and applies the decision in one transaction with the queue's row
locked, so two operators can never both spend the same free slot (see store/postgres.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class WaitReason(StrEnum):
    QUEUE_MISSING = "QueueMissing"
    QUEUE_PAUSED = "QueuePaused"
    QUEUE_FULL = "QueueFull"
    KEY_FULL = "KeyFull"
    BACKING_OFF = "BackingOff"  # waiting out the delay before its next attempt
    DELAYED = "Delayed"  # a run for later (spec.delay, spec.notBefore): not admitted before its time


@dataclass(frozen=True)
class Limits:
    concurrency_limit: int
    per_key_limit: int | None = None
    paused: bool = False


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
class Decision:
    admitted: list[str]
    waiting: dict[str, WaitReason]


def order(candidates: Iterable[Candidate]) -> list[Candidate]:
    """Higher priority first, then runs resuming after a wait, then oldest first (then first registered,
    then uid: the order is total)."""
    return sorted(candidates, key=lambda c: (-c.priority, not c.resumed, c.created, c.registered, c.uid))


def decide(limits: Limits | None, usage: Usage, candidates: Iterable[Candidate], now: datetime) -> Decision:
    """Admit as many queued runs as there are free slots, in order, skipping (not stopping at) runs
    whose key is full: one busy key never blocks the others behind it."""
    ordered = order(candidates)
    if limits is None:
        return Decision([], {c.uid: WaitReason.QUEUE_MISSING for c in ordered})
    if limits.paused:
        return Decision([], {c.uid: WaitReason.QUEUE_PAUSED for c in ordered})
    free = limits.concurrency_limit - usage.total
    per_key = Counter(usage.by_key)
    admitted: list[str] = []
    waiting: dict[str, WaitReason] = {}
    for c in ordered:
        if c.not_before is not None and c.not_before > now:
            waiting[c.uid] = WaitReason.BACKING_OFF if c.started else WaitReason.DELAYED
        elif free <= 0:
            waiting[c.uid] = WaitReason.QUEUE_FULL
        elif limits.per_key_limit is not None and c.key is not None and per_key[c.key] >= limits.per_key_limit:
            waiting[c.uid] = WaitReason.KEY_FULL
        else:
            admitted.append(c.uid)
            free -= 1
            if c.key is not None:
                per_key[c.key] += 1
    return Decision(admitted, waiting)


def next_due(candidates: Iterable[Candidate], now: datetime) -> datetime | None:
    """When the earliest backing-off or delayed candidate becomes admissible (to schedule the next round)."""
    due = [c.not_before for c in candidates if c.not_before is not None and c.not_before > now]
    return min(due) if due else None


def explain(reason: WaitReason, queue: str, limits: Limits | None, key: str | None) -> str:
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
    if reason is WaitReason.DELAYED:
        return "a run for later (spec.delay or spec.notBefore): not admitted before its time"
    return "waiting out the delay before the next attempt"
