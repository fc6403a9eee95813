"""The pod template of a Task: what a team may say about the pod that runs its task.

A deliberately curated subset of a Kubernetes PodTemplateSpec. Cairn sets what must not vary (restart
policy, the restricted security context, its runtime environment, the service-account token) and the
schema has no field for it, so a manifest that tries is rejected at `kubectl apply`. Volumes are limited
to the types the Pod Security Standard "restricted" allows.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from cairn.api.common import Model, cel, exactly_one

Quantity = int | str  # a Kubernetes resource quantity: 500m, 2, 1Gi


class SecretKeySelector(Model):
    """A key of a Secret in the TaskRun's namespace."""

    name: str = Field(description="The Secret's name.")
    key: str = Field(description="The key within the Secret.")
    optional: bool | None = Field(None, description="Start the pod even if the Secret or key is missing.")


class ConfigMapKeySelector(Model):
    """A key of a ConfigMap in the TaskRun's namespace."""

    name: str = Field(description="The ConfigMap's name.")
    key: str = Field(description="The key within the ConfigMap.")
    optional: bool | None = Field(None, description="Start the pod even if the ConfigMap or key is missing.")


class ObjectFieldSelector(Model):
    """A field of the pod itself (downward API), e.g. metadata.name or status.podIP."""

    field_path: str = Field(description="Path of the field, e.g. metadata.name.")
    api_version: str | None = Field(None, description="Version of the schema the path is written in (v1).")


class EnvVarSource(Model):
    """Where an environment variable's value comes from (exactly one source)."""

    model_config = cel(
        exactly_one("secretKeyRef", "configMapKeyRef", "fieldRef"),
        "set exactly one of secretKeyRef, configMapKeyRef, fieldRef",
    )
    secret_key_ref: SecretKeySelector | None = Field(None, description="A key of a Secret (e.g. an API token).")
    config_map_key_ref: ConfigMapKeySelector | None = Field(None, description="A key of a ConfigMap.")
    field_ref: ObjectFieldSelector | None = Field(None, description="A field of the pod (downward API).")


class EnvVar(Model):
    """An environment variable of the task's container."""

    model_config = cel(
        "!(has(self.value) && has(self.valueFrom))",
        "set value or valueFrom, not both",
        "!self.name.startsWith('CAIRN_')",
        "names starting with CAIRN_ are reserved for Cairn's runtime environment",
    )
    name: str = Field(description="Name of the variable.", min_length=1, max_length=256)

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if name.startswith("CAIRN_"):
            raise ValueError("names starting with CAIRN_ are reserved for Cairn's runtime environment")
        return name

    value: str | None = Field(None, description="A literal value.")
    value_from: EnvVarSource | None = Field(None, description="A value read from a Secret, ConfigMap or the pod.")


class EnvFromSource(Model):
    """All keys of a Secret or ConfigMap as environment variables."""

    prefix: str | None = Field(None, description="Prepended to every key.")
    secret_ref: dict[str, Any] | None = Field(None, description="The Secret: {name: ..., optional: ...}.")
    config_map_ref: dict[str, Any] | None = Field(None, description="The ConfigMap: {name: ..., optional: ...}.")


class ResourceRequirements(Model):
    """Compute resources of the task's container. `limits.memory` is what an OOM-retry raises."""

    limits: dict[str, Quantity] | None = Field(
        None, description="Most the container may use, e.g. {cpu: '1', memory: 512Mi}."
    )
    requests: dict[str, Quantity] | None = Field(
        None, description="What the scheduler reserves, e.g. {cpu: 250m, memory: 256Mi}."
    )


class VolumeMount(Model):
    """Where a volume appears in the container."""

    name: str = Field(description="The volume's name (one of template.spec.volumes).")
    mount_path: str = Field(description="Path in the container.")
    sub_path: str | None = Field(None, description="A path within the volume to mount instead of its root.")
    read_only: bool | None = Field(None, description="Mount read-only.")


class ContainerSecurity(Model):
    """The part of the container security context a task may choose. The rest is enforced by Cairn:
    no privilege escalation, all capabilities dropped, non-root, RuntimeDefault seccomp."""

    read_only_root_filesystem: bool | None = Field(None, description="Mount the container's root read-only.")


