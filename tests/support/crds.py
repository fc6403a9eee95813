"""Installing Cairn's CRDs into the test cluster (once per session)."""

from __future__ import annotations

from pathlib import Path

from harness import config
from tests.support.kube import kubectl, wait_for

CRDS = config.REPO / "crds"


def install_crds(kubeconfig: Path) -> None:
    kubectl(kubeconfig, "apply", "--server-side", "--force-conflicts", "-f", str(CRDS))
    for crd in (
        "tasks.cairn.dev",
        "taskruns.cairn.dev",
        "queues.cairn.dev",
        "schedules.cairn.dev",
        "tokencompletions.cairn.dev",
    ):

        def established(crd: str = crd) -> bool:
            jsonpath = "jsonpath={.status.conditions[?(@.type=='Established')].status}"
            return "True" in kubectl(kubeconfig, "get", "crd", crd, "-o", jsonpath).stdout

        wait_for(f"{crd} to be established", established)
