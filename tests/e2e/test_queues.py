"""Queues on a real cluster: limits never exceeded, priority then age, per-key limits that do not
block other keys, pause and resume, limit changes, and slots released on every path. The 200-run test
runs its pods on a simulated (KWOK) node; the others on the real ones."""

from __future__ import annotations

import functools
import time
from typing import Any

import pytest
from lightkube import Client
from lightkube.types import PatchType

from cairn.k8s.resources import QueueResource, TaskResource, TaskRunResource
from tests.support.builders import queue_body, simulated_task_body
from tests.support.cairn import CairnProcesses
from tests.support.env import ClusterEnv
from tests.support.figures import report
from tests.support.kube import as_dict, wait_for
from tests.support.observe import PodObserver
from tests.support.runs import create_run, make_task, status, wait_phase

SLEEPER = """
def main(ctx):
    time.sleep(float((ctx.payload or {}).get("sleep", 0)))
    if (ctx.payload or {}).get("fail_first") and ctx.attempt == 1:
        sys.exit(1)
    return ctx.run_name
"""


def _queue(kube: Client, ns: str, name: str, **spec: Any) -> None:
    body = queue_body(name, **spec)
    body["metadata"]["namespace"] = ns  # type: ignore[index]
    kube.create(QueueResource.from_dict(body))


def _patch_queue(kube: Client, ns: str, name: str, **spec: Any) -> None:
    kube.patch(QueueResource, name, {"spec": spec}, namespace=ns, patch_type=PatchType.MERGE)


def _queue_status(kube: Client, ns: str, name: str) -> dict[str, Any]:
    return dict(as_dict(kube.get(QueueResource, name, namespace=ns)).get("status") or {})


def test_higher_priority_runs_first_then_the_oldest(kube: Client, ns: str) -> None:
    _queue(kube, ns, "one", concurrencyLimit=1)
    make_task(kube, ns, "s", SLEEPER, queue="one")
    create_run(kube, ns, "s", "blocker", payload={"sleep": 4})
    wait_phase(kube, ns, "blocker", ("Running",))
    for name, priority in [("low-a", 0), ("mid", 5), ("low-b", 0), ("high", 10)]:
        create_run(kube, ns, "s", name, payload={}, priority=priority)
        time.sleep(1.1)  # distinct creation times (their resolution is a second)
    wait_for(
        "the four runs to queue behind the blocker",
        lambda: all(status(kube, ns, n).get("reason") == "QueueFull" for n in ("low-a", "mid", "low-b", "high")),
    )
    started = {n: wait_phase(kube, ns, n)["startTime"] for n in ("high", "mid", "low-a", "low-b")}
    assert sorted(started, key=started.__getitem__) == ["high", "mid", "low-a", "low-b"]


def test_a_key_at_its_limit_never_blocks_runs_of_other_keys(kube: Client, ns: str) -> None:
    _queue(kube, ns, "tenants", concurrencyLimit=3, perKeyLimit=1)
    make_task(kube, ns, "s", SLEEPER, queue="tenants")
    for i in range(3):
        create_run(kube, ns, "s", f"busy-{i}", payload={"sleep": 6}, concurrencyKey="busy")
        time.sleep(0.1)
    create_run(kube, ns, "s", "quiet", payload={}, concurrencyKey="quiet")
    assert wait_phase(kube, ns, "quiet")["phase"] == "Succeeded"
    waiting = [status(kube, ns, f"busy-{i}") for i in (1, 2)]
    assert all(w["phase"] == "Queued" and w["reason"] == "KeyFull" for w in waiting), waiting
    assert 'concurrency key "busy" already has 1 runs holding slots' in waiting[0]["message"]
    for i in range(3):
        assert wait_phase(kube, ns, f"busy-{i}", timeout=90)["phase"] == "Succeeded"


