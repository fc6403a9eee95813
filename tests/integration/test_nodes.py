"""Real nodes run real containers: exit codes, logs, OOM kills, deletion, node loss, pod networking,
Services, and the images the project builds."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from lightkube import Client
from lightkube.resources.core_v1 import Node, Pod, Service

from harness.images import EXAMPLES, OPERATOR, TASK
from harness.kwok import NODE_SELECTOR as KWOK_NODE_SELECTOR
from harness.kwok import TOLERATION as KWOK_TOLERATION
from tests.support.builders import pod, service
from tests.support.env import ClusterEnv
from tests.support.kube import as_dict, kubectl, wait_for


def _http_get(host: str, port: int, attempts: int = 1) -> list[str]:
    """A shell command that GETs http://host:port/ and prints the body (busybox's wget is unusable
    in a static build, nc is not), retrying a few times. What a failed try said (a Service's rules
    may reach the client's node a moment after the Service is made) is printed only if all fail."""
    get = f"printf 'GET / HTTP/1.0\\r\\nHost: {host}\\r\\n\\r\\n' | nc -w 3 {host} {port} 2>>/tmp/tries | sed '1,/^\\r$/d'"
    return [
        "sh",
        "-c",
        f'for i in $(seq {attempts}); do out=$({get}); [ -n "$out" ] && echo "$out" && exit 0; sleep 1; done; '
        "cat /tmp/tries >&2; exit 1",
    ]


def _finished(kube: Client, name: str, namespace: str) -> dict[str, Any] | None:
    p = as_dict(kube.get(Pod, name, namespace=namespace))
    return p if p["status"].get("phase") in ("Succeeded", "Failed") else None


def _terminated(p: dict[str, Any]) -> dict[str, Any]:
    state = p["status"]["containerStatuses"][0]["state"]
    assert "terminated" in state, state
    return dict(state["terminated"])


def test_a_container_runs_to_completion_with_its_real_exit_code_and_logs(
    cluster_env: ClusterEnv, kube: Client, namespace: str
) -> None:
    kube.create(pod("exit3", namespace, ["sh", "-c", "echo working; echo failing >&2; exit 3"]))
    p = wait_for("the pod to finish", lambda: _finished(kube, "exit3", namespace))
    assert p["status"]["phase"] == "Failed"
    term = _terminated(p)
    assert (term["exitCode"], term["reason"]) == (3, "Error")
    logs = kubectl(cluster_env.kubeconfig, "logs", "-n", namespace, "exit3").stdout
    assert sorted(logs.splitlines()) == ["failing", "working"]  # stdout and stderr, in either order


def test_a_container_over_its_memory_limit_is_oom_killed(kube: Client, namespace: str) -> None:
    # dd allocates its whole block in one buffer: 64 MiB against a 24 MiB limit.
    kube.create(pod("hog", namespace, ["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=4"], memory_limit="24Mi"))
    p = wait_for("the pod to be killed", lambda: _finished(kube, "hog", namespace))
    term = _terminated(p)
    assert (term["reason"], term["exitCode"]) == ("OOMKilled", 137)


def test_a_pod_deleted_mid_run_is_terminated(kube: Client, namespace: str) -> None:
    kube.create(pod("sleeper", namespace, ["sleep", "300"], grace=1))
    wait_for(
        "the pod to run",
        lambda: as_dict(kube.get(Pod, "sleeper", namespace=namespace))["status"].get("phase") == "Running",
    )
    kube.delete(Pod, "sleeper", namespace=namespace)
    wait_for(
        "the pod to be gone",
        lambda: not [p for p in kube.list(Pod, namespace=namespace) if as_dict(p)["metadata"]["name"] == "sleeper"],
        timeout=60,
    )


@pytest.fixture
def host_server(cluster_env: ClusterEnv) -> Iterator[tuple[str, int]]:
    """An HTTP server on the host side of the nodes' veth pairs, answering 'hello from the host'."""

    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"hello from the host"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((cluster_env.host_ip, 0), Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield cluster_env.host_ip, int(server.server_address[1])
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("node", ["node-1", "node-2"])
def test_a_pod_on_each_node_gets_an_ip_and_reaches_a_server_on_the_host(
    cluster_env: ClusterEnv, kube: Client, namespace: str, host_server: tuple[str, int], node: str
) -> None:
    kube.create(pod("client", namespace, _http_get(*host_server), node=node))
    p = wait_for("the pod to finish", lambda: _finished(kube, "client", namespace))
    assert p["status"]["podIP"]
    assert p["status"]["phase"] == "Succeeded", kubectl(cluster_env.kubeconfig, "logs", "-n", namespace, "client")
    assert kubectl(cluster_env.kubeconfig, "logs", "-n", namespace, "client").stdout.strip() == "hello from the host"


def test_a_pod_reaches_a_cluster_ip_service_backed_by_a_pod_on_another_node(
    cluster_env: ClusterEnv, kube: Client, namespace: str
) -> None:
    kube.create(
        pod(
            "web",
            namespace,
            [
                "sh",
                "-c",
                "mkdir -p /tmp/www && echo served-by-web > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www",
            ],
            node="node-1",
            labels={"app": "web"},
            port=8080,
        )
    )
    svc = as_dict(kube.create(service("web", namespace, {"app": "web"}, 80, 8080)))
    cluster_ip = svc["spec"]["clusterIP"]
    wait_for(
        "the web pod to be ready",
        lambda: any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in as_dict(kube.get(Pod, "web", namespace=namespace))["status"].get("conditions", [])
        ),
    )
    kube.create(pod("client", namespace, _http_get(cluster_ip, 80, attempts=10), node="node-2"))
    p = wait_for("the client to finish", lambda: _finished(kube, "client", namespace))
    logs = kubectl(cluster_env.kubeconfig, "logs", "-n", namespace, "client").stdout
    assert p["status"]["phase"] == "Succeeded", logs
    assert logs.strip() == "served-by-web"
    assert as_dict(kube.get(Service, "web", namespace=namespace))["spec"]["type"] == "ClusterIP"


@pytest.mark.parametrize(
    ("image", "code"),
    [
        (TASK, "import cairn, cairn.sdk; print('cairn', cairn.__version__)"),
        (EXAMPLES, "import cairn; print('cairn', cairn.__version__)"),
        (OPERATOR, "import cairn, kopf, psycopg, lightkube; print('cairn', cairn.__version__)"),
    ],
)
def test_images_built_by_the_project_run_python_with_cairn_importable(
    cluster_env: ClusterEnv, kube: Client, namespace: str, image: str, code: str
) -> None:
    kube.create(pod("py", namespace, ["python3", "-c", code], image=image))
    p = wait_for("the pod to finish", lambda: _finished(kube, "py", namespace), timeout=120)
    logs = kubectl(cluster_env.kubeconfig, "logs", "-n", namespace, "py").stdout
    assert p["status"]["phase"] == "Succeeded", logs
    assert logs.strip() == "cairn 0.1.0"


def _node_ready(kube: Client, name: str) -> str:
    for c in as_dict(kube.get(Node, name))["status"]["conditions"]:
        if c["type"] == "Ready":
            return str(c["status"])
    return "Missing"


def test_a_pod_on_a_stopped_node_is_seen_as_lost_and_the_node_comes_back(
    cluster_env: ClusterEnv, kube: Client, namespace: str
) -> None:
    cluster = cluster_env.require_harness()
    kube.create(pod("stranded", namespace, ["sleep", "600"], node="node-2"))
    wait_for(
        "the pod to run",
        lambda: as_dict(kube.get(Pod, "stranded", namespace=namespace))["status"].get("phase") == "Running",
    )
    node = cluster.node("node-2")
    node.stop()
    try:
        wait_for("node-2 to be seen as lost", lambda: _node_ready(kube, "node-2") == "Unknown", timeout=60)

        def evicted() -> dict[str, Any] | None:
            p = as_dict(kube.get(Pod, "stranded", namespace=namespace))
            conds = {c["type"]: c for c in p["status"].get("conditions", [])}
            return p if p["metadata"].get("deletionTimestamp") and "DisruptionTarget" in conds else None

        p = wait_for("the pod to be marked for eviction", evicted, timeout=60)
        reason = {c["type"]: c for c in p["status"]["conditions"]}["DisruptionTarget"]["reason"]
        assert reason == "DeletionByTaintManager"
    finally:
        node.start(cluster.images)
        node.wait_ready()
    wait_for("node-2 to be Ready again", lambda: _node_ready(kube, "node-2") == "True", timeout=60)
    wait_for(
        "the evicted pod to be gone once its node is back",
        lambda: not [p for p in kube.list(Pod, namespace=namespace) if as_dict(p)["metadata"]["name"] == "stranded"],
        timeout=90,
    )


@pytest.mark.parametrize(("exit_code", "phase"), [("0", "Succeeded"), ("7", "Failed")])
def test_a_simulated_pod_ends_with_the_exit_code_its_annotation_chooses(
    cluster_env: ClusterEnv, kube: Client, namespace: str, exit_code: str, phase: str
) -> None:
    cluster = cluster_env.require_harness()
    fake = cluster.fake_nodes(1) if cluster.kwok is None else cluster.kwok.nodes
    kube.create(
        pod(
            "sim",
            namespace,
            ["never-run"],
            image="localhost/not-on-any-real-node:1",
            labels={"kwok.cairn.dev/finish": "true"},
            annotations={"kwok.cairn.dev/exit-code": exit_code, "kwok.cairn.dev/delay": "200ms"},
            tolerations=[KWOK_TOLERATION],
            node_selector=KWOK_NODE_SELECTOR,
        )
    )
    p = wait_for("the simulated pod to finish", lambda: _finished(kube, "sim", namespace))
    assert p["spec"]["nodeName"] in fake
    assert p["status"]["phase"] == phase
    assert _terminated(p)["exitCode"] == int(exit_code)


def test_cluster_dns_resolves_services_and_answers_nothing_outside_the_cluster(
    cluster_env: ClusterEnv, kube: Client, namespace: str
) -> None:
    kube.create(service("named", namespace, {"app": "nothing"}, 80, 8080))
    code = (
        "import socket\n"
        "print(socket.gethostbyname('kubernetes.default'))\n"
        f"print(socket.gethostbyname('named.{namespace}.svc.cluster.local'))\n"
        "try:\n"
        "    socket.gethostbyname('example.com')\n"
        "    print('resolved an outside name')\n"
        "except OSError:\n"
        "    print('outside: no answer')\n"
    )
    kube.create(pod("dns", namespace, ["python3", "-c", code], image=TASK))
    p = wait_for("the pod to finish", lambda: _finished(kube, "dns", namespace), timeout=120)
    logs = kubectl(cluster_env.kubeconfig, "logs", "-n", namespace, "dns").stdout.splitlines()
    svc_ip = as_dict(kube.get(Service, "named", namespace=namespace))["spec"]["clusterIP"]
    assert p["status"]["phase"] == "Succeeded", logs
    assert logs == ["10.96.0.1", svc_ip, "outside: no answer"]
