"""What a Schedule does at each moment: one run per fire time, the overlap policies, catch-up within
the window, suspend and resume, history limits, and nothing twice after a restart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cairn.api.schedule import Schedule
from cairn.domain.schedule import RunOf, ScheduleView, backfill, plan, run_body
from cairn.domain.timefmt import format_time

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)  # the schedule's creation
MIN = timedelta(minutes=1)


def schedule(status: dict[str, Any] | None = None, **spec: Any) -> Schedule:
    body: dict[str, Any] = {
        "metadata": {
            "name": "report",
            "namespace": "ops",
            "uid": "s-uid",
            "generation": 1,
            "creationTimestamp": "2026-12-01T12:00:00Z",
        },
        "spec": {"taskRef": {"name": "make-report"}, "cron": ["*/5 * * * *"], **spec},
    }
    if status is not None:
        body["status"] = status
    return Schedule.model_validate(body)


def run(minute: int, phase: str | None = "Running", **kw: Any) -> RunOf:
    t = T0 + minute * MIN
    return RunOf(name=f"report-{t:%Y%m%d%H%M%S}", fire_time=t, phase=phase, **kw)


def at(minute: float, s: Schedule, *runs: RunOf) -> Any:
    return plan(ScheduleView(schedule=s, runs=runs, now=T0 + timedelta(minutes=minute)))


def names(p: Any) -> list[str]:
    return [b["metadata"]["name"] for b in p.create]


def test_nothing_fires_before_the_first_fire_time_and_it_looks_again_then() -> None:
    p = at(3, schedule())
    assert p.create == []
    assert p.recheck_at == T0 + 5 * MIN
    assert p.status is not None and p.status["nextFireTime"] == "2026-12-01T12:05:00.000Z"


def test_a_fire_time_starts_one_run_named_after_it_carrying_the_schedule_and_the_fire_time() -> None:
    s = schedule(payload='{"kind": "daily"}', priority=5, queue="reports", concurrencyKey="ops")
    p = at(5, s)
    (body,) = p.create
    assert body["metadata"]["name"] == "report-20261201120500"
    assert body["metadata"]["labels"]["cairn.dev/schedule"] == "report"
    assert body["metadata"]["annotations"]["cairn.dev/fire-time"] == "2026-12-01T12:05:00.000Z"
    assert body["metadata"]["ownerReferences"][0]["uid"] == "s-uid"
    assert body["spec"] == {
        "taskRef": {"name": "make-report"},
        "priority": 5,
        "payload": '{"kind": "daily"}',
        "queue": "reports",
        "concurrencyKey": "ops",
    }
    assert p.status is not None
    assert (p.status["lastFireTime"], p.status["lastRun"], p.status["runsStarted"]) == (
        "2026-12-01T12:05:00.000Z",
        "report-20261201120500",
        1,
    )
    assert [e.reason for e in p.events] == ["Fired"]
    assert p.recheck_at == T0 + 10 * MIN


def test_a_fire_time_whose_run_exists_is_handled_so_a_restart_before_the_status_write_starts_nothing_twice() -> None:
    p = at(5.5, schedule(), run(5))  # the run was created; the status never said so
    assert p.create == []
    assert p.status is not None and p.status["lastFireTime"] == "2026-12-01T12:05:00.000Z"
    assert p.status.get("skipped", 0) == 0


@pytest.mark.parametrize(
    ("policy", "created", "cancelled", "skipped", "buffered"),
    [
        ("Allow", ["report-20261201121000"], [], 0, None),
        ("Skip", [], [], 1, None),
        ("BufferOne", [], [], 0, "2026-12-01T12:10:00.000Z"),
        ("CancelPrevious", ["report-20261201121000"], ["report-20261201120500"], 0, None),
    ],
)
def test_a_fire_time_while_the_previous_run_goes_on_follows_the_overlap_policy(
    policy: str, created: list[str], cancelled: list[str], skipped: int, buffered: str | None
) -> None:
    s = schedule(overlapPolicy=policy, status={"lastFireTime": "2026-12-01T12:05:00.000Z"})
    p = at(10, s, run(5))
    assert (names(p), p.cancel) == (created, cancelled)
    assert p.status is not None
    assert p.status.get("skipped", 0) == skipped
    assert p.status.get("bufferedFireTime") == buffered


def test_buffer_one_starts_the_buffered_fire_time_when_the_running_run_ends_and_skips_a_second() -> None:
    s = schedule(
        overlapPolicy="BufferOne",
        status={"lastFireTime": "2026-12-01T12:10:00.000Z", "bufferedFireTime": "2026-12-01T12:10:00.000Z"},
    )
    still = at(15, s, run(5))
    assert still.create == []
    assert still.status is not None and still.status["skipped"] == 1  # 12:15: one waits already
    done = at(12, s, run(5, "Succeeded"))
    assert names(done) == ["report-20261201121000"]
    assert done.status is not None and done.status["bufferedFireTime"] is None


def test_after_an_outage_fire_times_within_the_catchup_window_run_oldest_first_and_older_ones_are_missed() -> None:
    s = schedule(overlapPolicy="Allow", catchupWindow="12m", status={"lastFireTime": "2026-12-01T12:05:00.000Z"})
    p = at(42, s)  # down from 12:06 to 12:42: 12:10 ... 12:40 came and went
    assert names(p) == ["report-20261201123000", "report-20261201123500", "report-20261201124000"]
    assert p.status is not None and p.status["missed"] == 4  # 12:10, 12:15, 12:20, 12:25
    assert p.events[0].reason == "MissedFireTimes"


def test_a_suspended_schedule_fires_nothing_and_resumed_it_catches_up_within_the_window() -> None:
    status = {"lastFireTime": "2026-12-01T12:05:00.000Z"}
    suspended = at(20, schedule(suspend=True, status=status))
    assert suspended.create == [] and suspended.recheck_at is None
    assert suspended.status is not None
    active = next(c for c in suspended.status["conditions"] if c["type"] == "Active")
    assert (active["status"], active["reason"]) == ("False", "Suspended")
    resumed = at(20, schedule(overlapPolicy="Allow", status=status))
    assert names(resumed) == ["report-20261201121000", "report-20261201121500", "report-20261201122000"]


def test_finished_runs_beyond_the_history_limits_are_deleted_oldest_first() -> None:
    runs = [run(m, "Succeeded") for m in (5, 10, 15, 20, 25)] + [run(m, "Failed") for m in (30, 35)]
    p = at(36, schedule(status={"lastFireTime": "2026-12-01T12:35:00.000Z"}), *runs)
    assert p.delete == [runs[0].name, runs[1].name, runs[5].name]


def test_no_fire_time_after_end_time_and_the_schedule_says_it_ended() -> None:
    s = schedule(endTime="2026-12-01T12:07:00Z", status={"lastFireTime": "2026-12-01T12:05:00.000Z"})
    p = at(30, s)
    assert p.create == [] and p.recheck_at is None
    assert p.status is not None
    active = next(c for c in p.status["conditions"] if c["type"] == "Active")
    assert active["reason"] == "Ended"


def test_no_fire_time_before_start_time() -> None:
    s = schedule(startTime="2026-12-01T12:12:00Z")
    before = at(11, s)
    assert names(before) == []
    assert before.status is not None and "lastFireTime" not in before.status  # nothing handled yet
    assert names(at(15, s)) == ["report-20261201121500"]


def test_a_long_outage_is_caught_up_over_several_plans_without_a_cliff() -> None:
    s = schedule(
        cron=["* * * * * *"],
        overlapPolicy="Allow",
        catchupWindow="2h",
        status={"lastFireTime": "2026-12-01T12:00:00.000Z"},
    )
    p = at(60, s)  # 3,600 fire times due
    assert len(p.create) == 500 and p.recheck_at == T0 + 60 * MIN


def test_a_backfill_starts_the_fire_times_without_a_run_and_a_second_identical_one_starts_none() -> None:
    s = schedule()
    start, end = T0, T0 + 95 * MIN  # 12:00 ... 13:35: 20 fire times
    bodies, had, more = backfill(s, set(), start, end, 100)
    assert (len(bodies), had, more) == (20, 0, False)
    again, had, more = backfill(s, {b["metadata"]["name"] for b in bodies}, start, end, 100)
    assert (again, had, more) == ([], 20, False)
    capped, _, more = backfill(s, set(), start, end, 5)
    assert (len(capped), more) == (5, True)


def test_a_manual_trigger_is_marked_as_one() -> None:
    body = run_body(schedule(), T0 + timedelta(seconds=7), manual=True)
    assert body["metadata"]["name"] == "report-20261201120007"
    assert body["metadata"]["annotations"]["cairn.dev/schedule-trigger"] == "manual"
    assert format_time(T0) == "2026-12-01T12:00:00.000Z"
