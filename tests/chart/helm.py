"""Helm for the chart tests: the binary hack/build-tools.sh builds, with its own cache and config
directories (nothing of the user's ~/.config/helm is read or written), and the chart rendered into
plain dicts."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from harness import config

CHART = config.REPO / "charts" / "cairn"
RELEASE = "cairn"
NAMESPACE = "cairn-system"
_HOME = Path(tempfile.gettempdir()) / f"cairn-helm-home-{os.getuid()}"

Doc = dict[str, Any]


def helm_bin() -> Path:
    return config.tool_bin("helm", config.HELM_VERSION)


def helm(
    *args: str, kubeconfig: Path | None = None, check: bool = True, timeout: float = 300, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(_HOME),
        "HELM_CACHE_HOME": str(_HOME / "cache"),
        "HELM_CONFIG_HOME": str(_HOME / "config"),
        "HELM_DATA_HOME": str(_HOME / "data"),
    }
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    _HOME.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(
        [str(helm_bin()), *args], input=input, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    if check and res.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({res.returncode}):\n{res.stdout}{res.stderr}")
    return res


def values_yaml(values: dict[str, Any] | None) -> str:
    """Values for `helm ... -f -` (read from stdin)."""
    return yaml.safe_dump(values or {})


def render(
    values: dict[str, Any] | None = None,
    *,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    return helm("template", release, str(CHART), "-n", namespace, "-f", "-", input=values_yaml(values), check=check)


def template(values: dict[str, Any] | None = None, *, release: str = RELEASE, namespace: str = NAMESPACE) -> list[Doc]:
    """The rendered manifests (test hooks included), as dicts."""
    return [d for d in yaml.safe_load_all(render(values, release=release, namespace=namespace).stdout) if d]


def of_kind(docs: list[Doc], *kinds: str) -> list[Doc]:
    return [d for d in docs if d["kind"] in kinds]


def one(docs: list[Doc], kind: str, name: str) -> Doc:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}: {[d['metadata'] for d in found]}"
    return found[0]


def pod_specs(docs: list[Doc]) -> Iterator[tuple[str, Doc]]:
    """(what, pod spec) of every pod the manifests would run."""
    for d in docs:
        what = f"{d['kind']}/{d['metadata']['name']}"
        if d["kind"] == "Pod":
            yield what, d["spec"]
        elif d["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
            yield what, d["spec"]["template"]["spec"]
        elif d["kind"] == "CronJob":
            yield what, d["spec"]["jobTemplate"]["spec"]["template"]["spec"]
