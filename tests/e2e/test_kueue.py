"""Cairn inside a cluster's shared quotas, with the real Kueue (built from its Go module, its CRDs and
webhooks installed, the plain-pod integration on: harness/kueue.py): a Task that names a LocalQueue
has its pods admitted by Kueue against the ClusterQueue's quota, gated meanwhile (the run says
KueueQuota and names the Workload Kueue made), never more at once than the quota holds."""

from __future__ import annotations

import contextlib
import functools
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube import Client
from lightkube.generic_resource import create_global_resource, create_namespaced_resource
from lightkube.resources.core_v1 import Pod

from cairn.domain import naming
from cairn.k8s.resources import QueueResource
from harness import config
from tests.support.builders import queue_body
from tests.support.env import ClusterEnv
from tests.support.figures import report
from tests.support.kube import as_dict, wait_for
from tests.support.observe import PodObserver
from tests.support.runs import StepCounter, create_run, make_task, status, wait_phase

pytestmark = [pytest.mark.slow]

KUEUE = "kueue.x-k8s.io"
ResourceFlavor = create_global_resource(KUEUE, "v1beta2", "ResourceFlavor", "resourceflavors")
ClusterQueue = create_global_resource(KUEUE, "v1beta2", "ClusterQueue", "clusterqueues")
LocalQueue = create_namespaced_resource(KUEUE, "v1beta2", "LocalQueue", "localqueues")
Workload = create_namespaced_resource(KUEUE, "v1beta2", "Workload", "workloads")

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
    """docs/kueue.md's ResourceFlavor, ClusterQueue (CPU for QUOTA_PODS pods) and LocalQueue team-a, as
    written, in `ns` (the page's `demo`); the cluster-scoped names made unique to the test."""
    name = f"cq-{ns}"[:63]
    renames = {"demo": ns, "team-a-cq": name, "default-flavor": name}
    docs = [d for d in docs_yaml(DOCS) if d.get("kind") in ("ResourceFlavor", "ClusterQueue", "LocalQueue")]
    assert [d["kind"] for d in docs] == ["ResourceFlavor", "ClusterQueue", "LocalQueue"], docs
    text = yaml.safe_dump_all(docs)
    for old, new in renames.items():
        text = re.sub(rf"(?<![\w-]){re.escape(old)}(?![\w-])", new, text)
    flavor, cluster_queue, local_queue = yaml.safe_load_all(text)
    cpu = cluster_queue["spec"]["resourceGroups"][0]["flavors"][0]["resources"][0]
    assert cpu == {"name": "cpu", "nominalQuota": f"{QUOTA_PODS * CPU_PER_POD}m"}, cpu
    kube.create(ResourceFlavor.from_dict(flavor))
    kube.create(ClusterQueue.from_dict(cluster_queue))
    kube.create(LocalQueue.from_dict(local_queue))
    return name


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
    flavor = _quota(kube, ns)
    try:
        queue = queue_body("wide", concurrencyLimit=RUNS)  # Cairn admits all six; Kueue's quota holds four back
        queue["metadata"]["namespace"] = ns  # type: ignore[index]
        kube.create(QueueResource.from_dict(queue))
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
        made = as_dict(kube.get(Workload, workload, namespace=ns))  # the Workload Kueue made, by that name
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
        for kind in (ClusterQueue, ResourceFlavor):  # cluster-scoped: not removed with the namespace
            with contextlib.suppress(Exception):
                kube.delete(kind, flavor)
