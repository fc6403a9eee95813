"""A release of the chart on the test cluster: storage for the bundled PostgreSQL, namespaces that
enforce the restricted Pod Security Standard, helm install / upgrade / uninstall, and what a failing
test needs to see (pods, events, logs)."""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import yaml
from lightkube import ApiError, Client
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace, PersistentVolume
from lightkube.resources.storage_v1 import StorageClass

from tests.chart import docs
from tests.chart.helm import CHART, helm, values_yaml
from tests.support.kube import kubectl

POSTGRES_UID = 999
CRDS = ("tasks.cairn.dev", "taskruns.cairn.dev", "queues.cairn.dev", "schedules.cairn.dev")


def restricted_namespace(kube: Client, name: str) -> str:
    kube.create(
        Namespace(
            metadata=ObjectMeta(
                name=name,
                labels={"cairn.dev/test": "true", "pod-security.kubernetes.io/enforce": "restricted"},
            )
        )
    )
    return name


@dataclass
class Storage:
    """A StorageClass without a provisioner and one hostPath PersistentVolume of it, for the bundled
    PostgreSQL's claim. The harness's nodes share the machine's filesystem, so the volume works from
    either node; the directory belongs to PostgreSQL's uid, as a provisioner would arrange."""

    kube: Client
    directory: Path
    name: str = field(default_factory=lambda: f"cairn-chart-{secrets.token_hex(3)}")

    def create(self) -> Storage:
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chown(self.directory, POSTGRES_UID, POSTGRES_UID)
        self.directory.chmod(0o700)
        storage_class = {
            "metadata": {"name": self.name},
            "provisioner": "kubernetes.io/no-provisioner",
            "volumeBindingMode": "WaitForFirstConsumer",
            "reclaimPolicy": "Retain",
        }
        volume = {
            "metadata": {"name": self.name},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": self.name,
                "persistentVolumeReclaimPolicy": "Retain",
                "hostPath": {"path": str(self.directory), "type": "Directory"},
            },
        }
        self.kube.create(cast(StorageClass, StorageClass.from_dict(storage_class)))
        self.kube.create(cast(PersistentVolume, PersistentVolume.from_dict(volume)))
        return self

    def delete(self) -> None:
        for resource in (PersistentVolume, StorageClass):
            try:
                self.kube.delete(resource, self.name)
            except ApiError as e:
                if e.status.code != 404:
                    raise


@dataclass
class Release:
    kube: Client
    kubeconfig: Path
    namespace: str
    workspace: str  # where the tests' Tasks and TaskRuns live
    values: dict[str, Any]
    storage: str | None = None  # the PersistentVolume made for the bundled PostgreSQL, if any
    name: str = "cairn"
    installed: bool = False
    notes: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def fullname(self) -> str:
        return self.name if "cairn" in self.name else f"{self.name}-cairn"

    def helm(self, *args: str, check: bool = True, timeout: float = 300, input: str | None = None) -> str:
        res = helm(*args, kubeconfig=self.kubeconfig, check=check, timeout=timeout, input=input)
        return res.stdout + res.stderr

    def adopt_existing_crds(self) -> list[str]:
        """CRDs applied with kubectl before (e.g. by other suites from crds/) are handed to this release
        by the commands docs/helm.md gives ("CRDs installed with kubectl first"), run as written;
        otherwise Helm refuses to install over them."""
        present = [crd for crd in CRDS if kubectl(self.kubeconfig, "get", "crd", crd, check=False).returncode == 0]
        if present:
            assert present == list(CRDS), f"only some of Cairn's CRDs are installed: {present}"
            block = docs.sh_block("## CRDs installed with kubectl first")
            res = docs.run_shell(block, {"cairn-system": self.namespace}, self.kubeconfig)
            assert res.returncode == 0, f"docs/helm.md's CRD adoption failed:\n{res.stdout}{res.stderr}"
        return present

    def install(self, command: list[str]) -> str:
        """`helm install` as `command` gives it (docs/helm.md's), with the tests' values."""
        assert command[:3] == ["helm", "install", self.name] and "--wait" in command, command
        t0 = time.monotonic()
        out = self.helm(*command[1:], "-f", "-", "--timeout", "5m", input=values_yaml(self.values))
        self.installed = True
        self.timings["helm install --wait (s)"] = time.monotonic() - t0
        self.notes = out.split("NOTES:", 1)[-1]
        return out

    def upgrade(self, values: dict[str, Any]) -> str:
        t0 = time.monotonic()
        out = self.helm(
            "upgrade",
            self.name,
            str(CHART),
            "-n",
            self.namespace,
            "--reuse-values",
            "-f",
            "-",
            "--wait",
            "--timeout",
            "5m",
            input=values_yaml(values),
        )
        self.timings["helm upgrade --wait (s)"] = time.monotonic() - t0
        return out

    def uninstall(self) -> str:
        t0 = time.monotonic()
        out = self.helm("uninstall", self.name, "-n", self.namespace, "--wait", "--timeout", "3m")
        self.installed = False
        self.timings["helm uninstall --wait (s)"] = time.monotonic() - t0
        return out

    def user_values(self) -> dict[str, Any]:
        data = yaml.safe_load(self.helm("get", "values", self.name, "-n", self.namespace, "-o", "yaml"))
        return data if isinstance(data, dict) else {}

    def diagnostics(self) -> str:
        """What a failing test shows: pods, recent events, and the operator's and the API's logs."""
        parts = []
        for ns in (self.namespace, self.workspace):
            parts.append(kubectl(self.kubeconfig, "get", "pods", "-n", ns, "-o", "wide", check=False).stdout)
            events = kubectl(self.kubeconfig, "get", "events", "-n", ns, "--sort-by=.lastTimestamp", check=False)
            parts.append("\n".join(events.stdout.splitlines()[-25:]))
        for component in ("operator", "api"):
            logs = kubectl(
                self.kubeconfig,
                "logs",
                "-n",
                self.namespace,
                f"deployment/{self.fullname}-{component}",
                "--all-containers",
                "--tail=60",
                check=False,
            )
            parts.append(f"--- {component} ---\n{logs.stdout}{logs.stderr}")
        return "\n".join(parts)


def pods_in(kubeconfig: Path, namespace: str, selector: str) -> list[dict[str, Any]]:
    data = json.loads(kubectl(kubeconfig, "get", "pods", "-n", namespace, "-l", selector, "-o", "json").stdout)
    items: list[dict[str, Any]] = data["items"]
    return items


def wait_gone(kube: Client, namespace: str, timeout: float = 120) -> None:
    """Wait until a deleted namespace (and so everything in it) is gone."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            kube.get(Namespace, namespace)
        except ApiError as e:
            if e.status.code == 404:
                return
            raise
        time.sleep(0.5)
    raise AssertionError(f"namespace {namespace} still exists {timeout:.0f}s after its deletion")
