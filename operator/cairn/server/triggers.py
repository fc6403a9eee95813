"""The trigger API, for applications that start runs from code: POST a run of a task (with an
idempotency key, so a retried request never makes two runs) and GET its status and result."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from aiohttp import web
from lightkube import ApiError as KubeError
from lightkube import AsyncClient
from pydantic import BaseModel, ConfigDict, Field

from cairn import metrics
from cairn.api.common import PAYLOAD_MAX_BYTES
from cairn.api.task import DEFAULT_QUEUE
from cairn.k8s.resources import QueueResource, TaskResource, TaskRunResource
from cairn.server.access import Access
from cairn.server.checkpoints import _parse, storable
from cairn.server.errors import ApiError, bad_request, json_response, not_found, too_large
from cairn.store.postgres import PostgresStore

IDEMPOTENCY_ANNOTATION = "cairn.dev/idempotency-key"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class TriggerRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    task: str = Field(min_length=1, max_length=253)
    payload: Any = None
    priority: int = Field(0, ge=-1000, le=1000)
    concurrency_key: str | None = Field(None, alias="concurrencyKey", min_length=1, max_length=128)
    queue: str | None = Field(None, min_length=1, max_length=253)
    idempotency_key: str | None = Field(None, alias="idempotencyKey", min_length=1, max_length=256)
    name: str | None = Field(None, min_length=1, max_length=63)


def run_name(namespace: str, req: TriggerRequest) -> str | None:
    """The TaskRun's name: chosen by the caller, derived from the idempotency key (so that the API
    server itself refuses a second run for the same key), or generated."""
    if req.name:
        return req.name
    if req.idempotency_key:
        digest = hashlib.sha256(f"{namespace}\0{req.task}\0{req.idempotency_key}".encode()).hexdigest()[:12]
        return f"{req.task[:50].rstrip('-.')}-{digest}"
    return None


def _body(obj: Any) -> dict[str, Any]:
    body: dict[str, Any] = obj.to_dict()
    return body


def summary(obj: dict[str, Any], result: Any = None, result_known: bool = False) -> dict[str, Any]:
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    doc: dict[str, Any] = {
        "namespace": meta.get("namespace"),
        "name": meta["name"],
        "uid": meta.get("uid"),
        "task": spec.get("taskRef", {}).get("name"),
        "phase": status.get("phase") or "Pending",
        "reason": status.get("reason"),
        "message": status.get("message"),
        "attempt": status.get("attempt", 0),
        "stepsCompleted": (status.get("progress") or {}).get("stepsCompleted", 0),
        "idempotencyKey": (meta.get("annotations") or {}).get(IDEMPOTENCY_ANNOTATION),
        "createdAt": meta.get("creationTimestamp"),
        "completedAt": status.get("completionTime"),
    }
    if result_known:
        doc["result"] = result
    return doc


class Triggers:
    def __init__(self, kube: AsyncClient, access: Access, store: PostgresStore) -> None:
        self.kube = kube
        self.access = access
        self.store = store

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/namespaces/{namespace}/taskruns", self.trigger),
            web.get("/v1/namespaces/{namespace}/taskruns/{name}", self.get),
        ]

    @staticmethod
    def _namespace(request: web.Request) -> str:
        namespace = request.match_info["namespace"]
        if len(namespace) > 63 or not _DNS_LABEL.match(namespace):
            raise bad_request(f"{namespace!r} is not a namespace name")
        return namespace

    async def trigger(self, request: web.Request) -> web.Response:
        namespace = self._namespace(request)
        await self.access.check(request.headers.get("Authorization"), "create", namespace)
        req: TriggerRequest = await _parse(request, TriggerRequest)  # type: ignore[arg-type]
        payload = None if req.payload is None else storable(req.payload, "the payload")
        if payload is not None and len(payload.encode()) > PAYLOAD_MAX_BYTES:
            raise too_large(
                f"the payload is {len(payload.encode())} bytes of JSON, over the cap of "
                f"{PAYLOAD_MAX_BYTES}: pass large inputs by reference (e.g. a URL)"
            )
        name = run_name(namespace, req)
        if name is not None and (len(name) > 63 or not _DNS_LABEL.match(name)):
            raise bad_request(f"name {name!r} is not a valid TaskRun name (lowercase letters, digits and '-')")
        try:
            task = _body(await self.kube.get(TaskResource, req.task, namespace=namespace))
        except KubeError as e:
            if e.status.code == 404:
                raise not_found(f'Task "{req.task}" does not exist in namespace "{namespace}"') from e
            raise
        queue = req.queue or (task.get("spec") or {}).get("queue") or DEFAULT_QUEUE
        await self._require_queue(namespace, queue, name)
        await self._require_room(namespace, queue, name)
        meta: dict[str, Any] = {"namespace": namespace}
        meta.update({"name": name} if name else {"generateName": f"{req.task[:50].rstrip('-.')}-"})
        if req.idempotency_key:
            meta["annotations"] = {IDEMPOTENCY_ANNOTATION: req.idempotency_key}
        spec: dict[str, Any] = {"taskRef": {"name": req.task}, "priority": req.priority}
        for key, value in (("payload", payload), ("concurrencyKey", req.concurrency_key), ("queue", req.queue)):
            if value is not None:
                spec[key] = value
        body = {"apiVersion": "cairn.dev/v1alpha1", "kind": "TaskRun", "metadata": meta, "spec": spec}
        try:
            created = await self.kube.create(TaskRunResource.from_dict(body))
            return json_response(summary(_body(created)), status=201)
        except KubeError as e:
            if e.status.code != 409 or name is None:
                if e.status.code in (400, 422):
                    raise ApiError(422, "Invalid", e.status.message or "the TaskRun was refused") from e
                raise
        existing = _body(await self.kube.get(TaskRunResource, name, namespace=namespace))
        same = (existing.get("spec") or {}).get("taskRef", {}).get("name") == req.task and (
            (existing["metadata"].get("annotations") or {}).get(IDEMPOTENCY_ANNOTATION) == req.idempotency_key
        )
        if not same:
            raise ApiError(
                409,
                "Conflict",
                f'a TaskRun "{name}" already exists for another request: use another name or idempotency key',
            )
        return json_response(summary(existing), status=200)

    async def _require_queue(self, namespace: str, queue: str, name: str | None) -> None:
        """Refuse a new run that would wait forever in a Queue that does not exist. A retry of a request
        that already made its run is answered with that run (below), whatever became of the Queue;
        when the API may not read Queues (a custom role), it cannot tell, and lets the run through."""
        try:
            await self.kube.get(QueueResource, queue, namespace=namespace)
            return
        except KubeError as e:
            if e.status.code != 404:
                if e.status.code == 403:
                    return
                raise
            missing = e
        if await self._made_already(namespace, name):
            return
        raise ApiError(
            422,
            "QueueMissing",
            f'Queue "{queue}" does not exist in namespace "{namespace}": the run would wait forever; '
            "create the Queue first, or name another one in `queue`",
        ) from missing

    async def _made_already(self, namespace: str, name: str | None) -> bool:
        """A retry of a request whose run exists: it is answered with that run, whatever the queue's state."""
        if name is None:
            return False
        try:
            await self.kube.get(TaskRunResource, name, namespace=namespace)
            return True
        except KubeError as e:
            if e.status.code != 404:
                raise
            return False

    async def _require_room(self, namespace: str, queue: str, name: str | None) -> None:
        """Backpressure: a queue holding spec.maxQueued waiting runs takes no new one (a retry of a
        request that already made its run is still answered with that run)."""
        cap, depth = await self.store.queue_depth(namespace, queue)
        if cap is None or depth < cap:
            return
        if await self._made_already(namespace, name):
            return
        metrics.RUNS_REJECTED.labels(namespace, queue).inc()
        raise ApiError(
            429,
            "QueueAtCapacity",
            f'Queue "{queue}" holds {depth} waiting runs, its maxQueued is {cap}: the run was not created; '
            "try again when it has drained",
            details={"queue": queue, "queued": depth, "maxQueued": cap},
        )

    async def get(self, request: web.Request) -> web.Response:
        namespace = self._namespace(request)
        await self.access.check(request.headers.get("Authorization"), "get", namespace)
        name = request.match_info["name"]
        try:
            obj = _body(await self.kube.get(TaskRunResource, name, namespace=namespace))
        except KubeError as e:
            if e.status.code == 404:
                raise not_found(f'TaskRun "{name}" does not exist in namespace "{namespace}"') from e
            raise
        known, result = await self.store.run_result(obj["metadata"]["uid"])
        return json_response(summary(obj, result, known))
