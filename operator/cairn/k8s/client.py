"""The operator's Kubernetes client: one lightkube AsyncClient (and, for pod creates, the aiohttp client
of k8s/http.py) behind a client-side rate limit, with every request counted (the benchmarks report
requests per admission)."""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from pathlib import Path

from lightkube import AsyncClient, KubeConfig

from cairn.k8s.http import JsonClient


def load_config(kubeconfig: str | None) -> KubeConfig:
    """A kubeconfig file if given, else the pod's service account (in-cluster)."""
    if kubeconfig:
        return KubeConfig.from_file(kubeconfig)
    if Path("/var/run/secrets/kubernetes.io/serviceaccount/token").exists():
        return KubeConfig.from_service_account()
    return KubeConfig.from_env()


class RateLimiter:
    """A token bucket: `qps` requests per second on average, bursts of up to `burst`.

    Two classes of acquirer. Urgent ones (pod creates and deletes: what admits and ends work) are
    served first. Background ones (status writes, which wait merged per object and lose nothing by
    waiting longer) take a token when no urgent acquirer waits, and in any case at least
    `background_share` of the budget: their writes merge while they wait, instead of each taking
    a request away from a pod, and a person watching still sees status move under any load."""

    def __init__(self, qps: float, burst: int, *, background_share: float = 0.2) -> None:
        self.qps = qps
        self.burst = burst
        self._tokens = float(burst)
        self._stamp = time.monotonic()
        self._lock = asyncio.Lock()
        self._background_lock = asyncio.Lock()
        self._urgent_waiting = 0
        self._background_waiting = 0
        self._background_gap = 1 / (background_share * qps) if qps > 0 and background_share > 0 else math.inf
        self._background_due = self._stamp

    def _refill(self) -> float:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.qps)
        self._stamp = now
        return now

    def try_acquire(self) -> bool:
        self._refill()
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    async def acquire(self, *, background: bool = False) -> None:
        if self.qps <= 0:
            return
        if background:
            await self._acquire_background()
            return
        self._urgent_waiting += 1
        try:
            async with self._lock:
                while True:
                    now = self._refill()
                    # A background request whose share is due gets the next token, even from a pod.
                    held = self._background_waiting and now >= self._background_due
                    if self._tokens >= 1 and not held:
                        self._tokens -= 1
                        return
                    await asyncio.sleep(max((1 - self._tokens) / self.qps, 0.25 / self.qps if held else 0.0))
        finally:
            self._urgent_waiting -= 1

    async def _acquire_background(self) -> None:
        self._background_waiting += 1
        try:
            await self._take_background()
        finally:
            self._background_waiting -= 1

    async def _take_background(self) -> None:
        async with self._background_lock:
            while True:
                now = self._refill()
                due = now >= self._background_due
                if self._tokens >= 1 and (self._urgent_waiting == 0 or due):
                    self._tokens -= 1
                    self._background_due = now + self._background_gap
                    return
                if self._tokens < 1:
                    wait = (1 - self._tokens) / self.qps
                else:  # a token is here, but an urgent acquirer waits for it: look again after its turn
                    wait = min(1 / self.qps, self._background_due - now)
                await asyncio.sleep(max(wait, 0.0005))


class Kube:
    """The client plus its rate limit and request counts (by verb and resource)."""

    def __init__(
        self,
        config: KubeConfig,
        *,
        qps: float = 50,
        burst: int = 100,
        event_qps: float = 5,
        field_manager: str = "cairn-operator",
    ) -> None:
        self.client = AsyncClient(config, field_manager=field_manager, trust_env=False)
        self.json = JsonClient(config, field_manager=field_manager)  # pod creates (see k8s/http.py)
        self.limiter = RateLimiter(qps, burst)
        # Events have a budget of their own, and are dropped rather than delayed when it runs out:
        # under load, admissions and status come first.
        self.event_limiter = RateLimiter(event_qps, 50)
        self.requests: Counter[str] = Counter()
        self.events_dropped = 0

    async def spend(self, what: str, *, background: bool = False) -> None:
        """Wait for the budget; background requests (status writes) yield to urgent ones."""
        await self.limiter.acquire(background=background)
        self.requests[what] += 1

    def spend_event(self) -> bool:
        """Take an event token if one is free right now (never waits)."""
        if self.event_limiter.try_acquire():
            self.requests["create events"] += 1
            return True
        self.events_dropped += 1
        return False

    async def close(self) -> None:
        await self.json.close()
        await self.client.close()
