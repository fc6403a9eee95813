"""Schedules on the real cluster: exactly one run per fire time across operator restarts, each overlap
policy with a task slower than the interval, suspend and resume with catch-up, a backfill (twice), and
the nightly example. The runs land on a simulated (KWOK) node except the example's: what is proved is
when runs are started, which a real pod would prove no better."""

from __future__ import annotations

import itertools
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from lightkube import Client
from lightkube.types import PatchType

from cairn.k8s.resources import ScheduleResource, TaskResource, TaskRunResource
from harness import config
from tests.e2e.test_cli import cli
from tests.support.builders import schedule_body, simulated_task_body
from tests.support.cairn import CairnProcesses
from tests.support.env import ClusterEnv
from tests.support.figures import report
from tests.support.kube import as_dict, kubectl, wait_for
from tests.support.runs import wait_phase

FINAL = ("Succeeded", "Failed", "Cancelled")


def _create(kube: Client, ns: str, body: dict[str, Any], resource: Any) -> None:
    body["metadata"]["namespace"] = ns
    kube.create(resource.from_dict(body))


def _runs(kube: Client, ns: str, schedule: str) -> list[dict[str, Any]]:
    runs = [as_dict(r) for r in kube.list(TaskRunResource, namespace=ns, labels={"cairn.dev/schedule": schedule})]
    return sorted(runs, key=lambda r: r["metadata"]["annotations"]["cairn.dev/fire-time"])


def _fire_times(runs: list[dict[str, Any]]) -> list[datetime]:
    return [
        datetime.fromisoformat(r["metadata"]["annotations"]["cairn.dev/fire-time"].replace("Z", "+00:00")) for r in runs
    ]


def _suspend(kube: Client, ns: str, name: str, value: bool = True) -> None:
    kube.patch(ScheduleResource, name, {"spec": {"suspend": value}}, namespace=ns, patch_type=PatchType.MERGE)


def _status(kube: Client, ns: str, name: str) -> dict[str, Any]:
    return as_dict(kube.get(ScheduleResource, name, namespace=ns)).get("status") or {}


