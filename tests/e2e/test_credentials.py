"""A task pod's credential reaches its own run and nothing else: not another run's data, not the
Kubernetes API, and not after its run ends or its attempt is superseded."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from lightkube import Client
from lightkube.resources.core_v1 import Pod
from lightkube.types import PatchType

from cairn.k8s.resources import TaskRunResource
from tests.support.builders import pod as plain_pod
from tests.support.cairn import CairnProcesses
from tests.support.env import ClusterEnv
from tests.support.kube import as_dict, server_ssl, wait_for
from tests.support.runs import StepCounter, create_run, make_task, pods_of, status, wait_phase
from tests.support.tokens import pod_token

WAITER = """
def main(ctx):
    ctx.step("hello", lambda: ctx.payload)
    time.sleep(600)
"""


def _api(cairn: CairnProcesses, token: str | None, method: str, path: str, body: Any = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.request(method, f"{cairn.api_url}{path}", json=body, headers=headers, timeout=30, trust_env=False)


def _list_pods_on_the_kubernetes_api(kube: Client, namespace: str, token: str) -> httpx.Response:
    return httpx.get(
        f"{kube.config.cluster.server}/api/v1/namespaces/{namespace}/pods",
        headers={"Authorization": f"Bearer {token}"},
        verify=server_ssl(kube),
        timeout=10,
        trust_env=False,
    )


def _running_pod(kube: Client, ns: str, run: str) -> dict[str, Any]:
    wait_phase(kube, ns, run, ("Running",))
    return wait_for(
        f"{run}'s pod to run",
        lambda: next((p for p in pods_of(kube, ns, run) if p["status"].get("phase") == "Running"), None),
    )


@pytest.fixture
def two_runs(kube: Client, ns: str) -> tuple[dict[str, Any], dict[str, Any]]:
    make_task(kube, ns, "wait", WAITER, retry={"maxAttempts": 3, "backoff": {"initialDelay": "1s"}})
    create_run(kube, ns, "wait", "run-a", payload={"secret": "a-only"})
    create_run(kube, ns, "wait", "run-b", payload={"secret": "b-only"})
    return _running_pod(kube, ns, "run-a"), _running_pod(kube, ns, "run-b")


def test_a_credential_reads_and_writes_only_its_own_run(
    kube: Client, ns: str, cairn: CairnProcesses, two_runs: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    pod_a, pod_b = two_runs
    token_a, token_b = pod_token(kube, pod_a), pod_token(kube, pod_b)
    seen = _api(cairn, token_a, "GET", "/v1/run").json()
    assert seen["run"]["name"] == "run-a" and seen["payload"] == {"secret": "a-only"}
    assert _api(cairn, token_a, "POST", "/v1/steps", {"key": "written-by-a#0", "result": 1}).status_code == 201
    # There is no way to name another run: the body has no such field, and the token decides.
    aimed = _api(cairn, token_a, "POST", "/v1/steps", {"key": "x#0", "result": 1, "run": "run-b"})
    assert aimed.status_code == 422 and "run" in aimed.json()["message"]
    b_steps = [s["key"] for s in _api(cairn, token_b, "GET", "/v1/run").json()["steps"]]
    assert "written-by-a#0" not in b_steps and "x#0" not in b_steps


def test_a_credential_is_useless_against_the_kubernetes_api(
    cluster_env: ClusterEnv, kube: Client, cairn: CairnProcesses, two_runs: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    pod_a, _ = two_runs
    token = pod_token(kube, pod_a)
    answer = _list_pods_on_the_kubernetes_api(kube, pod_a["metadata"]["namespace"], token)
    assert answer.status_code == 401  # its audience is Cairn's, not the API server's


def test_a_credential_stops_working_when_its_run_ends(
    kube: Client, ns: str, cairn: CairnProcesses, two_runs: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    pod_a, _ = two_runs
    token = pod_token(kube, pod_a)
    assert _api(cairn, token, "GET", "/v1/run").status_code == 200
    kube.patch(TaskRunResource, "run-a", {"spec": {"cancel": True}}, namespace=ns, patch_type=PatchType.MERGE)
    wait_phase(kube, ns, "run-a")
    response = wait_for(
        "the credential to be refused",
        lambda: r if (r := _api(cairn, token, "GET", "/v1/run")).status_code != 200 else None,
        timeout=90,
    )
    assert response.status_code in (401, 410), response.text  # ended run, or (once the pod is gone) no pod


def test_the_credential_of_a_superseded_attempt_is_refused(
    cluster_env: ClusterEnv,
    kube: Client,
    ns: str,
    cairn: CairnProcesses,
    two_runs: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    pod_a, _ = two_runs
    old_token = pod_token(kube, pod_a)
    cluster_env.require_harness().node(pod_a["spec"]["nodeName"]).kill_container(
        pod_a["status"]["containerStatuses"][0]["containerID"]
    )
    wait_for(
        "attempt 2 to run",
        lambda: (
            len(pods_of(kube, ns, "run-a")) == 2
            and any(p["status"].get("phase") == "Running" for p in pods_of(kube, ns, "run-a")[1:])
        ),
        timeout=120,
    )
    replay = _api(cairn, old_token, "POST", "/v1/steps", {"key": "late#0", "result": 1})
    assert replay.status_code == 409 and "superseded by attempt 2" in replay.json()["message"]


def test_forged_foreign_and_wrong_audience_tokens_are_refused(
    kube: Client, ns: str, cairn: CairnProcesses, two_runs: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    pod_a, _ = two_runs
    genuine = pod_token(kube, pod_a)
    header, payload, signature = genuine.split(".")
    forged = f"{header}.{payload}.{signature[::-1]}"
    other_audience = pod_token(kube, pod_a, audience="https://kubernetes.default.svc.cluster.local")
    kube.create(plain_pod("stranger", ns, ["sleep", "300"]))
    stranger = as_dict(kube.get(Pod, "stranger", namespace=ns))
    stranger_token = pod_token(kube, stranger)
    cases = [
        (None, 401, "send the run's token"),
        ("garbage", 401, "the token was refused"),
        (forged, 401, "the token was refused"),
        (other_audience, 401, "the token was refused"),
        (stranger_token, 403, "is not an attempt of any Cairn run"),
    ]
    for token, code, message in cases:
        response = _api(cairn, token, "GET", "/v1/run")
        assert response.status_code == code and message in response.json()["message"], (code, response.text)


# The task reports what it holds, from inside its pod: its mounted token, the names in its
# environment, and whether a Kubernetes service-account token is mounted. Then it succeeds.
INSIDE = """
def main(ctx):
    token = open(os.environ["CAIRN_TOKEN_FILE"]).read().strip()
    hit(ctx, "token:" + token)
    hit(ctx, "env:" + ",".join(sorted(os.environ)))
    hit(ctx, "kube-sa:" + str(os.path.exists("/var/run/secrets/kubernetes.io/serviceaccount/token")))
    ctx.step("work", lambda: 1)
    time.sleep(float(ctx.payload["linger"]))
    return "done"