def test_a_paused_queue_admits_nothing_until_it_is_resumed(kube: Client, ns: str) -> None:
    _queue(kube, ns, "held", concurrencyLimit=2, paused=True)
    make_task(kube, ns, "s", SLEEPER, queue="held")
    create_run(kube, ns, "s", "r1", payload={})
    st = wait_for(
        "the run to wait for the paused queue",
        lambda: s if (s := status(kube, ns, "r1")).get("reason") == "QueuePaused" else None,
    )
    assert st["phase"] == "Queued" and "is paused" in st["message"]
    wait_for(
        "the queue status to say paused",
        lambda: any(
            c["type"] == "Active" and c["status"] == "False"
            for c in _queue_status(kube, ns, "held").get("conditions", [])
        ),
    )
    _patch_queue(kube, ns, "held", paused=False)
    assert wait_phase(kube, ns, "r1")["phase"] == "Succeeded"


def test_raising_the_limit_admits_at_once_and_lowering_it_lets_running_runs_finish(kube: Client, ns: str) -> None:
    _queue(kube, ns, "elastic", concurrencyLimit=1)
    make_task(kube, ns, "s", SLEEPER, queue="elastic")
    for i in range(3):
        create_run(kube, ns, "s", f"r{i}", payload={"sleep": 8})
    # Whichever the operator registered first holds the one slot (a run that finds the queue with room
    # and nobody waiting is admitted as it registers); the other two wait for it.
    first = wait_for(
        "one run to hold the slot",
        lambda: next((f"r{i}" for i in range(3) if status(kube, ns, f"r{i}").get("phase") == "Running"), None),
    )
    _patch_queue(kube, ns, "elastic", concurrencyLimit=3)
    for name in (f"r{i}" for i in range(3) if f"r{i}" != first):
        wait_phase(kube, ns, name, ("Running",), timeout=30)
    _patch_queue(kube, ns, "elastic", concurrencyLimit=1)
    create_run(kube, ns, "s", "late", payload={})
    time.sleep(3)
    assert status(kube, ns, "late")["reason"] == "QueueFull"  # three hold slots, the limit is one
    assert all(status(kube, ns, f"r{i}")["phase"] == "Running" for i in range(3))  # none is stopped
    assert wait_phase(kube, ns, "late", timeout=90)["phase"] == "Succeeded"


def test_a_run_naming_a_missing_queue_waits_and_starts_when_the_queue_appears(kube: Client, ns: str) -> None:
    make_task(kube, ns, "s", SLEEPER, queue="later")
    create_run(kube, ns, "s", "r1", payload={})
    st = wait_for(
        "the run to wait for its queue",
        lambda: s if (s := status(kube, ns, "r1")).get("reason") == "QueueMissing" else None,
    )
    assert 'Queue "later" does not exist' in st["message"]
    _queue(kube, ns, "later", concurrencyLimit=1)
    assert wait_phase(kube, ns, "r1")["phase"] == "Succeeded"


def test_queue_status_shows_queued_running_and_the_oldest_wait(kube: Client, ns: str) -> None:
    _queue(kube, ns, "busy", concurrencyLimit=1)
    make_task(kube, ns, "s", SLEEPER, queue="busy")
    create_run(kube, ns, "s", "r0", payload={"sleep": 6})
    wait_phase(kube, ns, "r0", ("Running",))
    create_run(kube, ns, "s", "r1", payload={})
    create_run(kube, ns, "s", "r2", payload={})
    st = wait_for(
        "the queue status to count 1 running and 2 queued",
        lambda: s if (s := _queue_status(kube, ns, "busy")).get("running") == 1 and s.get("queued") == 2 else None,
    )
    assert st["oldestQueuedTime"]
    assert st["admittedTotal"] >= 1
    wait_for(
        "the queue to drain",
        lambda: s if (s := _queue_status(kube, ns, "busy")).get("queued") == 0 and s.get("running") == 0 else None,
        timeout=60,
    )


def test_deleting_a_run_while_the_operator_is_down_releases_its_slot(
    kube: Client, ns: str, cairn: CairnProcesses
) -> None:
    _queue(kube, ns, "single", concurrencyLimit=1)
    make_task(kube, ns, "s", SLEEPER, queue="single")
    create_run(kube, ns, "s", "holder", payload={"sleep": 300})
    wait_phase(kube, ns, "holder", ("Running",))
    create_run(kube, ns, "s", "next", payload={})
    wait_for("the next run to queue", lambda: status(kube, ns, "next").get("reason") == "QueueFull")
    cairn.kill_operator()
    try:
        kube.delete(TaskRunResource, "holder", namespace=ns)
        time.sleep(2)
    finally:
        cairn.restart_operator()
    # The deletion was missed; the sweep finds the slot held by a run that no longer exists.
    assert wait_phase(kube, ns, "next", timeout=90)["phase"] == "Succeeded"


