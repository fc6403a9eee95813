"""What durable waits and child runs give back to task code."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class WaitSuspended(BaseException):
    """Raised by a wait that ends this pod. It is a BaseException so that `except Exception` in task
    code does not swallow it: the runner exits, the run gives its slot back, and a new pod resumes it
    when the wait is over (the wait then returns its result at once)."""


@dataclass(frozen=True)
class Token:
    """A wait token: complete it by a POST of JSON to `url` (no credentials: the secret is in the URL),
    by `cairn tokens complete ID`, or with a TokenCompletion object."""

    id: str
    url: str
    timeout: datetime | None = None


@dataclass(frozen=True)
class TokenResult(Generic[T]):
    """The data a token was completed with, or timed_out (then ok is False and data None)."""

    ok: bool
    data: T | None
    timed_out: bool


@dataclass(frozen=True)
class ChildResult(Generic[T]):
    """How a child run ended: ok (Succeeded) with its result, or its phase (Failed, Cancelled, Deleted)."""

    run: str
    phase: str
    ok: bool
    result: T | None


@dataclass(frozen=True)
class ChildRun:
    """One child of batch_trigger_and_wait."""

    task: str
    payload: Any = None
    queue: str | None = None
    priority: int = 0
    concurrency_key: str | None = None

    def wire(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"task": self.task, "payload": self.payload, "priority": self.priority}
        if self.queue is not None:
            doc["queue"] = self.queue
        if self.concurrency_key is not None:
            doc["concurrencyKey"] = self.concurrency_key
        return doc
