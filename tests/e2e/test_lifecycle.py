"""A TaskRun's life on a real cluster: pods per attempt, retries with backoff, OOM kills with more
memory, timeouts, cancellation, unpullable images, pods that cannot be scheduled, malformed input."""

from __future__ import annotations

from lightkube import Client
from lightkube.types import PatchType

from cairn.k8s.resources import TaskResource, TaskRunResource
from tests.support.kube import wait_for
from tests.support.runs import StepCounter, create_run, make_task, pods_of, seconds_between, status, wait_phase

SUCCEED = """
def main(ctx):
    hit(ctx, "run")
    a = ctx.step("one", lambda: 1)
    b = ctx.step("two", lambda: a + 1)
    return {"sum": a + b}
"""


def test_a_run_succeeds_with_its_result_in_status(kube: Client, ns: str, counter: StepCounter) -> None:
    make_task(kube, ns, "ok", SUCCEED, counter=counter)
    create_run(kube, ns, "ok", "r1")
    st = wait_phase(kube, ns, "r1")
    assert st["phase"] == "Succeeded", st
    assert st["result"] == '{"sum":3}' or st["result"].replace(" ", "") == '{"sum":3}'
    assert st["attempt"] == 1 and len(st["attempts"]) == 1
    assert st["attempts"][0]["exitCode"] == 0 and st["attempts"][0]["reason"] == "Completed"
    assert st["progress"]["stepsCompleted"] == 2 and st["progress"]["lastStep"] == "two#0"
    assert st["task"]["name"] == "ok" and st["task"]["spec"]["template"]["spec"]["containers"][0]["image"]
    conditions = {c["type"]: c for c in st["conditions"]}
    assert conditions["Succeeded"]["status"] == "True"
    assert all(c["observedGeneration"] == 1 for c in st["conditions"])
    assert counter.count("r1", "run") == 1
    pod = pods_of(kube, ns, "r1")[0]
    assert pod["metadata"]["name"] == "r1-1"
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "TaskRun"


def test_a_non_retryable_exit_code_fails_the_run_at_once(kube: Client, ns: str) -> None:
    make_task(
        kube,
        ns,
        "fatal",
        "def main(ctx):\n    sys.exit(4)\n",
        retry={
            "maxAttempts": 5,
            "podFailurePolicy": {"rules": [{"action": "FailRun", "onExitCodes": {"operator": "In", "values": [4]}}]},
        },
    )
    create_run(kube, ns, "fatal", "r1")
    st = wait_phase(kube, ns, "r1")
    assert st["phase"] == "Failed"
    assert len(st["attempts"]) == 1 and st["attempts"][0]["exitCode"] == 4
    assert "podFailurePolicy makes fatal" in st["message"]


def test_a_run_that_fails_twice_then_succeeds_has_three_attempts_and_respects_the_backoff(
    kube: Client, ns: str, counter: StepCounter
) -> None:
    code = """
def main(ctx):
    hit(ctx, "attempt")
    if ctx.attempt < 3:
        print("failing on purpose in attempt %d" % ctx.attempt)
        sys.exit(1)
    return "third time lucky"
"""
    make_task(
        kube,
        ns,
        "flaky",
        code,
        counter=counter,
        retry={"maxAttempts": 3, "backoff": {"initialDelay": "2s", "factor": 2, "maxDelay": "10s", "jitter": 0}},
    )
    create_run(kube, ns, "flaky", "r1")
    st = wait_phase(kube, ns, "r1")
    assert st["phase"] == "Succeeded", st
    attempts = st["attempts"]
    assert [a["number"] for a in attempts] == [1, 2, 3]
    assert [a["exitCode"] for a in attempts] == [1, 1, 0]
    assert attempts[0]["message"] == "failing on purpose in attempt 1"
    # Backoff without jitter: 2s before attempt 2, 4s before attempt 3.
    assert seconds_between(attempts[0]["finishTime"], attempts[1]["startTime"]) >= 2.0
    assert seconds_between(attempts[1]["finishTime"], attempts[2]["startTime"]) >= 4.0
    assert [p["metadata"]["name"] for p in pods_of(kube, ns, "r1")] == ["r1-1", "r1-2", "r1-3"]
    assert counter.count("r1", "attempt") == 3


