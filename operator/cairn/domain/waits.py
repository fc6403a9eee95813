"""Durable waits, as the operator sees them (pure): a run that sleeps, waits for a token or for its
child runs holds no pod and no slot. Which wait it is, what its status says, and when to look again.

The store decides whether a wait is over (under the run's row lock, see store/postgres.py): the
domain only says when the clock alone may have ended it (a sleep's end, a token's timeout)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from cairn.domain.timefmt import format_time

WaitKind = Literal["sleep", "token", "children"]
SUSPENDED = "Suspended"  # the reason an attempt ended when its pod stopped for a wait
REASONS: dict[str, str] = {"sleep": "Sleeping", "token": "WaitingForToken", "children": "WaitingForChildren"}


@dataclass(frozen=True)
class WaitView:
    """The run's last wait that ended a pod (the store's row)."""

    key: str
    kind: WaitKind
    attempt: int  # the attempt whose pod stopped for it
    created: datetime
    until: datetime | None = None  # a sleep's end; a token's timeout
    token: str | None = None
    children: int | None = None
    children_done: int = 0
    done: datetime | None = None

    @property
    def reason(self) -> str:
        return REASONS[self.kind]

    def message(self) -> str:
        if self.kind == "sleep":
            until = format_time(self.until) if self.until else "?"
            return f"sleeping until {until} (step {self.key}); no pod, no slot held"
        if self.kind == "token":
            timeout = f", times out at {format_time(self.until)}" if self.until else ""
            return f"waiting for token {self.token} (step {self.key}{timeout}); no pod, no slot held"
        return (
            f"waiting for child runs (step {self.key}): {self.children_done} of {self.children} done; "
            "no pod, no slot held"
        )

    def due(self, now: datetime) -> bool:
        """The clock alone has ended it: a sleep's time came, a token's timeout passed."""
        return self.done is None and self.until is not None and self.kind in ("sleep", "token") and now >= self.until

    def stale(self) -> bool:
        """Every child ended but the wait is open: a wake that did not happen (repaired)."""
        return self.done is None and self.kind == "children" and self.children_done >= (self.children or 0)


@dataclass(frozen=True)
class Over:
    """A wait that is over, with the result the run's step records."""

    result: Any
    timed_out_token: bool = False  # the token's status must become timedOut


def outcome(
    kind: str,
    *,
    time_is_up: bool = False,
    token: tuple[str, Any, bool] | None = None,  # (status, data, past its timeout)
    children: int | None = None,
    ended: Sequence[tuple[str, str, Any]] = (),  # finished children: (name, phase, result), in order
) -> Over | None:
    """Whether a wait is over, as the store sees it under the run's lock, and its result: null for a
    sleep; {ok, data, timedOut} for a token; one {run, phase, ok, result} per child, in order."""
    if kind == "sleep":
        return Over(None) if time_is_up else None
    if kind == "token":
        if token is None:
            return None
        status, data, past = token
        if status == "completed":
            return Over({"ok": True, "data": data, "timedOut": False})
        if status == "timedOut" or past:
            return Over({"ok": False, "data": None, "timedOut": True}, timed_out_token=status != "timedOut")
        return None
    if kind == "children" and len(ended) >= (children or 0):
        return Over(
            [{"run": name, "phase": phase, "ok": phase == "Succeeded", "result": r} for name, phase, r in ended]
        )
    return None


@dataclass(frozen=True)
class Wake:
    """End the wait `key` now (the store checks that it is indeed over)."""

    key: str
    repair: bool = False  # it should have ended by itself: say so with an Event


@dataclass(frozen=True)
class ChildView:
    """A child run of this run, from the cache: for cancelling the unfinished ones with their parent."""

    name: str
    finished: bool
    cancelling: bool
    abandon: bool  # its parent-close policy says: keep running