def test_deleting_a_queue_leaves_its_waiting_runs_queue_missing(kube: Client, ns: str) -> None:
    _queue(kube, ns, "doomed", concurrencyLimit=1)
    make_task(kube, ns, "s", SLEEPER, queue="doomed")
    create_run(kube, ns, "s", "r0", payload={"sleep": 5})
    wait_phase(kube, ns, "r0", ("Running",))
    create_run(kube, ns, "s", "r1", payload={})
    wait_for("r1 to queue", lambda: status(kube, ns, "r1").get("reason") == "QueueFull")
    kube.delete(QueueResource, "doomed", namespace=ns)
    wait_for("r1 to report its queue missing", lambda: status(kube, ns, "r1").get("reason") == "QueueMissing")
    assert wait_phase(kube, ns, "r0")["phase"] == "Succeeded"  # a running run finishes


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_two_hundred_runs_through_a_queue_of_five_never_run_more_than_five_even_across_operator_restarts(
    cluster_env: ClusterEnv, kube: Client, ns: str, cairn: CairnProcesses
) -> None:
    # On a simulated (KWOK) node: what is proved is the operator's admission and release under restarts,
    # which a pod that a kubelet runs for real would prove no better, 250 times slower.
    cluster_env.require_harness().fake_nodes(1)
    _queue(kube, ns, "five", concurrencyLimit=5)
    retry = {"maxAttempts": 3, "backoff": {"initialDelay": "1s", "maxDelay": "2s"}}
    for name, fail_attempt in (("many", None), ("flaky", 1)):
        body = simulated_task_body(name, fail_attempt=fail_attempt, delay="200ms", queue="five", retry=retry)
        body["metadata"]["namespace"] = ns  # type: ignore[index]
        kube.create(TaskResource.from_dict(body))
    observer = PodObserver(kube, ns)
    names = [f"r{i:03d}" for i in range(200)]
    flaky = [n for i, n in enumerate(names) if i % 4 == 0]
    try:
        for name in names:
            create_run(kube, ns, "flaky" if name in flaky else "many", name)

        def succeeded() -> int:
            listed = [as_dict(r) for r in kube.list(TaskRunResource, namespace=ns)]
            return sum(1 for r in listed if (r.get("status") or {}).get("phase") == "Succeeded")

        def at_least(count: int) -> bool:
            return succeeded() >= count

        restarted_with = 0
        # Three restarts while the queue drains, tied to how far it got (not to time, which a quiet
        # machine makes too long: the queue once drained before the first restart).
        for threshold in (40, 90, 140):
            wait_for(f"{threshold} runs to succeed", functools.partial(at_least, threshold), timeout=300, interval=0.5)
            cairn.kill_operator()
            restarted_with = len(names) - succeeded()  # nothing changes status while it is down
            time.sleep(2)
            cairn.restart_operator()
        final = {n: wait_phase(kube, ns, n, timeout=600)["phase"] for n in names}
    finally:
        observer.stop()
    unfinished_at_last_restart = restarted_with
    report(
        f"\n200 runs, limit 5, 3 operator restarts: at most {observer.max_live} pods held a place at once "
        f"({observer.events} pod events observed; {unfinished_at_last_restart} runs unfinished at the last restart)"
    )
    assert unfinished_at_last_restart > 0  # the restarts happened while the queue was in use
    assert set(final.values()) == {"Succeeded"}
    assert observer.max_live <= 5
    assert observer.max_live == 5  # and the queue was used to its limit
    assert all(len(status(kube, ns, n)["attempts"]) == 2 for n in flaky)
    assert all(len(status(kube, ns, n)["attempts"]) == 1 for n in names if n not in flaky)
    st = wait_for(
        "no slot left held",
        lambda: s if (s := _queue_status(kube, ns, "five")).get("running") == 0 and s.get("queued") == 0 else None,
    )
    assert st["admittedTotal"] == 250  # 200 first attempts and 50 retries
