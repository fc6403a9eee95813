"""The CLI's pure rendering: ages and durations, the `runs` and `queues` tables, the `describe` timeline,
the lines and live view of `trigger --wait`, and the log headers. A run with two attempts is the
example throughout: attempt 1 records fetch#0 and square#0 then exits 1, attempt 2 records publish#0."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from cairn.api.queue import Queue
from cairn.api.taskrun import TaskRun
from cairn.cli import podlogs, progress, render, timeline
from cairn.cli.errors import ExitCode
from tests.unit.builders import task_spec_dict

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> str:
    t = T0 + timedelta(seconds=seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def at_second(seconds: int) -> str:
    """A time as the kubelet reports it: to the second."""
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


ATTEMPT_1 = {
    "number": 1,
    "pod": "r1-1",
    "node": "node-1",
    "startTime": at(1.042),
    "finishTime": at_second(4),
    "exitCode": 1,
    "reason": "Error",
    "message": "attempt 1: the square of 7 is 49\nattempt 1: failing on purpose after two steps",
    "counted": True,
    "memoryLimit": "128Mi",
}
ATTEMPT_2 = {
    "number": 2,
    "pod": "r1-2",
    "node": "node-2",
    "startTime": at(5.5),
    "finishTime": at_second(8),
    "exitCode": 0,
    "reason": "Completed",
    "counted": True,
    "memoryLimit": "128Mi",
}
STEPS = [
    {"key": "fetch#0", "attempt": 1, "startTime": at(2.0), "completionTime": at(2.25)},
    {"key": "square#0", "attempt": 1, "startTime": at(2.3), "completionTime": at(2.31)},
    {"key": "publish#0", "attempt": 2, "startTime": at(6.0), "completionTime": at(7.5)},
]


def run_dict(**status: Any) -> dict[str, Any]:
    """The two-attempt run, Succeeded; `status` overrides fields of its status."""
    body: dict[str, Any] = {
        "apiVersion": "cairn.dev/v1alpha1",
        "kind": "TaskRun",
        "metadata": {"name": "r1", "namespace": "media", "uid": "u-1", "creationTimestamp": at_second(0)},
        "spec": {"taskRef": {"name": "flaky"}, "payload": '{"n":7}', "priority": 0},
        "status": {
            "phase": "Succeeded",
            "reason": "Succeeded",
            "message": "attempt 2 completed",
            "queue": "default",
            "task": {"name": "flaky", "uid": "t-1", "generation": 1, "spec": task_spec_dict()},
            "attempt": 2,
            "attempts": [ATTEMPT_1, ATTEMPT_2],
            "startTime": at(1.042),
            "completionTime": at(8.25),
            "progress": {"stepsCompleted": 3, "lastStep": "publish#0", "updatedTime": at(7.5)},
            "steps": STEPS,
            "result": '{"square": 49, "published": 49}',
            "conditions": [
                {
                    "type": "Admitted",
                    "status": "False",
                    "reason": "Finished",
                    "message": "the slot was released",
                    "lastTransitionTime": at(8.25),
                },
                {
                    "type": "Succeeded",
                    "status": "True",
                    "reason": "Succeeded",
                    "message": "attempt 2 completed",
                    "lastTransitionTime": at(8.25),
                },
            ],
        },
    }
    body["status"].update(status)
    return body


def run(**status: Any) -> TaskRun:
    return TaskRun.model_validate(run_dict(**status))


def running_in_attempt_1() -> TaskRun:
    """The same run seen earlier: attempt 1 has recorded fetch#0 and is still running."""
    attempt = {
        k: v for k, v in ATTEMPT_1.items() if k not in ("finishTime", "exitCode", "reason", "message", "counted")
    }
    return run(
        phase="Running",
        reason="Started",
        message="attempt 1 is running in pod r1-1",
        attempt=1,
        attempts=[attempt],
        completionTime=None,
        steps=STEPS[:1],
        progress={"stepsCompleted": 1, "lastStep": "fetch#0", "updatedTime": at(2.25)},
        result=None,
        conditions=None,
    )


