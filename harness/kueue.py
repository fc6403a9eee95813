"""Kueue, the real one, for tests that run Cairn inside a cluster's shared quotas: its controller built
from its Go module by hack/build-tools.sh (cached per version, like Kubernetes), its CRDs and webhook
configurations from the same module, the plain-pod integration on. Started on request only
(`Cluster.start_kueue()`, `python -m harness up --kueue`).

Kueue runs on the host, beside the control plane, as the cluster's admin; its webhooks listen on
127.0.0.1 with a certificate of the cluster's CA, and their configurations point there by URL (the
module's point to a Service in kueue-system, which does not exist here). Kueue reads its metrics
certificate from a path it hard-codes (/etc/kueue/metrics/certs): it runs in a mount namespace of its
own where the slot's certificate directory is mounted there, so that no slot writes into /etc.

The webhooks of workloads (pods, Jobs) see only objects that ask for a LocalQueue (the
`kueue.x-k8s.io/queue-name` label): every other pod or Job is created as if Kueue were not there,
and when Kueue stops its webhook configurations go with it, so that nothing waits on a webhook
that no longer answers.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness import config
from harness.controlplane import ControlPlane, free_port
from harness.hostdirs import HostDirs
from harness.procs import HarnessError, Proc

METRICS_CERTS = Path("/etc/kueue/metrics/certs")
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
WEBHOOK_CONFIGURATIONS = ("kueue-mutating-webhook-configuration", "kueue-validating-webhook-configuration")
MOUNTED_EXEC = 'mount --bind "$1" "$2"; shift 2; exec "$@"'


def module_dir() -> Path:
    """The Kueue module's source (its CRDs and webhook manifests), from the Go module cache."""
    gomodcache = os.environ.get("GOMODCACHE") or str(config.CACHE / "go" / "mod")
    path = Path(gomodcache) / f"sigs.k8s.io/kueue@{config.KUEUE_VERSION}"
    if not path.exists():
        out = subprocess.run(["go", "env", "GOMODCACHE"], capture_output=True, text=True, check=False).stdout.strip()
        path = Path(out) / f"sigs.k8s.io/kueue@{config.KUEUE_VERSION}"
    if not (path / "config" / "components" / "crd" / "bases").is_dir():
        raise HarnessError(f"Kueue's module is missing from the Go module cache ({path}): run hack/setup.sh")
    return path


def webhook_configurations(manifests: str, url: str, ca_bundle: bytes) -> list[dict[str, Any]]:
    """The module's webhook configurations, pointed at `url` by URL with `ca_bundle`; the webhooks of
    workloads (pods, Jobs...) narrowed to the objects that name a LocalQueue."""
    out = []
    for doc in yaml.safe_load_all(manifests):
        if not doc or doc.get("kind") not in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
            continue
        for hook in doc.get("webhooks") or []:
            path = hook["clientConfig"]["service"]["path"]
            hook["clientConfig"] = {"url": f"{url}{path}", "caBundle": base64.b64encode(ca_bundle).decode()}
            if not any("kueue.x-k8s.io" in (rule.get("apiGroups") or []) for rule in hook.get("rules") or []):
                hook["objectSelector"] = {"matchExpressions": [{"key": QUEUE_LABEL, "operator": "Exists"}]}
        doc["metadata"]["name"] = f"kueue-{doc['metadata']['name']}"  # the prefix Kueue's kustomization adds
        out.append(doc)
    names = sorted(d["metadata"]["name"] for d in out)
    if names != sorted(WEBHOOK_CONFIGURATIONS):
        raise HarnessError(f"Kueue's webhook manifests hold {names}, not {sorted(WEBHOOK_CONFIGURATIONS)}")
    return out


