"""Reconciling one TaskRun: gather the view, ask the domain for a plan, apply it."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from pydantic import ValidationError

from cairn import faults, metrics
from cairn.api.queue import Queue
from cairn.api.task import Task
from cairn.api.taskrun import Phase, TaskRun
from cairn.domain import admission, lifecycle
from cairn.domain.termination import PodView
from cairn.k8s import ops
from cairn.store.base import NewRun

if TYPE_CHECKING:
    from cairn.controller.operator import Operator

log = logging.getLogger(__name__)


class RunReconciler:
    def __init__(self, op: Operator, clock: Callable[[], datetime], rng: random.Random | None = None) -> None:
        self.op = op
        self.clock = clock
        self.rng = rng or random.Random()

    async def reconcile(self, uid: str) -> None:
        op = self.op
        body = op.cache.taskruns.get(uid)
        if body is None:
            return
        with metrics.RECONCILE_SECONDS.labels("taskrun").time():
            try:
                run = TaskRun.model_validate(body)
            except ValidationError as e:
                await self._malformed(body, e)
                return
            view = await self._view(uid, run)
            plan = lifecycle.plan(view, op.lifecycle_settings)
            await self._apply(uid, run, body, view, plan)

    async def _view(self, uid: str, run: TaskRun) -> lifecycle.RunView:
        op = self.op
        ns = run.metadata.namespace or ""
        task_body = op.cache.tasks.get((ns, run.spec.task_ref.name))
        task: Task | None = None
        if task_body is not None:
            try:
                task = Task.model_validate(task_body)
            except ValidationError:
                log.warning("Task %s/%s does not parse; treating it as missing", ns, run.spec.task_ref.name)
        row = (await op.store.get_runs([uid])).get(uid)
        adm = None
        if row is not None:
            limits = self._limits(ns, row.queue)
            message = (
                admission.explain(row.wait_reason, row.queue, limits, run.spec.concurrency_key)
                if row.wait_reason
                else None
            )
            adm = lifecycle.Admission(
                state=row.state,
                queue=row.queue,
                snapshot=row.snapshot,
                wait_reason=row.wait_reason,
                wait_message=message,
            )
        rec = await op.store.recorded(uid)
        recorded = lifecycle.Recorded(
            steps_completed=rec.steps_completed if rec else 0,
            last_step=rec.last_step if rec else None,
            state_note=rec.state_note if rec else None,
            updated=max((t for t in (rec.last_step_at, rec.state_at) if t), default=None) if rec else None,
            result=rec.result if rec else None,
            recent=tuple(rec.recent) if rec else (),
        )
        pods = {attempt: PodView.parse(pod, attempt) for attempt, pod in op.cache.pods.get(uid, {}).items()}
        return lifecycle.RunView(
            run=run, task=task, admission=adm, pods=pods, recorded=recorded, now=self.clock(), jitter=self.rng.random()
        )

    def _limits(self, namespace: str, queue: str) -> admission.Limits | None:
        body = self.op.cache.queues.get((namespace, queue))
        if body is None:
            return None
        spec = Queue.model_validate(body).spec
        return admission.Limits(spec.concurrency_limit, spec.per_key_limit, spec.paused)

    async def _apply(
        self, uid: str, run: TaskRun, body: dict[str, object], view: lifecycle.RunView, plan: lifecycle.Plan
    ) -> None:
        op = self.op
        ns, name = run.metadata.namespace or "", run.metadata.name
        context = {"namespace": ns, "run": name, "run_uid": uid}
        if plan.register is not None:
            reg = plan.register
            await op.store.register_run(
                NewRun(
                    uid=uid,
                    namespace=ns,
                    name=name,
                    task=reg.snapshot.name,
                    queue=reg.queue,
                    priority=reg.priority,
                    key=reg.key,
                    created=reg.created,
                    snapshot=reg.snapshot,
                    payload=run.spec.payload,
                )
            )
            op.admission.kick(ns, reg.queue)
            log.info("run registered in queue %s", reg.queue, extra={**context, "queue": reg.queue})
        if plan.ended is not None:
            await op.store.end_attempt(uid, plan.ended.number, plan.ended.exit_code, plan.ended.reason or "")
            metrics.ATTEMPTS_ENDED.labels(plan.ended.reason or "Unknown").inc()
            log.info(
                "attempt %d ended: %s",
                plan.ended.number,
                plan.ended.reason,
                extra={
                    **context,
                    "attempt": plan.ended.number,
                    "reason": plan.ended.reason,
                    "exit_code": plan.ended.exit_code,
                },
            )
        if isinstance(plan.release, lifecycle.Requeue):
            released = await op.store.requeue(uid, plan.release.not_before)
            if released:
                op.admission.kick(*released)
                op.admission.kick_at(*released, plan.release.not_before)
                metrics.RETRIES.labels(plan.ended.reason if plan.ended else "Unknown").inc()
        elif isinstance(plan.release, lifecycle.Finish):
            retention = self._retention(view)
            released = await op.store.finish(uid, plan.release.phase.value, retention)
            faults.point("operator.after_release")
            if released:
                op.admission.kick(*released)
                metrics.RUNS_FINISHED.labels(plan.release.phase.value).inc()
                self._observe_duration(run, view.now)
                log.info(
                    "run %s",
                    plan.release.phase.value.lower(),
                    extra={**context, "phase": plan.release.phase.value, "reason": (plan.status or {}).get("reason")},
                )
        for pod_name, force in plan.delete_pods:
            await ops.delete_pod(op.kube, ns, pod_name, force=force)
        if plan.create_pod is not None:
            attempt = int(plan.create_pod["metadata"]["labels"]["cairn.dev/attempt"])
            await op.store.begin_attempt(uid, attempt, ns, plan.create_pod["metadata"]["name"])
            try:
                await ops.create_pod(op.kube, plan.create_pod)
            except ops.NamespaceTerminating:
                log.info("not starting %s/%s: its namespace is being deleted", ns, name)
                return
            except ops.PodRejected as e:
                await self._apply(uid, run, body, view, lifecycle.pod_rejected(view, str(e)))
                return
            faults.point("operator.after_pod_created")
            if attempt == 1:
                self._observe_admission_wait(run, view.now)
            log.info(
                "attempt %d started",
                attempt,
                extra={**context, "attempt": attempt, "pod": plan.create_pod["metadata"]["name"]},
            )
        if plan.status is not None:
            if not await ops.patch_taskrun_status(op.kube, ns, name, plan.status):
                return
            # Until the watch brings the patched object back, reconcile from what we wrote.
            merged = dict(body)
            merged["status"] = {**(body.get("status") or {}), **plan.status}  # type: ignore[dict-item]
            op.cache.taskruns[uid] = merged
            faults.point("operator.after_status_written")
        for event in plan.events:
            await ops.post_event(op.kube, body, event.type, event.reason, event.message, view.now)
        if plan.delete_run:
            await ops.delete_taskrun(op.kube, ns, name)
        if plan.recheck_at is not None:
            op.runs.add_after(uid, max(0.0, (plan.recheck_at - self.clock()).total_seconds()))

    def _retention(self, view: lifecycle.RunView) -> timedelta:
        snapshot = view.admission.snapshot if view.admission else None
        if snapshot is not None:
            return snapshot.spec.checkpoint_retention.delta
        return self.op.settings.retention_default.delta

    def _observe_admission_wait(self, run: TaskRun, now: datetime) -> None:
        if run.metadata.creation_timestamp:
            from cairn.domain.timefmt import parse_time

            wait = (now - parse_time(run.metadata.creation_timestamp)).total_seconds()
            metrics.ADMISSION_WAIT.observe(max(0.0, wait))

    def _observe_duration(self, run: TaskRun, now: datetime) -> None:
        status = run.status
        if status and status.start_time:
            from cairn.domain.timefmt import parse_time

            metrics.RUN_DURATION.observe(max(0.0, (now - parse_time(status.start_time)).total_seconds()))

    async def _malformed(self, body: dict[str, object], error: ValidationError) -> None:
        """A TaskRun the operator cannot read (the API server should have refused it): fail it, loudly,
        and go on serving the others."""
        meta = body.get("metadata") or {}
        assert isinstance(meta, dict)
        status = body.get("status") or {}
        assert isinstance(status, dict)
        if status.get("phase") == Phase.FAILED.value:
            return
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = f"the TaskRun cannot be read: {where}: {first['msg']}"
        log.error("TaskRun %s/%s is malformed: %s", meta.get("namespace"), meta.get("name"), error)
        metrics.RECONCILE_ERRORS.labels("taskrun", "Malformed").inc()
        await ops.patch_taskrun_status(
            self.op.kube,
            str(meta.get("namespace")),
            str(meta.get("name")),
            {
                "phase": Phase.FAILED.value,
                "reason": "InvalidSpec",
                "message": message[:1024],
            },
        )
        await ops.post_event(self.op.kube, body, "Warning", "InvalidSpec", message, self.clock())