NOW = T0 + timedelta(seconds=75)


# -- times and durations ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-3, "0s"),
        (0, "0s"),
        (59, "59s"),
        (119, "119s"),
        (120, "2m"),
        (192, "3m12s"),
        (25 * 60 + 40, "25m"),
        (4 * 3600 + 10 * 60, "4h10m"),
        (5 * 3600, "5h"),
        (30 * 3600, "30h"),
        (3 * 86400 + 4 * 3600, "3d4h"),
        (90 * 86400, "90d"),
        (800 * 86400, "2y70d"),
        (9 * 365 * 86400, "9y"),
    ],
)
def test_ages_read_like_kubectl(seconds: float, text: str) -> None:
    assert render.human_duration(seconds) == text


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.015, "15ms"), (0.6, "0.6s"), (12.34, "12.3s"), (125, "2m05s"), (3720, "1h02m")]
)
def test_durations_are_precise_and_short(seconds: float, text: str) -> None:
    assert render.elapsed(seconds) == text


def test_clock_shows_milliseconds_only_when_known_and_the_date_only_when_it_changes() -> None:
    assert render.clock("2026-03-01T12:00:01.250Z", "2026-03-01") == "12:00:01.250"
    assert render.clock("2026-03-01T12:00:04Z", "2026-03-01") == "12:00:04    "  # the kubelet's precision
    assert render.clock("2026-03-01T12:00:04.000Z", "2026-03-01") == "12:00:04    "  # ... as the operator copies it
    assert render.clock("2026-03-02T00:00:01.250Z", "2026-03-01") == "2026-03-02 00:00:01.250"


# -- tables ----------------------------------------------------------------------------------------


def test_the_runs_table() -> None:
    other = run_dict(phase="Retrying", attempt=1, attempts=[ATTEMPT_1], steps=STEPS[:2], result=None)
    other["metadata"] |= {"name": "r2", "creationTimestamp": at_second(30)}
    other["status"]["progress"] = {"stepsCompleted": 2, "lastStep": "square#0"}
    queued = {
        "apiVersion": "cairn.dev/v1alpha1",
        "kind": "TaskRun",
        "metadata": {"name": "r3", "namespace": "media", "creationTimestamp": at_second(70)},
    }
    queued["spec"] = {"taskRef": {"name": "flaky"}, "queue": "fast"}
    runs = [TaskRun.model_validate(b) for b in (queued, other, run_dict())]
    assert render.plain(render.runs_table(runs, NOW)).splitlines() == [
        "NAME   TASK    PHASE       ATTEMPT   STEP            QUEUE     AGE",
        "r1     flaky   Succeeded   2/3       3 (publish#0)   default   75s",
        "r2     flaky   Retrying    1/3       2 (square#0)    default   45s",
        "r3     flaky   Pending     0         0               fast      5s",
    ]


def test_the_wide_runs_table_adds_priority_key_node_and_why() -> None:
    body = run_dict()
    body["spec"] |= {"priority": 5, "concurrencyKey": "tenant-a"}
    text = render.plain(render.runs_table([TaskRun.model_validate(body)], NOW, wide=True, namespace=True))
    assert text.splitlines() == [
        "NAMESPACE   NAME   TASK    PHASE       ATTEMPT   STEP            QUEUE     AGE   PRIORITY   KEY        NODE     REASON      MESSAGE",
        "media       r1     flaky   Succeeded   2/3       3 (publish#0)   default   75s   5          tenant-a   node-2   Succeeded   attempt 2 completed",
    ]


