"""A burst of 1,000 runs on one queue, on simulated (KWOK) nodes: admitted in priority order, then
oldest first, as slots free up, as many at once as are free; the admission rate is printed."""

from __future__ import annotations

import itertools
import random
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import psycopg
import pytest
from lightkube import Client
from lightkube.types import PatchType

from cairn.k8s.resources import QueueResource, TaskResource, TaskRunResource
from tests.support.builders import queue_body, simulated_task_body
from tests.support.cairn import CairnProcesses
from tests.support.env import ClusterEnv
from tests.support.figures import report
from tests.support.kube import wait_for

RUNS = 1000
LIMIT = 50
QPS = 300


def _simulated_task(ns: str) -> Any:
    """A Task whose pods land on KWOK's nodes and succeed 1 s after they start."""
    body = simulated_task_body("sim", queue="burst")
    body["metadata"]["namespace"] = ns  # type: ignore[index]
    return TaskResource.from_dict(body)


def _run(ns: str, i: int, priority: int) -> Any:
    return TaskRunResource.from_dict(
        {
            "apiVersion": "cairn.dev/v1alpha1",
            "kind": "TaskRun",
            "metadata": {"name": f"b{i:04d}", "namespace": ns},
            "spec": {"taskRef": {"name": "sim"}, "priority": priority},
        }
    )


def _rows(dsn: str, ns: str) -> list[dict[str, Any]]:
    with psycopg.connect(dsn, row_factory=psycopg.rows.dict_row) as conn:
        return conn.execute(
            "SELECT name, priority, created_at, registered, state, admitted_at, phase FROM runs WHERE namespace = %s",
            (ns,),
        ).fetchall()


def _order_key(row: dict[str, Any]) -> tuple[int, datetime, int]:
    return (-row["priority"], row["created_at"], row["registered"])


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_burst_of_a_thousand_runs_is_admitted_by_priority_then_age_as_slots_free_up(
    cluster_env: ClusterEnv, kube: Client, ns: str, cairn: CairnProcesses
) -> None:
    cluster_env.require_harness().fake_nodes(1)
    # A larger client budget than the default 50 requests/s, so that the burst takes a minute of CI, not
    # three; the default's rate is what `make bench` measures (bench/admission.py).
    cairn.overrides.update(CAIRN_KUBE_QPS=str(QPS), CAIRN_KUBE_BURST=str(QPS))
    cairn.restart_operator(kill=False)
    try:
        _burst(kube, ns, cairn)
    finally:
        for key in ("CAIRN_KUBE_QPS", "CAIRN_KUBE_BURST"):
            cairn.overrides.pop(key, None)
        cairn.restart_operator(kill=False)


def _burst(kube: Client, ns: str, cairn: CairnProcesses) -> None:
    body = queue_body("burst", concurrencyLimit=LIMIT, paused=True)
    body["metadata"]["namespace"] = ns  # type: ignore[index]
    kube.create(QueueResource.from_dict(body))
    kube.create(_simulated_task(ns))
    rng = random.Random(1000)
    priorities = [rng.choice([0, 0, 1, 2, 5]) for _ in range(RUNS)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: kube.create(_run(ns, i, priorities[i])), range(RUNS)))
    # Paused, so that every run is waiting before the first is admitted: the order is then the queue's alone.
    wait_for(
        f"all {RUNS} runs to be registered and waiting",
        lambda: sum(r["state"] == "queued" for r in _rows(cairn.dsn, ns)) == RUNS,
        timeout=180,
        interval=1.0,
    )
    resumed = time.monotonic()
    kube.patch(QueueResource, "burst", {"spec": {"paused": False}}, namespace=ns, patch_type=PatchType.MERGE)

    def all_succeeded() -> list[dict[str, Any]] | None:
        rows = _rows(cairn.dsn, ns)
        return rows if sum(r["phase"] == "Succeeded" for r in rows) == RUNS else None

    rows = wait_for(f"all {RUNS} runs to succeed", all_succeeded, timeout=800, interval=2.0)
    drained = time.monotonic() - resumed

    admitted = sorted(rows, key=lambda r: (r["admitted_at"], _order_key(r)))
    batches: list[list[dict[str, Any]]] = []
    for row in admitted:
        if batches and batches[-1][0]["admitted_at"] == row["admitted_at"]:
            batches[-1].append(row)
        else:
            batches.append([row])
    # Every run admitted earlier comes before every run admitted later in (priority desc, created, registered).
    for earlier, later in itertools.pairwise(batches):
        assert max(map(_order_key, earlier)) < min(map(_order_key, later)), (earlier, later)
    assert [r["priority"] for r in admitted] == sorted(priorities, reverse=True)
    span = (admitted[-1]["admitted_at"] - admitted[0]["admitted_at"]).total_seconds()
    sizes = [len(b) for b in batches]
    report(
        f"\n{RUNS} runs, limit {LIMIT}, client budget {QPS} requests/s: {RUNS / span:.1f} admissions/s "
        f"from the first to the last admission ({span:.1f} s); {len(batches)} admission transactions, median {sorted(sizes)[len(sizes) // 2]} runs "
        f"each, largest {max(sizes)}; all succeeded {drained:.1f} s after the queue was resumed"
    )
    assert max(sizes) > 1  # several admitted at once, not one per cycle
