"""Tokens as Kubernetes issues them (TokenRequest): a task pod's projected token, or an
application's service-account token."""

from __future__ import annotations

from typing import Any

from lightkube import Client
from lightkube.models.authentication_v1 import BoundObjectReference, TokenRequestSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.models.rbac_v1 import PolicyRule, RoleRef, Subject
from lightkube.resources.core_v1 import ServiceAccount
from lightkube.resources.rbac_authorization_v1 import Role, RoleBinding

from tests.support.kube import as_dict


def pod_token(kube: Client, pod: dict[str, Any], audience: str = "cairn.dev") -> str:
    """The token the kubelet would project into `pod` (bound to it, for `audience`)."""
    meta = pod["metadata"]
    sa = pod["spec"].get("serviceAccountName") or "default"
    request = ServiceAccount.Token(
        metadata=ObjectMeta(name=sa, namespace=meta["namespace"]),
        spec=TokenRequestSpec(
            audiences=[audience],
            expirationSeconds=3600,
            boundObjectRef=BoundObjectReference(kind="Pod", apiVersion="v1", name=meta["name"], uid=meta["uid"]),
        ),
    )
    answer = kube.create(request, name=sa, namespace=meta["namespace"])
    return str(as_dict(answer)["status"]["token"])


def service_account_token(
    kube: Client,
    namespace: str,
    name: str,
    *,
    verbs: list[str] | None = None,
    rules: list[PolicyRule] | None = None,
) -> str:
    """A service account (allowed `verbs` on taskruns in the namespace, and `rules`, if any) and a
    token for it."""
    kube.create(ServiceAccount(metadata=ObjectMeta(name=name, namespace=namespace)))
    granted = [PolicyRule(apiGroups=["cairn.dev"], resources=["taskruns"], verbs=verbs)] if verbs else []
    granted += rules or []
    if granted:
        kube.create(Role(metadata=ObjectMeta(name=name, namespace=namespace), rules=granted))
        kube.create(
            RoleBinding(
                metadata=ObjectMeta(name=name, namespace=namespace),
                roleRef=RoleRef(apiGroup="rbac.authorization.k8s.io", kind="Role", name=name),
                subjects=[Subject(kind="ServiceAccount", name=name, namespace=namespace)],
            )
        )
    answer = kube.create(
        ServiceAccount.Token(
            metadata=ObjectMeta(name=name, namespace=namespace),
            spec=TokenRequestSpec(audiences=[], expirationSeconds=3600),
        ),
        name=name,
        namespace=namespace,
    )
    return str(as_dict(answer)["status"]["token"])