def test_the_queues_table() -> None:
    queue = Queue.model_validate(
        {
            "metadata": {"name": "default", "namespace": "media", "creationTimestamp": at_second(0)},
            "spec": {"concurrencyLimit": 10, "perKeyLimit": 2},
            "status": {"queued": 4, "running": 10, "admittedTotal": 31, "oldestQueuedTime": at(15)},
        }
    )
    paused = Queue.model_validate({"metadata": {"name": "batch"}, "spec": {"paused": True}})
    paced = Queue.model_validate(
        {
            "metadata": {"name": "api"},
            "spec": {
                "rateLimit": {"limit": 10, "period": "10s"},
                "perKeyRateLimit": {"limit": 2, "period": "1m", "burst": 1},
                "maxQueued": 100,
            },
            "status": {
                "queued": 3,
                "rateLimited": 3,
                "rate": {"limit": 10, "period": "10s", "used": 7, "summary": "7/10 per 10s"},
            },
        }
    )
    fresh = Queue.model_validate({"metadata": {"name": "new"}, "spec": {"rateLimit": {"limit": 5, "period": "2m"}}})
    lines = render.plain(render.queues_table([queue, paused, paced, fresh], NOW, wide=True)).splitlines()
    assert [" ".join(line.split()) for line in lines] == [
        "NAME LIMIT PER-KEY RATE RUNNING QUEUED PAUSED OLDEST QUEUED AGE RATE-LIMITED PER-KEY RATE MAX QUEUED "
        "ADMITTED ACTIVE",
        "api 10 - 7/10 per 10s 0 3 no - - 3 2 per 1m, burst 1 100 0 -",
        "batch 10 - - 0 0 yes - - 0 - - 0 -",
        "new 10 - 5 per 2m 0 0 no - - 0 - - 0 -",
        "default 10 2 - 10 4 no 60s 75s 0 - - 31 -",
    ]


def test_objects_print_without_managed_fields_and_lists_as_kubectl_does() -> None:
    body = run_dict()
    body["metadata"]["managedFields"] = [{"manager": "cairn-cli"}]
    as_json = json.loads(render.dump(body, render.Output.JSON))
    assert "managedFields" not in as_json["metadata"] and as_json["status"]["phase"] == "Succeeded"
    listed = yaml.safe_load(render.dump(render.as_list([body]), render.Output.YAML))
    assert listed["kind"] == "List" and "managedFields" not in listed["items"][0]["metadata"]
    assert body["metadata"]["managedFields"]  # the input is left alone


# -- describe --------------------------------------------------------------------------------------


