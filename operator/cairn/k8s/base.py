"""The writes the operator's reconcilers make to Kubernetes, as they see them (ApiServerWriter in
writer.py; an in-memory fake in tests). Each is idempotent: AlreadyExists and NotFound are success."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol


class PodRejected(Exception):
    """The API server refused the pod for good (invalid, or against the namespace's policy)."""


class NamespaceTerminating(Exception):
    """The namespace is being deleted: nothing new can be created in it."""


class KubeWriter(Protocol):
    async def create_pod(self, body: dict[str, Any]) -> bool:
        """Create the pod; False if it already existed. Raises PodRejected or NamespaceTerminating."""
        ...

    async def delete_pod(self, namespace: str, name: str, *, force: bool = False) -> None: ...
    async def annotate_pod(self, namespace: str, name: str, annotations: dict[str, str]) -> None:
        """Merge annotations into the pod's metadata; a pod that is gone is not an error."""
        ...

    async def patch_taskrun_status(self, namespace: str, name: str, patch: dict[str, Any]) -> bool:
        """Merge-patch the status subresource; False if the TaskRun is gone."""
        ...

    async def patch_queue_status(self, namespace: str, name: str, patch: dict[str, Any]) -> None: ...
    async def delete_taskrun(self, namespace: str, name: str) -> None: ...

    async def post_event(self, obj: dict[str, Any], type_: str, reason: str, message: str, now: datetime) -> None:
        """A core/v1 Event about `obj`; best effort (never raises)."""
        ...

    async def create_taskrun(self, body: dict[str, Any]) -> bool:
        """Create the TaskRun; False if one of that name exists already."""
        ...

    async def cancel_taskrun(self, namespace: str, name: str) -> None:
        """Set spec.cancel (a Schedule's own run, under overlapPolicy CancelPrevious)."""
        ...

    async def list_taskruns(self, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        """The TaskRuns with these labels, as the API server has them now."""
        ...

    async def patch_schedule_status(self, namespace: str, name: str, patch: dict[str, Any]) -> None: ...
    async def patch_token_completion_status(self, namespace: str, name: str, patch: dict[str, Any]) -> None: ...

    async def taskrun_exists(self, namespace: str, name: str, uid: str) -> bool:
        """Whether the TaskRun with this uid still exists (a new one of the same name does not count)."""
        ...
