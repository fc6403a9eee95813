"""A run's pod disrupted in the middle of its steps, on real nodes: evicted through the Eviction API,
or its node drained with `kubectl drain`. The pod gets SIGTERM and its grace period; the SDK lets the
step in progress finish and be recorded and starts no other; the run goes on in a new pod from there.
No recorded step runs again (a side channel counts executions), the attempt is a disruption (not
counted against maxAttempts) and the run succeeds."""

from __future__ import annotations

import functools

import pytest
from lightkube import Client
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Pod

from tests.support.env import ClusterEnv
from tests.support.figures import report
from tests.support.kube import kubectl, wait_for
from tests.support.runs import StepCounter, create_run, make_task, pods_of, wait_phase

pytestmark = [pytest.mark.slow]

STEPS = 5
PROGRAM = f"""
def work(ctx, i):
    hit(ctx, "s%d" % i)
    time.sleep(3)  # long enough to be surely in progress when the pod is told to stop
    return i

def main(ctx):
    return sum(ctx.step("s", work, ctx, i) for i in range({STEPS}))
"""


def _step_started(counter: StepCounter, run: str, i: int) -> bool:
    return counter.count(run, f"s{i}") > 0


@pytest.mark.parametrize("how", ["the Eviction API", "kubectl drain"])
def test_a_pod_disrupted_mid_step_finishes_that_step_and_the_run_goes_on_from_it_as_a_disruption(
    cluster_env: ClusterEnv, kube: Client, ns: str, counter: StepCounter, how: str
) -> None:
    make_task(kube, ns, "steady", PROGRAM, counter=counter, retry={"maxAttempts": 1})
    create_run(kube, ns, "steady", "steady-1")
    # Step 2 has begun (its first line ran): it is in progress when the pod is told to stop.
    wait_for("step 2 to start", functools.partial(_step_started, counter, "steady-1", 2), timeout=120)
    (pod,) = pods_of(kube, ns, "steady-1")
    node = pod["spec"]["nodeName"]
    drained = how == "kubectl drain"
    try:
        if drained:
            kubectl(
                cluster_env.kubeconfig,
                "drain",
                node,
                "--pod-selector=cairn.dev/run=steady-1",
                "--ignore-daemonsets",
                "--delete-emptydir-data",
                "--timeout=120s",
                timeout=150,
            )
        else:
            name = pod["metadata"]["name"]
            kube.create(Pod.Eviction(metadata=ObjectMeta(name=name, namespace=ns)), name=name, namespace=ns)
        final = wait_phase(kube, ns, "steady-1", timeout=240)
    finally:
        if drained:
            kubectl(cluster_env.kubeconfig, "uncordon", node)
    attempts = final["attempts"]
    by_attempt = {s["key"]: s["attempt"] for s in final.get("steps") or []}
    runs = {f"s{i}": counter.count("steady-1", f"s{i}") for i in range(STEPS)}
    report(
        f"\n{how}: attempts {[(a['reason'], a.get('counted'), a.get('node')) for a in attempts]}, "
        f"step executions {runs}, steps by attempt {by_attempt}"
    )
    assert final["phase"] == "Succeeded", final
    assert runs == {f"s{i}": 1 for i in range(STEPS)}, runs  # no step ran twice, none was skipped
    assert [a["reason"] for a in attempts] == ["Evicted", "Completed"], attempts
    assert attempts[0]["counted"] is False  # a disruption, not one of maxAttempts (which is 1 here)
    # The step in progress when the pod was told to stop was finished and recorded by that pod.
    assert by_attempt.get("s#2") == 1, by_attempt
    if drained:
        assert attempts[1]["node"] != node, attempts  # the drained node took no new pod
