"""GitOps: a Task and a Queue kept in Git and synced the way Argo CD and Flux do it (server-side apply
under the tool's own field manager) show no drift after Cairn has run work through them. Cairn writes
status only, through the status subresource, under its own manager; it adds no annotations, labels or
finalizers; a re-sync changes nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from lightkube import Client

from tests.chart.release import Release
from tests.support.kube import kubectl, wait_for
from tests.support.runs import create_run, wait_phase

pytestmark = [pytest.mark.slow, pytest.mark.nodes]

OBJECTS = (("queue", "gitops"), ("task", "gitops-hello"))
MANAGER = "argocd-controller"  # what Argo CD's server-side sync uses; Flux uses kustomize-controller

MANIFESTS = """
apiVersion: cairn.dev/v1alpha1
kind: Queue
metadata:
  name: gitops
  labels: {app.kubernetes.io/part-of: shop}
  annotations: {team: payments}
spec:
  concurrencyLimit: 2
---
apiVersion: cairn.dev/v1alpha1
kind: Task
metadata:
  name: gitops-hello
  labels: {app.kubernetes.io/part-of: shop}
spec:
  queue: gitops
  template:
    spec:
      containers:
      - image: localhost/cairn-examples:0.1.0
        imagePullPolicy: IfNotPresent
        command: ["python3", "-m", "cairn.run", "examples.hello.hello:main"]
        resources:
          requests: {cpu: 10m, memory: 64Mi}
          limits: {memory: 128Mi}
  retry:
    maxAttempts: 2
"""


def _sync(release: Release, namespace: str) -> str:
    return kubectl(
        release.kubeconfig,
        "apply",
        "--server-side",
        f"--field-manager={MANAGER}",
        "-n",
        namespace,
        "-f",
        "-",
        input=MANIFESTS,
    ).stdout


def _get(release: Release, namespace: str, kind: str, name: str) -> dict[str, Any]:
    out = kubectl(release.kubeconfig, "get", kind, name, "-n", namespace, "-o", "json", "--show-managed-fields")
    data = json.loads(out.stdout)
    assert isinstance(data, dict)
    return data


def _owned(obj: dict[str, Any]) -> dict[tuple[str, str | None], set[str]]:
    """manager, subresource -> the top-level fields it owns."""
    return {(m["manager"], m.get("subresource")): set(m["fieldsV1"]) for m in obj["metadata"]["managedFields"]}


def _user_view(obj: dict[str, Any]) -> dict[str, Any]:
    """What a GitOps tool compares: the spec and the metadata a person writes."""
    meta = obj["metadata"]
    return {
        "spec": obj["spec"],
        "labels": meta.get("labels"),
        "annotations": meta.get("annotations"),
        "finalizers": meta.get("finalizers"),
        "ownerReferences": meta.get("ownerReferences"),
        "generation": meta["generation"],
    }


def test_task_and_queue_synced_by_gitops_show_no_drift_after_cairn_runs_them(kube: Client, release: Release) -> None:
    ns = release.workspace
    assert "serverside-applied" in _sync(release, ns)
    before = {kind: _get(release, ns, kind, name) for kind, name in OBJECTS}

    for run in ("gitops-1", "gitops-2"):
        create_run(kube, ns, "gitops-hello", run, payload={"name": run})
    for run in ("gitops-1", "gitops-2"):
        assert wait_phase(kube, ns, run, timeout=120)["phase"] == "Succeeded"

    def settled() -> bool | None:
        st = _get(release, ns, "queue", "gitops").get("status") or {}
        return (st.get("admittedTotal"), st.get("running", 0), st.get("queued", 0)) == (2, 0, 0) or None

    wait_for("the Queue's status to count both runs, finished", settled, timeout=30)

    after = {kind: _get(release, ns, kind, name) for kind, name in OBJECTS}
    for kind in after:
        assert _user_view(after[kind]) == _user_view(before[kind]), f"Cairn changed the {kind}'s spec or metadata"
        annotations = after[kind]["metadata"].get("annotations") or {}
        assert not [a for a in annotations if "kopf" in a or "cairn.dev" in a], annotations
        owned = _owned(after[kind])
        assert owned[(MANAGER, None)] >= {"f:spec", "f:metadata"}
        for (manager, subresource), fields in owned.items():
            if manager != MANAGER:
                assert subresource == "status" and fields == {"f:status"}, (kind, manager, subresource, fields)
    assert ("cairn-operator", "status") in _owned(after["queue"]), "Cairn should have written the Queue's status"

    # The GitOps tool's own diff sees nothing to do, and a re-sync writes nothing.
    for _ in range(3):
        seen = [_get(release, ns, kind, name)["metadata"]["resourceVersion"] for kind, name in OBJECTS]
        diff = kubectl(
            release.kubeconfig,
            "diff",
            "--server-side",
            f"--field-manager={MANAGER}",
            "-n",
            ns,
            "-f",
            "-",
            input=MANIFESTS,
            check=False,
        )
        # kubectl diff reads the live object and the would-be result separately: a status update in
        # between shows as a difference of status (Cairn's) and resourceVersion. Look again then.
        moved = seen != [_get(release, ns, kind, name)["metadata"]["resourceVersion"] for kind, name in OBJECTS]
        if diff.returncode == 0 or not moved:
            break
    assert diff.returncode == 0 and diff.stdout == "", f"drift:\n{diff.stdout}{diff.stderr}"
    versions = {kind: obj["metadata"]["resourceVersion"] for kind, obj in after.items()}
    _sync(release, ns)
    for kind, name in OBJECTS:
        assert _get(release, ns, kind, name)["metadata"]["resourceVersion"] == versions[kind], (
            f"a re-sync rewrote the {kind}"
        )

    # Runs created from code or kubectl are the same: Cairn touches their status only.
    for run in ("gitops-1", "gitops-2"):
        obj = _get(release, ns, "taskrun", run)
        assert not obj["metadata"].get("annotations") and not obj["metadata"].get("finalizers")
        for (manager, subresource), fields in _owned(obj).items():
            if manager == "cairn-operator":
                assert subresource == "status" and fields == {"f:status"}