class Container(Model):
    """The container that runs the task (Cairn adds its runtime environment to it)."""

    name: str = Field("task", description="Container name. Defaults to task.")
    image: str = Field(
        description="The task's image, with an explicit tag or digest. A run keeps the image it started on.",
        min_length=1,
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = Field(
        None, description="When to pull the image: Always, IfNotPresent (default with a tag) or Never."
    )
    command: list[str] | None = Field(None, description="Entrypoint; the image's ENTRYPOINT when unset.")
    args: list[str] | None = Field(None, description="Arguments; the image's CMD when unset.")
    working_dir: str | None = Field(None, description="Working directory; the image's when unset.")
    env: list[EnvVar] | None = Field(
        None, max_length=256, description="Environment variables (values from Secrets welcome)."
    )
    env_from: list[EnvFromSource] | None = Field(
        None, max_length=32, description="Whole Secrets or ConfigMaps as variables."
    )
    resources: ResourceRequirements | None = Field(None, description="CPU and memory requests and limits.")
    volume_mounts: list[VolumeMount] | None = Field(None, max_length=64, description="Volumes to mount.")
    security_context: ContainerSecurity | None = Field(
        None, description="The choices a task has in its container security context."
    )


_VOLUME_SOURCES = [
    "configMap",
    "secret",
    "emptyDir",
    "persistentVolumeClaim",
    "projected",
    "downwardAPI",
    "csi",
    "ephemeral",
]


class Volume(Model):
    """A volume of a type the restricted Pod Security Standard allows (exactly one source)."""

    model_config = cel(
        "!has(self.hostPath)",
        "hostPath volumes are not allowed in task pods (Pod Security Standard restricted): use a "
        "persistentVolumeClaim or an emptyDir",
        # A hostPath volume has been refused above: saying "set exactly one source" too would contradict it.
        f"has(self.hostPath) || {exactly_one(*_VOLUME_SOURCES)}",
        "set exactly one volume source: " + ", ".join(_VOLUME_SOURCES),
    )
    name: str = Field(description="Name, referenced by volumeMounts.")
    config_map: dict[str, Any] | None = Field(None, description="A ConfigMap's keys as files (core/v1 schema).")
    secret: dict[str, Any] | None = Field(None, description="A Secret's keys as files (core/v1 schema).")
    empty_dir: dict[str, Any] | None = Field(None, description="Scratch space for the pod's life.")
    persistent_volume_claim: dict[str, Any] | None = Field(None, description="A PersistentVolumeClaim.")
    projected: dict[str, Any] | None = Field(None, description="Several sources in one directory.")
    downward_api: dict[str, Any] | None = Field(None, alias="downwardAPI", description="Pod fields as files.")
    csi: dict[str, Any] | None = Field(None, description="An inline CSI volume.")
    ephemeral: dict[str, Any] | None = Field(None, description="A generic ephemeral volume.")
    host_path: dict[str, Any] | None = Field(
        None,
        description="Not allowed: a task pod never mounts the node's filesystem. Listed to say so clearly.",
    )


class PodSecurity(Model):
    """The part of the pod security context a task may choose. Cairn always runs as non-root with the
    RuntimeDefault seccomp profile."""

    run_as_user: int | None = Field(None, ge=1, description="UID to run as (not 0). Defaults to the image's user.")
    run_as_group: int | None = Field(None, ge=1, description="GID to run as (not 0).")
    fs_group: int | None = Field(None, ge=1, description="Group that owns mounted volumes.")


class PodSpec(Model):
    """What a team may set on the pod of each attempt."""

    containers: list[Container] = Field(
        description="The task's container. Exactly one: Cairn runs one program per attempt.",
        min_length=1,
        max_length=1,
    )
    volumes: list[Volume] | None = Field(None, max_length=64, description="Volumes for the container's volumeMounts.")
    service_account_name: str | None = Field(
        None, description="Service account of the pod. Its Kubernetes token is not mounted unless asked."
    )
    automount_service_account_token: bool | None = Field(
        None,
        description="Mount the service account's Kubernetes API token. Default false: tasks do not need it.",
    )
    node_selector: dict[str, str] | None = Field(None, description="Node labels the pod must land on.")
    tolerations: list[dict[str, Any]] | None = Field(None, description="Taints the pod tolerates (core/v1).")
    affinity: dict[str, Any] | None = Field(None, description="Node and pod (anti-)affinity (core/v1).")
    priority_class_name: str | None = Field(None, description="Pod priority class (scheduling priority).")
    image_pull_secrets: list[dict[str, str]] | None = Field(None, description="Secrets for pulling the image.")
    termination_grace_period_seconds: int | None = Field(
        None, ge=0, description="Seconds between SIGTERM and SIGKILL when an attempt is stopped (default 30)."
    )
    security_context: PodSecurity | None = Field(None, description="User and groups the pod runs as.")
    runtime_class_name: str | None = Field(None, description="RuntimeClass (e.g. a sandboxed runtime).")


class PodTemplateMeta(Model):
    """Labels and annotations for the pods (Cairn adds its own under cairn.dev/)."""

    labels: dict[str, str] | None = Field(None, description="Labels added to each attempt's pod.")
    annotations: dict[str, str] | None = Field(None, description="Annotations added to each attempt's pod.")


class PodTemplate(Model):
    """The pod that runs each attempt, as in a batch/v1 Job's template."""

    metadata: PodTemplateMeta | None = Field(None, description="Labels and annotations for the pods.")
    spec: PodSpec = Field(description="The pod's specification.")