def test_describe_shows_which_attempt_ran_which_step_and_why_each_attempt_ended() -> None:
    events: list[dict[str, Any]] = [
        {
            "type": "Normal",
            "reason": "Started",
            "message": "attempt 1 started in pod r1-1",
            "lastTimestamp": at_second(1),
            "source": {"component": "cairn-operator"},
        },
        {
            "type": "Warning",
            "reason": "AttemptFailed",
            "message": "attempt 1 ended: Error (exit code 1)",
            "lastTimestamp": at_second(4),
            "source": {"component": "cairn-operator"},
        },
        {
            "type": "Normal",
            "reason": "Succeeded",
            "message": "attempt 2 completed",
            "lastTimestamp": at_second(8),
            "count": 2,
            "source": {"component": "cairn-operator"},
        },
    ]
    text = timeline.describe(run(), list(reversed(events)), NOW)
    assert text.splitlines() == [
        "Name:             r1",
        "Namespace:        media",
        "Task:             flaky (generation 1)",
        "Image:            registry.example/tasks/transcode:1.4.2",
        "Queue:            default",
        "Priority:         0",
        "Key:              <none>",
        "Phase:            Succeeded",
        "Reason:           Succeeded",
        "Message:          attempt 2 completed",
        "Created:          2026-03-01T12:00:00Z (75s ago)",
        "Started:          2026-03-01T12:00:01.042Z",
        "Completed:        2026-03-01T12:00:08.250Z (took 7.2s)",
        "Attempts:         2 (maxAttempts 3)",
        "Progress:         3 steps completed, the last publish#0 at 2026-03-01T12:00:07.500Z",
        'Payload:          {"n":7}',
        'Result:           {"square": 49, "published": 49}',
        "Steps by attempt: attempt 1: fetch#0, square#0; attempt 2: publish#0",
        "",
        "Timeline (UTC, 2026-03-01):",
        "  12:00:00      created",
        "  Attempt 1: pod r1-1 on node-1, memory limit 128Mi",
        "    12:00:01.042  started",
        "    12:00:02.250  step fetch#0 completed (took 0.2s)",
        "    12:00:02.310  step square#0 completed (took 10ms)",
        "    12:00:04      ended after 3.0s: Error, exit code 1",
        "                  message:",
        "                    attempt 1: the square of 7 is 49",
        "                    attempt 1: failing on purpose after two steps",
        "  Attempt 2: pod r1-2 on node-2, memory limit 128Mi",
        "    12:00:05.500  started (1.5s after attempt 1 ended)",
        "    12:00:07.500  step publish#0 completed (took 1.5s)",
        "    12:00:08      ended after 2.5s: Completed, exit code 0",
        "  12:00:08.250  Succeeded: attempt 2 completed",
        "",
        "Conditions:",
        "  TYPE        STATUS   REASON      AGE   MESSAGE",
        "  Admitted    False    Finished    66s   the slot was released",
        "  Succeeded   True     Succeeded   66s   attempt 2 completed",
        "",
        "Events:",
        "  TYPE      REASON          AGE        FROM             MESSAGE",
        "  Normal    Started         74s        cairn-operator   attempt 1 started in pod r1-1",
        "  Warning   AttemptFailed   71s        cairn-operator   attempt 1 ended: Error (exit code 1)",
        "  Normal    Succeeded       67s (x2)   cairn-operator   attempt 2 completed",
    ]


def test_an_attempt_ran_at_least_until_its_last_step_whatever_the_kubelets_rounding() -> None:
    # The container ended at 12:00:02.6, say: the kubelet reports 12:00:02, before square#0 (02.310).
    ended_early = {**ATTEMPT_1, "finishTime": at_second(2)}
    body = run(attempts=[ended_early, ATTEMPT_2])
    assert "    12:00:02      ended after 1.3s: Error, exit code 1" in timeline.describe(body, [], NOW)
    lines = progress.changes(None, body, NOW)
    assert lines[3].startswith("12:00:02      attempt 1 ended after 1.3s: Error, exit code 1")
    assert render.attempt_seconds(body.status.attempts[0]) == pytest.approx(0.958)  # type: ignore[union-attr, index]


def test_describe_of_a_run_in_flight_says_what_it_is_doing_now() -> None:
    text = timeline.describe(running_in_attempt_1(), [], T0 + timedelta(seconds=3))
    assert "Phase:            Running" in text
    assert "    12:00:02.250  step fetch#0 completed (took 0.2s)\n                  running (2.0s so far)" in text
    assert text.endswith("Conditions:       <none>\n\nEvents:           <none>")


def test_describe_of_a_retrying_run_shows_when_the_next_attempt_starts() -> None:
    body = run_dict(
        phase="Retrying", attempts=[ATTEMPT_1], steps=STEPS[:2], completionTime=None, nextAttemptTime=at(5.5)
    )
    body["spec"]["cancel"] = True
    text = timeline.describe(TaskRun.model_validate(body), [], T0 + timedelta(seconds=4.5))
    assert "Phase:            Retrying (cancellation requested)" in text
    assert "Next attempt:     2026-03-01T12:00:05.500Z (in 1.0s)" in text
    assert "  12:00:05.500  next attempt starts" in text


