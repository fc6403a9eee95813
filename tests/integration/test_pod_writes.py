"""The operator's pod creates (k8s/writer.py over k8s/http.py's aiohttp client) against the real API
server: what each answer means to a reconciler, and the credentials a kubeconfig can carry."""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path
from typing import Any

import pytest
import yaml

from cairn.domain.podspec import RunRef, render_pod
from cairn.k8s.base import NamespaceTerminating, PodRejected
from cairn.k8s.client import Kube, load_config
from cairn.k8s.http import RequestFailed
from cairn.k8s.writer import ApiServerWriter
from tests.support.kube import kubectl, kubectl_json, wait_for
from tests.unit.builders import RUNTIME, task_spec


def _pod(namespace: str, name: str | None = None) -> dict[str, Any]:
    """The pod Cairn renders, kept from every node (nothing runs: only its creation is looked at)."""
    body = render_pod(RunRef(namespace, name or f"r-{secrets.token_hex(3)}", "uid-1", "t"), task_spec(), 1, RUNTIME)
    body["metadata"]["name"] = name or body["metadata"]["name"]
    body["metadata"].pop("ownerReferences", None)
    body["spec"]["nodeSelector"] = {"cairn.dev/test-no-such-node": "true"}
    return body


def _create(kubeconfig: Path, body: dict[str, Any]) -> bool:
    async def go() -> bool:
        kube = Kube(load_config(str(kubeconfig)))
        try:
            return await ApiServerWriter(kube).create_pod(body)
        finally:
            await kube.close()

    return asyncio.run(go())


def test_a_pod_create_makes_the_pod_once_and_a_second_create_of_that_name_is_a_harmless_no(
    crds: Path, namespace: str
) -> None:
    body = _pod(namespace)
    assert _create(crds, body) is True
    made = kubectl_json(crds, "get", "pod", "-n", namespace, body["metadata"]["name"])
    assert made["spec"]["containers"][0]["image"] == body["spec"]["containers"][0]["image"]  # type: ignore[index]
    assert _create(crds, body) is False  # AlreadyExists: a retry after a crash


def test_a_pod_the_api_server_refuses_raises_PodRejected_with_its_reason(crds: Path, namespace: str) -> None:
    invalid = _pod(namespace)
    invalid["spec"]["containers"][0]["name"] = "Not_A_DNS_Label"
    with pytest.raises(PodRejected, match="Not_A_DNS_Label"):
        _create(crds, invalid)
    privileged = _pod(namespace)
    privileged["spec"]["containers"][0]["securityContext"] = {"privileged": True}
    with pytest.raises(PodRejected, match="violates PodSecurity"):  # the namespace enforces "restricted"
        _create(crds, privileged)


def test_a_pod_in_a_namespace_being_deleted_raises_NamespaceTerminating(crds: Path) -> None:
    ns = f"ending-{secrets.token_hex(3)}"
    kubectl(crds, "create", "namespace", ns)
    hold = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "hold", "namespace": ns, "finalizers": ["cairn.dev/test-hold"]},
    }
    kubectl(crds, "create", "-f", "-", input=json.dumps(hold))
    kubectl(crds, "delete", "namespace", ns, "--wait=false")

    def terminating() -> bool | None:
        status = kubectl_json(crds, "get", "namespace", ns)["status"]
        return (isinstance(status, dict) and status.get("phase") == "Terminating") or None

    try:
        wait_for("the namespace to be terminating", terminating)
        with pytest.raises(NamespaceTerminating, match="being terminated"):
            _create(crds, _pod(ns))
    finally:
        kubectl(crds, "patch", "configmap", "hold", "-n", ns, "--type=merge", "-p", '{"metadata":{"finalizers":null}}')


def test_a_kubeconfig_with_a_token_file_authenticates_and_is_read_again_after_a_401(
    crds: Path, namespace: str, tmp_path: Path
) -> None:
    # A service account allowed to create pods here, and a kubeconfig that carries its token in a file
    # (as in a pod: the kubelet rotates that file, and a client reads it again when refused).
    kubectl(crds, "create", "serviceaccount", "creator", "-n", namespace)
    kubectl(crds, "create", "role", "creator", "-n", namespace, "--verb=create", "--resource=pods")
    kubectl(
        crds,
        "create",
        "rolebinding",
        "creator",
        "-n",
        namespace,
        "--role=creator",
        f"--serviceaccount={namespace}:creator",
    )
    token = kubectl(crds, "create", "token", "creator", "-n", namespace).stdout.strip()
    admin = yaml.safe_load(crds.read_text())
    token_file = tmp_path / "token"
    token_file.write_text("not-a-token")
    config = {
        **{k: admin[k] for k in ("apiVersion", "kind", "clusters")},
        "users": [{"name": "creator", "user": {"tokenFile": str(token_file)}}],
        "contexts": [{"name": "creator", "context": {"cluster": admin["clusters"][0]["name"], "user": "creator"}}],
        "current-context": "creator",
    }
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))

    async def go() -> None:
        kube = Kube(load_config(str(kubeconfig)))
        writer = ApiServerWriter(kube)
        try:
            with pytest.raises(RequestFailed, match="401"):  # refused, read again, still refused: said so
                await writer.create_pod(_pod(namespace))
            token_file.write_text(token)  # rotated
            assert await writer.create_pod(_pod(namespace, "made-with-the-new-token")) is True
        finally:
            await kube.close()

    asyncio.run(go())
    made = kubectl_json(crds, "get", "pod", "-n", namespace, "made-with-the-new-token")
    assert made["metadata"]["name"] == "made-with-the-new-token"  # type: ignore[index]