@pytest.mark.timeout(300)
def test_a_schedule_starts_exactly_one_run_per_fire_time_with_the_operator_killed_twice(
    cluster_env: ClusterEnv, kube: Client, ns: str, cairn: CairnProcesses
) -> None:
    cluster_env.require_harness().fake_nodes(1)
    _create(kube, ns, simulated_task_body("tick", delay="200ms"), TaskResource)
    # Allow: with the default (Skip), a fire time that comes while the run of the one before is still
    # unfinished (as a kill can leave it) is skipped, by design; this test is about losing none.
    body = schedule_body("tick", "tick", "*/2 * * * * *", overlapPolicy="Allow", successfulRunsHistoryLimit=1000)
    _create(kube, ns, body, ScheduleResource)
    started = datetime.now(UTC)
    time.sleep(12)
    cairn.kill_operator()
    time.sleep(5)  # two or three fire times pass with no operator
    cairn.restart_operator()
    time.sleep(14)
    cairn.kill_operator()
    time.sleep(3)
    cairn.restart_operator()
    time.sleep(10)
    _suspend(kube, ns, "tick")
    stopped = datetime.now(UTC)
    time.sleep(3)  # a fire time being handled as it was suspended lands
    runs = _runs(kube, ns, "tick")
    fired = _fire_times(runs)
    every = [fired[0] + timedelta(seconds=2 * i) for i in range(int((fired[-1] - fired[0]).total_seconds()) // 2 + 1)]
    report(
        f"\nschedule every 2 s for {(stopped - started).total_seconds():.0f} s, operator killed twice: "
        f"{len(runs)} runs for {len(every)} fire times from the first to the last"
    )
    assert len(runs) >= 20
    assert fired == every  # no fire time lost, none twice (the names would collide; the fire times would repeat)
    assert len({r["metadata"]["name"] for r in runs}) == len(runs)
    assert fired[0] - started < timedelta(seconds=3)
    status = _status(kube, ns, "tick")
    assert status["runsStarted"] >= len(runs) - 2  # a status write may be lost to a kill; no run
    assert status.get("skipped", 0) == 0 and status.get("missed", 0) == 0
    for r in runs:
        wait_phase(kube, ns, r["metadata"]["name"], timeout=60)


@pytest.mark.timeout(300)
def test_each_overlap_policy_with_a_task_slower_than_its_interval(
    cluster_env: ClusterEnv, kube: Client, ns: str
) -> None:
    cluster_env.require_harness().fake_nodes(1)
    _create(kube, ns, simulated_task_body("slow", delay="5s"), TaskResource)
    policies = ("Allow", "Skip", "BufferOne", "CancelPrevious")
    for policy in policies:
        name = policy.lower()
        _create(
            kube,
            ns,
            schedule_body(
                name,
                "slow",
                "*/2 * * * * *",
                overlapPolicy=policy,
                successfulRunsHistoryLimit=100,
                failedRunsHistoryLimit=100,
            ),
            ScheduleResource,
        )
    most: dict[str, int] = dict.fromkeys(policies, 0)
    deadline = time.monotonic() + 16
    samples = 0
    while time.monotonic() < deadline:
        for policy in policies:
            going = [
                r
                for r in _runs(kube, ns, policy.lower())
                if (r.get("status") or {}).get("phase") not in FINAL and not r["spec"].get("cancel")
            ]
            most[policy] = max(most[policy], len(going))
        samples += 1
        time.sleep(0.3)
    for policy in policies:
        _suspend(kube, ns, policy.lower())
    time.sleep(1)
    runs = {p: _runs(kube, ns, p.lower()) for p in policies}
    status = {p: _status(kube, ns, p.lower()) for p in policies}
    report(
        f"\n4 schedules every 2 s, task takes 5 s, 16 s, {samples} samples each: "
        + "; ".join(
            f"{p}: {len(runs[p])} runs, at most {most[p]} going, {status[p].get('skipped', 0)} skipped"
            for p in policies
        )
    )
    assert samples >= 20
    assert most["Allow"] >= 2 and len(runs["Allow"]) >= 6
    assert most["Skip"] == 1 and status["Skip"]["skipped"] >= 3
    assert most["BufferOne"] == 1 and status["BufferOne"]["skipped"] >= 1
    # BufferOne: each run after the first was started for a fire time that came while the one before went on.
    assert len(runs["BufferOne"]) >= 2
    assert most["CancelPrevious"] == 1
    cancelled = [r for r in runs["CancelPrevious"] if r["spec"].get("cancel")]
    assert len(cancelled) >= 3
    for r in cancelled:
        assert wait_phase(kube, ns, r["metadata"]["name"], timeout=60)["phase"] == "Cancelled"


@pytest.mark.timeout(300)
def test_a_resumed_schedule_runs_the_fire_times_within_its_catchup_window_and_counts_the_older_ones_missed(
    cluster_env: ClusterEnv, kube: Client, ns: str
) -> None:
    cluster_env.require_harness().fake_nodes(1)
    _create(kube, ns, simulated_task_body("tock", delay="100ms"), TaskResource)
    body = schedule_body(
        "tock", "tock", "*/2 * * * * *", overlapPolicy="Allow", catchupWindow="5s", successfulRunsHistoryLimit=1000
    )
    _create(kube, ns, body, ScheduleResource)
    wait_for("a first run", lambda: len(_runs(kube, ns, "tock")) >= 1)
    _suspend(kube, ns, "tock")
    time.sleep(1)
    before = len(_runs(kube, ns, "tock"))
    time.sleep(12)
    during = len(_runs(kube, ns, "tock"))
    _suspend(kube, ns, "tock", False)
    resumed = datetime.now(UTC)
    wait_for("the catch-up", lambda: _status(kube, ns, "tock").get("missed", 0) > 0, timeout=30)
    time.sleep(1)
    fired = _fire_times(_runs(kube, ns, "tock"))
    caught_up = [t for t in fired[before:] if t < resumed]
    missed = _status(kube, ns, "tock")["missed"]
    report(f"\nsuspended 12 s (fire times every 2 s, window 5 s): {len(caught_up)} caught up, {missed} missed")
    assert during == before  # nothing started while suspended
    assert 2 <= len(caught_up) <= 3 and all(resumed - t <= timedelta(seconds=6) for t in caught_up)
    assert missed >= 2


def test_a_backfill_runs_each_fire_time_once_and_a_second_identical_backfill_starts_none(
    cluster_env: ClusterEnv, kube: Client, ns: str
) -> None:
    cluster_env.require_harness().fake_nodes(1)
    _create(kube, ns, simulated_task_body("daily", delay="100ms"), TaskResource)
    _create(
        kube,
        ns,
        schedule_body("daily", "daily", "0 6 * * *", timeZone="Europe/Berlin", successfulRunsHistoryLimit=100),
        ScheduleResource,
    )
    args = ("schedule", "backfill", "daily", "--from", "2026-01-01T00:00:00Z", "--to", "2026-01-20T23:59:59Z")
    first = cli(cluster_env, ns, *args)
    assert first.code == 0, first.err
    assert "20 run(s) created" in first.out and "0 fire time(s) had a run already" in first.out
    runs = _runs(kube, ns, "daily")
    assert [r["metadata"]["name"] for r in runs] == [f"daily-202601{d:02d}050000" for d in range(1, 21)]  # 06:00 CET
    second = cli(cluster_env, ns, *args)
    assert second.code == 0, second.err
    assert "0 run(s) created" in second.out and "20 fire time(s) had a run already" in second.out
    assert len(_runs(kube, ns, "daily")) == 20
    bad = cli(cluster_env, ns, "schedule", "backfill", "daily", "--from", "yesterday", "--to", "2026-01-01T00:00:00Z")
    assert bad.code == 4 and "--from 'yesterday' is not a time" in bad.err
    capped = cli(
        cluster_env,
        ns,
        "schedule",
        "backfill",
        "daily",
        "--from",
        "2026-02-01T00:00:00Z",
        "--to",
        "2026-02-10T00:00:00Z",
        "--max",
        "4",
    )
    assert capped.code == 6 and "more fire times than --max 4" in capped.err
    # BufferAll: one after another, each started once the one before ended.
    serial = cli(
        cluster_env,
        ns,
        "schedule",
        "backfill",
        "daily",
        "--from",
        "2025-12-01T00:00:00Z",
        "--to",
        "2025-12-03T23:00:00Z",
        "--overlap-policy",
        "BufferAll",
    )
    assert serial.code == 0, serial.err
    assert "3 run(s) created" in serial.out and "started daily-20251203050000 (3 of 3)" in serial.out
    one_by_one = [wait_phase(kube, ns, f"daily-202512{d:02d}050000") for d in (1, 2, 3)]
    for before, after in itertools.pairwise(one_by_one):
        assert after["startTime"] >= before["completionTime"], (before, after)
    listing = cli(cluster_env, ns, "schedules")
    assert listing.code == 0 and "daily" in listing.out and "Europe/Berlin" in listing.out
    paused = cli(cluster_env, ns, "schedule", "pause", "daily")
    assert paused.code == 0 and "paused" in paused.out
    assert as_dict(kube.get(ScheduleResource, "daily", namespace=ns))["spec"]["suspend"] is True
    assert cli(cluster_env, ns, "schedule", "resume", "daily").code == 0
    assert as_dict(kube.get(ScheduleResource, "daily", namespace=ns))["spec"]["suspend"] is False
    missing = cli(cluster_env, ns, "schedule", "trigger", "no-such-schedule")
    assert missing.code == 3 and "schedule 'no-such-schedule' not found" in missing.err


def test_the_nightly_report_example_runs_when_triggered_and_knows_its_schedule(
    cluster_env: ClusterEnv, kube: Client, ns: str
) -> None:
    for name in ("nightly/task.yaml", "nightly/schedule.yaml"):
        kubectl(cluster_env.kubeconfig, "apply", "-n", ns, "-f", str(config.REPO / "examples" / name))
    out = cli(cluster_env, ns, "schedule", "trigger", "nightly-report")
    assert out.code == 0, out.err
    run = out.out.split()[0].split("/")[1]
    st = wait_phase(kube, ns, run, timeout=120)
    assert st["phase"] == "Succeeded", st
    result = json.loads(st["result"])
    assert result["schedule"] == "nightly-report"
    assert result["fire_time"].startswith(datetime.now(UTC).strftime("%Y-%m-%d"))
    assert result["report"]["day"] == (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    assert _status(kube, ns, "nightly-report")["nextFireTime"]  # 02:30 Berlin time, next