def test_describe_says_when_older_steps_are_only_in_postgresql() -> None:
    many = [{"key": f"item#{i}", "attempt": 1, "completionTime": at(2 + i / 100)} for i in range(50, 100)]
    text = timeline.describe(run(steps=many, progress={"stepsCompleted": 100, "lastStep": "item#99"}), [], NOW)
    assert "  (the last 50 of 100 completed steps: the status keeps 50, PostgreSQL keeps all)" in text
    assert "step item#50 completed" in text and "item#49" not in text


def test_describe_shortens_a_large_payload_and_says_where_all_of_it_is() -> None:
    body = run_dict()
    body["spec"]["payload"] = json.dumps({"blob": "x" * 5000})
    text = timeline.describe(TaskRun.model_validate(body), [], NOW)
    size = len(body["spec"]["payload"])
    assert (
        f"Payload:          {body['spec']['payload'][:1000]}… ({size} bytes in all: -o json shows everything)" in text
    )


# -- trigger --wait --------------------------------------------------------------------------------


def test_progress_lines_tell_the_story_in_order_from_a_first_sight() -> None:
    # Lines follow each attempt (start, steps, end), not the clock: the kubelet reports ends to the second.
    assert progress.changes(None, run(), T0 + timedelta(seconds=9)) == [
        "12:00:01.042  attempt 1 started: pod r1-1 on node-1",
        "12:00:02.250  step fetch#0 completed (attempt 1)",
        "12:00:02.310  step square#0 completed (attempt 1)",
        "12:00:04      attempt 1 ended after 3.0s: Error, exit code 1: attempt 1: failing on purpose after two steps",
        "12:00:05.500  attempt 2 started: pod r1-2 on node-2",
        "12:00:07.500  step publish#0 completed (attempt 2)",
        "12:00:08      attempt 2 ended after 2.5s: Completed, exit code 0",
        "12:00:08.250  Succeeded: attempt 2 completed",
    ]


def test_progress_lines_show_only_what_is_new_since_the_last_sight() -> None:
    before, after = running_in_attempt_1(), run()
    lines = progress.changes(before, after, T0 + timedelta(seconds=9))
    assert "step fetch#0 completed (attempt 1)" not in "\n".join(lines)
    assert lines[0] == "12:00:02.310  step square#0 completed (attempt 1)"
    assert lines[-1] == "12:00:08.250  Succeeded: attempt 2 completed"
    assert progress.changes(after, after, T0 + timedelta(seconds=10)) == []


def test_a_node_learnt_later_and_saved_state_are_reported() -> None:
    before = copy.deepcopy(run_dict(phase="Running", attempts=[{"number": 1, "pod": "r1-1", "startTime": at(1.042)}]))
    after = copy.deepcopy(before)
    after["status"]["attempts"][0]["node"] = "node-1"
    after["status"]["progress"] = {"stepsCompleted": 3, "state": "processed 1200 of 5000", "updatedTime": at(3.5)}
    lines = progress.changes(TaskRun.model_validate(before), TaskRun.model_validate(after), T0 + timedelta(seconds=4.2))
    assert lines == ["12:00:04.200  attempt 1: pod r1-1 is on node-1", "12:00:03.500  state: processed 1200 of 5000"]


def test_the_summary_and_the_exit_code_of_each_outcome() -> None:
    assert progress.summary(run()) == [
        "run r1 Succeeded after 2 attempts in 7.2s: attempt 2 completed",
        'result: {"square": 49, "published": 49}',
    ]
    assert progress.outcome_code(run()) is ExitCode.OK
    assert progress.outcome_code(run(phase="Failed")) is ExitCode.RUN_FAILED
    assert progress.outcome_code(run(phase="Cancelled")) is ExitCode.RUN_CANCELLED
    assert (int(ExitCode.RUN_FAILED), int(ExitCode.RUN_CANCELLED)) == (1, 2)
    with pytest.raises(ValueError, match="has not finished"):
        progress.outcome_code(running_in_attempt_1())


