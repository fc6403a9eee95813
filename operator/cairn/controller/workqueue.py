"""A work queue with controller-runtime's guarantees: a key is processed by one worker at a time;
adding a key that is waiting is a no-op; adding one that is being processed runs it once more
afterwards; delayed adds keep the earliest time; failures are retried with per-key backoff.

A key may be added for later: it waits behind the others, so that a burst of new work (thousands of
TaskRuns created at once, each to be registered) does not hold up the work in flight (a pod that
ended, a run admitted); one get in LATER_SHARE still takes the oldest of them, so they move on."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
LATER_SHARE = 4
log = logging.getLogger(__name__)


class WorkQueue(Generic[K]):
    def __init__(self, name: str, *, base_delay: float = 0.05, max_delay: float = 60.0) -> None:
        self.name = name
        self._queue: deque[K] = deque()
        self._later: deque[K] = deque()
        self._gets = 0
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._timers: dict[K, tuple[float, asyncio.TimerHandle]] = {}
        self._failures: dict[K, int] = {}
        self._ready = asyncio.Event()
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._closed = False

    def __len__(self) -> int:
        return len(self._queue) + len(self._later)

    def add(self, key: K, *, later: bool = False) -> None:
        if self._closed:
            return
        if key in self._dirty:
            if not later and key in self._later:  # it is wanted now after all: to the front line
                self._later.remove(key)
                self._queue.append(key)
            return
        self._dirty.add(key)
        if key not in self._processing:
            (self._later if later else self._queue).append(key)
            self._ready.set()

    def add_after(self, key: K, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        existing = self._timers.get(key)
        if existing is not None:
            if existing[0] <= when:
                return
            existing[1].cancel()
        handle = loop.call_at(when, self._fire, key)
        self._timers[key] = (when, handle)

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def add_rate_limited(self, key: K) -> None:
        """Retry after a failure: 50 ms, 100 ms, ... up to max_delay."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        self.add_after(key, min(self._max_delay, self._base_delay * 2**failures))

    def forget(self, key: K) -> None:
        self._failures.pop(key, None)

    async def get(self) -> K:
        while not self._queue and not self._later:
            self._ready.clear()
            await self._ready.wait()
        self._gets += 1
        if self._later and (not self._queue or self._gets % LATER_SHARE == 0):
            key = self._later.popleft()
        else:
            key = self._queue.popleft()
        self._dirty.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: K) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            self._ready.set()

    def close(self) -> None:
        self._closed = True
        for _, handle in self._timers.values():
            handle.cancel()
        self._timers.clear()


async def run_workers(queue: WorkQueue[K], handle: Callable[[K], Awaitable[None]], count: int) -> None:
    """Process keys with `count` workers until cancelled. A failing key is retried with backoff."""

    async def worker() -> None:
        while True:
            key = await queue.get()
            try:
                await handle(key)
                queue.forget(key)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: processing %s failed; will retry", queue.name, key)
                queue.add_rate_limited(key)
            finally:
                queue.done(key)

    await asyncio.gather(*(worker() for _ in range(count)))
