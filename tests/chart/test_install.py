"""The chart on the real cluster, in order: `helm install` (bundled PostgreSQL, cluster-wide mode) into
a namespace that enforces the restricted Pod Security Standard; the example Task runs to success; a run
whose pod is killed after step 3 resumes at step 4; `helm upgrade` to the namespaced mode while a run
is in flight does not fail it; `helm test` passes; `helm uninstall` leaves only what was asked to be
kept (the CRDs). The release is shared (tests/chart/conftest.py); the tests run in file order."""

from __future__ import annotations

import base64
import json
import re
import secrets
import shlex
import socket
import subprocess
import threading
import time
from typing import Any

import httpx
import pytest
from lightkube import Client
from lightkube.resources.core_v1 import Namespace, Secret

from harness import config
from tests.chart import docs
from tests.chart.gate import gate_at
from tests.chart.helm import helm
from tests.chart.release import CRDS, Release, pods_in, restricted_namespace, wait_gone
from tests.support import ui_docs
from tests.support.env import ClusterEnv
from tests.support.kube import kubectl, kubectl_json, wait_for
from tests.support.runs import create_run, make_task, pods_of, status, wait_phase, wait_steps

pytestmark = [pytest.mark.slow, pytest.mark.nodes]

EXAMPLES = config.REPO / "examples"

# Five steps; step 4 holds until the test opens its gate, so the pod is killed in the middle of step 4
# whatever the timing of the status mirror the test watches.
FIVE_STEPS = """
def work(ctx, i):
    hit(ctx, "step%d" % i)
    while i == 4 and urllib.request.urlopen(os.environ["GATE_URL"], timeout=10).read() != b"open":
        time.sleep(0.2)
    time.sleep(0.3)
    return {"i": i, "square": i * i}

def main(ctx):
    return {"sum": sum(ctx.step("work", work, ctx, i)["square"] for i in range(1, 6))}
"""

# Ticks until the test opens its gate: each tick and each look at the gate is a recorded step, so
# the API is busy checkpointing the whole time the upgrade replaces it.
GATED = """
def tick(ctx, i):
    hit(ctx, "tick%d" % i)
    time.sleep(0.3)
    return i

def gate_open():
    return urllib.request.urlopen(os.environ["GATE_URL"], timeout=10).read() == b"open"

def main(ctx):
    i = 0
    while not ctx.step("gate", gate_open):
        ctx.step("tick", tick, ctx, i)
        i += 1
    return {"ticks": i}
"""


@pytest.fixture(scope="module")
def workspace(release: Release) -> str:
    """The release's user namespace, with the example Queue "default" in it."""
    kubectl(release.kubeconfig, "apply", "-n", release.workspace, "-f", str(EXAMPLES / "queue.yaml"))
    return release.workspace


def _items(release: Release, *args: str) -> list[dict[str, Any]]:
    items = kubectl_json(release.kubeconfig, "get", *args)["items"]
    assert isinstance(items, list)
    return items


def _can(release: Release, who: str, verb: str, resource: str, namespace: str) -> bool:
    """kubectl auth can-i, as the release's operator or API (resource may be "kind/subresource")."""
    sa = f"system:serviceaccount:{release.namespace}:{release.fullname}-{who}"
    kind, _, sub = resource.partition("/")
    args = ["auth", "can-i", verb, kind, "-n", namespace, f"--as={sa}", *([f"--subresource={sub}"] if sub else [])]
    return kubectl(release.kubeconfig, *args, check=False).stdout.strip() == "yes"


def _pod_uids(release: Release, component: str) -> set[str]:
    pods = pods_in(release.kubeconfig, release.namespace, f"app.kubernetes.io/component={component}")
    return {p["metadata"]["uid"] for p in pods if not p["metadata"].get("deletionTimestamp")}


def _password(kube: Client, release: Release) -> str:
    secret = kube.get(Secret, f"{release.fullname}-postgresql", namespace=release.namespace)
    assert secret.data is not None
    return base64.b64decode(secret.data["password"]).decode()


