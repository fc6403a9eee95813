"""Simulated nodes (KWOK) for scale tests and benchmarks: thousands of pods, no containers.

Fake nodes carry the taint `kwok.x-k8s.io/node=fake:NoSchedule` and the label `type=kwok`, so real
workloads never land on them. A pod meant for them tolerates the taint, selects `type: kwok`, and
says how it ends with the `cairn-pod-finish` stage (see cairn-pod-finish.yaml):

    labels:      {kwok.cairn.dev/finish: "true"}
    annotations: {kwok.cairn.dev/exit-code: "3", kwok.cairn.dev/delay: "500ms"}

KWOK's own stages (pod-ready, pod-delete, node-initialize, node heartbeats) come from its Go module.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from harness import config
from harness.controlplane import ControlPlane, api_request, free_port
from harness.procs import HarnessError, Proc

HERE = Path(__file__).resolve().parent
TAINT = {"key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule"}
TOLERATION = {"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}
NODE_SELECTOR = {"type": "kwok"}
UPSTREAM_STAGES = [
    "pod/fast/pod-ready.yaml",
    "pod/fast/pod-complete.yaml",
    "pod/fast/pod-delete.yaml",
    "node/fast/node-initialize.yaml",
    "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
]


def _stages_dir() -> Path:
    gomodcache = os.environ.get("GOMODCACHE") or str(config.CACHE / "go" / "mod")
    path = Path(gomodcache) / f"sigs.k8s.io/kwok@{config.KWOK_VERSION}" / "kustomize" / "stage"
    if not path.exists():
        out = subprocess.run(["go", "env", "GOMODCACHE"], capture_output=True, text=True, check=False).stdout.strip()
        path = Path(out) / f"sigs.k8s.io/kwok@{config.KWOK_VERSION}" / "kustomize" / "stage"
    if not path.exists():
        raise HarnessError(f"KWOK's stages are missing from the Go module cache ({path}): run hack/setup.sh")
    return path


@dataclass
class Kwok:
    cp: ControlPlane
    root: Path
    nodes: list[str] = field(default_factory=list)
    proc: Proc | None = None

    def start(self) -> None:
        stages = _stages_dir()
        config_path = self.root / "kwok.yaml"
        docs = [(stages / s).read_text() for s in UPSTREAM_STAGES]
        docs.append((HERE / "cairn-pod-finish.yaml").read_text())
        config_path.write_text("\n---\n".join(docs))
        kubeconfig = self.cp.client_kubeconfig("kwok", "kwok-controller", org="system:masters")
        port = free_port()
        self.proc = Proc(
            "kwok",
            [
                str(config.tool_bin("kwok", config.KWOK_VERSION)),
                f"--kubeconfig={kubeconfig}",
                f"--config={config_path}",
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                f"--cidr=10.{200 + self.cp.slot.index}.200.1/24",
                "--node-ip=10.250.255.254",
                f"--server-address=127.0.0.1:{port}",
                "--node-lease-duration-seconds=8",
            ],
            self.root / "logs" / "kwok.log",
        ).start()
        self.cp.procs.append(self.proc)

    def add_nodes(self, count: int, *, pods: int = 1100) -> list[str]:
        """Create `count` fake nodes and wait until KWOK reports them Ready."""
        if self.proc is None:
            self.start()
        names = []
        for _ in range(count):
            name = f"kwok-{len(self.nodes) + 1}"
            capacity = {"cpu": "1000", "memory": "4Ti", "pods": str(pods)}
            api_request(
                self.cp,
                "/api/v1/nodes",
                "POST",
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": name,
                        "annotations": {"kwok.x-k8s.io/node": "fake"},
                        "labels": {
                            "type": "kwok",
                            "kubernetes.io/hostname": name,
                            "cairn.dev/simulated": "true",
                        },
                    },
                    "spec": {"taints": [TAINT]},
                    "status": {"allocatable": capacity, "capacity": capacity},
                },
            )
            self.nodes.append(name)
            names.append(name)
        assert self.proc is not None
        self.proc.wait_ready(lambda: all(self._ready(n) for n in names), 60, "reporting its nodes Ready")
        return names

    def _ready(self, name: str) -> bool:
        node = api_request(self.cp, f"/api/v1/nodes/{name}")
        assert isinstance(node, dict)
        return any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions", []))
