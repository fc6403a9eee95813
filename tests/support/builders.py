"""Builders for the objects tests create (Kueue's MakeX().Y().Obj() style, as plain functions)."""

from __future__ import annotations

from typing import Any

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
from harness.kwok import NODE_SELECTOR, TOLERATION


def restricted_container_context() -> SecurityContext:
    return SecurityContext(allowPrivilegeEscalation=False, capabilities=Capabilities(drop=["ALL"]), runAsNonRoot=True)


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
                Toleration(key=t.get("key"), operator=t.get("operator"), value=t.get("value"), effect=t.get("effect"))
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


# -- Cairn resources, as plain dicts (what a user writes in YAML) -----------------------------------
EXAMPLES_IMAGE = "localhost/cairn-examples:0.1.0"


def task_body(
    name: str = "t", *, image: str = EXAMPLES_IMAGE, command: list[str] | None = None, **spec: object
) -> dict[str, object]:
    container: dict[str, object] = {"image": image, "imagePullPolicy": "Never"}
    if command:
        container["command"] = command
    return {
        "apiVersion": "cairn.dev/v1alpha1",
        "kind": "Task",
        "metadata": {"name": name},
        "spec": {"template": {"spec": {"containers": [container]}}, **spec},
    }


def simulated_task_body(
    name: str, *, fail_attempt: int | None = None, delay: str = "1s", **spec: object
) -> dict[str, object]:
    """A Task whose pods land on KWOK's simulated nodes and end `delay` after they start: with exit code
    1 in attempt `fail_attempt`, 0 otherwise (harness/kwok/cairn-pod-finish.yaml)."""
    annotations = {"kwok.cairn.dev/exit-code": "0", "kwok.cairn.dev/delay": delay}
    if fail_attempt is not None:
        annotations["kwok.cairn.dev/fail-attempt"] = str(fail_attempt)
    return {
        "apiVersion": "cairn.dev/v1alpha1",
        "kind": "Task",
        "metadata": {"name": name},
        "spec": {
            "template": {
                "metadata": {"labels": {"kwok.cairn.dev/finish": "true"}, "annotations": annotations},
                "spec": {
                    "containers": [{"name": "task", "image": "localhost/simulated:1"}],
                    "tolerations": [dict(TOLERATION)],
                    "nodeSelector": dict(NODE_SELECTOR),
                },
            },
            **spec,
        },
    }


def taskrun_body(name: str = "r", task: str = "t", *, payload: str | None = None, **spec: object) -> dict[str, object]:
    body_spec: dict[str, object] = {"taskRef": {"name": task}, **spec}
    if payload is not None:
        body_spec["payload"] = payload
    return {
        "apiVersion": "cairn.dev/v1alpha1",
        "kind": "TaskRun",
        "metadata": {"name": name},
        "spec": body_spec,
    }


def queue_body(name: str = "default", **spec: object) -> dict[str, object]:
    return {"apiVersion": "cairn.dev/v1alpha1", "kind": "Queue", "metadata": {"name": name}, "spec": spec}


def schedule_body(name: str, task: str, cron: str | list[str], **spec: object) -> dict[str, object]:
    return {
        "apiVersion": "cairn.dev/v1alpha1",
        "kind": "Schedule",
        "metadata": {"name": name},
        "spec": {"taskRef": {"name": task}, "cron": [cron] if isinstance(cron, str) else cron, **spec},
    }


def with_path(body: dict[str, object], path: str, value: object) -> dict[str, object]:
    """A copy of body with the dotted path set (list indexes as numbers: spec.template.spec.containers.0)."""
    import copy

    out = copy.deepcopy(body)
    node: Any = out
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return out
