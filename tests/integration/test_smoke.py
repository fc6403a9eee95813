"""The parts are real: an API server that stores and watches, a scheduler that binds, a garbage
collector that deletes, kubelets that run containers, a PostgreSQL that commits."""

from __future__ import annotations

import threading
import time

import psycopg
from lightkube import Client
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.core_v1 import (
    Capabilities,
    Container,
    PodSecurityContext,
    PodSpec,
    SeccompProfile,
    SecurityContext,
)
from lightkube.models.meta_v1 import ObjectMeta, OwnerReference
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.core_v1 import ConfigMap, Pod
from lightkube.types import PatchType

from harness import config
from harness.images import BUSYBOX
from tests.support.env import ClusterEnv
from tests.support.kube import as_dict, kubectl, kubectl_json, wait_for

WIDGET_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.smoke.cairn.dev}
spec:
  group: smoke.cairn.dev
  names: {kind: Widget, plural: widgets, singular: widget}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, properties: {size: {type: integer}}}
"""
Widget = create_namespaced_resource("smoke.cairn.dev", "v1", "Widget", "widgets")


def test_api_server_stores_custom_resources_and_watch_sees_them_change(
    cluster_env: ClusterEnv, kube: Client, namespace: str
) -> None:
    kubectl(cluster_env.kubeconfig, "apply", "-f", "-", input=WIDGET_CRD)
    wait_for(
        "the Widget CRD to be established",
        lambda: any(
            c["type"] == "Established" and c["status"] == "True"
            for c in as_dict(kube.get(CustomResourceDefinition, "widgets.smoke.cairn.dev"))["status"]["conditions"]
        ),
    )
    kube.create(Widget(metadata=ObjectMeta(name="w1", namespace=namespace), spec={"size": 1}))
    seen: list[int] = []

    def watch() -> None:
        for _op, obj in kube.watch(Widget, namespace=namespace, server_timeout=20):
            seen.append(obj.spec["size"])
            if obj.spec["size"] == 2:
                return

    watcher = threading.Thread(target=watch)
    watcher.start()
    time.sleep(0.5)
    kube.patch(Widget, "w1", {"spec": {"size": 2}}, namespace=namespace, patch_type=PatchType.MERGE)
    watcher.join(25)
    assert seen[-1] == 2, f"watch saw sizes {seen}"
    assert kube.get(Widget, "w1", namespace=namespace).spec == {"size": 2}


def test_scheduler_binds_a_pod_and_a_kubelet_runs_it(cluster_env: ClusterEnv, kube: Client, namespace: str) -> None:
    kube.create(
        Pod(
            metadata=ObjectMeta(name="hello", namespace=namespace),
            spec=PodSpec(
                restartPolicy="Never",
                containers=[
                    Container(
                        name="main",
                        image=BUSYBOX,
                        imagePullPolicy="Never",
                        command=["sh", "-c", "echo hello from a pod"],
                        securityContext=SecurityContext(
                            allowPrivilegeEscalation=False,
                            capabilities=Capabilities(drop=["ALL"]),
                        ),
                    )
                ],
                securityContext=PodSecurityContext(
                    runAsNonRoot=True, runAsUser=65532, seccompProfile=SeccompProfile(type="RuntimeDefault")
                ),
            ),
        )
    )
    pod = wait_for(
        "the pod to finish",
        lambda: (
            p
            if (p := as_dict(kube.get(Pod, "hello", namespace=namespace)))["status"]["phase"] in ("Succeeded", "Failed")
            else None
        ),
    )
    assert pod["spec"]["nodeName"] in ("node-1", "node-2")
    assert pod["status"]["phase"] == "Succeeded"
    logs = kubectl(cluster_env.kubeconfig, "logs", "-n", namespace, "hello").stdout
    assert logs == "hello from a pod\n"


def test_garbage_collector_deletes_the_children_of_a_deleted_owner(kube: Client, namespace: str) -> None:
    owner = kube.create(ConfigMap(metadata=ObjectMeta(name="owner", namespace=namespace), data={"a": "1"}))
    kube.create(
        ConfigMap(
            metadata=ObjectMeta(
                name="child",
                namespace=namespace,
                ownerReferences=[
                    OwnerReference(
                        apiVersion="v1",
                        kind="ConfigMap",
                        name="owner",
                        uid=as_dict(owner)["metadata"]["uid"],
                    )
                ],
            ),
            data={"b": "2"},
        )
    )
    kube.delete(ConfigMap, "owner", namespace=namespace)
    wait_for(
        "the garbage collector to delete the child",
        lambda: (
            not [cm for cm in kube.list(ConfigMap, namespace=namespace) if as_dict(cm)["metadata"]["name"] == "child"]
            or None
        ),
        timeout=60,
    )


def test_binaries_report_the_version_they_were_built_from(cluster_env: ClusterEnv) -> None:
    version = kubectl_json(cluster_env.kubeconfig, "version")
    assert version["serverVersion"]["gitVersion"] == config.K8S_VERSION  # type: ignore[index]
    assert version["clientVersion"]["gitVersion"] == config.K8S_VERSION  # type: ignore[index]
    if cluster_env.managed:
        # The real nodes' kubelets (KWOK's simulated nodes, added by other tests, report KWOK's version).
        nodes = kubectl_json(cluster_env.kubeconfig, "get", "nodes", "-l", "type!=kwok")
        kubelets = {n["status"]["nodeInfo"]["kubeletVersion"] for n in nodes["items"]}  # type: ignore[attr-defined]
        assert kubelets == {config.K8S_VERSION}


def test_postgres_commits_and_reads_back(pg: psycopg.Connection[tuple[object, ...]]) -> None:
    pg.execute("create table notes (id serial primary key, body text not null)")
    pg.execute("insert into notes (body) values (%s)", ("a cairn marks the trail",))
    row = pg.execute("select body, current_setting('listen_addresses') from notes").fetchone()
    assert row is not None
    assert row[0] == "a cairn marks the trail"
