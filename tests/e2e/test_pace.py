"""Queues that pace, on a real cluster: 40 runs through `rateLimit: {limit: 10, period: 10s}` are admitted
ten at a time, ten seconds apart (as the store admitted them, and as their pods show), each held-back
run saying why and when its chance comes; in a queue with a perKeyRateLimit, a key at its rate does not
hold back another key. And backpressure: past maxQueued the trigger API answers 429 with the depth,
`cairn trigger` refuses, and a TaskRun created anyway ends Rejected, with nothing already queued touched.
Pods run on a simulated (KWOK) node: what is proved is admission, which a real kubelet would prove no
better."""

from __future__ import annotations

import functools
from typing import Any

import httpx
import psycopg
from lightkube import Client
from lightkube.types import PatchType

from cairn.k8s.resources import QueueResource, TaskResource
from tests.e2e.test_cli import cli
from tests.support.builders import queue_body, simulated_task_body
from tests.support.cairn import CairnProcesses
from tests.support.env import ClusterEnv
from tests.support.figures import report
from tests.support.kube import wait_for
from tests.support.observe import PodObserver
from tests.support.runs import create_run, make_task, status, wait_phase
from tests.support.tokens import service_account_token

RUNS, LIMIT, PERIOD = 40, 10, 10.0


def _queue(kube: Client, ns: str, name: str, **spec: object) -> None:
    body = queue_body(name, **spec)
    body["metadata"]["namespace"] = ns  # type: ignore[index]
    kube.create(QueueResource.from_dict(body))


def _task(kube: Client, ns: str, name: str, queue: str) -> None:
    task = simulated_task_body(name, delay="200ms", queue=queue)
    task["metadata"]["namespace"] = ns  # type: ignore[index]
    kube.create(TaskResource.from_dict(task))


def _most_in_a_window(times: list[float], window: float) -> int:
    return max((sum(1 for u in times if t - window < u <= t) for t in times), default=0)


def _rate_limited(kube: Client, ns: str, name: str) -> dict[str, Any] | None:
    st = status(kube, ns, name)
    return st if st.get("reason") == "RateLimited" else None


def _queue_rate(kube: Client, ns: str, name: str) -> str | None:
    body = kube.get(QueueResource, name, namespace=ns).to_dict()  # type: ignore[no-untyped-call]
    summary = ((body.get("status") or {}).get("rate") or {}).get("summary")
    return str(summary) if summary and summary.startswith(f"{LIMIT}/") else None


def test_a_rate_limited_queue_admits_at_its_pace_and_a_key_at_its_rate_does_not_block_another(
    cluster_env: ClusterEnv, kube: Client, ns: str, cairn: CairnProcesses
) -> None:
    cluster_env.require_harness().fake_nodes(1)
    _queue(kube, ns, "paced", concurrencyLimit=100, rateLimit={"limit": LIMIT, "period": "10s"})
    _queue(kube, ns, "tenants", concurrencyLimit=100, perKeyRateLimit={"limit": 1, "period": "12s"})
    _task(kube, ns, "api-call", "paced")
    _task(kube, ns, "tenant-call", "tenants")
    paced = PodObserver(kube, ns, "api-call")
    tenants = PodObserver(kube, ns, "tenant-call")
    names = [f"p{i:02d}" for i in range(RUNS)]
    for name in names:
        create_run(kube, ns, "api-call", name)
    # One tenant sends three runs (its rate: one per 12 s), four others one each.
    slow = [f"slow-{i}" for i in range(3)]
    fast = [f"fast-{i}" for i in range(4)]
    for name in slow:
        create_run(kube, ns, "tenant-call", name, queue="tenants", concurrencyKey="busy")
    for i, name in enumerate(fast):
        create_run(kube, ns, "tenant-call", name, queue="tenants", concurrencyKey=f"quiet-{i}")

    held = wait_for("a run to say it is rate limited", functools.partial(_rate_limited, kube, ns, names[-1]))
    assert held["phase"] == "Queued" and "admits at most 10 per 10s (spec.rateLimit)" in held["message"], held
    assert "its chance comes at" in held["message"], held
    rate_shown = wait_for("the queue to show its rate in use", functools.partial(_queue_rate, kube, ns, "paced"))
    listed = cli(cluster_env, ns, "queues")
    assert listed.code == 0 and "RATE" in listed.out and f"{LIMIT}/{LIMIT} per 10s" in listed.out, listed.out

    finals = {n: wait_phase(kube, ns, n, timeout=240)["phase"] for n in names + slow + fast}
    paced.stop()
    tenants.stop()
    # The pace is decided by PostgreSQL's clock at admission: measured there, exactly. The pods (seen
    # through a watch, under the load of 47 runs created at once) follow it with a second or so of jitter.
    admitted = _admitted_at(cairn.dsn, ns)
    at = sorted(admitted[n] for n in names)
    span = at[-1] - at[0]
    waves = [sum(1 for t in at if k * PERIOD - 0.5 <= t - at[0] < (k + 1) * PERIOD - 0.5) for k in range(5)]
    starts = sorted(paced.first_seen.values())
    t0 = min(admitted[n] for n in slow + fast)
    slow_at = sorted(admitted[n] - t0 for n in slow)
    fast_at = sorted(admitted[n] - t0 for n in fast)
    report(
        f"\nrateLimit 10 per 10s, {RUNS} runs: admitted over {span:.1f}s, per 10 s wave {waves}, most in any "
        f"10 s {_most_in_a_window(at, PERIOD)}; their pods over {starts[-1] - starts[0]:.1f}s, most in any 9 s "
        f"{_most_in_a_window(starts, PERIOD - 1)} (queue status said {rate_shown!r}); perKeyRateLimit 1 per 12s: "
        f"the busy key admitted at {[round(t, 2) for t in slow_at]} s, the other keys at "
        f"{[round(t, 2) for t in fast_at]} s; {paced.pods_seen + tenants.pods_seen} pods observed"
    )
    paced.check_observed()
    tenants.check_observed()
    assert set(finals.values()) == {"Succeeded"}, finals
    assert paced.pods_seen == RUNS and tenants.pods_seen == len(slow) + len(fast)
    assert len(admitted) == RUNS + len(slow) + len(fast), sorted(admitted)
    # Ten at a time, four waves; never faster, and not much slower.
    assert _most_in_a_window(at, PERIOD) <= LIMIT
    assert waves[:4] == [LIMIT] * 4, waves
    assert 3 * PERIOD <= span <= 3 * PERIOD + 5, span
    # What the pods show agrees (the watch adds jitter, hence 9 s, not 10 s).
    assert _most_in_a_window(starts, PERIOD - 1) <= LIMIT
    # A key at its rate holds back only its own runs.
    assert all(t < 5 for t in fast_at), fast_at
    assert slow_at[1] - slow_at[0] >= 12 and slow_at[2] - slow_at[1] >= 12, slow_at


