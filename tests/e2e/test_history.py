"""Run history that outlives the TaskRun: finished runs deleted by hand stay readable from PostgreSQL
through Cairn's history API, by the CLI (`cairn runs --archived` with its filters, `cairn describe`,
`cairn steps`), for identities RBAC allows to `get taskruns` in the namespace, and for no one else."""

from __future__ import annotations

import json
from typing import Any

import httpx
from lightkube import Client

from cairn.k8s.resources import TaskRunResource
from harness.cairn import CairnProcesses
from tests.e2e.test_cli import cli
from tests.e2e.test_fork import FIVE_STEPS
from tests.support.env import ClusterEnv
from tests.support.kube import as_dict, wait_for
from tests.support.runs import StepCounter, make_task, wait_phase
from tests.support.tokens import service_account_token


def _run(kube: Client, ns: str, name: str, divisor: int, team: str) -> None:
    body: dict[str, Any] = {
        "apiVersion": "cairn.dev/v1alpha1",
        "kind": "TaskRun",
        "metadata": {"name": name, "namespace": ns, "labels": {"team": team}},
        "spec": {"taskRef": {"name": "five"}, "payload": json.dumps({"divisor": divisor})},
    }
    kube.create(TaskRunResource.from_dict(body))


def _delete(kube: Client, ns: str, *names: str) -> None:
    for name in names:
        kube.delete(TaskRunResource, name, namespace=ns)
    wait_for(
        "the TaskRuns to be deleted",
        lambda: not set(names) & {as_dict(r)["metadata"]["name"] for r in kube.list(TaskRunResource, namespace=ns)},
    )


def test_deleted_runs_are_listed_described_and_their_steps_read_from_history_with_rbac(
    cluster_env: ClusterEnv, kube: Client, ns: str, cairn: CairnProcesses, counter: StepCounter
) -> None:
    make_task(kube, ns, "five", FIVE_STEPS, counter=counter, retry={"maxAttempts": 1})
    _run(kube, ns, "good", 5, "a")
    _run(kube, ns, "bad", 0, "b")
    assert wait_phase(kube, ns, "good", timeout=120)["phase"] == "Succeeded"
    assert wait_phase(kube, ns, "bad", timeout=120)["phase"] == "Failed"
    _delete(kube, ns, "good", "bad")
    reader = service_account_token(kube, ns, "reader", verbs=["get"])
    outsider = service_account_token(kube, ns, "outsider", verbs=["create"])
    via = ["--server", cairn.api_url, "--token", reader]

    listed = cli(cluster_env, ns, "runs", "--archived", *via)
    assert listed.code == 0, listed.err
    rows = {ln.split()[0]: ln.split() for ln in listed.out.splitlines()[1:]}
    assert set(rows) == {"good", "bad"}, listed.out
    assert rows["good"][1:5] == ["five", "Succeeded", "1", "5"] and rows["bad"][1:5] == ["five", "Failed", "1", "3"]
    failed = cli(cluster_env, ns, "runs", "--archived", "--phase", "Failed", "-o", "name", *via)
    assert failed.out.split() == ["bad"], failed.out
    team_a = cli(cluster_env, ns, "runs", "--archived", "-l", "team=a", "--since", "1h", "-o", "name", *via)
    assert team_a.out.split() == ["good"], team_a.out
    before = cli(cluster_env, ns, "runs", "--archived", "--until", "2h", "-o", "name", *via)
    assert before.code == 0 and before.out.split() == [], before.out  # nothing was made two hours ago
    none = cli(cluster_env, ns, "runs", "--archived", "--task", "other", *via)
    assert none.code == 0 and "No archived runs" in none.err

    described = cli(cluster_env, ns, "describe", "bad", *via)  # no TaskRun: from history
    assert described.code == 0, described.err
    assert "Phase:         Failed" in described.out and "Deleted:       20" in described.out, described.out
    assert "steps: work#0, work#1, work#2" in described.out, described.out

    steps = cli(cluster_env, ns, "steps", "good", *via)
    assert steps.code == 0, steps.err
    assert "Run good (five, Succeeded, TaskRun deleted" in steps.out and "5 steps recorded" in steps.out
    assert [ln.split()[0] for ln in steps.out.splitlines() if ln.startswith("work#")] == [f"work#{i}" for i in range(5)]
    one = cli(cluster_env, ns, "steps", "good", "work#3", *via)
    assert json.loads(one.out) == {"i": 4, "part": 80}
    missing = cli(cluster_env, ns, "steps", "good", "work#9", *via)
    assert missing.code == 3 and 'recorded no step "work#9"; its steps: work#0' in missing.err

    # Without `get taskruns` in the namespace: refused, by the CLI and by the API itself.
    refused = cli(cluster_env, ns, "steps", "good", "--server", cairn.api_url, "--token", outsider)
    assert refused.code == 6 and "may not get taskruns" in refused.err, refused.err
    for path in ("history/runs", "history/runs/good", "history/runs/good/steps/work%233"):
        answer = httpx.get(
            f"{cairn.api_url}/v1/namespaces/{ns}/{path}", headers={"Authorization": f"Bearer {outsider}"}, timeout=10
        )
        assert answer.status_code == 403, (path, answer.text)
    anonymous = httpx.get(f"{cairn.api_url}/v1/namespaces/{ns}/history/runs", timeout=10)
    assert anonymous.status_code == 401
    no_server = cli(cluster_env, ns, "steps", "good")
    assert no_server.code == 5 and "give --server URL or set CAIRN_SERVER" in no_server.err
