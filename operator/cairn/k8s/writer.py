"""The operator's writes to the API server (the KubeWriter of k8s/base.py): create and delete pods,
patch status, post events, delete finished TaskRuns, each through the client's rate limit (status
patches as background requests: they yield to pods, and merge while they wait)."""

from __future__ import annotations

import logging
import secrets
from datetime import datetime
from typing import Any, cast

from lightkube import ApiError
from lightkube.resources.core_v1 import Event, Pod
from lightkube.types import PatchType

from cairn.domain.timefmt import format_time
from cairn.k8s.base import NamespaceTerminating, PodRejected
from cairn.k8s.client import Kube
from cairn.k8s.http import RequestFailed
from cairn.k8s.resources import QueueResource, ScheduleResource, TaskRunResource, TokenCompletionResource

log = logging.getLogger(__name__)
EVENT_MESSAGE_MAX = 1024


class ApiServerWriter:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    async def create_pod(self, body: dict[str, Any]) -> bool:
        """Create the pod; False if it already existed (a retry after a crash: harmless). A pod the API
        server will never accept raises PodRejected; other refusals (a full quota) are retried."""
        await self.kube.spend("create pods")
        namespace = body["metadata"]["namespace"]
        path = f"/api/v1/namespaces/{namespace}/pods"
        answer = await self.kube.json.post(path, body)
        if answer.status < 300:
            return True
        message = answer.message
        if answer.status == 409:
            return False
        if answer.status == 403 and "being terminated" in message:
            raise NamespaceTerminating(message)
        if answer.status in (400, 422) or (answer.status == 403 and "violates PodSecurity" in message):
            raise PodRejected(message)
        raise RequestFailed("POST", path, answer)

    async def delete_pod(self, namespace: str, name: str, *, force: bool = False) -> None:
        await self.kube.spend("delete pods")
        try:
            await self.kube.client.delete(Pod, name, namespace=namespace, grace_period=0 if force else None)
        except ApiError as e:
            if e.status.code != 404:
                raise

    async def annotate_pod(self, namespace: str, name: str, annotations: dict[str, str]) -> None:
        await self._merge_patch("patch pods", Pod, namespace, name, {"metadata": {"annotations": annotations}})

    async def patch_taskrun_status(self, namespace: str, name: str, patch: dict[str, Any]) -> bool:
        """Merge-patch the status subresource; False if the TaskRun is gone."""
        await self.kube.spend("patch taskruns/status", background=True)
        try:
            await self.kube.client.patch(
                TaskRunResource.Status, name, {"status": patch}, namespace=namespace, patch_type=PatchType.MERGE
            )
            return True
        except ApiError as e:
            if e.status.code == 404:
                return False
            raise

    async def _merge_patch(
        self, what: str, resource: Any, namespace: str, name: str, patch: dict[str, Any], *, background: bool = False
    ) -> None:
        """A merge patch; an object that is gone is not an error (there is nothing left to write to)."""
        await self.kube.spend(what, background=background)
        try:
            await self.kube.client.patch(resource, name, patch, namespace=namespace, patch_type=PatchType.MERGE)
        except ApiError as e:
            if e.status.code != 404:
                raise

    async def patch_queue_status(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        await self._merge_patch(
            "patch queues/status", QueueResource.Status, namespace, name, {"status": patch}, background=True
        )

    async def create_taskrun(self, body: dict[str, Any]) -> bool:
        await self.kube.spend("create taskruns")
        try:
            await self.kube.client.create(TaskRunResource.from_dict(body))
            return True
        except ApiError as e:
            if e.status.code == 409:
                return False
            raise

    async def cancel_taskrun(self, namespace: str, name: str) -> None:
        await self._merge_patch("patch taskruns", TaskRunResource, namespace, name, {"spec": {"cancel": True}})

    async def list_taskruns(self, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        await self.kube.spend("list taskruns")
        selector: dict[str, Any] = dict(labels)
        return [
            cast(dict[str, Any], obj.to_dict())  # type: ignore[no-untyped-call]
            async for obj in self.kube.client.list(TaskRunResource, namespace=namespace, labels=selector)
        ]

    async def patch_schedule_status(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        await self._merge_patch(
            "patch schedules/status", ScheduleResource.Status, namespace, name, {"status": patch}, background=True
        )

    async def patch_token_completion_status(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        await self._merge_patch(
            "patch tokencompletions/status",
            TokenCompletionResource.Status,
            namespace,
            name,
            {"status": patch},
            background=True,
        )

    async def delete_taskrun(self, namespace: str, name: str) -> None:
        await self.kube.spend("delete taskruns")
        try:
            await self.kube.client.delete(TaskRunResource, name, namespace=namespace)
        except ApiError as e:
            if e.status.code != 404:
                raise

    async def post_event(self, obj: dict[str, Any], type_: str, reason: str, message: str, now: datetime) -> None:
        """A core/v1 Event about `obj` (a TaskRun or Queue body). Events are best effort: a failure is
        logged, never raised, so it cannot fail a reconcile."""
        meta = obj.get("metadata", {})
        stamp = format_time(now)
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{meta.get('name')}.{secrets.token_hex(8)}", "namespace": meta.get("namespace")},
            "involvedObject": {
                "apiVersion": obj.get("apiVersion"),
                "kind": obj.get("kind"),
                "name": meta.get("name"),
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:EVENT_MESSAGE_MAX],
            "firstTimestamp": stamp[:19] + "Z",
            "lastTimestamp": stamp[:19] + "Z",
            "eventTime": None,
            "count": 1,
            "source": {"component": "cairn-operator"},
            "reportingComponent": "cairn-operator",
            "reportingInstance": "cairn-operator",
        }
        if not self.kube.spend_event():
            return
        try:
            await self.kube.client.create(cast(Event, Event.from_dict(event)))
        except Exception as e:  # noqa: BLE001 - an event is not worth failing a reconcile for
            log.warning("could not post event %s on %s/%s: %s", reason, meta.get("namespace"), meta.get("name"), e)

    async def taskrun_exists(self, namespace: str, name: str, uid: str) -> bool:
        """Whether the TaskRun with this uid still exists (a new one of the same name does not count)."""
        await self.kube.spend("get taskruns")
        try:
            obj = await self.kube.client.get(TaskRunResource, name, namespace=namespace)
        except ApiError as e:
            if e.status.code == 404:
                return False
            raise
        return bool(obj.metadata is not None and obj.metadata.uid == uid)
