"""Several operators on one cluster and one database, as real processes: two acting at once never
overspend a queue or a key (the store serialises admission), and with leader election one acts, the
other stands by, and takes over within the lease's bound when the leader is killed with SIGKILL.
Concurrency is observed from the pods (a watch), not from Cairn's tables. Pods run on a simulated
(KWOK) node: what is proved is the operators' admission, which a real kubelet would prove no better."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from lightkube import Client
from prometheus_client.parser import text_string_to_metric_families

from cairn.k8s.resources import QueueResource, TaskResource
from tests.e2e.test_faults import TOTALS
from tests.support.builders import queue_body, simulated_task_body
from tests.support.cairn import CairnProcesses
from tests.support.env import ClusterEnv
from tests.support.figures import report
from tests.support.observe import PodObserver
from tests.support.runs import create_run, wait_phase

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
KEYS = 4


def _metric(port: int, name: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10, trust_env=False).text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)


def _setup(kube: Client, ns: str, limit: int, per_key: int | None, delay: str) -> None:
    body = queue_body("shared", concurrencyLimit=limit, **({"perKeyLimit": per_key} if per_key else {}))
    body["metadata"]["namespace"] = ns  # type: ignore[index]
    kube.create(QueueResource.from_dict(body))
    task = simulated_task_body("sim", delay=delay, queue="shared")
    task["metadata"]["namespace"] = ns  # type: ignore[index]
    kube.create(TaskResource.from_dict(task))


def _count(observer: PodObserver, finals: dict[str, Any], limit: int, **extra: int) -> None:
    """Into the fault suite's totals, printed at the end of the session."""
    TOTALS["scenarios"] += 1
    TOTALS["runs completed"] += sum(1 for p in finals.values() if p == "Succeeded")
    TOTALS["runs lost"] += sum(1 for p in finals.values() if p != "Succeeded")
    TOTALS["limit violations"] += max(0, observer.max_live - limit)
    TOTALS["attempts with two pods"] += len(observer.doubled_attempts())
    TOTALS["pods observed"] += observer.pods_seen
    for key, value in extra.items():
        TOTALS[key] += value


def _key(pod: str) -> str:
    return f"k{int(pod.split('-')[0][1:]) % KEYS}"


@pytest.fixture
def second(cairn: CairnProcesses, tmp_path: Path) -> Iterator[CairnProcesses]:
    """Another operator process (its own identity and ports) against the same cluster and database."""
    other = CairnProcesses(cairn.kubeconfig, cairn.dsn, cairn.host_ip, tmp_path / "second", api_port=cairn.api_port)
    other.overrides = dict(cairn.overrides)
    try:
        yield other
    finally:
        other.stop()


def test_two_operators_acting_at_once_never_overspend_a_queue_or_a_key(
    cluster_env: ClusterEnv, kube: Client, ns: str, cairn: CairnProcesses, second: CairnProcesses
) -> None:
    cluster_env.require_harness().fake_nodes(1)
    # No leader election: both act, racing on every admission (what a mistaken second install does).
    cairn.overrides["CAIRN_LEADER_ELECTION"] = "false"
    second.overrides["CAIRN_LEADER_ELECTION"] = "false"
    try:
        cairn.restart_operator(kill=False)
        second.start_operator()
        _setup(kube, ns, limit=3, per_key=1, delay="300ms")
        observer = PodObserver(kube, ns, "sim", key_of=_key)
        names = [f"r{i:03d}" for i in range(120)]
        for i, name in enumerate(names):
            create_run(kube, ns, "sim", name, concurrencyKey=f"k{i % KEYS}")
        finals = {n: wait_phase(kube, ns, n, timeout=600)["phase"] for n in names}
        observer.stop()
        admitted = (
            _metric(cairn.operator_metrics_port, "cairn_admissions_total"),
            _metric(second.operator_metrics_port, "cairn_admissions_total"),
        )
    finally:
        cairn.overrides.pop("CAIRN_LEADER_ELECTION", None)
        second.stop()
        cairn.restart_operator(kill=False)
    report(
        f"\ntwo operators at once, 120 runs, limit 3, per key 1: at most {observer.max_live} pods at once, "
        f"per key {observer.max_live_by_key}; admissions by each operator {admitted}; "
        f"{observer.pods_seen} pods and {observer.events} pod events observed"
    )
    _count(observer, finals, 3, **{"runs through two operators at once": len(names)})
    observer.check_observed()
    assert set(finals.values()) == {"Succeeded"}, {n: p for n, p in finals.items() if p != "Succeeded"}
    assert observer.pods_seen == len(names)
    assert observer.doubled_attempts() == {}
    assert observer.max_live <= 3 and all(n <= 1 for n in observer.max_live_by_key.values()), observer.max_live_by_key
    assert observer.max_live == 3  # and the queue was used to its limit
    assert all(a > 0 for a in admitted), f"one operator admitted nothing: the race was not run {admitted}"


def test_the_standby_takes_over_within_the_lease_when_the_leader_is_killed(
    cluster_env: ClusterEnv, kube: Client, ns: str, cairn: CairnProcesses, second: CairnProcesses
) -> None:
    cluster_env.require_harness().fake_nodes(1)
    lease_seconds = 10.0  # the default (CAIRN_LEADER_LEASE_SECONDS)
    second.start_operator()
    assert _metric(cairn.operator_metrics_port, "cairn_operator_leader") == 1
    assert _metric(second.operator_metrics_port, "cairn_operator_leader") == 0  # standing by
    _setup(kube, ns, limit=3, per_key=None, delay="400ms")
    observer = PodObserver(kube, ns, "sim")
    names = [f"r{i:03d}" for i in range(60)]
    for name in names:
        create_run(kube, ns, "sim", name)
    try:
        deadline = time.monotonic() + 120
        while observer.pods_seen < 15 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert observer.pods_seen >= 15, "the leader admitted too little before the kill"
        killed_at = time.monotonic()
        seen_before = set(observer.first_seen)
        cairn.kill_operator()
        finals: dict[str, Any] = {n: wait_phase(kube, ns, n, timeout=600)["phase"] for n in names}
        observer.stop()
        took_over = min(t for uid, t in observer.first_seen.items() if uid not in seen_before)
        leader_now = _metric(second.operator_metrics_port, "cairn_operator_leader")
    finally:
        second.stop()  # gives the lease up: the session's operator takes it at once
        cairn.restart_operator()
    gap = took_over - killed_at
    report(
        f"\nfailover: leader killed (SIGKILL) with {len(seen_before)} of 60 pods made; the standby's first pod "
        f"{gap:.1f}s later (lease {lease_seconds:g}s); at most {observer.max_live} pods at once (limit 3); "
        f"{observer.pods_seen} pods observed"
    )
    _count(observer, finals, 3, **{"operator failovers": 1, "faults injected": 1})
    observer.check_observed()
    assert leader_now == 1
    assert set(finals.values()) == {"Succeeded"}
    assert observer.doubled_attempts() == {} and observer.pods_seen == len(names)
    assert observer.max_live <= 3
    # The bound docs/guarantees.md states: the lease, a retry period, and the start of the watches.
    assert gap <= lease_seconds + 5, f"the standby took {gap:.1f}s to admit after the leader died"
