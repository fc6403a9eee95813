"""What the dashboard does for a person: cancel, rerun, fork, complete a wait token, change a queue.

Each action is checked against the person's own RBAC (a SubjectAccessReview) and then made with the
API's client, as the trigger API does: the person's token is never sent on to the cluster."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

from lightkube import ApiError as KubeError
from lightkube import AsyncClient
from lightkube.types import PatchType
from pydantic import ValidationError

from cairn.api.common import GROUP
from cairn.api.schedule import Schedule
from cairn.api.taskrun import ForkFrom, TaskRun
from cairn.domain.rerun import rerun_body
from cairn.domain.schedule import run_body as schedule_run_body
from cairn.k8s.resources import QueueResource, ScheduleResource, TaskRunResource, TokenCompletionResource
from cairn.server.access import Access
from cairn.server.errors import bad_request, forbidden, not_found
from cairn.server.ui import views
from cairn.server.ui.auth import Viewer, refused
from cairn.store.postgres import PostgresStore

log = logging.getLogger(__name__)
READ_ONLY = "this dashboard is read-only (CAIRN_UI=read-only; chart value ui.readOnly)"


def body_of(obj: Any) -> dict[str, Any]:
    body: dict[str, Any] = obj.to_dict()
    return body


class Actions:
    def __init__(self, store: PostgresStore, access: Access, kube: AsyncClient, *, enabled: bool) -> None:
        self.store = store
        self.access = access
        self.kube = kube
        self.enabled = enabled  # false: read-only (CAIRN_UI=read-only), whatever RBAC allows

    async def taskrun(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            obj = await self.kube.get(TaskRunResource, name, namespace=namespace)
        except KubeError as e:
            if e.status.code == 404:
                return None
            raise
        return body_of(obj)

    async def run(self, person: Viewer, namespace: str, name: str, action: str, form: dict[str, str]) -> str:
        """Make one action as `person`, if RBAC lets them; say what was done."""
        verb, resource = {
            "cancel": ("patch", "taskruns"),
            "rerun": ("create", "taskruns"),
            "fork": ("create", "taskruns"),
            "complete": ("create", "tokencompletions"),
        }[action]
        if not self.enabled:
            raise forbidden(READ_ONLY)
        if not await self.access.may(person.user, verb, namespace, resource):
            raise refused(person, verb, f"{resource}.{GROUP}", namespace)
        log.info("dashboard: %s %s %s/%s", person.user.name, action, namespace, name)
        if action == "complete":
            return await self._complete(namespace, name, form)
        taskrun = await self.taskrun(namespace, name)
        if taskrun is None:
            raise not_found(f'run "{name}" has no TaskRun any more (deleted): it can be read, not acted on')
        if action == "cancel":
            if ((taskrun.get("status") or {}).get("phase")) in views.FINISHED:
                return f"{name} had already ended; nothing to cancel"
            await self.kube.patch(
                TaskRunResource, name, {"spec": {"cancel": True}}, namespace=namespace, patch_type=PatchType.MERGE
            )
            return f"cancelled {name}"
        old = TaskRun.model_validate(taskrun)
        fork = None
        if action == "fork":
            fork = await self._fork(namespace, name, form.get("step", ""))
        body = rerun_body(name, old.spec, fork=fork)
        body["metadata"]["namespace"] = namespace
        created = body_of(await self.kube.create(TaskRunResource.from_dict(body)))
        new = created["metadata"]["name"]
        return f"forked {name} from {fork.step} as {new}" if fork else f"reran {name} as {new}"

    async def _fork(self, namespace: str, name: str, step: str) -> ForkFrom:
        run = await self.store.history_run(namespace, name)
        keys = [s["key"] for s in (run or {}).get("steps", [])]
        if step not in keys:
            raise bad_request(f"run {name} recorded no step {step!r}; its steps: {', '.join(keys) or 'none'}")
        try:
            return ForkFrom(run=name, step=step)
        except ValidationError as e:
            raise bad_request(f"step {step!r} is not a step key (name#occurrence)") from e

    async def _complete(self, namespace: str, name: str, form: dict[str, str]) -> str:
        token = form.get("token", "")
        data = form.get("data", "null").strip() or "null"
        if not re.match(r"^tok-[0-9a-f]{8,64}$", token):
            raise bad_request(f"{token!r} is not a token id (tok-...)")
        try:
            json.loads(data)
        except ValueError as e:
            raise bad_request(f'data: not JSON ({e}); e.g. {{"approved": true}}') from e
        body = {
            "apiVersion": f"{GROUP}/v1alpha1",
            "kind": "TokenCompletion",
            "metadata": {"generateName": f"{token}-", "namespace": namespace},
            "spec": {"token": token, "data": data},
        }
        await self.kube.create(TokenCompletionResource.from_dict(body))
        return f"completed {token} of {name}"

    async def queue(self, person: Viewer, namespace: str, name: str, form: dict[str, str]) -> str:
        """Pause, resume or resize a queue as `person`; say what was done."""
        if not self.enabled:
            raise forbidden(READ_ONLY)
        if not await self.access.may(person.user, "patch", namespace, "queues"):
            raise refused(person, "patch", f"queues.{GROUP}", namespace)
        action = form.get("action", "")
        if action in ("pause", "resume"):
            spec: dict[str, Any] = {"paused": action == "pause"}
            said = f"{'paused' if action == 'pause' else 'resumed'} queue {name}"
        elif action == "limit":
            text = form.get("limit", "")
            if not text.isdigit() or not 0 <= int(text) <= 100_000:
                raise bad_request(f"limit: a whole number from 0 to 100000, not {text!r}")
            spec = {"concurrencyLimit": int(text)}
            said = f"set the limit of queue {name} to {int(text)}"
        else:
            raise bad_request("action: pause, resume or limit")
        log.info("dashboard: %s %s", person.user.name, said)
        await self.kube.patch(QueueResource, name, {"spec": spec}, namespace=namespace, patch_type=PatchType.MERGE)
        return said

    async def schedule(self, person: Viewer, namespace: str, name: str, action: str) -> str:
        """Start a run of a Schedule now, or pause or resume it, as `person`; say what was done."""
        if not self.enabled:
            raise forbidden(READ_ONLY)
        if action not in ("trigger", "pause", "resume"):
            raise bad_request("action: trigger, pause or resume")
        verb, resource = ("create", "taskruns") if action == "trigger" else ("patch", "schedules")
        if not await self.access.may(person.user, verb, namespace, resource):
            raise refused(person, verb, f"{resource}.{GROUP}", namespace)
        try:
            found = body_of(await self.kube.get(ScheduleResource, name, namespace=namespace))
        except KubeError as e:
            if e.status.code == 404:
                raise not_found(f'no Schedule "{name}" in namespace "{namespace}"') from e
            raise
        log.info("dashboard: %s %s schedule %s/%s", person.user.name, action, namespace, name)
        if action == "trigger":
            try:
                schedule = Schedule.model_validate(found)
            except ValidationError as e:
                raise bad_request(f"schedule {name} cannot be evaluated: {e.errors()[0]['msg']}") from e
            body = schedule_run_body(schedule, datetime.now(UTC), manual=True)
            created = body_of(await self.kube.create(TaskRunResource.from_dict(body)))
            return f"started {created['metadata']['name']} from schedule {name}"
        await self.kube.patch(
            ScheduleResource,
            name,
            {"spec": {"suspend": action == "pause"}},
            namespace=namespace,
            patch_type=PatchType.MERGE,
        )
        return f"{'paused' if action == 'pause' else 'resumed'} schedule {name}"