def test_the_live_view_of_a_run_in_flight() -> None:
    text = render.plain(progress.live_view(running_in_attempt_1(), T0 + timedelta(seconds=3)))
    assert text.splitlines() == [
        "run r1  task flaky  queue default  Running  attempt 1/3  elapsed 2.0s",
        "ATTEMPT   NODE     STARTED        TOOK   OUTCOME   STEPS",
        "1         node-1   12:00:01.042   2.0s   running   fetch#0",
        "1 step(s) completed, the last fetch#0",
        "attempt 1 is running in pod r1-1",
    ]


def test_the_last_frame_of_the_live_view_is_the_whole_run() -> None:
    text = render.plain(progress.live_view(run(), NOW))
    assert text.splitlines() == [
        "run r1  task flaky  queue default  Succeeded  attempt 2/3  elapsed 7.2s",  # to completion, not to now
        "ATTEMPT   NODE     STARTED        TOOK   OUTCOME                  STEPS",
        "1         node-1   12:00:01.042   3.0s   Error, exit code 1       fetch#0, square#0",
        "2         node-2   12:00:05.500   2.5s   Completed, exit code 0   publish#0",
        "3 step(s) completed, the last publish#0",
    ]


def test_the_live_view_counts_down_to_the_next_attempt() -> None:
    retrying = run(
        phase="Retrying",
        message="attempt 1 ended: Error (exit code 1); attempt 2 starts in 1.0s",
        attempt=1,
        attempts=[ATTEMPT_1],
        steps=STEPS[:2],
        progress={"stepsCompleted": 2, "lastStep": "square#0"},
        completionTime=None,
        nextAttemptTime=at(5.5),
    )
    text = render.plain(progress.live_view(retrying, T0 + timedelta(seconds=4.5)))
    assert "1         node-1   12:00:01.042   3.0s   Error, exit code 1   fetch#0, square#0" in text
    assert text.splitlines()[-2:] == [
        "attempt 1 ended: Error (exit code 1); attempt 2 starts in 1.0s",
        "next attempt in 1.0s",
    ]


def test_the_last_line_of_a_message_is_the_telling_one() -> None:
    assert progress.short_message("Traceback:\n  File x\nValueError: bad\n\n") == "ValueError: bad"
    assert progress.short_message(None) == ""
    assert progress.short_message("x" * 500).endswith("…") and len(progress.short_message("x" * 500)) == 200


# -- logs ------------------------------------------------------------------------------------------


def test_log_headers_name_the_attempt_its_pod_and_node_and_how_it_ended() -> None:
    attempt_1 = run().status.attempts[0]  # type: ignore[union-attr, index]
    assert podlogs.attempt_header(attempt_1) == "==> attempt 1: pod r1-1 on node-1 <=="
    assert podlogs.attempt_footer(attempt_1) == "<== attempt 1 ended after 3.0s: Error, exit code 1"
    early = run(attempts=[{**ATTEMPT_1, "finishTime": at_second(2)}])
    footer = podlogs.attempt_footer(early.status.attempts[0], early.status.steps or [])  # type: ignore[union-attr, index]
    assert footer == "<== attempt 1 ended after 1.3s: Error, exit code 1"  # at least until its last step
    pending = {
        "spec": {"containers": [{"name": "task"}]},
        "status": {"phase": "Pending", "containerStatuses": [{"state": {"waiting": {"reason": "ContainerCreating"}}}]},
    }
    assert podlogs.container_of(pending) == "task"
    unplaced = run().status.attempts[1].model_copy(update={"node": None})  # type: ignore[union-attr, index]
    assert podlogs.attempt_header(unplaced, {"spec": {"nodeName": "node-2"}}) == "==> attempt 2: pod r1-2 on node-2 <=="
    assert podlogs.attempt_header(unplaced) == "==> attempt 2: pod r1-2 <=="
    assert not podlogs.container_started(pending) and podlogs.waiting_reason(pending) == "ContainerCreating"
