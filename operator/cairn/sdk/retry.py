"""Retrying a step inside its pod, before the attempt is given up (as Temporal's activities and DBOS's
steps do): a flaky call is tried again with backoff, and only the last failure ends the attempt."""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger("cairn.sdk")


@dataclass(frozen=True)
class StepRetry:
    """`ctx.step("fetch", fetch, url, retry=StepRetry(max_attempts=5))`: up to `max_attempts` tries,
    `initial_delay` seconds after the first failure, multiplied by `factor` each time, at most
    `max_delay`. Only exceptions of `retry_on` are retried (never Fatal or a wait)."""

    max_attempts: int = 3
    initial_delay: float = 1.0
    factor: float = 2.0
    max_delay: float = 60.0
    retry_on: tuple[type[BaseException], ...] = (Exception,)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"StepRetry.max_attempts must be at least 1, not {self.max_attempts}")
        if self.initial_delay < 0 or self.max_delay < 0 or self.factor < 1:
            raise ValueError("StepRetry: delays must be >= 0 and factor >= 1")

    def delay(self, failed_tries: int) -> float:
        """Seconds to wait after the `failed_tries`-th failure."""
        return float(min(self.max_delay, self.initial_delay * self.factor ** (failed_tries - 1)))

    def retries(self, error: BaseException, tries: int) -> bool:
        from cairn.sdk.client import CairnError

        return tries < self.max_attempts and isinstance(error, self.retry_on) and not isinstance(error, CairnError)
