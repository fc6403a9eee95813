"""Durable waits over the checkpoint API: a pod that reaches a sleep, a token or its child runs is
told either that the wait is over (its result) or to stop, so that its slot and its node are free
while the run waits. Tokens are completed by a POST to their URL (the secret is in the URL: for
webhooks and systems without Kubernetes credentials) or by a TokenCompletion object (RBAC).

    POST /v1/waits                     {key, kind: sleep|token|children, until?, token?}
    POST /v1/tokens                    {key, timeoutSeconds?, tags?}  -> {id, url}
    POST /v1/children                  {key, wait, items: [{task, payload, ...}], parentClosePolicy?}
    POST /v1/tokens/{id}/{secret}      any JSON: the data the waiting run receives
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from aiohttp import web
from lightkube import ApiError as KubeError
from lightkube import AsyncClient
from pydantic import Field

from cairn.api.common import PAYLOAD_MAX_BYTES
from cairn.domain import naming
from cairn.k8s.resources import TaskResource, TaskRunResource
from cairn.server.checkpoints import STEP_MAX_BYTES, Checkpoints, _Body, _key, _parse, storable
from cairn.server.errors import ApiError, bad_request, conflict, json_response, not_found, too_large
from cairn.store.postgres import PostgresStore

CHILDREN_MAX = 1000  # per step
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
TAGS_MAX = 10


class WaitRequest(_Body):
    key: str = Field(min_length=1, max_length=256)
    kind: Literal["sleep", "token", "children"]
    until: datetime | None = None
    token: str | None = Field(None, min_length=1, max_length=64)


class TokenRequest(_Body):
    key: str = Field(min_length=1, max_length=256)
    timeout_seconds: float | None = Field(None, alias="timeoutSeconds", gt=0, le=366 * 86400)
    tags: list[str] = Field(default_factory=list, max_length=TAGS_MAX)


class Child(_Body):
    task: str = Field(min_length=1, max_length=253)
    payload: Any = None
    queue: str | None = Field(None, min_length=1, max_length=253)
    priority: int = Field(0, ge=-1000, le=1000)
    concurrency_key: str | None = Field(None, alias="concurrencyKey", min_length=1, max_length=128)


class ChildrenRequest(_Body):
    key: str = Field(min_length=1, max_length=256)
    wait: bool = False
    items: list[Child] = Field(min_length=1, max_length=CHILDREN_MAX)
    parent_close_policy: Literal["Cancel", "Abandon"] = Field("Cancel", alias="parentClosePolicy")


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _wait_answer(key: str, answer: Any) -> web.Response:
    if answer.conflict:
        raise ApiError(422, "WaitConflict", answer.conflict)
    if answer.done:
        return json_response({"key": key, "done": True, "result": answer.result})
    return json_response(
        {"key": key, "done": False, "suspend": True, "until": answer.until.isoformat() if answer.until else None}
    )


class Waits:
    def __init__(self, store: PostgresStore, checkpoints: Checkpoints, kube: AsyncClient, public_url: str) -> None:
        self.store = store
        self.checkpoints = checkpoints
        self.kube = kube
        self.public_url = public_url.rstrip("/")

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/waits", self.wait),
            web.post("/v1/tokens", self.create_token),
            web.post("/v1/children", self.children),
            web.post("/v1/tokens/{id}/{secret}", self.complete),
        ]

    async def _refused(self, request: web.Request) -> ApiError:
        """The store would not let this attempt act: the API says why (410 ended, 409 superseded)."""
        caller = await self.checkpoints.verifier.verify(request.headers.get("Authorization"))
        await self.checkpoints._identity(caller)
        return conflict("this attempt may no longer act for its run")

    async def wait(self, request: web.Request) -> web.Response:
        _caller, who = await self.checkpoints._who(request)
        body: WaitRequest = await _parse(request, WaitRequest)
        key = _key(body.key)
        if body.kind == "sleep" and body.until is None:
            raise ApiError(422, "InvalidBody", "until: a sleep needs the time it ends")
        if body.kind == "token" and body.token is None:
            raise ApiError(422, "InvalidBody", "token: a token wait needs the token's id")
        if body.kind == "children":
            raise ApiError(422, "InvalidBody", "kind: wait for children with POST /v1/children and wait: true")
        until = body.until.astimezone(UTC) if body.until is not None and body.until.tzinfo else body.until
        answer = await self.store.register_wait(who.run_uid, who.attempt, key, body.kind, until=until, token=body.token)
        if not answer.allowed:
            raise await self._refused(request)
        return _wait_answer(key, answer)

    async def create_token(self, request: web.Request) -> web.Response:
        caller, who = await self.checkpoints._who(request)
        body: TokenRequest = await _parse(request, TokenRequest)
        key = _key(body.key)
        for tag in body.tags:
            if not tag or len(tag) > 128 or any(ord(ch) < 32 or ord(ch) == 127 for ch in tag):
                raise ApiError(422, "InvalidBody", f"tags: {tag!r} must be 1 to 128 characters, none of them control")
        token_id = "tok-" + secrets.token_hex(8)
        secret = secrets.token_urlsafe(24)
        url = f"{self.public_url}/v1/tokens/{token_id}/{secret}"
        timeout = datetime.now(UTC) + timedelta(seconds=body.timeout_seconds) if body.timeout_seconds else None
        result = await self.store.create_token(
            who.run_uid,
            who.attempt,
            key,
            namespace=caller.namespace,
            token_id=token_id,
            secret_hash=secret_hash(secret),
            tags=body.tags,
            timeout_at=timeout,
            result={"id": token_id, "url": url, "timeout": timeout.isoformat() if timeout else None},
        )
        if result is None:
            raise await self._refused(request)
        return json_response({"key": key, "recorded": True, "result": result})

    async def complete(self, request: web.Request) -> web.Response:
        token_id, secret = request.match_info["id"], request.match_info["secret"]
        raw = await request.read()
        if len(raw) > STEP_MAX_BYTES:
            raise too_large(f"the data is {len(raw)} bytes, over the cap of {STEP_MAX_BYTES}")
        try:
            data = json.loads(raw) if raw.strip() else None
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise bad_request(f"the body is not valid JSON: {e}; the token was not completed") from e
        storable(data, "the data")
        done = await self.store.complete_token(token_id, data, by="url", secret=secret_hash(secret))
        return completion_response(token_id, done)

    async def children(self, request: web.Request) -> web.Response:
        caller, who = await self.checkpoints._who(request)
        body: ChildrenRequest = await _parse(request, ChildrenRequest)
        key = _key(body.key)
        recorded, result = await self.store.step_result(who.run_uid, key)
        if recorded:
            return json_response({"key": key, "done": True, "result": result})
        namespace = caller.namespace
        for index, c in enumerate(body.items):
            for field, value in (("task", c.task), ("queue", c.queue)):
                if value is not None and (len(value) > 253 or not _NAME.match(value)):
                    raise ApiError(
                        422,
                        "InvalidBody",
                        f"items.{index}.{field}: {value!r} is not a Kubernetes name "
                        "(lowercase letters, digits, '-' and '.')",
                    )
        for task in sorted({c.task for c in body.items}):
            try:
                await self.kube.get(TaskResource, task, namespace=namespace)
            except KubeError as e:
                if e.status.code == 404:
                    raise ApiError(
                        422,
                        "TaskNotFound",
                        f'step {key!r}: Task "{task}" does not exist in namespace "{namespace}"; no child was started',
                    ) from e
                raise
        names = []
        for index, child in enumerate(body.items):
            names.append(await self._create_child(namespace, who.run_name, who.run_uid, key, index, child, body))
        if not body.wait:
            answer = await self.store.record_step(who.run_uid, who.attempt, key, {"runs": names}, None)
            if not answer.allowed:
                raise await self._refused(request)
            return json_response({"key": key, "done": True, "result": answer.result})
        wait = await self.store.register_wait(who.run_uid, who.attempt, key, "children", children=len(names))
        if not wait.allowed:
            raise await self._refused(request)
        return _wait_answer(key, wait)

    async def _create_child(
        self, namespace: str, parent: str, parent_uid: str, key: str, index: int, child: Child, req: ChildrenRequest
    ) -> str:
        name = naming.child_name(parent, key, index)
        payload = None if child.payload is None else json.dumps(child.payload, separators=(",", ":"))
        if payload is not None and len(payload.encode()) > PAYLOAD_MAX_BYTES:
            raise too_large(
                f"step {key!r}: the payload of child {index} is {len(payload.encode())} bytes, over the cap of "
                f"{PAYLOAD_MAX_BYTES}"
            )
        spec: dict[str, Any] = {"taskRef": {"name": child.task}, "priority": child.priority}
        for field, value in (("payload", payload), ("queue", child.queue), ("concurrencyKey", child.concurrency_key)):
            if value is not None:
                spec[field] = value
        body = {
            "apiVersion": "cairn.dev/v1alpha1",
            "kind": "TaskRun",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {naming.LABEL_PARENT: naming.label_value(parent)},
                "annotations": {
                    naming.ANNOTATION_PARENT_UID: parent_uid,
                    naming.ANNOTATION_PARENT_STEP: key,
                    naming.ANNOTATION_PARENT_INDEX: str(index),
                    naming.ANNOTATION_PARENT_CLOSE: req.parent_close_policy,
                },
                # Deleting the parent deletes its children (garbage collection).
                "ownerReferences": [
                    {"apiVersion": "cairn.dev/v1alpha1", "kind": "TaskRun", "name": parent, "uid": parent_uid}
                ],
            },
            "spec": spec,
        }
        try:
            await self.kube.create(TaskRunResource.from_dict(body))
        except KubeError as e:
            if e.status.code == 409:  # a retried parent: the child it started before
                return name
            if e.status.code in (400, 422):
                raise ApiError(422, "Invalid", f"step {key!r}, child {index}: {e.status.message}") from e
            raise
        return name


def completion_response(token_id: str, done: Any) -> web.Response:
    if done.outcome == "Completed":
        return json_response({"token": token_id, "outcome": "Completed"})
    if done.outcome == "AlreadyCompleted":
        when = done.completed_at.isoformat() if done.completed_at else "earlier"
        return json_response(
            {
                "token": token_id,
                "outcome": "AlreadyCompleted",
                "message": f"token {token_id} was already completed at {when} (by {done.completed_by}); "
                "the first completion stands",
            },
            status=409,
        )
    if done.outcome == "RunEnded":
        return json_response(
            {
                "token": token_id,
                "outcome": "RunEnded",
                "message": f"the run of token {token_id} has ended; nothing waits for it",
            },
            status=410,
        )
    if done.outcome == "TimedOut":
        return json_response(
            {
                "token": token_id,
                "outcome": "TimedOut",
                "message": f"token {token_id} timed out before it was completed",
            },
            status=410,
        )
    raise not_found(f"no token {token_id} with this secret")