def test_helm_install_runs_every_component_under_the_restricted_standard(release: Release) -> None:
    print(f"\nhelm install --wait: {release.timings['helm install --wait (s)']:.1f}s")
    assert release.timings["helm install --wait (s)"] < 180
    ns: dict[str, Any] = kubectl_json(release.kubeconfig, "get", "namespace", release.namespace)
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    pods = pods_in(release.kubeconfig, release.namespace, "app.kubernetes.io/instance=cairn")
    components = sorted(p["metadata"]["labels"]["app.kubernetes.io/component"] for p in pods)
    assert components == ["api", "api", "operator", "postgresql"]
    for pod in pods:
        assert pod["status"]["phase"] == "Running"
        assert all(c["ready"] for c in pod["status"]["containerStatuses"]), pod["metadata"]["name"]
        for c in pod["spec"]["containers"]:
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
    # The bundled database keeps its data on a claim bound to a volume.
    claims = _items(release, "pvc", "-n", release.namespace)
    assert [c["status"]["phase"] for c in claims] == ["Bound"]
    # No password in what the user gave Helm.
    assert "password" not in json.dumps(release.user_values()).lower()
    # NOTES.txt tells the user what to do next, with this release's names.
    for line in (
        f"kubectl -n {release.namespace} rollout status deployment/cairn-operator deployment/cairn-api",
        f"helm test cairn -n {release.namespace}",
        "kubectl create -n <namespace> -f examples/hello/taskrun.yaml",
        f"Task pods reach the API at http://cairn-api.{release.namespace}.svc:8080",
    ):
        assert line in release.notes, release.notes


def test_cluster_wide_mode_permissions_are_least_privilege(release: Release, workspace: str) -> None:
    for ns in (workspace, "default"):
        assert _can(release, "operator", "create", "pods", ns)
        assert _can(release, "operator", "patch", "taskruns.cairn.dev/status", ns)
        assert not _can(release, "operator", "update", "taskruns.cairn.dev", ns)
        assert not _can(release, "operator", "patch", "schedules.cairn.dev", ns)  # a Schedule's spec is its owner's
        assert not _can(release, "operator", "update", "tasks.cairn.dev", ns)
        assert not _can(release, "operator", "update", "pods", ns)
        assert not _can(release, "operator", "create", "pods/exec", ns)
        assert _can(release, "api", "create", "taskruns.cairn.dev", ns)
        assert not _can(release, "api", "delete", "taskruns.cairn.dev", ns)
        assert not _can(release, "api", "create", "pods", ns)
    for who in ("operator", "api"):
        for verb in ("get", "list"):
            assert not _can(release, who, verb, "secrets", release.namespace), (who, verb)
    assert _can(release, "api", "create", "tokenreviews.authentication.k8s.io", "default")
    assert not _can(release, "operator", "create", "tokenreviews.authentication.k8s.io", "default")


