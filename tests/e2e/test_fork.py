"""Forks on real pods: a run that failed at step 4 of 5 because of a bad payload value, forked from step
4 with a fixed payload, succeeds without executing steps 1-3 again (the side-channel counter), by a
manifest (spec.from) and by `cairn rerun --from-step`; a fork of a run whose TaskRun was deleted; a
step the source never recorded is refused with the list of those it did."""

from __future__ import annotations

import json

from lightkube import Client

from cairn.k8s.resources import TaskRunResource
from tests.e2e.test_cli import cli
from tests.support.env import ClusterEnv
from tests.support.kube import as_dict, wait_for
from tests.support.runs import StepCounter, create_run, get_run, make_task, wait_phase

FIVE_STEPS = """
from cairn.sdk import Fatal

def work(ctx, i, divisor):
    hit(ctx, "step%d" % i)
    if i == 4 and divisor == 0:
        raise Fatal("step 4: the payload's divisor is 0")
    return {"i": i, "part": (i * 100) // divisor if i >= 4 else i}

def main(ctx):
    divisor = (ctx.payload or {}).get("divisor", 1)
    parts = [ctx.step("work", work, ctx, i, divisor)["part"] for i in range(1, 6)]
    return {"parts": parts}
"""
STEPS_1_TO_3 = ("step1", "step2", "step3")


def _failed_at_step_four(kube: Client, ns: str, counter: StepCounter, name: str) -> None:
    create_run(kube, ns, "five", name, {"divisor": 0})
    st = wait_phase(kube, ns, name, timeout=120)
    assert st["phase"] == "Failed", st
    assert [s["key"] for s in st["steps"]] == ["work#0", "work#1", "work#2"]
    assert [counter.count(name, s) for s in (*STEPS_1_TO_3, "step4")] == [1, 1, 1, 1]


def _forked_and_succeeded(kube: Client, ns: str, counter: StepCounter, fork: str, source: str) -> dict[str, object]:
    st = wait_phase(kube, ns, fork, timeout=120)
    assert st["phase"] == "Succeeded", st
    assert json.loads(st["result"]) == {"parts": [1, 2, 3, 80, 100]}  # 1-3 are the source's, copied
    # Steps 1-3 were never executed by the fork (counted under its own name), 4 and 5 once.
    assert [counter.count(fork, s) for s in STEPS_1_TO_3] == [0, 0, 0], counter.hits
    assert counter.count(fork, "step4") == 1 and counter.count(fork, "step5") == 1
    assert {s["key"]: s["attempt"] for s in st["steps"]} == {
        "work#0": 0,
        "work#1": 0,
        "work#2": 0,
        "work#3": 1,
        "work#4": 1,
    }
    assert st["forkedFrom"]["run"] == source and st["forkedFrom"]["step"] == "work#3"
    assert st["forkedFrom"]["stepsCopied"] == 3
    return st


def test_a_run_failed_at_step_four_forked_from_there_with_a_fixed_payload_skips_steps_one_to_three(
    cluster_env: ClusterEnv, kube: Client, ns: str, counter: StepCounter
) -> None:
    make_task(kube, ns, "five", FIVE_STEPS, counter=counter, retry={"maxAttempts": 1})
    _failed_at_step_four(kube, ns, counter, "bad")

    # 1. A manifest (kubectl create -f, GitOps): spec.from.
    create_run(kube, ns, "five", "fixed-by-manifest", {"divisor": 5}, **{"from": {"run": "bad", "step": "work#3"}})
    _forked_and_succeeded(kube, ns, counter, "fixed-by-manifest", "bad")

    # 2. The CLI: a step the run never recorded is refused with those it did; then the fork.
    wrong = cli(cluster_env, ns, "rerun", "bad", "--from-step", "work#7")
    assert wrong.code == 4, wrong.err
    assert "run bad recorded no step 'work#7'; its steps: work#0, work#1, work#2" in wrong.err
    made = cli(
        cluster_env, ns, "rerun", "bad", "--from-step", "work#3", "--payload", '{"divisor": 5}', "--name", "fixed-by-cli",
        "--wait",
    )  # fmt: skip
    assert made.code == 0, made.err
    _forked_and_succeeded(kube, ns, counter, "fixed-by-cli", "bad")
    described = cli(cluster_env, ns, "describe", "fixed-by-cli")
    assert "bad at step work#3 (3 steps copied, not run again)" in described.out, described.out
    assert "copied from bad: work#0, work#1, work#2" in described.out, described.out
    assert get_run(kube, ns, "fixed-by-cli")["spec"]["from"] == {
        "run": "bad",
        "step": "work#3",
        "taskRevision": "Source",
    }


def test_a_fork_of_a_deleted_run_and_a_fork_of_a_step_never_recorded(
    kube: Client, ns: str, counter: StepCounter
) -> None:
    make_task(kube, ns, "five", FIVE_STEPS, counter=counter, retry={"maxAttempts": 1})
    _failed_at_step_four(kube, ns, counter, "gone")
    kube.delete(TaskRunResource, "gone", namespace=ns)
    wait_for(
        "the TaskRun to be deleted",
        lambda: "gone" not in {as_dict(r)["metadata"]["name"] for r in kube.list(TaskRunResource, namespace=ns)},
    )
    # Its record stays in PostgreSQL for the Task's checkpointRetention: a fork still starts from it.
    create_run(kube, ns, "five", "from-the-record", {"divisor": 5}, **{"from": {"run": "gone", "step": "work#3"}})
    _forked_and_succeeded(kube, ns, counter, "from-the-record", "gone")

    create_run(kube, ns, "five", "no-such-step", {"divisor": 5}, **{"from": {"run": "gone", "step": "work#9"}})
    st = wait_phase(kube, ns, "no-such-step", timeout=60)
    assert (st["phase"], st["reason"]) == ("Failed", "InvalidFork"), st
    assert 'spec.from.step: run "gone" recorded no step "work#9"; its steps: work#0, work#1, work#2' in st["message"]
    create_run(kube, ns, "five", "no-such-run", None, **{"from": {"run": "never", "step": "work#0"}})
    st = wait_phase(kube, ns, "no-such-run", timeout=60)
    assert st["reason"] == "InvalidFork" and 'spec.from.run: no run "never"' in st["message"], st