def _admitted_at(dsn: str, ns: str) -> dict[str, float]:
    """When the store admitted each run of the namespace (epoch seconds, PostgreSQL's clock)."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT name, extract(epoch FROM admitted_at)::float8 FROM runs WHERE namespace = %s AND admitted_at IS NOT NULL",
            (ns,),
        ).fetchall()
    return {str(name): float(t) for name, t in rows}


def test_past_max_queued_the_api_answers_429_the_cli_refuses_and_a_taskrun_ends_rejected(
    cluster_env: ClusterEnv, kube: Client, ns: str, cairn: CairnProcesses
) -> None:
    _queue(kube, ns, "small", concurrencyLimit=1, maxQueued=2, paused=True)
    make_task(kube, ns, "quick", "def main(ctx):\n    return 1\n", queue="small")
    for name in ("first", "second"):
        create_run(kube, ns, "quick", name)
    wait_for(
        "both to be queued", lambda: all(status(kube, ns, n).get("phase") == "Queued" for n in ("first", "second"))
    )
    wait_for(
        "the queue's status to count them",
        lambda: (kube.get(QueueResource, "small", namespace=ns).to_dict().get("status") or {}).get("queued") == 2,  # type: ignore[no-untyped-call]
    )
    # kubectl (no door to refuse at): the run is created, and ends at once, Rejected, holding nothing.
    create_run(kube, ns, "quick", "third")
    done = wait_phase(kube, ns, "third", timeout=60)
    assert (done["phase"], done["reason"]) == ("Failed", "Rejected"), done
    assert 'Queue "small" already held 2 waiting runs (spec.maxQueued)' in done["message"], done
    assert not done.get("attempts")
    # The trigger API: 429 with the depth, and no TaskRun.
    token = service_account_token(kube, ns, "app", verbs=["create", "get"])
    answer = httpx.post(
        f"{cairn.api_url}/v1/namespaces/{ns}/taskruns",
        json={"task": "quick"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
        trust_env=False,
    )
    doc = answer.json()
    assert answer.status_code == 429, doc
    assert (doc["error"], doc["queue"], doc["queued"], doc["maxQueued"]) == ("QueueAtCapacity", "small", 2, 2)
    # The CLI says so, and creates nothing.
    refused = cli(cluster_env, ns, "trigger", "quick", "--name", "fourth")
    assert refused.code == 6, refused
    assert "queue 'small' is full: 2 runs wait in it and its maxQueued is 2" in refused.err, refused.err
    # Nothing already queued was touched: resumed, both run.
    kube.patch(QueueResource, "small", {"spec": {"paused": False}}, namespace=ns, patch_type=PatchType.MERGE)
    for name in ("first", "second"):
        assert wait_phase(kube, ns, name, timeout=120)["phase"] == "Succeeded"
    report(
        f"\nmaxQueued 2: API answered {answer.status_code} {doc['error']} (queued {doc['queued']}); CLI exit {refused.code}; kubectl run ended {done['reason']}"
    )
