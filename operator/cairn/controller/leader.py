"""Leading: wait until this process holds the Lease, then keep it; when it cannot, stop at once.
The decisions are domain.leader's; this module only reads and writes the Lease on their schedule."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

from cairn.domain.leader import Move, Record, Timing, must_stop, next_move
from cairn.k8s.lease import Lost

log = logging.getLogger(__name__)


class Lease(Protocol):
    """The Lease as k8s.lease.LeaseStore reads and writes it (a fake in unit tests)."""

    namespace: str
    name: str

    async def read(self) -> Record | None: ...
    async def create(self, me: str) -> None: ...
    async def write(self, me: str, *, take: bool) -> None: ...
    async def release(self, me: str) -> None: ...


class Elector:
    def __init__(self, lease: Lease, me: str, timing: Timing, clock: Callable[[], float] = time.monotonic) -> None:
        self.lease, self.me, self.timing, self.clock = lease, me, timing, clock
        self._seen: tuple[str | None, str] | None = None
        self._observed_at = 0.0
        self.last_renewed = 0.0
        self.waited = 0.0  # seconds spent as a standby before leading

    def _observe(self, record: Record | None) -> None:
        key = (record.holder, record.version) if record else None
        if key != self._seen:
            self._seen, self._observed_at = key, self.clock()

    async def _try(self) -> bool:
        """One look at the lease and the move it calls for; True: we hold it now."""
        record = await self.lease.read()
        self._observe(record)
        move = next_move(self.me, record, self._observed_at, self.clock(), self.timing)
        if move is Move.WAIT:
            return False
        try:
            if move is Move.CREATE:
                await self.lease.create(self.me)
            else:
                await self.lease.write(self.me, take=move is Move.TAKE)
        except Lost as e:
            log.info("leader election: %s", e)
            return False
        if move is not Move.RENEW:
            previous = record.holder if record else None
            log.info("leading now (lease %s/%s, after %s)", self.lease.namespace, self.lease.name, previous or "nobody")
        self.last_renewed = self.clock()
        return True

    async def acquire(self) -> None:
        """Return once this process holds the lease."""
        start, said = self.clock(), None
        while True:
            try:
                if await self._try():
                    self.waited = self.clock() - start
                    return
            except Exception as e:  # noqa: BLE001 - the API server away: keep waiting, say why
                log.warning("leader election: cannot read the lease: %s", e)
            holder = self._seen[0] if self._seen else None
            if holder != said:
                log.info("standing by: the lease %s/%s is held by %s", self.lease.namespace, self.lease.name, holder)
                said = holder
            # Look again at the retry period, or just when the holder's lease runs out if sooner.
            expires_in = self._observed_at + self.timing.lease_duration - self.clock()
            await asyncio.sleep(max(0.05, min(self.timing.retry_period, expires_in)))

    async def keep(self, stop: Callable[[str], None]) -> None:
        """Renew every retry period; once the renew deadline passes without a renewal, call `stop`."""
        while True:
            await asyncio.sleep(self.timing.retry_period)
            try:
                if await self._try():
                    continue
                holder = self._seen[0] if self._seen else None
                if holder and holder != self.me:  # another leads already: not one more write
                    stop(f"the lease {self.lease.namespace}/{self.lease.name} is now held by {holder}")
                    return
                problem = "the lease changed under us"
            except Exception as e:  # noqa: BLE001 - the API server away or cut off: a renewal missed
                problem = f"cannot renew: {e}"
            if must_stop(self.last_renewed, self.clock(), self.timing):
                stop(f"lost the lease {self.lease.namespace}/{self.lease.name} ({problem})")
                return
            log.warning("leader election: renewal missed (%s)", problem)


def timing_for(lease_seconds: float) -> Timing:
    return Timing(lease_duration=lease_seconds, renew_deadline=0.7 * lease_seconds, retry_period=0.2 * lease_seconds)
