"""The retry decision: backoff delays, what each way of ending does, podFailurePolicy rules, OOM memory."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cairn.api.common import GoDuration, parse_duration
from cairn.api.task import Backoff, RetryPolicy
from cairn.domain.retry import Fail, Retry, Spent, Succeed, backoff_delay, decide, next_memory_limit
from cairn.domain.termination import Outcome, Termination

GiB = 2**30


def policy(**fields: Any) -> RetryPolicy:
    return RetryPolicy.model_validate(fields)


def ended(
    outcome: Outcome = Outcome.FAILED,
    reason: str = "Error",
    exit_code: int | None = 1,
    message: str = "",
    conditions: frozenset[tuple[str, str]] = frozenset(),
) -> Termination:
    return Termination(outcome, reason, exit_code, message, conditions)


DISRUPTION = frozenset({("DisruptionTarget", "True"), ("Ready", "False")})
NO_JITTER = {"initialDelay": "10s", "factor": 2, "maxDelay": "5m", "jitter": 0}


# -- backoff_delay ---------------------------------------------------------------------------------
def test_backoff_first_retry_waits_the_initial_delay() -> None:
    assert backoff_delay(Backoff.model_validate(NO_JITTER), 1, 0.5) == timedelta(seconds=10)


def test_backoff_grows_by_the_factor_each_retry_until_capped() -> None:
    b = Backoff.model_validate(NO_JITTER)
    delays = [backoff_delay(b, n, 0.3).total_seconds() for n in range(1, 9)]
    assert delays == [10, 20, 40, 80, 160, 300, 300, 300]


def test_backoff_with_factor_one_is_constant() -> None:
    b = Backoff(initial_delay="7s", factor=1, max_delay="1m", jitter=0)
    assert {backoff_delay(b, n, 0.9) for n in (1, 2, 10, 1000)} == {timedelta(seconds=7)}


def test_backoff_with_zero_initial_delay_retries_at_once() -> None:
    b = Backoff(initial_delay="0s", factor=3, max_delay="1m", jitter=0.5)
    assert backoff_delay(b, 5, 0.99) == timedelta(0)


def test_backoff_with_max_delay_below_initial_delay_never_exceeds_max_delay() -> None:
    # The CRD rejects this, but the function must stay within maxDelay for any model it is given.
    b = Backoff.model_construct(initial_delay=GoDuration("1m"), factor=2.0, max_delay=GoDuration("20s"), jitter=0.1)
    assert backoff_delay(b, 1, 0.99) <= timedelta(seconds=20)


@pytest.mark.parametrize(("sample", "expected"), [(0.0, 9.0), (0.5, 10.0), (0.75, 10.5)])
def test_backoff_jitter_moves_the_delay_by_up_to_the_fraction_either_way(sample: float, expected: float) -> None:
    b = Backoff(initial_delay="10s", factor=2, max_delay="5m", jitter=0.1)
    assert backoff_delay(b, 1, sample).total_seconds() == pytest.approx(expected)


def test_backoff_jitter_never_pushes_a_capped_delay_past_max_delay() -> None:
    b = Backoff(initial_delay="10s", factor=2, max_delay="60s", jitter=0.5)
    assert backoff_delay(b, 20, 0.999) == timedelta(seconds=60)


def test_backoff_full_jitter_at_sample_zero_gives_no_delay_not_a_negative_one() -> None:
    b = Backoff(initial_delay="10s", factor=2, max_delay="60s", jitter=1)
    assert backoff_delay(b, 1, 0.0) == timedelta(0)


@pytest.mark.parametrize("retry", [1000, 10**6, 10**18, 2**200])
def test_backoff_of_a_huge_retry_number_is_max_delay_without_overflow(retry: int) -> None:
    b = Backoff(initial_delay="1ms", factor=10, max_delay="1h", jitter=0)
    assert backoff_delay(b, retry, 0.5) == timedelta(hours=1)


_durations = st.builds(
    lambda n, unit: f"{n}{unit}",
    st.integers(min_value=0, max_value=5000),
    st.sampled_from(["ms", "s", "m"]),
)


@st.composite
def backoffs(draw: st.DrawFn) -> Backoff:
    initial = draw(_durations)
    cap = draw(_durations)
    if parse_duration(cap) < parse_duration(initial):
        initial, cap = cap, initial
    factor = draw(st.one_of(st.sampled_from([1.0, 1.5, 2.0, 3.0, 10.0]), st.floats(min_value=1, max_value=10)))
    jitter = draw(st.one_of(st.just(0.0), st.floats(min_value=0, max_value=1)))
    return Backoff(initial_delay=initial, factor=factor, max_delay=cap, jitter=jitter)


@settings(max_examples=200, deadline=None)
@given(backoffs(), st.floats(min_value=0, max_value=1, exclude_max=True))
def test_backoff_is_monotone_in_the_retry_number_for_a_fixed_jitter_sample(b: Backoff, sample: float) -> None:
    delays = [backoff_delay(b, n, sample) for n in range(1, 60)]
    assert delays == sorted(delays)


@settings(max_examples=200, deadline=None)
@given(backoffs(), st.integers(min_value=1, max_value=10**30), st.floats(min_value=0, max_value=1, exclude_max=True))
def test_backoff_never_exceeds_max_delay_nor_goes_negative(b: Backoff, retry: int, sample: float) -> None:
    delay = backoff_delay(b, retry, sample)
    assert timedelta(0) <= delay <= parse_duration(b.max_delay)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=0, max_value=600),
    st.integers(min_value=1, max_value=10),
    st.integers(min_value=0, max_value=86400),
    st.integers(min_value=1, max_value=400),
    st.floats(min_value=0, max_value=1, exclude_max=True),
)
def test_backoff_without_jitter_is_exactly_initial_times_factor_power_capped(
    initial: int, factor: int, extra: int, retry: int, sample: float
) -> None:
    cap = initial + extra
    b = Backoff(initial_delay=f"{initial}s", factor=factor, max_delay=f"{cap}s", jitter=0)
    expected = min(initial * factor ** (retry - 1), cap)  # exact integer arithmetic
    assert backoff_delay(b, retry, sample) == timedelta(seconds=expected)


# -- decide: how each ending is handled -----------------------------------------------------------
def test_decide_success_is_succeed_whatever_was_spent() -> None:
    t = ended(Outcome.SUCCEEDED, "Completed", 0)
    assert decide(policy(), t, Spent(counted=2, disruptions=10), attempt=13, jitter_sample=0.5) == Succeed()


def test_decide_exit_code_failure_with_attempts_left_is_a_counted_retry_after_the_backoff() -> None:
    p = policy(maxAttempts=3, backoff=NO_JITTER)
    decision = decide(p, ended(exit_code=2), Spent(), attempt=1, jitter_sample=0.5)
    assert decision == Retry(timedelta(seconds=10), counted=True, reason="Error")


def test_decide_backoff_grows_with_the_counted_attempts_not_the_attempt_number() -> None:
    p = policy(maxAttempts=5, backoff=NO_JITTER)
    # Attempt 7, but only 1 earlier counted attempt (the others were disruptions): second retry, 20s.
    decision = decide(p, ended(), Spent(counted=1, disruptions=5), attempt=7, jitter_sample=0.5)
    assert decision == Retry(timedelta(seconds=20), counted=True, reason="Error")


def test_decide_last_attempt_failing_fails_the_run_naming_the_attempts() -> None:
    p = policy(maxAttempts=3)
    decision = decide(p, ended(exit_code=3, message="boom"), Spent(counted=2), attempt=3, jitter_sample=0.5)
    assert isinstance(decision, Fail)
    assert decision.reason == "Error"
    assert decision.message == "attempt 3 ended with exit code 3 (Error): boom; that was the last of 3 attempts"


def test_decide_with_max_attempts_one_fails_on_the_first_failure() -> None:
    decision = decide(policy(maxAttempts=1), ended(), Spent(), attempt=1, jitter_sample=0.5)
    assert isinstance(decision, Fail)


@pytest.mark.parametrize(
    ("outcome", "reason"), [(Outcome.OOM_KILLED, "OOMKilled"), (Outcome.DEADLINE_EXCEEDED, "DeadlineExceeded")]
)
def test_decide_oom_kills_and_attempt_timeouts_spend_an_attempt(outcome: Outcome, reason: str) -> None:
    p = policy(maxAttempts=2)
    first = decide(p, ended(outcome, reason, 137), Spent(), attempt=1, jitter_sample=0.5)
    assert isinstance(first, Retry)
    assert first.counted
    assert first.reason == reason
    assert isinstance(decide(p, ended(outcome, reason, 137), Spent(counted=1), attempt=2, jitter_sample=0.5), Fail)


def test_decide_start_failure_fails_at_once_even_with_attempts_left() -> None:
    t = ended(Outcome.START_FAILED, "ImagePullFailed", None, "InvalidImageName")
    decision = decide(policy(maxAttempts=10), t, Spent(), attempt=1, jitter_sample=0.5)
    assert isinstance(decision, Fail)
    assert decision.reason == "ImagePullFailed"
    assert "a new attempt would fail the same way" in decision.message


def test_decide_start_failure_is_not_rescued_by_an_ignore_rule() -> None:
    p = policy(podFailurePolicy={"rules": [{"action": "Ignore", "onPodConditions": [{"type": "PodScheduled"}]}]})
    t = ended(Outcome.START_FAILED, "ConfigError", None, conditions=frozenset({("PodScheduled", "True")}))
    assert isinstance(decide(p, t, Spent(), attempt=1, jitter_sample=0.5), Fail)


def test_decide_disruption_is_retried_at_once_without_spending_an_attempt() -> None:
    t = ended(Outcome.DISRUPTED, "Preempted", 143, conditions=DISRUPTION)
    decision = decide(policy(maxAttempts=1), t, Spent(), attempt=1, jitter_sample=0.99)
    assert decision == Retry(timedelta(0), counted=False, reason="Preempted")


def test_decide_disruption_is_retried_even_when_every_attempt_is_spent() -> None:
    t = ended(Outcome.DISRUPTED, "NodeLost", None)
    decision = decide(policy(maxAttempts=3), t, Spent(counted=2), attempt=3, jitter_sample=0.5)
    assert decision == Retry(timedelta(0), counted=False, reason="NodeLost")


def test_decide_disruptions_are_retried_up_to_max_disruptions_then_fail() -> None:
    p = policy(maxDisruptions=2)
    t = ended(Outcome.DISRUPTED, "Evicted", None)
    assert isinstance(decide(p, t, Spent(disruptions=1), attempt=2, jitter_sample=0.5), Retry)
    decision = decide(p, t, Spent(disruptions=2), attempt=3, jitter_sample=0.5)
    assert isinstance(decision, Fail)
    assert decision.reason == "TooManyDisruptions"
    assert "maxDisruptions is 2" in decision.message


def test_decide_with_max_disruptions_zero_fails_on_the_first_disruption() -> None:
    decision = decide(
        policy(maxDisruptions=0), ended(Outcome.DISRUPTED, "PodDeleted", None), Spent(), attempt=1, jitter_sample=0.5
    )
    assert isinstance(decision, Fail)
    assert decision.reason == "TooManyDisruptions"


# -- podFailurePolicy ------------------------------------------------------------------------------
def _rules(*rules: dict[str, Any]) -> RetryPolicy:
    return policy(maxAttempts=5, podFailurePolicy={"rules": list(rules)})


def test_fail_run_rule_on_exit_codes_in_fails_at_once() -> None:
    p = _rules({"action": "FailRun", "onExitCodes": {"operator": "In", "values": [42, 43]}})
    decision = decide(p, ended(exit_code=42), Spent(), attempt=1, jitter_sample=0.5)
    assert isinstance(decision, Fail)
    assert decision.reason == "Error"
    assert "podFailurePolicy makes fatal" in decision.message


def test_fail_run_rule_on_exit_codes_in_does_not_match_other_codes() -> None:
    p = _rules({"action": "FailRun", "onExitCodes": {"operator": "In", "values": [42]}})
    decision = decide(p, ended(exit_code=1), Spent(), attempt=1, jitter_sample=0.5)
    assert isinstance(decision, Retry)
    assert decision.counted


def test_fail_run_rule_on_exit_codes_not_in_matches_every_other_code() -> None:
    p = _rules({"action": "FailRun", "onExitCodes": {"operator": "NotIn", "values": [75]}})
    assert isinstance(decide(p, ended(exit_code=1), Spent(), attempt=1, jitter_sample=0.5), Fail)
    retried = decide(p, ended(exit_code=75), Spent(), attempt=1, jitter_sample=0.5)
    assert isinstance(retried, Retry)
    assert retried.counted


def test_exit_code_rule_never_matches_an_ending_without_an_exit_code() -> None:
    p = _rules({"action": "FailRun", "onExitCodes": {"operator": "NotIn", "values": [1]}})
    t = ended(Outcome.DISRUPTED, "NodeLost", None)
    assert isinstance(decide(p, t, Spent(), attempt=1, jitter_sample=0.5), Retry)


def test_ignore_rule_on_exit_code_retries_at_once_without_spending_an_attempt() -> None:
    p = _rules({"action": "Ignore", "onExitCodes": {"operator": "In", "values": [75]}})
    decision = decide(p, ended(exit_code=75), Spent(counted=4), attempt=5, jitter_sample=0.5)
    assert decision == Retry(timedelta(0), counted=False, reason="Error")


def test_ignored_failures_are_limited_by_max_disruptions() -> None:
    p = policy(
        maxDisruptions=1,
        podFailurePolicy={"rules": [{"action": "Ignore", "onExitCodes": {"operator": "In", "values": [75]}}]},
    )
    decision = decide(p, ended(exit_code=75), Spent(disruptions=1), attempt=2, jitter_sample=0.5)
    assert isinstance(decision, Fail)
    assert decision.reason == "TooManyDisruptions"


def test_count_rule_spends_an_attempt_like_an_unmatched_failure() -> None:
    p = _rules({"action": "Count", "onExitCodes": {"operator": "In", "values": [1]}})
    decision = decide(p, ended(exit_code=1), Spent(), attempt=1, jitter_sample=0.5)
    assert isinstance(decision, Retry)
    assert decision.counted


def test_pod_condition_rule_matches_when_every_listed_condition_holds() -> None:
    p = _rules(
        {
            "action": "FailRun",
            "onPodConditions": [{"type": "DisruptionTarget"}, {"type": "Ready", "status": "False"}],
        }
    )
    t = ended(Outcome.DISRUPTED, "Preempted", 143, conditions=DISRUPTION)
    assert isinstance(decide(p, t, Spent(), attempt=1, jitter_sample=0.5), Fail)


def test_pod_condition_rule_does_not_match_when_a_condition_has_another_status() -> None:
    p = _rules({"action": "FailRun", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]})
    t = ended(conditions=frozenset({("DisruptionTarget", "False")}))
    decision = decide(p, t, Spent(), attempt=1, jitter_sample=0.5)
    assert isinstance(decision, Retry)
    assert decision.counted


def test_pod_condition_rule_with_an_empty_list_matches_nothing() -> None:
    p = _rules({"action": "FailRun", "onPodConditions": []})
    assert isinstance(decide(p, ended(conditions=DISRUPTION), Spent(), attempt=1, jitter_sample=0.5), Retry)


def test_first_matching_rule_wins() -> None:
    ignore_first = _rules(
        {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [3]}},
        {"action": "FailRun", "onExitCodes": {"operator": "In", "values": [3]}},
    )
    fail_first = _rules(
        {"action": "FailRun", "onExitCodes": {"operator": "In", "values": [3]}},
        {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [3]}},
    )
    t = ended(exit_code=3)
    assert decide(ignore_first, t, Spent(), attempt=1, jitter_sample=0.5) == Retry(timedelta(0), False, "Error")
    assert isinstance(decide(fail_first, t, Spent(), attempt=1, jitter_sample=0.5), Fail)


def test_a_non_matching_first_rule_lets_a_later_rule_decide() -> None:
    p = _rules(
        {"action": "FailRun", "onExitCodes": {"operator": "In", "values": [9]}},
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
    )
    t = ended(exit_code=137, conditions=DISRUPTION)
    assert decide(p, t, Spent(), attempt=1, jitter_sample=0.5) == Retry(timedelta(0), False, "Error")


def test_fail_run_rule_on_disruption_target_fails_a_disrupted_attempt() -> None:
    p = _rules({"action": "FailRun", "onPodConditions": [{"type": "DisruptionTarget"}]})
    t = ended(Outcome.DISRUPTED, "Preempted", 143, conditions=DISRUPTION)
    decision = decide(p, t, Spent(), attempt=1, jitter_sample=0.5)
    assert isinstance(decision, Fail)
    assert decision.reason == "Preempted"


def test_rules_never_turn_a_success_into_a_failure() -> None:
    p = _rules({"action": "FailRun", "onExitCodes": {"operator": "NotIn", "values": [1]}})
    assert decide(p, ended(Outcome.SUCCEEDED, "Completed", 0), Spent(), attempt=1, jitter_sample=0.5) == Succeed()


# -- a whole run's worth of failures ---------------------------------------------------------------
_endings = st.sampled_from(
    [
        ended(exit_code=1),
        ended(exit_code=2),
        ended(exit_code=75),
        ended(exit_code=137, conditions=DISRUPTION),
        ended(Outcome.OOM_KILLED, "OOMKilled", 137),
        ended(Outcome.DEADLINE_EXCEEDED, "DeadlineExceeded", 143),
        ended(Outcome.DISRUPTED, "Preempted", 143, conditions=DISRUPTION),
        ended(Outcome.DISRUPTED, "NodeLost", None),
        ended(Outcome.DISRUPTED, "PodDeleted", None),
    ]
)
_rule_sets = st.sampled_from(
    [
        [],
        [{"action": "Ignore", "onExitCodes": {"operator": "In", "values": [75]}}],
        [{"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [75]}}],
        [{"action": "FailRun", "onExitCodes": {"operator": "In", "values": [2]}}],
        [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}],
    ]
)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=1, max_value=8),
    st.integers(min_value=0, max_value=5),
    _rule_sets,
    st.lists(_endings, min_size=1, max_size=60),
    st.floats(min_value=0, max_value=1, exclude_max=True),
)
def test_a_run_never_spends_more_attempts_than_max_attempts_nor_more_disruptions_than_allowed(
    max_attempts: int,
    max_disruptions: int,
    rules: list[dict[str, Any]],
    endings: list[Termination],
    sample: float,
) -> None:
    p = policy(maxAttempts=max_attempts, maxDisruptions=max_disruptions, podFailurePolicy={"rules": rules})
    spent = Spent()
    attempts_run = 0
    counted_run = 0
    for attempt, t in enumerate(endings, start=1):
        attempts_run += 1
        decision = decide(p, t, spent, attempt=attempt, jitter_sample=sample)
        counted = not (isinstance(decision, Retry) and not decision.counted) and t.outcome is not Outcome.DISRUPTED
        counted_run += counted
        if not isinstance(decision, Retry):
            break
        spent = Spent(spent.counted + decision.counted, spent.disruptions + (not decision.counted))
    assert counted_run <= max_attempts
    assert spent.counted < max_attempts
    assert spent.disruptions <= max_disruptions
    assert attempts_run <= max_attempts + max_disruptions + 1


# -- next_memory_limit -----------------------------------------------------------------------------
OOM_POLICY = policy(outOfMemory={"memoryFactor": 2, "maxMemory": "4Gi"})


def test_oom_kill_raises_the_memory_limit_by_the_factor() -> None:
    assert next_memory_limit(OOM_POLICY, "OOMKilled", 512 * 2**20) == GiB


def test_oom_kill_raises_the_memory_limit_by_a_fractional_factor() -> None:
    p = policy(outOfMemory={"memoryFactor": 1.5, "maxMemory": "8Gi"})
    assert next_memory_limit(p, "OOMKilled", 2 * GiB) == 3 * GiB


def test_oom_kill_never_raises_the_memory_limit_above_max_memory() -> None:
    assert next_memory_limit(OOM_POLICY, "OOMKilled", 3 * GiB) == 4 * GiB
    assert next_memory_limit(OOM_POLICY, "OOMKilled", 4 * GiB) == 4 * GiB


@pytest.mark.parametrize("reason", ["Error", "DeadlineExceeded", "Evicted", "PodDeleted", "Completed", None])
def test_other_endings_leave_the_memory_limit_unchanged(reason: str | None) -> None:
    assert next_memory_limit(OOM_POLICY, reason, GiB) == GiB


def test_oom_kill_without_an_out_of_memory_policy_leaves_the_limit_unchanged() -> None:
    assert next_memory_limit(policy(), "OOMKilled", GiB) == GiB


def test_oom_kill_of_a_container_without_a_limit_sets_none() -> None:
    assert next_memory_limit(OOM_POLICY, "OOMKilled", None) is None


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=2**20, max_value=2**36),
    st.floats(min_value=1, max_value=16),
    st.integers(min_value=1, max_value=2**36),
)
def test_oom_raises_never_lower_the_limit_and_never_raise_it_past_the_cap(
    last: int, factor: float, cap_mi: int
) -> None:
    cap = cap_mi * 2**20
    p = policy(outOfMemory={"memoryFactor": factor, "maxMemory": f"{cap_mi}Mi"})
    nxt = next_memory_limit(p, "OOMKilled", last)
    assert nxt is not None
    assert nxt >= last  # never below the limit that was just killed
    assert nxt <= max(cap, last)  # raised no further than maxMemory
    if last <= cap:
        assert nxt == min(cap, max(last, math.floor(last * factor)))
