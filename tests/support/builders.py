"""Builders for the objects tests create (Kueue's MakeX().Y().Obj() style, as plain functions)."""

from __future__ import annotations

from lightkube.models.core_v1 import (
    Capabilities,
    Container,
    ContainerPort,
    PodSecurityContext,
    PodSpec,
    ResourceRequirements,
    SeccompProfile,
    SecurityContext,
    ServicePort,
    ServiceSpec,
    Toleration,
)
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Pod, Service

from harness.images import BUSYBOX


def restricted_container_context() -> SecurityContext:
    return SecurityContext(
        allowPrivilegeEscalation=False, capabilities=Capabilities(drop=["ALL"]), runAsNonRoot=True
    )


def restricted_pod_context() -> PodSecurityContext:
    return PodSecurityContext(
        runAsNonRoot=True,
        runAsUser=65532,
        runAsGroup=65532,
        seccompProfile=SeccompProfile(type="RuntimeDefault"),
    )


def pod(
    name: str,
    namespace: str,
    command: list[str],
    *,
    image: str = BUSYBOX,
    memory_limit: str | None = None,
    node: str | None = None,
    labels: dict[str, str] | None = None,
    port: int | None = None,
    grace: int | None = None,
    annotations: dict[str, str] | None = None,
    tolerations: list[dict[str, str]] | None = None,
    node_selector: dict[str, str] | None = None,
) -> Pod:
    resources = (
        ResourceRequirements(limits={"memory": memory_limit}, requests={"memory": memory_limit})
        if memory_limit
        else None
    )
    return Pod(
        metadata=ObjectMeta(name=name, namespace=namespace, labels=labels, annotations=annotations),
        spec=PodSpec(
            restartPolicy="Never",
            tolerations=[
                Toleration(
                    key=t.get("key"), operator=t.get("operator"), value=t.get("value"), effect=t.get("effect")
                )
                for t in tolerations
            ]
            if tolerations
            else None,
            nodeSelector=node_selector,
            nodeName=node,
            terminationGracePeriodSeconds=grace,
            securityContext=restricted_pod_context(),
            automountServiceAccountToken=False,
            enableServiceLinks=False,
            containers=[
                Container(
                    name="main",
                    image=image,
                    imagePullPolicy="Never",
                    command=command,
                    resources=resources,
                    securityContext=restricted_container_context(),
                    ports=[ContainerPort(containerPort=port)] if port else None,
                )
            ],
        ),
    )


def service(name: str, namespace: str, selector: dict[str, str], port: int, target_port: int) -> Service:
    return Service(
        metadata=ObjectMeta(name=name, namespace=namespace),
        spec=ServiceSpec(selector=selector, ports=[ServicePort(port=port, targetPort=target_port)]),
    )
