"""Progress: the checkpoint API notifies when a pod records a step or its state (PostgreSQL NOTIFY);
the run is reconciled a second later, so that its status mirrors its steps at most about once a
second however fast they come."""

from __future__ import annotations

import asyncio
import logging

from cairn.controller.deps import Deps

log = logging.getLogger(__name__)
MIRROR_DELAY = 1.0  # seconds


class ProgressListener:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    def noticed(self, uid: str) -> bool:
        """A pod of run `uid` recorded progress; True if the run is one this operator serves."""
        if uid not in self.deps.cache.taskruns:
            return False
        self.deps.reconcile_run(uid, MIRROR_DELAY)
        return True

    async def listen(self) -> None:
        """Until the store's notifications end (the connection is lost)."""
        async for uid in self.deps.store.progress():
            self.noticed(uid)

    async def listen_forever(self) -> None:
        while True:
            try:
                await self.listen()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - the database restarts; listen again
                log.warning("progress listener lost its connection (%s); reconnecting", e)
            await asyncio.sleep(1)