def crds(module: Path, url: str, ca_bundle: bytes) -> list[dict[str, Any]]:
    """The module's CRDs, with the conversion webhooks its kustomization patches in (by URL here)."""
    crd_dir = module / "config" / "components" / "crd"
    kustomization = yaml.safe_load((crd_dir / "kustomization.yaml").read_text())
    converted = set()
    for patch in kustomization.get("patches") or []:
        doc = yaml.safe_load((crd_dir / patch["path"]).read_text())
        if ((doc.get("spec") or {}).get("conversion") or {}).get("strategy") == "Webhook":
            converted.add(doc["metadata"]["name"])
    out = []
    for path in sorted((crd_dir / "bases").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        if doc["metadata"]["name"] in converted:
            doc["spec"]["conversion"] = {
                "strategy": "Webhook",
                "webhook": {
                    "clientConfig": {"url": f"{url}/convert", "caBundle": base64.b64encode(ca_bundle).decode()},
                    "conversionReviewVersions": ["v1"],
                },
            }
        out.append(doc)
    if not converted or len(out) < 5:
        raise HarnessError(f"Kueue's CRDs in {crd_dir} are not as expected ({len(out)} CRDs, {sorted(converted)})")
    return out


def manager_config(webhook_port: int, health_port: int, cert_dir: Path) -> dict[str, Any]:
    return {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "health": {"healthProbeBindAddress": f"127.0.0.1:{health_port}"},
        "metrics": {"bindAddress": "0"},  # no metrics server (its certificate is still read)
        "webhook": {"host": "127.0.0.1", "port": webhook_port, "certDir": str(cert_dir)},
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},
        "clientConnection": {"qps": 50, "burst": 100},
        # The visibility API (pending workloads) is an aggregated API server with a certificate of its own
        # at a hard-coded path; nothing here reads it.
        "featureGates": {"VisibilityOnDemand": False},
        # Plain pods (Cairn's) and Jobs (a preemptor in the tests); only pods that name a LocalQueue.
        "integrations": {"frameworks": ["pod", "batch/job"]},
        "manageJobsWithoutQueueName": False,
        "managedJobsNamespaceSelector": {
            "matchExpressions": [
                {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", "kueue-system"]}
            ]
        },
    }


@dataclass
class Kueue:
    cp: ControlPlane
    root: Path
    host_dirs: HostDirs
    proc: Proc | None = None

    def start(self) -> None:
        module = module_dir()
        home = self.root / "kueue"
        certs = home / "certs"
        certs.mkdir(parents=True, exist_ok=True)
        pair = self.cp.ca.issue("kueue-webhook", "kueue-webhook", ips=("127.0.0.1",), server=True, client=False)
        shutil.copyfile(pair.cert, certs / "tls.crt")
        shutil.copyfile(pair.key, certs / "tls.key")
        webhook_port, health_port = free_port(), free_port()
        cfg = home / "config.yaml"
        cfg.write_text(yaml.safe_dump(manager_config(webhook_port, health_port, certs)))
        url, ca = f"https://127.0.0.1:{webhook_port}", self.cp.ca.cert_path.read_bytes()
        self._apply(crds(module, url, ca), home / "crds.yaml")
        self._kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(home / "crds.yaml"))
        kubeconfig = self.cp.client_kubeconfig("kueue", "kueue-controller", org="system:masters")
        self.host_dirs.ensure([METRICS_CERTS])
        binary = config.tool_bin("kueue", config.KUEUE_VERSION)
        argv = ["unshare", "--mount", "--propagation", "slave", "--", "sh", "-c", MOUNTED_EXEC, "kueue"]
        self.proc = Proc(
            "kueue",
            [*argv, str(certs), str(METRICS_CERTS), str(binary), f"--config={cfg}"],
            self.root / "logs" / "kueue.log",
            env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        ).start()
        self.cp.procs.append(self.proc)
        proc = self.proc
        proc.wait_ready(lambda: _ok(f"http://127.0.0.1:{health_port}/readyz"), 120, "ready")
        manifests = (module / "config" / "components" / "webhook" / "manifests.yaml").read_text()
        self._apply(webhook_configurations(manifests, url, ca), home / "webhooks.yaml")

    def stop(self) -> None:
        if self.proc is None:
            return
        self._kubectl("delete", "--ignore-not-found", "mutatingwebhookconfiguration", WEBHOOK_CONFIGURATIONS[0])
        self._kubectl("delete", "--ignore-not-found", "validatingwebhookconfiguration", WEBHOOK_CONFIGURATIONS[1])
        self.proc.stop()
        if self.proc in self.cp.procs:
            self.cp.procs.remove(self.proc)
        self.proc = None

    def _apply(self, docs: list[dict[str, Any]], path: Path) -> None:
        path.write_text(yaml.safe_dump_all(docs))
        self._kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))

    def _kubectl(self, *args: str) -> str:
        done = subprocess.run(
            [str(config.kubectl()), f"--kubeconfig={self.cp.admin_kubeconfig}", *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise HarnessError(f"kubectl {' '.join(args[:3])}: {done.stderr.strip()[-2000:]}")
        return done.stdout


def _ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - our own loopback URL
            return bool(resp.status == 200)
    except OSError:
        return False