def test_an_oom_killed_attempt_is_retried_with_more_memory(kube: Client, ns: str) -> None:
    code = """
def main(ctx):
    block = bytearray(150 * 1024 * 1024)  # 150 MiB: over 128Mi, under 256Mi
    for i in range(0, len(block), 4096):
        block[i] = 1
    return len(block)
"""
    make_task(
        kube,
        ns,
        "hog",
        code,
        resources={"requests": {"memory": "64Mi"}, "limits": {"memory": "128Mi"}},
        retry={
            "maxAttempts": 3,
            "backoff": {"initialDelay": "1s"},
            "outOfMemory": {"memoryFactor": 2, "maxMemory": "256Mi"},
        },
    )
    create_run(kube, ns, "hog", "r1")
    st = wait_phase(kube, ns, "r1")
    assert st["phase"] == "Succeeded", st
    assert [a["reason"] for a in st["attempts"]] == ["OOMKilled", "Completed"]
    assert [a["memoryLimit"] for a in st["attempts"]] == ["128Mi", "256Mi"]
    pods = pods_of(kube, ns, "r1")
    assert pods[1]["spec"]["containers"][0]["resources"]["limits"]["memory"] == "256Mi"
    assert pods[1]["spec"]["containers"][0]["resources"]["requests"]["memory"] == "128Mi"


def test_an_attempt_over_its_timeout_ends_as_deadline_exceeded(kube: Client, ns: str) -> None:
    make_task(kube, ns, "slow", "def main(ctx):\n    time.sleep(120)\n", attemptTimeout="3s", retry={"maxAttempts": 1})
    create_run(kube, ns, "slow", "r1")
    st = wait_phase(kube, ns, "r1", timeout=90)
    assert st["phase"] == "Failed"
    assert st["attempts"][0]["reason"] == "DeadlineExceeded"
    assert pods_of(kube, ns, "r1")[0]["spec"]["activeDeadlineSeconds"] == 3


def test_max_duration_fails_the_run_wherever_it_is(kube: Client, ns: str) -> None:
    make_task(kube, ns, "long", "def main(ctx):\n    time.sleep(120)\n", maxDuration="5s", retry={"maxAttempts": 3})
    create_run(kube, ns, "long", "r1")
    st = wait_phase(kube, ns, "r1", timeout=90)
    assert st["phase"] == "Failed"
    assert st["reason"] == "MaxDurationExceeded"
    assert "maxDuration (5s)" in st["message"]
    assert seconds_between(st["startTime"], st["completionTime"]) < 30


def test_a_cancelled_run_stops_its_pod_and_ends_cancelled(kube: Client, ns: str, counter: StepCounter) -> None:
    make_task(kube, ns, "sleepy", "def main(ctx):\n    hit(ctx, 'x')\n    time.sleep(300)\n", counter=counter)
    create_run(kube, ns, "sleepy", "r1")
    wait_phase(kube, ns, "r1", ("Running",))
    kube.patch(TaskRunResource, "r1", {"spec": {"cancel": True}}, namespace=ns, patch_type=PatchType.MERGE)
    st = wait_phase(kube, ns, "r1")
    assert st["phase"] == "Cancelled"
    assert st["attempts"][-1]["reason"] == "Cancelled"

    def pod_gone_or_stopping() -> bool:
        pods = pods_of(kube, ns, "r1")
        return all(
            p["metadata"].get("deletionTimestamp") or p["status"]["phase"] in ("Succeeded", "Failed") for p in pods
        )

    from tests.support.kube import wait_for

    wait_for("the run's pod to be stopped", pod_gone_or_stopping, timeout=60)


