"""The retry decision: from a Task's retry policy and how an attempt ended, what happens next."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

from cairn.api.task import Backoff, PodFailureRule, RetryPolicy
from cairn.domain import quantity
from cairn.domain.termination import Outcome, Termination


@dataclass(frozen=True)
class Succeed:
    pass


@dataclass(frozen=True)
class Fail:
    reason: str
    message: str


@dataclass(frozen=True)
class Retry:
    delay: timedelta
    counted: bool  # spends one of maxAttempts
    reason: str  # why the last attempt ended


Decision = Succeed | Fail | Retry


@dataclass(frozen=True)
class Spent:
    """What earlier attempts of the run have used, not counting the one being decided."""

    counted: int = 0
    disruptions: int = 0


def backoff_delay(backoff: Backoff, retry: int, jitter_sample: float) -> timedelta:
    """Delay before retry number `retry` (1 = the second attempt): initialDelay x factor^(retry-1),
    capped at maxDelay, then moved by up to ±jitter. `jitter_sample` in [0, 1) is the randomness,
    passed in so that the decision stays a pure function."""
    initial = backoff.initial_delay.delta.total_seconds()
    cap = backoff.max_delay.delta.total_seconds()
    if initial <= 0 or cap <= initial or backoff.factor == 1:
        base = min(initial, cap)
    else:
        # Past this many steps the delay is capped: compare exponents instead of computing a huge power.
        steps_to_cap = math.log(cap / initial) / math.log(backoff.factor)
        base = cap if retry - 1 >= steps_to_cap else initial * backoff.factor ** (retry - 1)
    jittered = base * (1 + backoff.jitter * (2 * jitter_sample - 1))
    return timedelta(seconds=max(0.0, min(jittered, cap)))


def _rule_matches(rule: PodFailureRule, t: Termination) -> bool:
    if rule.on_exit_codes is not None:
        if t.exit_code is None or t.outcome is Outcome.SUCCEEDED:
            return False
        inside = t.exit_code in rule.on_exit_codes.values
        return inside if rule.on_exit_codes.operator == "In" else not inside
    wanted = {(c.type, c.status) for c in rule.on_pod_conditions or []}
    return bool(wanted) and wanted <= t.conditions


def _describe(t: Termination, attempt: int) -> str:
    what = f"exit code {t.exit_code}" if t.exit_code is not None else t.reason
    detail = f": {t.message}" if t.message else ""
    return f"attempt {attempt} ended with {what} ({t.reason}){detail}"


def decide(
    policy: RetryPolicy,
    t: Termination,
    spent: Spent,
    *,
    attempt: int,
    jitter_sample: float,
) -> Decision:
    """What follows attempt number `attempt`, which ended as `t`."""
    if t.outcome is Outcome.SUCCEEDED:
        return Succeed()
    if t.outcome is Outcome.START_FAILED:
        return Fail(t.reason, f"{_describe(t, attempt)}; a new attempt would fail the same way")

    action: str | None = None  # None: no rule matched, the defaults apply
    for rule in policy.pod_failure_policy.rules if policy.pod_failure_policy else []:
        if _rule_matches(rule, t):
            action = rule.action
            break
    if action == "FailRun":
        return Fail(t.reason, f"{_describe(t, attempt)}, which the podFailurePolicy makes fatal")
    if action == "Ignore" or (action is None and t.outcome is Outcome.DISRUPTED):
        if spent.disruptions >= policy.max_disruptions:
            return Fail(
                "TooManyDisruptions",
                f"{_describe(t, attempt)}; {spent.disruptions} earlier attempts were already disrupted "
                f"(maxDisruptions is {policy.max_disruptions})",
            )
        # Not the task's fault: start again at once, without spending an attempt.
        return Retry(timedelta(0), counted=False, reason=t.reason)

    used = spent.counted + 1
    if used >= policy.max_attempts:
        return Fail(t.reason, f"{_describe(t, attempt)}; that was the last of {policy.max_attempts} attempts")
    return Retry(backoff_delay(policy.backoff, used, jitter_sample), counted=True, reason=t.reason)


def next_memory_limit(policy: RetryPolicy, last_reason: str | None, last_limit: int | None) -> int | None:
    """The memory limit (bytes) of the attempt after one that ended with `last_reason`: multiplied by
    outOfMemory.memoryFactor after an OOM kill, never above outOfMemory.maxMemory, else unchanged."""
    oom = policy.out_of_memory
    if last_reason != "OOMKilled" or oom is None or last_limit is None:
        return last_limit
    raised = min(quantity.to_bytes(oom.max_memory), int(last_limit * oom.memory_factor))
    return max(last_limit, raised)  # never below what was just killed (a limit set above maxMemory)
