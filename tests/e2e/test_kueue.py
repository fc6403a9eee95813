"""Cairn inside a cluster's shared quotas, with the real Kueue (built from its Go module, its CRDs and
webhooks installed, the plain-pod integration on: harness/kueue.py): a Task that names a LocalQueue
has its pods admitted by Kueue against the ClusterQueue's quota, gated meanwhile (the run says
KueueQuota and names the Workload Kueue made), never more at once than the quota holds; and a run
Kueue preempts for a Job of higher priority, in the middle of its steps, goes on in a new pod from its
last recorded step: no step runs twice, the attempt is a disruption, not one of maxAttempts."""

from __future__ import annotations

import contextlib
import functools
import re
import shlex
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from lightkube import Client
from lightkube.generic_resource import create_global_resource, create_namespaced_resource
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import Pod

from cairn.domain import naming
from cairn.k8s.resources import QueueResource
from harness import config
from harness.images import BUSYBOX
from tests.support.builders import queue_body
from tests.support.env import ClusterEnv
from tests.support.figures import report
from tests.support.kube import as_dict, kubectl, wait_for
from tests.support.observe import PodObserver
from tests.support.runs import StepCounter, create_run, make_task, status, wait_phase

pytestmark = [pytest.mark.slow]

KUEUE = "kueue.x-k8s.io"
ResourceFlavor = create_global_resource(KUEUE, "v1beta2", "ResourceFlavor", "resourceflavors")
ClusterQueue = create_global_resource(KUEUE, "v1beta2", "ClusterQueue", "clusterqueues")
LocalQueue = create_namespaced_resource(KUEUE, "v1beta2", "LocalQueue", "localqueues")
Workload = create_namespaced_resource(KUEUE, "v1beta2", "Workload", "workloads")
WorkloadPriorityClass = create_global_resource(KUEUE, "v1beta2", "WorkloadPriorityClass", "workloadpriorityclasses")

DOCS = config.REPO / "docs" / "kueue.md"
RUNS, QUOTA_PODS, CPU_PER_POD = 6, 2, 100  # millicores: the ClusterQueue holds 200m, two pods
STEPS = """
def work(ctx, i):
    hit(ctx, "s%d" % i)
    time.sleep(1.5)
    return i

def main(ctx):
    return sum(ctx.step("s", work, ctx, i) for i in range(3))
"""


@pytest.fixture(scope="module")
def kueue(cluster_env: ClusterEnv) -> Iterator[None]:
    cluster = cluster_env.require_harness()
    started = cluster.start_kueue()
    try:
        yield
    finally:
        started.stop()


def _quota(kube: Client, ns: str) -> str:
    """docs/kueue.md's ResourceFlavor, ClusterQueue (CPU for QUOTA_PODS pods), LocalQueue team-a and
    WorkloadPriorityClass batch-low, as written, in `ns` (the page's `demo`); the cluster-scoped names
    made unique to the test: `cq-<ns>` for the queue and flavor, `low-<ns>` for the priority class."""
    name = f"cq-{ns}"[:63]
    renames = {"demo": ns, "team-a-cq": name, "default-flavor": name, "batch-low": f"low-{ns}"[:63]}
    kinds = ["ResourceFlavor", "ClusterQueue", "LocalQueue", "WorkloadPriorityClass"]
    docs = [d for d in docs_yaml(DOCS) if d.get("kind") in kinds]
    assert [d["kind"] for d in docs] == kinds, docs
    text = yaml.safe_dump_all(docs)
    for old, new in renames.items():
        text = re.sub(rf"(?<![\w-]){re.escape(old)}(?![\w-])", new, text)
    flavor, cluster_queue, local_queue, priority = yaml.safe_load_all(text)
    cpu = cluster_queue["spec"]["resourceGroups"][0]["flavors"][0]["resources"][0]
    assert cpu == {"name": "cpu", "nominalQuota": f"{QUOTA_PODS * CPU_PER_POD}m"}, cpu
    kube.create(ResourceFlavor.from_dict(flavor))
    kube.create(ClusterQueue.from_dict(cluster_queue))
    kube.create(LocalQueue.from_dict(local_queue))
    kube.create(WorkloadPriorityClass.from_dict(priority))
    return name


def _wide_queue(kube: Client, ns: str) -> None:
    """A Cairn Queue `wide` with room for all RUNS at once: what holds runs back is Kueue's quota."""
    queue = queue_body("wide", concurrencyLimit=RUNS)
    queue["metadata"]["namespace"] = ns  # type: ignore[index]
    kube.create(QueueResource.from_dict(queue))


def _cleanup(kube: Client, ns: str) -> None:
    """The cluster-scoped objects of _quota and of the test (not removed with the namespace)."""
    for kind, name in (
        (ClusterQueue, f"cq-{ns}"[:63]),
        (ResourceFlavor, f"cq-{ns}"[:63]),
        (WorkloadPriorityClass, f"low-{ns}"[:63]),
        (WorkloadPriorityClass, f"high-{ns}"[:63]),
    ):
        with contextlib.suppress(Exception):
            kube.delete(kind, name)