def test_a_run_whose_image_cannot_be_pulled_fails_with_a_clear_reason(kube: Client, ns: str) -> None:
    make_task(kube, ns, "noimage", "def main(ctx):\n    pass\n", image="localhost/no-such-image:1")
    create_run(kube, ns, "noimage", "r1")
    st = wait_phase(kube, ns, "r1", timeout=90)
    assert st["phase"] == "Failed"
    assert st["reason"] == "ImagePullFailed"
    assert "no-such-image" in st["message"] or "ErrImageNeverPull" in st["message"]


def test_a_run_whose_pod_cannot_be_scheduled_is_starting_with_the_schedulers_reason_until_start_timeout(
    kube: Client, ns: str
) -> None:
    make_task(kube, ns, "nowhere", "def main(ctx):\n    pass\n", startTimeout="20s", retry={"maxAttempts": 1})
    no_node = {"spec": {"template": {"spec": {"nodeSelector": {"cairn.dev/no-such-node": "true"}}}}}
    kube.patch(TaskResource, "nowhere", no_node, namespace=ns, patch_type=PatchType.MERGE)
    create_run(kube, ns, "nowhere", "r1")
    waiting = wait_for(
        "the run to say why its pod waits",
        lambda: st if (st := status(kube, ns, "r1")).get("reason") == "Unschedulable" else None,
        timeout=60,
    )
    assert waiting["phase"] == "Starting", waiting  # not Running: no container runs
    assert waiting["message"].startswith("attempt 1 waits: Unschedulable: 0/"), waiting  # the scheduler's words
    assert "node" in waiting["message"], waiting
    st = wait_phase(kube, ns, "r1", timeout=90)
    assert (st["phase"], st["reason"]) == ("Failed", "Unschedulable"), st
    assert "not scheduled for longer than startTimeout" in st["message"], st
    assert wait_for("its pod to be removed", lambda: not pods_of(kube, ns, "r1"), timeout=60)


def test_a_run_naming_a_missing_task_waits_and_starts_when_the_task_appears(
    kube: Client, ns: str, counter: StepCounter
) -> None:
    create_run(kube, ns, "later", "r1")
    st = wait_phase(kube, ns, "r1", ("Queued",))
    assert st["reason"] == "TaskNotFound"
    assert 'Task "later" does not exist' in st["message"]
    make_task(kube, ns, "later", SUCCEED, counter=counter)
    assert wait_phase(kube, ns, "r1")["phase"] == "Succeeded"
    assert counter.count("r1", "run") == 1


def test_a_payload_that_is_not_json_fails_that_run_and_others_still_run(
    kube: Client, ns: str, counter: StepCounter
) -> None:
    make_task(kube, ns, "ok", SUCCEED, counter=counter)
    create_run(kube, ns, "ok", "bad", payload='{"unclosed": ')
    create_run(kube, ns, "ok", "good", payload='{"fine": true}')
    bad = wait_phase(kube, ns, "bad")
    assert bad["phase"] == "Failed"
    assert bad["reason"] == "InvalidPayload"
    assert "spec.payload is not JSON" in bad["message"] and "line 1 column" in bad["message"]
    assert wait_phase(kube, ns, "good")["phase"] == "Succeeded"
    assert (counter.count("bad", "run"), counter.count("good", "run")) == (0, 1)


def test_finished_runs_are_deleted_after_their_ttl_with_their_pods(kube: Client, ns: str, counter: StepCounter) -> None:
    make_task(kube, ns, "brief", SUCCEED, ttlSecondsAfterFinished=3, counter=counter)
    create_run(kube, ns, "brief", "r1")
    wait_phase(kube, ns, "r1")
    from lightkube import ApiError

    from tests.support.kube import wait_for

    def gone() -> bool:
        try:
            kube.get(TaskRunResource, "r1", namespace=ns)
            return False
        except ApiError as e:
            return e.status.code == 404

    wait_for("the finished run to be deleted after its TTL", gone, timeout=60)
    wait_for("its pods to be collected", lambda: not pods_of(kube, ns, "r1"), timeout=60)
