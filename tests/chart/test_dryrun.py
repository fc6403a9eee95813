"""The rendered chart against the real kube-apiserver: `kubectl apply --server-side --dry-run=server`
of every object, in namespaces that enforce (and warn about) the restricted Pod Security Standard.

This is the schema check: kubeconform cannot be used here (its schemas are fetched from GitHub, which
the test machine does not reach), and the API server's own validation (OpenAPI schemas, CEL rules,
admission including PodSecurity) is the stricter check anyway. ServiceMonitors are the one exception:
their CRD (the Prometheus Operator's) is not installed here, so they are checked by test_render.py.
"""

from __future__ import annotations

import secrets
from typing import Any

import pytest
import yaml
from lightkube import Client
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace

from tests.chart.helm import template
from tests.support.env import ClusterEnv
from tests.support.kube import kubectl


def _namespace(kube: Client, stem: str) -> str:
    name = f"{stem}-{secrets.token_hex(3)}"
    labels = {
        "cairn.dev/test": "true",
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/warn": "restricted",
    }
    kube.create(Namespace(metadata=ObjectMeta(name=name, labels=labels)))
    return name


@pytest.mark.parametrize("mode", ["default", "namespaced", "external-db"])
def test_rendered_manifests_pass_server_side_dry_run(cluster_env: ClusterEnv, kube: Client, mode: str) -> None:
    release_ns = _namespace(kube, "cairn-dry")
    teams = [_namespace(kube, "cairn-dry-team") for _ in range(2)]
    choices: dict[str, dict[str, Any]] = {
        "default": {},
        "namespaced": {
            "watchNamespaces": teams,
            "networkPolicy": {"enabled": True, "tasks": {"namespaces": teams[:1]}},
            "tests": {"namespace": teams[1]},
            "metrics": {"grafanaDashboard": {"enabled": True}},
        },
        "external-db": {
            "postgresql": {"enabled": False},
            "database": {"existingSecret": "cairn-db"},
            "networkPolicy": {"enabled": True, "kubeAPI": {"cidrs": ["10.250.0.1/32"]}},
        },
    }
    values = choices[mode]
    try:
        docs = [d for d in template(values, namespace=release_ns) if d["kind"] != "ServiceMonitor"]
        # A Pod is admitted only if its ServiceAccount exists, and a dry run creates nothing: the
        # accounts are created for real first (in namespaces of this test's own).
        accounts = [d for d in docs if d["kind"] == "ServiceAccount"]
        kubectl(cluster_env.kubeconfig, "apply", "-f", "-", input=yaml.safe_dump_all(accounts))
        res = kubectl(
            cluster_env.kubeconfig,
            "apply",
            "--server-side",
            "--dry-run=server",
            "--force-conflicts",
            "--field-manager=cairn-chart-dry-run",
            "-f",
            "-",
            input=yaml.safe_dump_all(docs),
            check=False,
        )
        assert res.returncode == 0, res.stderr
        applied = [line for line in res.stdout.splitlines() if line.endswith("(server dry run)")]
        assert len(applied) == len(docs), res.stdout
        assert "would violate PodSecurity" not in res.stderr, res.stderr
        assert "Warning" not in res.stderr, res.stderr
    finally:
        for ns in (release_ns, *teams):
            kube.delete(Namespace, ns)
