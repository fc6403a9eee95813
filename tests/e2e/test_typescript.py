"""The TypeScript SDK on real pods (the image localhost/cairn-node, Node 20): the seed's process-video
example killed with SIGKILL after its second step resumes at the third in a new pod; a TypeScript
parent waits on a Python child and a Python parent on a TypeScript child; a wait token completed by
the CLI resumes a TypeScript task. Side channel: a counter the tasks report each executed step to."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import yaml
from lightkube import Client
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap

from cairn.k8s.resources import TaskResource
from harness import config
from harness.images import NODE, TS_TASKS
from tests.e2e.test_cli import cli
from tests.e2e.test_examples import _apply, _by_attempt
from tests.support.env import ClusterEnv
from tests.support.kube import kubectl
from tests.support.runs import StepCounter, create_run, make_task, pods_of, wait_phase, wait_steps

E2E_TASKS = TS_TASKS / "tests" / "e2e" / "typescript"

PY_SQUARE = """
def main(ctx):
    return ctx.step("square", lambda: hit(ctx, "square") or {"square": ctx.payload["n"] ** 2, "by": "python"})
"""

PY_PARENT = """
def main(ctx):
    ctx.step("before", lambda: hit(ctx, "before"))
    child = ctx.trigger_and_wait("kid", "ts-square", {"n": ctx.payload["n"]})
    assert child.ok, child
    after = ctx.step("after", lambda: hit(ctx, "after") or child.result["square"] + 1)
    return {"child": child.result, "plusOne": after}