def test_the_hello_example_runs_to_success(kube: Client, release: Release, workspace: str) -> None:
    """docs/helm.md's "Then, in any namespace" commands, as written, in the release's user namespace."""
    block = docs.sh_block("## Quick start", index=1)
    *steps, watch = docs.commands(block, {"demo": workspace})
    outputs = [kubectl(release.kubeconfig, *step[1:]).stdout for step in steps]
    name = next(out.split()[0].split("/")[1] for out in outputs if "taskrun.cairn.dev/" in out and "created" in out)
    assert watch[:2] == ["kubectl", "get"] and "--watch" in watch, watch
    seen = _watch_until(release, watch[1:], f"{name} .*Succeeded", timeout=120)
    print(f"\n$ {shlex.join(watch)}\n{seen}")
    st = wait_phase(kube, workspace, name, timeout=10)
    assert st["phase"] == "Succeeded", st
    assert st["progress"]["stepsCompleted"] == 3 and st["progress"]["lastStep"] == "stamp#0"
    result = json.loads(st["result"])
    assert result["greeting"] == "hello, cairn" and result["letters"] == 10
    # The task pod: restricted, no Kubernetes token, only the run's token for Cairn's audience.
    pod = pods_of(kube, workspace, name)[0]
    spec = pod["spec"]
    assert spec["automountServiceAccountToken"] is False and spec["enableServiceLinks"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    sc = spec["containers"][0]["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}
    sources = [s for v in spec["volumes"] if "projected" in v for s in v["projected"]["sources"]]
    assert [s["serviceAccountToken"]["audience"] for s in sources] == ["cairn.dev"]
    env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
    assert env["CAIRN_API_URL"] == f"http://{release.fullname}-api.{release.namespace}.svc:8080"


def _watch_until(release: Release, args: list[str], pattern: str, timeout: float) -> str:
    """Run `kubectl ARGS` (a --watch) until a line of its output matches `pattern`; what it printed."""
    proc = subprocess.Popen(
        [str(config.kubectl()), "--kubeconfig", str(release.kubeconfig), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if re.search(pattern, line):
                return "".join(lines)
        raise AssertionError(f"`kubectl {shlex.join(args)}` never printed /{pattern}/:\n{''.join(lines)}")
    finally:
        timer.cancel()
        proc.kill()
        proc.wait()


def test_a_run_killed_after_step_three_resumes_at_step_four(
    cluster_env: ClusterEnv, kube: Client, release: Release, workspace: str
) -> None:
    with gate_at(cluster_env.host_ip) as gate:
        make_task(kube, workspace, "five", FIVE_STEPS, env={"COUNTER_URL": gate.hit_url, "GATE_URL": gate.gate_url})
        create_run(kube, workspace, "five", "crash1")
        wait_steps(kube, workspace, "crash1", 3, timeout=90)
        wait_for("step 4 to begin", lambda: gate.count("crash1", "step4") == 1 or None, timeout=30)
        pod = pods_of(kube, workspace, "crash1")[0]
        cluster_env.require_harness().node(pod["spec"]["nodeName"]).kill_container(
            pod["status"]["containerStatuses"][0]["containerID"]
        )
        gate.opened.set()
        st = wait_phase(kube, workspace, "crash1", timeout=120)
    assert st["phase"] == "Succeeded", st
    assert [a["reason"] for a in st["attempts"]] == ["Error", "Completed"]
    for i in (1, 2, 3):
        assert gate.attempts[("crash1", f"step{i}")] == [1], f"recorded step {i} ran again"
    assert gate.attempts[("crash1", "step4")] == [1, 2]  # cut short by the kill, before its record
    assert gate.attempts[("crash1", "step5")] == [2]
    assert st["progress"]["stepsCompleted"] == 5
    assert json.loads(st["result"]) == {"sum": 55}


def test_the_dashboard_through_docs_port_forward_lists_reads_logs_and_cancels_with_the_charts_rbac(
    kube: Client, release: Release, workspace: str
) -> None:
    """docs/ui.md's commands as written (a person's ServiceAccount, Role and token; a port-forward to
    the API's Service): signed in as that person, the dashboard lists the runs, streams an attempt's
    log and cancels a run, each through the API's own RBAC as the chart grants it."""
    make_task(kube, workspace, "sleepy", "def main(ctx):\n    time.sleep(600)\n")
    create_run(kube, workspace, "sleepy", "ui-sleepy")
    token = ui_docs.person_token(release.kubeconfig, workspace)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = ui_docs.port_forward(release.namespace, port)
    forward = subprocess.Popen(
        [str(config.kubectl()), f"--kubeconfig={release.kubeconfig}", *argv[1:]],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert forward.stdout is not None
        first = forward.stdout.readline()
        assert "Forwarding from 127.0.0.1" in first, first + forward.stdout.read()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as ui:
            signed = ui.post("/ui/login", data={"token": token, "next": f"/ui/namespaces/{workspace}/runs"})
            assert signed.status_code == 303 and "cairn-ui-token" in signed.cookies, signed.text
            page = ui.get(f"/ui/namespaces/{workspace}/runs?q=crash1")
            assert page.status_code == 200 and 'data-run="crash1"' in page.text, page.text[-2000:]
            lines = []
            with ui.stream("GET", f"/ui/namespaces/{workspace}/runs/crash1/attempts/2/log") as log:
                for line in log.iter_lines():
                    if line.startswith("data: ") and line != "data: ":  # the last event, "end", has no data
                        lines.append(line[len("data: ") :])
            assert lines[-2:] == [
                "cairn: attempt 2 done; steps executed in this attempt: work#3, work#4",
                "(end of log)",
            ]
            assert not [x for x in lines if x.startswith(("(no logs", "(the pod"))], lines
            wait_for("ui-sleepy to run", lambda: status(kube, workspace, "ui-sleepy").get("phase") == "Running" or None)
            cancel = ui.post(f"/ui/namespaces/{workspace}/runs/ui-sleepy/cancel", data={"csrf": ui_docs.csrf(token)})
            assert cancel.status_code == 303 and "cancelled+ui-sleepy" in cancel.headers["Location"], cancel.text
        assert wait_phase(kube, workspace, "ui-sleepy", timeout=120)["phase"] == "Cancelled"
    finally:
        forward.terminate()
        forward.wait(timeout=10)


def test_helm_upgrade_to_the_namespaced_mode_while_a_run_is_in_flight_does_not_fail_it(
    cluster_env: ClusterEnv, kube: Client, release: Release, workspace: str
) -> None:
    with gate_at(cluster_env.host_ip) as gate:
        make_task(kube, workspace, "gated", GATED, env={"COUNTER_URL": gate.hit_url, "GATE_URL": gate.gate_url})
        create_run(kube, workspace, "gated", "inflight")
        before = wait_steps(kube, workspace, "inflight", 4, timeout=90)["progress"]["stepsCompleted"]
        operator_before, api_before = _pod_uids(release, "operator"), _pod_uids(release, "api")
        password = _password(kube, release)

        release.upgrade({"watchNamespaces": [workspace]})
        print(f"\nhelm upgrade --wait: {release.timings['helm upgrade --wait (s)']:.1f}s")

        # Every Cairn pod was replaced while the run went on, checkpointing through the rollout.
        assert _pod_uids(release, "operator").isdisjoint(operator_before)
        assert _pod_uids(release, "api").isdisjoint(api_before)
        during = status(kube, workspace, "inflight")
        assert during["phase"] == "Running", during
        wait_for(
            "the new operator to mirror steps recorded through the new API pods",
            lambda: status(kube, workspace, "inflight")["progress"]["stepsCompleted"] > before or None,
            timeout=30,
        )
        assert _password(kube, release) == password, "the upgrade changed the database password"
        # A run in a namespace the operator no longer watches is left alone.
        other = restricted_namespace(kube, f"cairn-unwatched-{secrets.token_hex(3)}")
        try:
            kubectl(release.kubeconfig, "apply", "-n", other, "-f", str(EXAMPLES / "queue.yaml"))
            kubectl(release.kubeconfig, "apply", "-n", other, "-f", str(EXAMPLES / "hello" / "task.yaml"))
            create_run(kube, other, "hello", "ignored")

            gate.opened.set()
            st = wait_phase(kube, workspace, "inflight", timeout=120)
            assert st["phase"] == "Succeeded", st
            assert len(st["attempts"]) == 1 and st["attempts"][0]["reason"] == "Completed"
            ticks = json.loads(st["result"])["ticks"]
            assert ticks >= 4
            for i in range(ticks):
                assert gate.attempts[("inflight", f"tick{i}")] == [1], f"tick {i} ran more than once"
            assert st["progress"]["stepsCompleted"] == 2 * ticks + 1
            assert status(kube, other, "ignored") == {}, "the operator acted outside its namespaces"
            assert pods_of(kube, other, "ignored") == []
        finally:
            kube.delete(Namespace, other)
            wait_gone(kube, other)

    # Namespaced permissions: pods only where it watches; nothing cluster-wide but token reviews.
    assert _can(release, "operator", "create", "pods", workspace)
    assert not _can(release, "operator", "create", "pods", release.namespace)
    assert not _can(release, "operator", "list", "taskruns.cairn.dev", "default")
    assert _can(release, "api", "create", "tokenreviews.authentication.k8s.io", "default")
    assert not _can(release, "api", "get", "taskruns.cairn.dev", "default")
    assert kubectl(release.kubeconfig, "get", "clusterrole", f"{release.fullname}-operator", check=False).returncode


def test_the_external_database_commands_of_the_docs_are_accepted_as_written(release: Release) -> None:
    """docs/helm.md's "use PostgreSQL you operate" commands, as written: the Secret passes a server-side
    dry run, and the install's values pass the chart's schema and render (`helm template`: a second
    release of the chart could not own the CRDs the first one owns)."""
    block = docs.sh_block("## The database")
    create_secret, install = docs.commands(block, {"cairn-system": release.namespace})
    assert create_secret[:2] == ["kubectl", "-n"] and "secret" in create_secret, create_secret
    kubectl(release.kubeconfig, *create_secret[1:], "--dry-run=server")
    assert install[:2] == ["helm", "install"], install
    rendered = helm("template", *install[2:]).stdout
    assert "existingSecret" not in rendered and "name: cairn-db" in rendered, rendered[:2000]
    assert "kind: StatefulSet" not in rendered  # no bundled PostgreSQL


def test_helm_test_runs_a_task_end_to_end(release: Release) -> None:
    test_ns = release.user_values().get("watchNamespaces", [release.namespace])[0]
    t0 = time.monotonic()
    quick_start = docs.commands(docs.sh_block("## Quick start"), {"cairn-system": release.namespace})
    command = next(c for c in quick_start if c[:2] == ["helm", "test"])  # docs/helm.md's, as written
    out = release.helm(*command[1:], "--timeout", "5m")
    print(f"\nhelm test: {time.monotonic() - t0:.1f}s")
    assert "TEST SUITE:     cairn-test" in out and "Phase:          Succeeded" in out, out
    # The hook's pod succeeds only if the TaskRun it made reached Succeeded (charts/cairn/files/helm_test.py);
    # a plain success posts no Event (an Event is for retries, waits and failures).
    # It cleaned up after itself: its hooks, its Task, Queue and TaskRun.
    for kind in ("pod", "serviceaccount", "role", "rolebinding", "configmap", "taskrun", "task", "queue"):
        res = kubectl(release.kubeconfig, "get", kind, "cairn-test", "-n", test_ns, check=False)
        assert res.returncode != 0 and "NotFound" in res.stderr, f"{kind} cairn-test left behind"


KINDS = "all,configmaps,secrets,serviceaccounts,persistentvolumeclaims,roles,rolebindings,networkpolicies,poddisruptionbudgets"
NAMESPACE_DEFAULTS = {"ConfigMap kube-root-ca.crt", "ServiceAccount default"}


def _leftovers(release: Release) -> list[str]:
    """What is left of the release: anything at all in its namespace but the namespace's defaults; the
    objects labelled as the release's anywhere else (the workspace keeps the users' own objects)."""
    found = [
        f"{i['kind']} {release.namespace}/{i['metadata']['name']}"
        for i in _items(release, KINDS, "-n", release.namespace)
        if f"{i['kind']} {i['metadata']['name']}" not in NAMESPACE_DEFAULTS
    ]
    selector = f"app.kubernetes.io/instance={release.name}"
    found += [
        f"{i['kind']} {release.workspace}/{i['metadata']['name']}"
        for i in _items(release, KINDS, "-n", release.workspace, "-l", selector)
    ]
    found += [
        f"{i['kind']} {i['metadata']['name']}"
        for i in _items(release, "clusterroles,clusterrolebindings", "-l", selector)
    ]
    return sorted(found)


def test_helm_uninstall_leaves_nothing_but_the_kept_crds(release: Release, workspace: str) -> None:
    assert _leftovers(release), "the release's objects should be found before uninstalling"
    release.uninstall()
    print(f"\nhelm uninstall --wait: {release.timings['helm uninstall --wait (s)']:.1f}s")
    wait_for("the release's objects to be gone", lambda: not _leftovers(release) or None, timeout=90)
    assert release.helm("list", "-n", release.namespace, "-q").strip() == ""
    # Kept as asked (crds.keep=true, the default), so the users' Tasks and runs are still there.
    for crd in CRDS:
        doc: dict[str, Any] = kubectl_json(release.kubeconfig, "get", "crd", crd)
        assert doc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    tasks = _items(release, "tasks.cairn.dev", "-n", workspace)
    assert {t["metadata"]["name"] for t in tasks} >= {"hello", "five", "gated"}
    # The bundled database's volume was released with its claim (postgresql.persistence.keepOnUninstall=false).
    if release.storage is not None:
        pv: dict[str, Any] = kubectl_json(release.kubeconfig, "get", "pv", release.storage)
        assert pv["status"]["phase"] == "Released"