"""


def _reported(counter: StepCounter, run: str, prefix: str) -> str:
    def found() -> str | None:
        with counter._lock:
            return next((w[len(prefix) :] for (r, w) in counter.hits if r == run and w.startswith(prefix)), None)

    return wait_for(f"{run} to report {prefix}", found, timeout=120)


def test_the_token_mounted_in_a_task_pod_reaches_only_its_run_and_not_after_it_ends(
    kube: Client, ns: str, cairn: CairnProcesses, counter: StepCounter
) -> None:
    make_task(kube, ns, "inside", INSIDE, counter=counter)
    create_run(kube, ns, "inside", "mine", payload={"linger": 6})
    create_run(kube, ns, "inside", "theirs", payload={"linger": 0})
    token = _reported(counter, "mine", "token:")
    env_names = set(_reported(counter, "mine", "env:").split(","))
    # Nothing in the pod's environment or files gives the database or the Kubernetes API.
    assert _reported(counter, "mine", "kube-sa:") == "False"
    assert not {n for n in env_names if "DATABASE" in n or n.startswith("PG") or n == "KUBERNETES_TOKEN"}, env_names
    assert {"CAIRN_API_URL", "CAIRN_TOKEN_FILE"} <= env_names
    pod = pods_of(kube, ns, "mine")[0]
    spec = pod["spec"]
    assert spec["automountServiceAccountToken"] is False
    texts = str(spec)
    assert "postgres" not in texts and "DATABASE_URL" not in texts and "secretKeyRef" not in texts
    audiences = [
        src["serviceAccountToken"]["audience"]
        for v in spec.get("volumes", [])
        for src in (v.get("projected") or {}).get("sources", [])
        if "serviceAccountToken" in src
    ]
    assert audiences == ["cairn.dev"], audiences

    # Its own run, and no other: the checkpoint API answers for "mine" only; the trigger API (which
    # can name any run) refuses it, since the pod's service account may not read taskruns.
    own = _api(cairn, token, "GET", "/v1/run")
    assert own.status_code == 200 and own.json()["run"]["name"] == "mine", own.text
    other = _api(cairn, token, "GET", f"/v1/namespaces/{ns}/taskruns/theirs")
    assert other.status_code in (401, 403) and "phase" not in other.json(), other.text
    # The Kubernetes API refuses it: its audience is Cairn's.
    answer = _list_pods_on_the_kubernetes_api(kube, ns, token)
    assert answer.status_code == 401, answer.text

    # After the run ends its pod still exists (so the API server still vouches for the token, cached or
    # not): it is Cairn's own check of the run that refuses the write, with 410 RunEnded.
    assert wait_phase(kube, ns, "mine")["phase"] == "Succeeded"
    assert [p["metadata"]["name"] for p in pods_of(kube, ns, "mine")] == [pod["metadata"]["name"]]
    late = _api(cairn, token, "POST", "/v1/steps", {"key": "late#0", "result": 1})
    assert late.status_code == 410 and late.json()["error"] == "RunEnded", late.text
    assert "late#0" not in [s["key"] for s in status(kube, ns, "mine").get("steps", [])]