"""


def make_node_task(kube: Client, ns: str, name: str, export: str, counter: StepCounter) -> None:
    """A Task running one export of tests/e2e/typescript/tasks.ts (compiled), mounted from a ConfigMap."""
    code = {p.name: p.read_text() for p in (E2E_TASKS / "tasks.js", E2E_TASKS / "package.json")}
    kube.create(ConfigMap(metadata=ObjectMeta(name=f"{name}-code", namespace=ns), data=code))
    container: dict[str, Any] = {
        "image": NODE,
        "imagePullPolicy": "Never",
        "command": ["cairn-run", f"/tasks/tasks.js:{export}"],
        "env": [{"name": "COUNTER_URL", "value": counter.url}],
        "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        "volumeMounts": [{"name": "code", "mountPath": "/tasks", "readOnly": True}],
    }
    body = {
        "apiVersion": "cairn.dev/v1alpha1",
        "kind": "Task",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "template": {
                "spec": {
                    "containers": [container],
                    "volumes": [{"name": "code", "configMap": {"name": f"{name}-code"}}],
                }
            },
            "retry": {"maxAttempts": 3, "backoff": {"initialDelay": "1s", "maxDelay": "5s"}},
        },
    }
    kube.create(TaskResource.from_dict(body))


def _expected_thumbnail_sha(width: int, height: int, frames: int) -> str:
    """What process-video.ts makes of its test pattern, computed here independently."""
    clip = bytes((i * 7 + i // 64) % 256 for i in range(width * height * frames))
    first = bytes(clip[y * width + x] for y in range(0, height, 2) for x in range(0, width, 2))
    return hashlib.sha256(f"P5 {width // 2} {height // 2} 255\n".encode() + first).hexdigest()


def test_the_typescript_process_video_killed_after_its_second_step_resumes_at_the_third(
    cluster_env: ClusterEnv, kube: Client, ns: str, counter: StepCounter
) -> None:
    _apply(cluster_env, ns, "typescript/task.yaml")
    task = yaml.safe_load((config.REPO / "examples/typescript/task.yaml").read_text())
    assert task["spec"]["retry"]["maxAttempts"] == 5
    # The example's own TaskRun is a valid manifest (the API server's schema and CEL rules say so).
    dry = kubectl(
        cluster_env.kubeconfig,
        "create",
        "--dry-run=server",
        "-n",
        ns,
        "-f",
        str(config.REPO / "examples/typescript/taskrun.yaml"),
    )
    assert "created (server dry run)" in dry.stdout, dry.stdout
    payload = {
        "source": "clip-001",
        "width": 64,
        "height": 48,
        "frames": 24,
        "stepSeconds": 3,
        "progressUrl": counter.url,
    }
    run = create_run(kube, ns, "process-video", "video-1", payload)
    wait_steps(kube, ns, run, 2)  # downloaded and transcoded; the thumbnail is in progress
    pod = next(p for p in pods_of(kube, ns, run) if p["status"].get("phase") == "Running")
    cluster_env.require_harness().node(pod["spec"]["nodeName"]).kill_container(
        pod["status"]["containerStatuses"][0]["containerID"]
    )
    st = wait_phase(kube, ns, run, timeout=150)
    assert st["phase"] == "Succeeded", st
    assert _by_attempt(st) == {"download#0": 1, "transcode#0": 1, "thumbnail#0": 2}
    # Each recorded step executed once: the download and the transcode never again in attempt 2.
    assert counter.attempts[(run, "download")] == [1]
    assert counter.attempts[(run, "transcode")] == [1]
    assert counter.attempts[(run, "thumbnail")][-1] == 2  # (attempt 1 may have begun it when it was killed)
    result = json.loads(st["result"])
    assert result == {"size": "32x24", "thumbnailSha256": _expected_thumbnail_sha(64, 48, 24), "frames": 24}
    logs = kubectl(cluster_env.kubeconfig, "logs", "-n", ns, f"{run}-2").stdout
    assert "cairn: run video-1 attempt 2: 2 steps already recorded" in logs, logs
    assert "steps executed in this attempt: thumbnail#0" in logs, logs


def test_a_typescript_parent_waits_on_a_python_child_and_a_python_parent_on_a_typescript_child(
    kube: Client, ns: str, counter: StepCounter
) -> None:
    make_task(kube, ns, "py-square", PY_SQUARE, counter=counter)
    make_task(kube, ns, "py-parent", PY_PARENT, counter=counter)
    make_node_task(kube, ns, "ts-square", "square", counter)
    make_node_task(kube, ns, "ts-parent", "parent", counter)
    create_run(kube, ns, "ts-parent", "ts-over-py", {"n": 7})
    create_run(kube, ns, "py-parent", "py-over-ts", {"n": 6})

    st = wait_phase(kube, ns, "ts-over-py", timeout=180)
    assert st["phase"] == "Succeeded", st
    result = json.loads(st["result"])
    assert result["child"] == {"square": 49, "by": "python"} and result["plusOne"] == 50
    child = result["childRun"]
    assert counter.count(child, "square") == 1
    # The parent held no pod while its child ran: one pod before the wait, another after it.
    assert len(pods_of(kube, ns, "ts-over-py")) == 2
    assert counter.count("ts-over-py", "before") == 1 and counter.count("ts-over-py", "after") == 1

    st = wait_phase(kube, ns, "py-over-ts", timeout=180)
    assert st["phase"] == "Succeeded", st
    assert json.loads(st["result"]) == {"child": {"square": 36, "by": "typescript"}, "plusOne": 37}
    assert counter.count("py-over-ts", "before") == 1 and counter.count("py-over-ts", "after") == 1
    kids = [run for (run, what) in counter.hits if what == "square" and run.startswith("py-over-ts")]
    assert len(kids) == 1 and counter.count(kids[0], "square") == 1, counter.hits


def test_a_wait_token_completed_by_the_cli_resumes_a_typescript_task(
    cluster_env: ClusterEnv, kube: Client, ns: str, counter: StepCounter
) -> None:
    make_node_task(kube, ns, "ts-approval", "approval", counter)
    create_run(kube, ns, "ts-approval", "deploy-ts")
    st = wait_phase(kube, ns, "deploy-ts", ("Waiting",), timeout=120)
    assert st["reason"] == "WaitingForToken", st
    logs = "".join(kube.log(pods_of(kube, ns, "deploy-ts")[0]["metadata"]["name"], namespace=ns))
    url = next(ln for ln in logs.splitlines() if ln.startswith("approve at ")).removeprefix("approve at ")
    assert "/v1/tokens/" in url, logs
    assert "this pod ends; the run resumes in a new pod when the wait is over" in logs, logs

    approved = cli(cluster_env, ns, "approve", "deploy-ts", "--data", '{"by": "cli"}')
    assert approved.code == 0, approved.err
    done = wait_phase(kube, ns, "deploy-ts", timeout=120)
    assert done["phase"] == "Succeeded", done
    assert json.loads(done["result"]) == {"acted": {"by": "cli"}}
    assert counter.count("deploy-ts", "ask") == 1 and counter.count("deploy-ts", "act") == 1