def docs_yaml(page: Path) -> list[dict[str, Any]]:
    """Every YAML document of the page's ```yaml blocks."""
    blocks = re.findall(r"```yaml\n(.*?)```", page.read_text(), re.S)
    return [d for block in blocks for d in yaml.safe_load_all(block) if d]


def _ungated(pod: dict[str, Any]) -> bool:
    return not any(g.get("name") == naming.KUEUE_GATE for g in pod["spec"].get("schedulingGates") or [])


def _waiting_on_kueue(kube: Client, ns: str, names: list[str]) -> dict[str, Any] | None:
    for name in names:
        st = status(kube, ns, name)
        if st.get("reason") == "KueueQuota":
            return {"name": name, **st}
    return None


def test_kueue_admits_cairns_pods_against_its_quota_two_at_a_time_and_a_held_run_names_its_workload(
    cluster_env: ClusterEnv, kueue: None, kube: Client, ns: str, counter: StepCounter
) -> None:
    _quota(kube, ns)
    try:
        _wide_queue(kube, ns)  # Cairn admits all six; Kueue's quota holds four back
        make_task(
            kube,
            ns,
            "quota",
            STEPS,
            counter=counter,
            queue="wide",
            resources={"requests": {"cpu": f"{CPU_PER_POD}m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
            kueue={"localQueue": "team-a"},
        )
        running = PodObserver(kube, ns, "quota", holds=_ungated)
        names = [f"q{i}" for i in range(RUNS)]
        for name in names:
            create_run(kube, ns, "quota", name)
        held = wait_for("a run to say Kueue holds it", functools.partial(_waiting_on_kueue, kube, ns, names))
        pod_name = naming.pod_name(held["name"], 1)
        pod = as_dict(kube.get(Pod, pod_name, namespace=ns))
        workload = naming.kueue_workload_name(pod_name, pod["metadata"]["uid"])
        assert held["phase"] in ("Queued", "Starting"), held
        assert f"LocalQueue team-a, Workload {workload}" in held["message"], held
        # The run names the Workload as soon as its pod is gated, which can be a moment before Kueue's pod
        # controller has made it (seen in CI: a 404 on the first get); the name must come true.
        made = wait_for(
            f"Kueue to make the Workload {workload} the run names",
            lambda: as_dict(kube.get(Workload, workload, namespace=ns)),
            timeout=30,
        )
        assert made["spec"]["queueName"] == "team-a"
        t0 = time.monotonic()
        finals = {n: wait_phase(kube, ns, n, timeout=300) for n in names}
        took = time.monotonic() - t0
        running.stop()
        running.check_observed()
        report(
            f"\nKueue quota for {QUOTA_PODS} pods, {RUNS} runs: at most {running.max_live} ungated pods at once, "
            f"{running.pods_seen} pods observed, all done {took:.1f}s after the first was held "
            f"({held['name']}: {held['message']!r})"
        )
        assert {n: st["phase"] for n, st in finals.items()} == dict.fromkeys(names, "Succeeded")
        assert running.pods_seen == RUNS
        assert running.max_live == QUOTA_PODS, running.max_live  # the quota, used and never exceeded
        assert all(len(st["attempts"]) == 1 for st in finals.values())
        assert {(n, i): counter.count(n, f"s{i}") for n in names for i in range(3)} == {
            (n, i): 1 for n in names for i in range(3)
        }  # every step ran once
    finally:
        _cleanup(kube, ns)


PREEMPTED_STEPS = 5
SLOW_STEPS = f"""
def work(ctx, i):
    hit(ctx, "s%d" % i)
    time.sleep(2)
    return i

def main(ctx):
    return sum(ctx.step("s", work, ctx, i) for i in range({PREEMPTED_STEPS}))
"""


def _job_done(kube: Client, ns: str, name: str) -> int | None:
    st = as_dict(kube.get(Job, name, namespace=ns)).get("status") or {}
    if st.get("failed"):
        raise AssertionError(f"the Job failed: {st}")
    return st.get("succeeded") or None


def _last_step_marked(kube: Client, ns: str, run: str) -> str | None:
    """The pod's cairn.dev/last-step-at, once it is the run's status.progress.updatedTime."""
    pod = as_dict(kube.get(Pod, naming.pod_name(run, 1), namespace=ns))
    mark = (pod["metadata"].get("annotations") or {}).get(naming.ANNOTATION_LAST_STEP_AT)
    progress = status(kube, ns, run).get("progress") or {}
    return mark if mark and mark == progress.get("updatedTime") else None


def _two_running_mid_steps(kube: Client, ns: str, names: list[str]) -> list[str] | None:
    busy = [n for n in names if (status(kube, ns, n).get("progress") or {}).get("stepsCompleted", 0) >= 2]
    return busy if len(busy) >= QUOTA_PODS else None


def test_a_cairn_run_kueue_preempts_mid_steps_resumes_from_its_last_step_as_a_disruption(
    cluster_env: ClusterEnv, kueue: None, kube: Client, ns: str, counter: StepCounter
) -> None:
    _quota(kube, ns)
    try:
        high = f"high-{ns}"[:63]
        kube.create(WorkloadPriorityClass.from_dict({"metadata": {"name": high}, "value": 10000}))
        _wide_queue(kube, ns)
        make_task(
            kube,
            ns,
            "long",
            SLOW_STEPS,
            counter=counter,
            queue="wide",
            retry={"maxAttempts": 1},  # a preemption must not spend it
            resources={"requests": {"cpu": f"{CPU_PER_POD}m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
            kueue={"localQueue": "team-a", "priorityClass": f"low-{ns}"[:63]},
        )
        names = [f"p{i}" for i in range(RUNS)]
        for name in names:
            create_run(kube, ns, "long", name)
        busy = wait_for(
            "two runs in the middle of their steps", functools.partial(_two_running_mid_steps, kube, ns, names), 180
        )
        # Each running pod says when its run's last step was recorded: what a preemption would lose since.
        marked = wait_for(
            "a running pod to carry the time of its last step",
            functools.partial(_last_step_marked, kube, ns, busy[0]),
            60,
        )
        # docs/kueue.md's command shows it, as written (its namespace replaced).
        (command,) = re.findall(r"```sh\n(.*?)\n```", DOCS.read_text(), re.S)
        words = shlex.split(command.replace("-n demo", f"-n {ns}"))
        assert words[0] == "kubectl", words
        shown = kubectl(cluster_env.kubeconfig, *words[1:]).stdout
        assert "LAST STEP AT" in shown and naming.pod_name(busy[0], 1) in shown, shown
        assert any(line.split()[1:] and line.split()[1] != "<none>" for line in shown.splitlines()[1:]), shown
        # A higher-priority workload through the same LocalQueue: a plain Job, as Kueue runs them.
        kube.create(
            cast(
                Job,
                Job.from_dict(
                    {
                        "metadata": {
                            "name": "urgent",
                            "namespace": ns,
                            "labels": {naming.KUEUE_QUEUE_LABEL: "team-a", naming.KUEUE_PRIORITY_LABEL: high},
                        },
                        "spec": {
                            "backoffLimit": 0,
                            "template": {
                                "spec": {
                                    "restartPolicy": "Never",
                                    "containers": [
                                        {
                                            "name": "urgent",
                                            "image": BUSYBOX,
                                            "imagePullPolicy": "Never",
                                            "command": ["sleep", "4"],
                                            "resources": {"requests": {"cpu": f"{CPU_PER_POD}m", "memory": "16Mi"}},
                                            # The test namespaces enforce the restricted Pod Security level.
                                            "securityContext": {
                                                "runAsNonRoot": True,
                                                "runAsUser": 65534,
                                                "allowPrivilegeEscalation": False,
                                                "capabilities": {"drop": ["ALL"]},
                                                "seccompProfile": {"type": "RuntimeDefault"},
                                            },
                                        }
                                    ],
                                }
                            },
                        },
                    }
                ),
            )
        )
        job = wait_for("the urgent Job to succeed", functools.partial(_job_done, kube, ns, "urgent"), 180)
        finals = {n: wait_phase(kube, ns, n, timeout=300) for n in names}
        preempted = {n: st for n, st in finals.items() if len(st["attempts"]) > 1}
        executions = {(n, i): counter.count(n, f"s{i}") for n in names for i in range(PREEMPTED_STEPS)}
        report(
            f"\n{busy[0]}'s pod said its last step was recorded at {marked}; "
            f"Kueue preempted {sorted(preempted)} (of {busy} mid-steps) for a Job of higher priority (succeeded: "
            f"{job}); their attempts "
            f"{ {n: [(a['reason'], a.get('counted')) for a in st['attempts']] for n, st in preempted.items()} }; "
            f"{sum(executions.values())} step executions for {len(executions)} steps"
        )
        assert {n: st["phase"] for n, st in finals.items()} == dict.fromkeys(names, "Succeeded")
        assert len(preempted) == 1, {n: st["attempts"] for n, st in finals.items()}
        (victim,) = preempted.values()
        first, last = victim["attempts"]
        assert first["reason"] in ("Preempted", "PodDeleted") and first["counted"] is False, first
        assert last["reason"] == "Completed" and last["counted"] is True, last
        # Its attempt count is unchanged (one counted), its disruptions one; no recorded step ran again.
        assert sum(1 for a in victim["attempts"] if a["counted"]) == 1
        assert sum(1 for a in victim["attempts"] if a["counted"] is False) == 1
        assert set(executions.values()) == {1}, executions
        steps_by_attempt = [s["attempt"] for s in victim["steps"]]
        assert steps_by_attempt.count(1) >= 2 and steps_by_attempt.count(2) >= 1, victim["steps"]
    finally:
        _cleanup(kube, ns)
