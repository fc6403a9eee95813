"""Durable waits on real pods: a sleeping run holds no pod and no slot, a run waiting for an approval
resumes when it is given (by the CLI, by a POST to the token's URL, by a TokenCompletion), a token
times out, and a parent fans out to children through the queue it shares with them."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from lightkube import Client
from lightkube.types import PatchType

from cairn.domain.timefmt import parse_time
from cairn.k8s.resources import QueueResource, TaskResource, TaskRunResource, TokenCompletionResource
from harness.cairn import CairnProcesses
from tests.e2e.test_cli import cli
from tests.support.builders import queue_body, simulated_task_body
from tests.support.env import ClusterEnv
from tests.support.kube import as_dict, wait_for
from tests.support.runs import StepCounter, create_run, make_task, pods_of, status, wait_phase

SLEEPER = """
def main(ctx):
    before = ctx.step("before", lambda: hit(ctx, "before") or 1)
    ctx.sleep("nap", (ctx.payload or {}).get("seconds", 30))
    after = ctx.step("after", lambda: hit(ctx, "after") or 2)
    return {"before": before, "after": after, "attempt": ctx.attempt}
"""

QUICK = """
def main(ctx):
    return ctx.step("quick", lambda: hit(ctx, "quick") or "done")
"""

APPROVAL = """
def main(ctx):
    token = ctx.create_token("approval", timeout=(ctx.payload or {}).get("timeout"), tags=["deploy"])
    ctx.step("ask", lambda: hit(ctx, "ask") or print("approve at", token.url))
    answer = ctx.wait_for_token("approved", token)
    if answer.timed_out:
        return {"timedOut": True}
    return ctx.step("act", lambda: hit(ctx, "act") or {"acted": answer.data})
"""

FAN_OUT = """
def main(ctx):
    n = (ctx.payload or {}).get("children", 3)
    results = ctx.batch_trigger_and_wait("work", [{"task": "child", "payload": {"i": i}} for i in range(n)])
    return {"ok": sum(1 for r in results if r.ok), "phases": sorted({r.phase for r in results}),
            "runs": [r.run for r in results]}
