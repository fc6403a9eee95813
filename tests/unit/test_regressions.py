"""Behaviours found wrong by review and fixed: each test is the reproduction."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from pydantic import ValidationError

from cairn.api.common import parse_duration
from cairn.api.task import Backoff, RetryPolicy
from cairn.api.taskrun import Phase, TaskRunSpec
from cairn.domain import quantity
from cairn.domain.admission import WaitReason
from cairn.domain.lifecycle import Finish, StoredAttempt
from cairn.domain.retry import Fail, Spent, decide, next_memory_limit
from cairn.domain.termination import Outcome, Termination
from tests.unit.builders import T0, admission, apply_status, failed_pod, succeeded_pod, task, taskrun, view, with_spec
from tests.unit.test_lifecycle import S, started
from tests.unit.test_lifecycle import decide as plan_of


def test_a_pod_that_succeeded_before_max_duration_succeeds_the_run_even_if_seen_after_it() -> None:
    t = task(maxDuration="10m")
    run, adm = started(t)
    done = succeeded_pod(1, finished=T0 + timedelta(minutes=9, seconds=59))
    p = plan_of(view(run, t, adm, now=T0 + timedelta(minutes=10, seconds=5), pods={1: done}))
    assert p.release == Finish(Phase.SUCCEEDED)


@pytest.mark.parametrize("how", ["cancelled-while-queued", "invalid-payload"])
def test_ttl_deletes_a_run_that_finished_before_its_first_attempt(how: str) -> None:
    t = task(ttlSecondsAfterFinished=60)
    if how == "cancelled-while-queued":
        run, adm = with_spec(taskrun(), cancel=True), admission(t, "queued")
    else:
        run, adm = taskrun(payload="{"), None
    run = apply_status(run, plan_of(view(run, t, adm)))
    later = replace(adm, state="finished") if adm else None
    assert plan_of(view(run, t, later, now=T0 + timedelta(hours=1))).delete_run is True


def test_a_run_waiting_in_a_full_queue_is_rechecked_at_its_max_duration() -> None:
    t = task(maxDuration="5m")
    run, adm = started(t)
    run = apply_status(run, plan_of(view(run, t, adm, now=T0 + 30 * S, pods={1: failed_pod(1)})))
    p = plan_of(view(run, t, admission(t, "queued", wait_reason=WaitReason.QUEUE_FULL), now=T0 + 60 * S))
    assert p.recheck_at == T0 + timedelta(minutes=5)


def test_an_explicit_count_rule_makes_a_disruption_spend_an_attempt() -> None:
    p = RetryPolicy.model_validate(
        {
            "maxAttempts": 2,
            "podFailurePolicy": {"rules": [{"action": "Count", "onPodConditions": [{"type": "DisruptionTarget"}]}]},
        }
    )
    t = Termination(Outcome.DISRUPTED, "Preempted", 143, "", frozenset({("DisruptionTarget", "True")}))
    assert isinstance(decide(p, t, Spent(counted=1), attempt=2, jitter_sample=0.5), Fail)


def test_an_oom_kill_never_lowers_the_memory_limit() -> None:
    p = RetryPolicy.model_validate({"outOfMemory": {"maxMemory": "4Gi"}})
    assert next_memory_limit(p, "OOMKilled", 8 * 2**30) == 8 * 2**30


def test_parse_duration_rejects_a_trailing_newline_as_the_crd_does() -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration("30s\n")


def test_a_duration_too_long_is_a_validation_error_not_an_overflow() -> None:
    with pytest.raises(ValidationError, match="longer than"):
        Backoff(max_delay="99999999999h")


@pytest.mark.parametrize("text", [".", "1.2.3", "1..5Mi"])
def test_to_bytes_rejects_malformed_numbers_with_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        quantity.to_bytes(text)


def test_to_bytes_rejects_negative_memory() -> None:
    with pytest.raises(ValueError, match="negative"):
        quantity.to_bytes("-1Gi")


def test_from_bytes_rounds_up_even_for_huge_values() -> None:
    n = 2**54 + 1
    assert quantity.to_bytes(quantity.from_bytes(n)) >= n


def test_the_payload_cap_is_in_bytes_not_characters() -> None:
    with pytest.raises(ValidationError, match="over the cap"):
        TaskRunSpec.model_validate({"taskRef": {"name": "t"}, "payload": '"' + "é" * 262000 + '"'})


def test_cairn_env_names_are_reserved_in_python_as_in_the_crd() -> None:
    from cairn.api.podtemplate import EnvVar

    with pytest.raises(ValidationError, match="reserved"):
        EnvVar(name="CAIRN_RUN", value="x")


def test_a_pod_the_api_server_refuses_fails_the_run_with_its_message_and_releases_the_slot() -> None:
    t = task()
    run = taskrun()
    refused = (1, 'pods "r-1" is forbidden: violates PodSecurity')
    p = plan_of(view(run, t, admission(t, "admitted"), rejected_pod=refused))
    assert p.create_pod is None
    assert p.release == Finish(Phase.FAILED)
    assert p.status is not None and p.status["reason"] == "PodRejected"
    assert "violates PodSecurity" in p.status["message"]


def test_a_run_the_store_finished_before_any_status_landed_is_written_with_the_attempts_the_store_recorded() -> None:
    # CI at d699d6e: an operator killed within the second that status writes wait to be coalesced left
    # a run whose attempt began and ended in PostgreSQL while its status had none; after the restart it
    # read Succeeded with no attempts.
    t = task()
    run = taskrun()
    stored = (
        StoredAttempt(1, "r-1", "2026-01-01T00:00:01Z", "2026-01-01T00:00:02Z", 1, "Error"),
        StoredAttempt(2, "r-2", "2026-01-01T00:00:04Z", "2026-01-01T00:00:05Z", 0, "Completed"),
    )
    adm = replace(admission(t, "finished"), phase="Succeeded", attempts=stored)
    p = plan_of(view(run, t, adm, now=T0 + 10 * S))
    assert p.status is not None and p.status["phase"] == "Succeeded"
    assert [(a["number"], a["pod"], a["exitCode"], a["reason"]) for a in p.status["attempts"]] == [
        (1, "r-1", 1, "Error"),
        (2, "r-2", 0, "Completed"),
    ]
    assert p.status["attempts"][1]["finishTime"] == "2026-01-01T00:00:05Z"


def test_attempts_a_status_already_told_are_kept_and_those_it_never_told_come_from_the_store() -> None:
    t = task(retry={"maxAttempts": 2})
    run, adm = started(t)
    run = apply_status(run, plan_of(view(run, t, adm, now=T0 + 30 * S, pods={1: failed_pod(1)})))
    assert run.status is not None and run.status.attempts is not None
    told = run.status.attempts[0]
    assert told.finish_time is not None
    stored = (
        StoredAttempt(1, told.pod, told.start_time, "2026-01-01T00:00:00Z", 9, "Stale"),
        StoredAttempt(2, "r-2", "2026-01-01T00:01:00Z", "2026-01-01T00:01:09Z", 0, "Completed"),
    )
    later = replace(adm, state="finished", phase="Succeeded", attempts=stored)
    p = plan_of(view(run, t, later, now=T0 + 90 * S))
    assert p.status is not None
    first, second = p.status["attempts"]
    assert first == told.model_dump(mode="json", by_alias=True)  # the status's own word
    assert (second["number"], second["pod"], second["reason"]) == (2, "r-2", "Completed")
