"""The operator's Kubernetes client: one lightkube AsyncClient behind a client-side rate limit, with
every request counted (the benchmarks report requests per admission)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

from lightkube import AsyncClient, KubeConfig


def load_config(kubeconfig: str | None) -> KubeConfig:
    """A kubeconfig file if given, else the pod's service account (in-cluster)."""
    if kubeconfig:
        return KubeConfig.from_file(kubeconfig)
    if Path("/var/run/secrets/kubernetes.io/serviceaccount/token").exists():
        return KubeConfig.from_service_account()
    return KubeConfig.from_env()


class RateLimiter:
    """A token bucket: `qps` requests per second on average, bursts of up to `burst`."""

    def __init__(self, qps: float, burst: int) -> None:
        self.qps = qps
        self.burst = burst
        self._tokens = float(burst)
        self._stamp = time.monotonic()
        self._lock = asyncio.Lock()

    def try_acquire(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.qps)
        self._stamp = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    async def acquire(self) -> None:
        if self.qps <= 0:
            return
        async with self._lock:
            while True:
                now = time.monotonic()
                self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.qps)
                self._stamp = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await asyncio.sleep((1 - self._tokens) / self.qps)


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
        self.limiter = RateLimiter(qps, burst)
        # Events have a budget of their own, and are dropped rather than delayed when it runs out:
        # under load, admissions and status come first.
        self.event_limiter = RateLimiter(event_qps, 50)
        self.requests: Counter[str] = Counter()
        self.events_dropped = 0

    async def spend(self, what: str) -> None:
        await self.limiter.acquire()
        self.requests[what] += 1

    def spend_event(self) -> bool:
        """Take an event token if one is free right now (never waits)."""
        if self.event_limiter.try_acquire():
            self.requests["create events"] += 1
            return True
        self.events_dropped += 1
        return False

    async def close(self) -> None:
        await self.client.close()
