"""The examples in examples/, applied as a user would and run on the real cluster, each interrupted
halfway to show it resume: hello, the crash-and-resume demo, an agent with model and tool calls
against a fake model, and a media pipeline with its files on a volume."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import yaml
from lightkube import Client
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap, PersistentVolume

from examples.agent.fake_model import FakeModel
from harness import config
from tests.e2e.test_cli import cli
from tests.support.env import ClusterEnv
from tests.support.kube import kubectl, wait_for
from tests.support.runs import pods_of, wait_phase, wait_steps

EXAMPLES = config.REPO / "examples"


def _apply(env: ClusterEnv, ns: str, *files: str, patch: dict[str, Any] | None = None) -> None:
    for name in files:
        docs = list(yaml.safe_load_all((EXAMPLES / name).read_text()))
        for doc in docs:
            if patch and doc["kind"] in patch:
                doc = _merge(doc, patch[doc["kind"]])
            verb = "create" if "generateName" in doc["metadata"] else "apply"
            kubectl(env.kubeconfig, verb, "-n", ns, "-f", "-", input=json.dumps(doc))


def _merge(doc: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(doc)
    for key, value in extra.items():
        out[key] = _merge(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def _the_run(env: ClusterEnv, ns: str, prefix: str) -> str:
    names = kubectl(env.kubeconfig, "get", "taskruns", "-n", ns, "-o", "name").stdout.split()
    found = [n.split("/")[1] for n in names if n.split("/")[1].startswith(prefix)]
    assert len(found) == 1, names
    return found[0]


def _kill(env: ClusterEnv, kube: Client, ns: str, run: str) -> None:
    pod = next(p for p in pods_of(kube, ns, run) if p["status"].get("phase") == "Running")
    env.require_harness().node(pod["spec"]["nodeName"]).kill_container(
        pod["status"]["containerStatuses"][0]["containerID"]
    )


def _by_attempt(status: dict[str, Any]) -> dict[str, int]:
    return {s["key"]: s["attempt"] for s in status["steps"]}


def test_the_hello_example_runs_its_three_steps(cluster_env: ClusterEnv, kube: Client, ns: str) -> None:
    _apply(cluster_env, ns, "hello/task.yaml", "hello/taskrun.yaml")
    st = wait_phase(kube, ns, _the_run(cluster_env, ns, "hello-"))
    assert st["phase"] == "Succeeded"
    assert json.loads(st["result"])["greeting"] == "hello, cairn"
    assert [s["key"] for s in st["steps"]] == ["greet#0", "count#0", "stamp#0"]


def test_the_demo_resumes_at_step_four_after_its_pod_is_killed(cluster_env: ClusterEnv, kube: Client, ns: str) -> None:
    _apply(cluster_env, ns, "demo/task.yaml", "demo/taskrun.yaml")
    wait_steps(kube, ns, "demo-1", 3)
    _kill(cluster_env, kube, ns, "demo-1")
    st = wait_phase(kube, ns, "demo-1", timeout=120)
    assert st["phase"] == "Succeeded"
    assert _by_attempt(st) == {"process#0": 1, "process#1": 1, "process#2": 1, "process#3": 2, "process#4": 2}
    logs = kubectl(cluster_env.kubeconfig, "logs", "-n", ns, "demo-1-2").stdout
    assert "steps already recorded: ['process#0', 'process#1', 'process#2']" in logs


@pytest.fixture
def fake_model(cluster_env: ClusterEnv) -> Iterator[tuple[FakeModel, str]]:
    model = FakeModel(delay=1.5)
    server = model.serve(cluster_env.host_ip, 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield model, f"http://{cluster_env.host_ip}:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_agent_never_pays_twice_for_a_recorded_model_or_tool_call(
    cluster_env: ClusterEnv, kube: Client, ns: str, fake_model: tuple[FakeModel, str]
) -> None:
    model, url = fake_model
    kube.create(ConfigMap(metadata=ObjectMeta(name="agent-config", namespace=ns), data={"model-url": url}))
    _apply(cluster_env, ns, "agent/task.yaml", "agent/taskrun.yaml")
    run = _the_run(cluster_env, ns, "research-")
    wait_steps(kube, ns, run, 2)  # the plan and the first tool call are recorded
    _kill(cluster_env, kube, ns, run)
    st = wait_phase(kube, ns, run, timeout=120)
    assert st["phase"] == "Succeeded", st
    result = json.loads(st["result"])
    assert result == {"answer": "Kinshasa grew fastest, by 53.4483% in ten years.", "tool_calls": 2}
    by_attempt = _by_attempt(st)
    assert by_attempt["plan#0"] == by_attempt["tool#0"] == 1 and by_attempt["answer#0"] == 2
    # Calls recorded before the kill are replayed, not paid for again.
    assert model.calls["plan"] == 1
    assert model.calls["search"] == 1
    # The answer was asked for once, or twice if attempt 1 was asking when it died (at least once):
    # then both requests carried the same idempotency key, for the model gateway to deduplicate.
    assert model.calls["answer"] in (1, 2)
    repeated = {k for k in model.keys if model.keys.count(k) > 1}
    assert all(k.endswith(":answer#0") for k in repeated), repeated


def test_the_agent_asks_a_person_before_it_acts_and_goes_on_when_approved_by_the_cli_or_by_its_url(
    cluster_env: ClusterEnv, kube: Client, ns: str, fake_model: tuple[FakeModel, str]
) -> None:
    model, url = fake_model
    kube.create(ConfigMap(metadata=ObjectMeta(name="agent-config", namespace=ns), data={"model-url": url}))
    _apply(cluster_env, ns, "agent/task.yaml", "agent/taskrun-approval.yaml", "agent/taskrun-approval.yaml")
    names = kubectl(cluster_env.kubeconfig, "get", "taskruns", "-n", ns, "-o", "name").stdout.split()
    runs = sorted(n.split("/")[1] for n in names)
    assert len(runs) == 2, names
    for run in runs:
        st = wait_phase(kube, ns, run, ("Waiting",), timeout=120)
        assert st["reason"] == "WaitingForToken", st
    assert model.calls["search"] == 0  # nothing done before the approval
    by_cli, by_url = runs
    approved = cli(cluster_env, ns, "approve", by_cli)
    assert approved.code == 0, approved.err
    pod = pods_of(kube, ns, by_url)[0]["metadata"]["name"]
    log = "".join(kube.log(pod, namespace=ns))
    line = next(ln for ln in log.splitlines() if ln.startswith("approve with: "))
    token_url = line.rsplit(" ", 1)[1]
    answer = httpx.post(token_url, json={"approved": True}, timeout=10)
    assert answer.status_code == 200, answer.text
    for run in runs:
        st = wait_phase(kube, ns, run, timeout=120)
        assert st["phase"] == "Succeeded", st
        assert json.loads(st["result"]) == {
            "answer": "Kinshasa grew fastest, by 53.4483% in ten years.",
            "tool_calls": 2,
        }
        assert [a["reason"] for a in st["attempts"]] == ["Suspended", "Completed"]
    assert model.calls["plan"] == 2 and model.calls["search"] == 2  # once per run: replayed, not paid again


@pytest.fixture
def media_volume(kube: Client, ns: str) -> Iterator[Path]:
    """A hostPath PersistentVolume (both nodes share the host's disk) bound by the example's claim."""
    root = Path(f"/tmp/cairn-media-{ns}")
    root.mkdir(mode=0o777)
    os.chown(root, 65532, 65532)
    pv = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": f"media-{ns}"},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteMany"],
            "storageClassName": "",
            "persistentVolumeReclaimPolicy": "Retain",
            "hostPath": {"path": str(root)},
            "claimRef": {"namespace": ns, "name": "media-work"},
        },
    }
    kube.create(cast(PersistentVolume, PersistentVolume.from_dict(pv)))
    yield root
    kube.delete(PersistentVolume, f"media-{ns}")
    shutil.rmtree(root, ignore_errors=True)


def test_the_media_pipeline_keeps_its_files_on_the_volume_across_attempts(
    cluster_env: ClusterEnv, kube: Client, ns: str, media_volume: Path
) -> None:
    frames = bytes((i * 13) % 256 for i in range(64 * 48 * 24))

    class Source(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(frames)))
            self.end_headers()
            self.wfile.write(frames)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((cluster_env.host_ip, 0), Source)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = [
            {"name": "MEDIA_DIR", "value": "/work"},
            {"name": "MEDIA_STEP_SECONDS", "value": "2"},
            {"name": "MEDIA_SOURCE_URL", "value": f"http://{cluster_env.host_ip}:{server.server_address[1]}"},
        ]
        patch = {
            "Task": {
                "spec": {
                    "template": {
                        "spec": {
                            "containers": [
                                {
                                    **yaml.safe_load((EXAMPLES / "media/task.yaml").read_text())["spec"]["template"][
                                        "spec"
                                    ]["containers"][0],
                                    "env": env,
                                }
                            ]
                        }
                    }
                }
            }
        }
        _apply(cluster_env, ns, "media/pvc.yaml", "media/queue.yaml", "media/task.yaml", patch=patch)
        wait_for(
            "the claim to bind",
            lambda: (
                "Bound"
                in kubectl(
                    cluster_env.kubeconfig, "get", "pvc", "media-work", "-n", ns, "-o", "jsonpath={.status.phase}"
                ).stdout
            ),
        )
        _apply(cluster_env, ns, "media/taskrun.yaml")
        run = _the_run(cluster_env, ns, "media-")
        wait_steps(kube, ns, run, 2)  # downloaded and transcoded
        _kill(cluster_env, kube, ns, run)
        st = wait_phase(kube, ns, run, timeout=120)
    finally:
        server.shutdown()
        server.server_close()
    assert st["phase"] == "Succeeded", st
    assert _by_attempt(st) == {"download#0": 1, "transcode#0": 1, "thumbnail#0": 2}
    uid = kubectl(cluster_env.kubeconfig, "get", "taskrun", run, "-n", ns, "-o", "jsonpath={.metadata.uid}").stdout
    thumb = (media_volume / uid / "thumb.pgm").read_bytes()
    assert thumb.startswith(b"P5 32 24 255\n") and len(thumb) == len(b"P5 32 24 255\n") + 32 * 24
    assert thumb[len(b"P5 32 24 255\n") :] == bytes(
        frames[y * 64 + x] for y in range(0, 48, 2) for x in range(0, 64, 2)
    )
    assert json.loads(st["result"])["size"] == "32x24"


def test_the_media_pipeline_fans_out_three_renditions_as_child_runs_then_makes_the_thumbnail(
    cluster_env: ClusterEnv, kube: Client, ns: str, media_volume: Path
) -> None:
    _apply(cluster_env, ns, "media/pvc.yaml", "media/queue.yaml", "media/task.yaml", "media/rendition-task.yaml")
    wait_for(
        "the claim to bind",
        lambda: (
            "Bound"
            in kubectl(
                cluster_env.kubeconfig, "get", "pvc", "media-work", "-n", ns, "-o", "jsonpath={.status.phase}"
            ).stdout
        ),
    )
    _apply(cluster_env, ns, "media/taskrun-renditions.yaml")
    run = _the_run(cluster_env, ns, "media-fan-")
    st = wait_phase(kube, ns, run, timeout=240)
    assert st["phase"] == "Succeeded", st
    result = json.loads(st["result"])
    assert result["renditions"] == ["32x24", "16x12", "8x6"]
    assert [a["reason"] for a in st["attempts"]] == ["Suspended", "Completed"]
    children = kubectl(
        cluster_env.kubeconfig, "get", "taskruns", "-n", ns, "-l", f"cairn.dev/parent={run}", "-o", "name"
    ).stdout.split()
    assert len(children) == 3, children
    uid = kubectl(cluster_env.kubeconfig, "get", "taskrun", run, "-n", ns, "-o", "jsonpath={.metadata.uid}").stdout
    source = (media_volume / uid / "source.raw").read_bytes()
    thumb = (media_volume / uid / "thumb.pgm").read_bytes()
    header = b"P5 8 6 255\n"
    assert thumb == header + bytes(source[y * 64 + x] for y in range(0, 48, 8) for x in range(0, 64, 8))