"""


def _queue(kube: Client, ns: str, name: str, limit: int) -> None:
    body = queue_body(name, concurrencyLimit=limit)
    body["metadata"]["namespace"] = ns  # type: ignore[index]
    kube.create(QueueResource.from_dict(body))


def _live_pods(kube: Client, ns: str, run: str) -> list[str]:
    return [
        p["metadata"]["name"] for p in pods_of(kube, ns, run) if p["status"].get("phase") not in ("Succeeded", "Failed")
    ]


@pytest.mark.timeout(300)
def test_a_sleeping_run_holds_no_pod_and_no_slot_and_resumes_without_rerunning_a_step(
    kube: Client, ns: str, cairn: CairnProcesses, counter: StepCounter
) -> None:
    _queue(kube, ns, "one", 1)
    make_task(kube, ns, "sleeper", SLEEPER, counter=counter, queue="one")
    make_task(kube, ns, "quick", QUICK, counter=counter, queue="one")
    create_run(kube, ns, "sleeper", "sleeper-1", {"seconds": 30})
    waiting = wait_phase(kube, ns, "sleeper-1", ("Waiting",), timeout=120)
    assert waiting["reason"] == "Sleeping" and "nap#0" in waiting["message"]
    wait_for("the sleeper's pod to be gone", lambda: not _live_pods(kube, ns, "sleeper-1"), timeout=30)
    # Its slot is free: a run of the queue of limit 1 starts and finishes while it sleeps.
    create_run(kube, ns, "quick", "quick-1")
    assert wait_phase(kube, ns, "quick-1", timeout=90)["phase"] == "Succeeded"
    during = status(kube, ns, "sleeper-1")
    assert during["phase"] == "Waiting", during
    assert not _live_pods(kube, ns, "sleeper-1")
    queue = as_dict(kube.get(QueueResource, "one", namespace=ns)).get("status") or {}
    done = wait_phase(kube, ns, "sleeper-1", timeout=120)
    assert done["phase"] == "Succeeded", done
    assert json.loads(done["result"]) == {"before": 1, "after": 2, "attempt": 2}
    attempts = done["attempts"]
    assert [a["reason"] for a in attempts] == ["Suspended", "Completed"]
    assert attempts[0]["counted"] is False
    slept = (parse_time(attempts[1]["startTime"]) - parse_time(attempts[0]["finishTime"])).total_seconds()
    assert slept >= 20, attempts  # no pod for (most of) the sleep
    # Each step ran once: the sleep was a recorded step, and the step before it was not run again.
    assert counter.count("sleeper-1", "before") == 1 and counter.count("sleeper-1", "after") == 1
    assert counter.count("quick-1", "quick") == 1
    print(
        f"\nslept {slept:.0f}s with no pod; meanwhile quick-1 ran in the queue of limit 1 "
        f"(queue status then: {queue.get('running')} running, {queue.get('waiting')} waiting)"
    )


@pytest.mark.timeout(300)
def test_an_approval_is_given_by_the_cli_by_a_post_to_its_url_and_by_a_token_completion(
    cluster_env: ClusterEnv, kube: Client, ns: str, cairn: CairnProcesses, counter: StepCounter
) -> None:
    make_task(kube, ns, "deploy", APPROVAL, counter=counter)
    for name in ("by-cli", "by-url", "by-object"):
        create_run(kube, ns, "deploy", name)
    for name in ("by-cli", "by-url", "by-object"):
        st = wait_phase(kube, ns, name, ("Waiting",), timeout=120)
        assert st["reason"] == "WaitingForToken", st
    listed = cli(cluster_env, ns, "tokens", "list", "--tag", "deploy", "--status", "waiting", "-o", "json")
    assert listed.code == 0
    tokens = {t["run"]: t for t in json.loads(listed.out)["tokens"]}
    assert set(tokens) == {"by-cli", "by-url", "by-object"}

    # 1. The CLI: `cairn approve RUN` completes the run's one waiting token.
    approved = cli(cluster_env, ns, "approve", "by-cli", "--data", '{"by": "cli"}')
    assert approved.code == 0, approved.err
    # 2. A POST of JSON to the token's URL (no credentials but its secret). The URL was printed by the task.
    url = _token_url(kube, ns, "by-url")
    bad = httpx.post(url, content=b"{not json", timeout=10)
    assert bad.status_code == 400 and "not completed" in bad.json()["message"]
    first = httpx.post(url, json={"by": "url"}, timeout=10)
    assert first.status_code == 200 and first.json()["outcome"] == "Completed"
    second = httpx.post(url, json={"by": "someone else"}, timeout=10)
    assert second.status_code == 409 and "first completion stands" in second.json()["message"]
    wrong = httpx.post(url.rsplit("/", 1)[0] + "/not-the-secret", json={}, timeout=10)
    assert wrong.status_code == 404
    # 3. A TokenCompletion object (what kubectl apply and GitOps do; RBAC governs it).
    kube.create(
        TokenCompletionResource.from_dict(
            {
                "apiVersion": "cairn.dev/v1alpha1",
                "kind": "TokenCompletion",
                "metadata": {"name": "approve-by-object", "namespace": ns},
                "spec": {"token": tokens["by-object"]["id"], "data": '{"by": "object"}'},
            }
        )
    )
    for name, by in (("by-cli", "cli"), ("by-url", "url"), ("by-object", "object")):
        done = wait_phase(kube, ns, name, timeout=120)
        assert done["phase"] == "Succeeded", done
        assert json.loads(done["result"]) == {"acted": {"by": by}}
        assert counter.count(name, "ask") == 1 and counter.count(name, "act") == 1
    outcome = wait_for(
        "the TokenCompletion's outcome",
        lambda: (as_dict(kube.get(TokenCompletionResource, "approve-by-object", namespace=ns)).get("status") or {}).get(
            "outcome"
        ),
        timeout=30,
    )
    assert outcome == "Completed"
    # Completing again by the CLI is refused, and says the first stands.
    again = cli(cluster_env, ns, "tokens", "complete", tokens["by-cli"]["id"], "--data", "{}")
    assert again.code == 6 and "AlreadyCompleted" in again.err


def _token_url(kube: Client, ns: str, run: str) -> str:
    """The URL the task printed for its approver (in its first attempt's log)."""
    pod = pods_of(kube, ns, run)[0]["metadata"]["name"]
    logs = "".join(kube.log(pod, namespace=ns))
    line = next(ln for ln in logs.splitlines() if ln.startswith("approve at "))
    return line.removeprefix("approve at ").strip()


@pytest.mark.timeout(200)
def test_a_token_never_completed_times_out_and_the_run_branches_on_it(
    kube: Client, ns: str, cairn: CairnProcesses, counter: StepCounter
) -> None:
    make_task(kube, ns, "deploy", APPROVAL, counter=counter)
    create_run(kube, ns, "deploy", "nobody-answers", {"timeout": 8})
    assert wait_phase(kube, ns, "nobody-answers", ("Waiting",), timeout=120)["reason"] == "WaitingForToken"
    done = wait_phase(kube, ns, "nobody-answers", timeout=120)
    assert done["phase"] == "Succeeded" and json.loads(done["result"]) == {"timedOut": True}
    assert counter.count("nobody-answers", "act") == 0 and counter.count("nobody-answers", "ask") == 1
    assert [t["status"] for t in done["tokens"]] == ["timedOut"]


@pytest.mark.timeout(400)
def test_a_parent_with_fifty_children_through_a_queue_of_two_it_shares_with_them_finishes(
    cluster_env: ClusterEnv, kube: Client, ns: str, cairn: CairnProcesses
) -> None:
    cluster_env.require_harness().fake_nodes(1)
    _queue(kube, ns, "shared", 2)
    make_task(kube, ns, "parent", FAN_OUT, queue="shared")
    child = simulated_task_body("child", delay="200ms", queue="shared")
    child["metadata"]["namespace"] = ns  # type: ignore[index]
    kube.create(TaskResource.from_dict(child))
    create_run(kube, ns, "parent", "fan", {"children": 50})
    st = wait_phase(kube, ns, "fan", ("Waiting",), timeout=120)
    assert st["reason"] == "WaitingForChildren", st
    children = [as_dict(r) for r in kube.list(TaskRunResource, namespace=ns, labels={"cairn.dev/parent": "fan"})]
    assert len(children) == 50
    done = wait_phase(kube, ns, "fan", timeout=300)
    assert done["phase"] == "Succeeded", done
    result = json.loads(done["result"])
    assert result["ok"] == 50 and result["phases"] == ["Succeeded"]
    assert sorted(result["runs"]) == sorted(c["metadata"]["name"] for c in children)
    assert [a["reason"] for a in done["attempts"]] == ["Suspended", "Completed"]
    print(f"\n1 parent + 50 children through a queue of limit 2: parent resumed in attempt {done['attempt']}")


@pytest.mark.timeout(200)
def test_a_cancelled_parent_cancels_its_unfinished_children(
    cluster_env: ClusterEnv, kube: Client, ns: str, cairn: CairnProcesses
) -> None:
    cluster_env.require_harness().fake_nodes(1)
    make_task(kube, ns, "parent", FAN_OUT)
    child = simulated_task_body("child", delay="300s")
    child["metadata"]["namespace"] = ns  # type: ignore[index]
    kube.create(TaskResource.from_dict(child))
    create_run(kube, ns, "parent", "doomed", {"children": 3})
    wait_phase(kube, ns, "doomed", ("Waiting",), timeout=120)
    kube.patch(TaskRunResource, "doomed", {"spec": {"cancel": True}}, namespace=ns, patch_type=PatchType.MERGE)
    assert wait_phase(kube, ns, "doomed", timeout=60)["phase"] == "Cancelled"
    names = [
        str(as_dict(r)["metadata"]["name"])
        for r in kube.list(TaskRunResource, namespace=ns, labels={"cairn.dev/parent": "doomed"})
    ]
    assert len(names) == 3
    for name in names:
        assert wait_phase(kube, ns, name, timeout=60)["phase"] == "Cancelled"


def test_a_wait_named_like_another_kind_of_wait_and_a_child_of_an_unknown_task_fail_with_clear_messages(
    kube: Client, ns: str, cairn: CairnProcesses
) -> None:
    make_task(
        kube,
        ns,
        "confused",
        """
def main(ctx):
    if (ctx.payload or {}).get("case") == "unknown-task":
        return ctx.trigger_and_wait("child", "no-such-task")
    ctx.sleep("same", 0)
    ctx.wait_for_token("same", ctx.create_token("tok"))
""",
        retry={"maxAttempts": 1},
    )
    create_run(kube, ns, "confused", "unknown-task", {"case": "unknown-task"})
    create_run(kube, ns, "confused", "kinds")
    for name, words in (
        ("unknown-task", 'Task "no-such-task" does not exist'),
        ("kinds", "give the token wait its own name"),
    ):
        done = wait_phase(kube, ns, name, timeout=120)
        assert done["phase"] == "Failed", done
        message = done["attempts"][-1].get("message") or ""
        assert words in message, message


@pytest.mark.timeout(300)
def test_the_operator_killed_while_the_children_finish_and_the_parent_still_wakes(
    cluster_env: ClusterEnv, kube: Client, ns: str, cairn: CairnProcesses
) -> None:
    cluster_env.require_harness().fake_nodes(1)
    make_task(kube, ns, "parent", FAN_OUT)
    child = simulated_task_body("child", delay="4s")
    child["metadata"]["namespace"] = ns  # type: ignore[index]
    kube.create(TaskResource.from_dict(child))
    create_run(kube, ns, "parent", "orphaned", {"children": 10})
    wait_phase(kube, ns, "orphaned", ("Waiting",), timeout=120)
    cairn.kill_operator()  # SIGKILL, while the children run and end
    time.sleep(8)
    cairn.restart_operator(kill=False)
    done = wait_phase(kube, ns, "orphaned", timeout=180)
    assert done["phase"] == "Succeeded", done
    result = json.loads(done["result"])
    assert result["ok"] == 10 and result["phases"] == ["Succeeded"], result
    print(f"\nthe operator was killed for 8 s while 10 children ended; the parent woke: {result['ok']} ok")


@pytest.mark.timeout(200)
def test_a_run_that_fails_for_good_starts_its_tasks_on_failure_run_once(
    kube: Client, ns: str, cairn: CairnProcesses
) -> None:
    make_task(
        kube,
        ns,
        "oncall",
        """
def main(ctx):
    return {"paged": ctx.payload["run"], "because": ctx.payload["reason"], "last": ctx.payload["lastStep"]}
""",
    )
    make_task(
        kube,
        ns,
        "fragile",
        """
def main(ctx):
    ctx.step("fetch", lambda: 1)
    raise RuntimeError("the upstream is down")
""",
        retry={"maxAttempts": 2, "backoff": {"initialDelay": "1s"}},
        onFailure={"task": "oncall"},
    )
    create_run(kube, ns, "fragile", "breaks")
    failed = wait_phase(kube, ns, "breaks", timeout=120)
    assert failed["phase"] == "Failed", failed
    handler = wait_phase(kube, ns, "breaks-onfailure", timeout=120)
    assert handler["phase"] == "Succeeded", handler
    assert json.loads(handler["result"]) == {"paged": "breaks", "because": "Error", "last": "fetch#0"}
    runs = [
        as_dict(r)["metadata"]["name"]
        for r in kube.list(TaskRunResource, namespace=ns, labels={"cairn.dev/parent": "breaks"})
    ]
    assert runs == ["breaks-onfailure"]


def test_a_flaky_step_is_retried_in_its_pod_and_the_timeline_says_after_how_many_tries(
    cluster_env: ClusterEnv, kube: Client, ns: str, cairn: CairnProcesses, counter: StepCounter
) -> None:
    make_task(
        kube,
        ns,
        "flaky-call",
        """
from cairn.sdk import StepRetry
tries = []

def call(ctx):
    hit(ctx, "call")
    tries.append(1)
    if len(tries) < 3:
        raise ConnectionError("the upstream hung up")
    return len(tries)

def main(ctx):
    return ctx.step("call", call, ctx, retry=StepRetry(max_attempts=4, initial_delay=0.2))
""",
        counter=counter,
    )
    create_run(kube, ns, "flaky-call", "retried")
    done = wait_phase(kube, ns, "retried", timeout=120)
    assert done["phase"] == "Succeeded" and json.loads(done["result"]) == 3
    assert len(done["attempts"]) == 1 and counter.count("retried", "call") == 3
    assert done["steps"][0]["tries"] == 3
    described = cli(cluster_env, ns, "describe", "retried")
    assert described.code == 0 and "step call#0 completed" in described.out and "after 3 tries" in described.out
