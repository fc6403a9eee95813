"""TaskRuns: gather the view of one run, ask the domain for its plan, apply the plan once.

Also the intake of what the watches see of TaskRuns, Tasks and Cairn's pods: each updates the
cache and queues the runs it concerns."""

from __future__ import annotations

import logging
import random
from datetime import datetime, timedelta

from pydantic import ValidationError

from cairn import faults, metrics
from cairn.api.task import Task
from cairn.api.taskrun import TaskRun
from cairn.controller.cache import Body, key_of, schedule_of
from cairn.controller.deps import SCHEDULES, STATUS_COALESCE, Deps
from cairn.domain import lifecycle, naming
from cairn.domain.termination import PodView
from cairn.domain.timefmt import parse_time
from cairn.domain.waits import ChildView
from cairn.k8s.base import NamespaceTerminating, PodRejected
from cairn.store.base import Ending, Registration

log = logging.getLogger(__name__)


# -- intake ----------------------------------------------------------------------------------------
def on_taskrun(deps: Deps, event: str | None, body: Body) -> None:
    # A deleted run is reconciled too: what it held in its queue is released.
    before = deps.cache.taskruns.get(body["metadata"]["uid"])
    uid = deps.cache.drop_taskrun(body) if event == "DELETED" else deps.cache.put_taskrun(body)
    if event != "DELETED" and before is not None and _same_inputs(before, deps.cache.taskruns[uid]):
        # The echo of our own status write (or a resync): nothing a reconcile reads has changed.
        metrics.RECONCILES_SKIPPED.inc()
        return
    # A run never seen and never registered (no phase yet) waits behind the runs in flight.
    deps.reconcile_run(uid, later=before is None and not (body.get("status") or {}).get("phase"))
    started_by = schedule_of(body)
    if started_by is not None:
        # The Schedule's overlap policy and status follow its runs (a burst of changes, one look).
        deps.enqueue(SCHEDULES, started_by, STATUS_COALESCE)


def _same_inputs(before: Body, after: Body) -> bool:
    b, a = before.get("metadata") or {}, after.get("metadata") or {}
    return (
        before.get("spec") == after.get("spec")
        and before.get("status") == after.get("status")
        and all(b.get(k) == a.get(k) for k in ("generation", "deletionTimestamp", "annotations", "labels"))
    )


def on_task(deps: Deps, event: str | None, body: Body) -> None:
    ns, name = key_of(body)
    if event == "DELETED":
        deps.cache.tasks.pop((ns, name), None)
        return
    deps.cache.tasks[(ns, name)] = body
    for uid in deps.cache.runs_of_task(ns, name):
        if lifecycle.waits_for_task(deps.cache.taskruns[uid].get("status") or {}):
            deps.reconcile_run(uid)


def on_pod(deps: Deps, event: str | None, body: Body) -> None:
    before = deps.cache.pod_before(body) if event != "DELETED" else None
    uid = deps.cache.drop_pod(body) if event == "DELETED" else deps.cache.put_pod(body)
    if uid is None or uid not in deps.cache.taskruns:
        return
    if before is not None and PodView.parse(before[0], before[1]).same_for_lifecycle(PodView.parse(body, before[1])):
        # A condition that decides nothing yet (Initialized, Ready...): the cache has it for later.
        metrics.POD_EVENTS_SKIPPED.inc()
        return
    deps.reconcile_run(uid)


# -- the reconciler ----------------------------------------------------------------------------------
class TaskRunReconciler:
    def __init__(self, deps: Deps, rng: random.Random | None = None) -> None:
        self.deps = deps
        self.rng = rng or random.Random()
        # Pods the API server refused, by run: (attempt, its message). The next reconcile's view
        # carries it and the domain ends the run; kept in memory only, since after a restart the
        # create is refused again.
        self._rejected: dict[str, tuple[int, str]] = {}
        # Runs with no phase yet not to be presumed new (see _presumed_new): registered or looked up
        # here. A phase, a deletion or an end takes them out, so it holds only runs in between.
        self._known: set[str] = set()

    async def reconcile(self, uid: str) -> None:
        # A run admitted as it registered goes on to its pod in the same reconcile: back in the work
        # queue it would wait behind every event queued meanwhile (the path to a new run's first pod).
        admitted: lifecycle.Admission | None = None
        for _ in range(3):
            body = self.deps.cache.taskruns.get(uid)
            if body is None:
                if uid in self.deps.cache.deleted_runs:
                    await self._forget(uid)
                return
            with metrics.RECONCILE_SECONDS.labels("taskrun").time():
                try:
                    run = TaskRun.model_validate(body)
                except ValidationError as e:
                    await self._unreadable(uid, body, e)
                    return
                presumed = admitted is None and self._presumed_new(uid, run)
                view = await self._view(uid, run, admitted, presumed_new=presumed)
                plan = lifecycle.plan(view, self.deps.lifecycle)
                if presumed and plan.register is None:
                    # Presumed new, it is not to be registered (its Task is missing, its payload
                    # unreadable...): that is decided from what the store has, not from a guess.
                    self._known.add(uid)
                    continue
                # Its registration began the first attempt too: its pod is created without a second write.
                begun = admitted is not None
                if plan.register is not None:
                    registration = await self._register(uid, body, plan.register)
                    if registration.known:
                        # The store had it (a status written before a restart that never landed):
                        # the plan was made from a guess; none of it is applied.
                        continue
                    admitted = registration.admitted
                else:
                    admitted = None
                await self._apply(uid, body, view, plan, run, first_begun=begun)
                if admitted is None:
                    return
        else:
            self.deps.reconcile_run(uid)  # three looks and still more to do (a race): once more, queued

    def _presumed_new(self, uid: str, run: TaskRun) -> bool:
        """A run with no phase that this operator has not registered nor looked up: new, most likely
        (created a moment ago). Its registration is tried without reading the store first (one round
        trip on the path to its first pod, not two); the store says if it had it after all."""
        if run.status is not None and run.status.phase is not None:
            self._known.discard(uid)  # its status says what it is from now on
            return False
        return run.spec.from_ is None and uid not in self._known

    async def _register(self, uid: str, body: Body, register: lifecycle.Register) -> Registration:
        deps = self.deps
        ns, name = key_of(body)
        context = {"namespace": ns, "run": name, "run_uid": uid}
        registration = await deps.store.register_run(register)
        self._known.add(uid)
        queue = register.queue
        if registration.known:
            metrics.REGISTRATIONS_KNOWN.inc()
        elif registration.admitted is not None:
            # Admitted as it registered (the queue had room): on to its first pod, no round.
            faults.point("operator.after_slot_taken")
            metrics.ADMISSIONS.inc()
            deps.queue_status(ns, queue)
            log.info("run registered and admitted in queue %s", queue, extra={**context, "queue": queue})
        else:
            deps.kick(ns, queue)
            log.info("run registered in queue %s", queue, extra={**context, "queue": queue})
        return registration

    async def _forget(self, uid: str) -> None:
        """The TaskRun was deleted: release its slot (its pods go with it, by owner reference)."""
        released = await self.deps.store.forget(uid, self.deps.settings.retention_default.delta)
        self.deps.cache.deleted_runs.discard(uid)
        self._rejected.pop(uid, None)
        self._known.discard(uid)
        if released:
            self.deps.kick(*released)

    async def _view(
        self, uid: str, run: TaskRun, admitted: lifecycle.Admission | None = None, *, presumed_new: bool = False
    ) -> lifecycle.RunView:
        """admitted: the admission its registration just wrote (nothing recorded yet, unless a fork's
        copies), read from no store. presumed_new: the store is not read either (see _presumed_new)."""
        deps = self.deps
        ns = run.metadata.namespace or ""
        task_body = deps.cache.tasks.get((ns, run.spec.task_ref.name))
        task: Task | None = None
        if task_body is not None:
            try:
                task = Task.model_validate(task_body)
            except ValidationError:
                log.warning("Task %s/%s does not parse; treating it as missing", ns, run.spec.task_ref.name)
        pods = {attempt: PodView.parse(pod, attempt) for attempt, pod in deps.cache.pods.get(uid, {}).items()}
        children = tuple(_child_view(c) for c in deps.cache.children_of(uid))
        admission: lifecycle.Admission | None
        if admitted is not None and run.spec.from_ is None:
            admission, recorded = admitted, lifecycle.Recorded()
        elif presumed_new:
            admission, recorded = None, lifecycle.Recorded()
        else:
            admission, recorded = await deps.store.look(uid)
            if admission is not None:
                self._known.add(uid)
        # A fork is looked up once, to register it: afterwards the store has its copies.
        fork = None
        if admission is None and run.spec.from_ is not None:
            fork = await deps.store.fork_source(ns, run.spec.from_.run)
        return lifecycle.RunView(
            run=run,
            task=task,
            admission=admission,
            pods=pods,
            recorded=recorded,
            now=deps.clock(),
            jitter=self.rng.random(),
            rejected_pod=self._rejected.get(uid),
            children=children,
            fork=fork,
            watching_since=deps.cache.watching_since,
        )

    async def _unreadable(self, uid: str, body: Body, error: ValidationError) -> None:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        plan = lifecycle.unreadable(body.get("status") or {}, where, first["msg"])
        if plan.status is not None:
            ns, name = key_of(body)
            log.error("TaskRun %s/%s is malformed: %s", ns, name, error)
            metrics.RECONCILE_ERRORS.labels("taskrun", "Malformed").inc()
        await self._apply(uid, body, None, plan, None)

    async def _apply(
        self,
        uid: str,
        body: Body,
        view: lifecycle.RunView | None,
        plan: lifecycle.Plan,
        run: TaskRun | None,
        *,
        first_begun: bool = False,
    ) -> None:
        """Write the plan (its registration, if any, is written before: see reconcile)."""
        deps = self.deps
        ns, name = key_of(body)
        now = view.now if view is not None else deps.clock()
        context = {"namespace": ns, "run": name, "run_uid": uid}
        ending = None
        if plan.ended is not None:
            ended = plan.ended
            ending = Ending(ended.number, ended.exit_code, ended.reason or "")
            if not isinstance(plan.release, lifecycle.Requeue | lifecycle.Suspend):
                # A retry or a wait ends the attempt with its release, in one transaction.
                await deps.store.end_attempt(uid, ended.number, ended.exit_code, ended.reason or "")
            metrics.ATTEMPTS_ENDED.labels(ended.reason or "Unknown").inc()
            log.info(
                "attempt %d ended: %s",
                ended.number,
                ended.reason,
                extra={**context, "attempt": ended.number, "reason": ended.reason, "exit_code": ended.exit_code},
            )
        if isinstance(plan.release, lifecycle.Requeue) and ending is not None:
            released = await deps.store.requeue(uid, ending, plan.release.not_before)
            if released:
                deps.kick(*released)
                deps.kick(*released, at=plan.release.not_before)
                metrics.RETRIES.labels(plan.ended.reason if plan.ended else "Unknown").inc()
        elif isinstance(plan.release, lifecycle.Suspend) and ending is not None:
            released = await deps.store.suspend(uid, ending)
            if released:
                deps.kick(*released)
                metrics.WAITS_STARTED.labels(
                    view.admission.wait.kind if view and view.admission and view.admission.wait else "unknown"
                ).inc()
                log.info("waiting: the pod stopped and the slot was given back", extra=context)
        elif isinstance(plan.release, lifecycle.Finish):
            released = await deps.store.finish(uid, plan.release.phase.value, self._retention(view))
            faults.point("operator.after_release")
            self._rejected.pop(uid, None)
            self._known.discard(uid)
            if released:
                deps.kick(*released)
                metrics.RUNS_FINISHED.labels(plan.release.phase.value).inc()
                if run is not None:
                    _observe_duration(run, now)
                log.info(
                    "run %s",
                    plan.release.phase.value.lower(),
                    extra={**context, "phase": plan.release.phase.value, "reason": (plan.status or {}).get("reason")},
                )
        if plan.wake is not None:
            woke = await deps.store.wake(uid, plan.wake.key)
            if woke:
                deps.kick(*woke)
                deps.reconcile_run(uid)
                log.info("the wait of step %s is over", plan.wake.key, extra=context)
        if plan.kick and view is not None and view.admission is not None:
            deps.kick(ns, view.admission.queue)
        for child in plan.cancel_children:
            await deps.kube.cancel_taskrun(ns, child)
        for pod_name, force in plan.delete_pods:
            await deps.kube.delete_pod(ns, pod_name, force=force)
        if plan.annotate_pod is not None:
            await deps.kube.annotate_pod(ns, *plan.annotate_pod)
        if plan.create_pod is not None:
            attempt = plan.create_pod.attempt
            if not (first_begun and attempt == 1):
                await deps.store.begin_attempt(uid, attempt, ns, plan.create_pod.name)
            try:
                await deps.kube.create_pod(plan.create_pod.body)
            except NamespaceTerminating:
                log.info("not starting %s/%s: its namespace is being deleted", ns, name)
                return
            except PodRejected as e:
                # Decided by the domain, from the next view: the run fails, nothing else is written.
                self._rejected[uid] = (attempt, str(e))
                deps.reconcile_run(uid)
                return
            faults.point("operator.after_pod_created")
            if attempt == 1 and run is not None:
                _observe_admission_wait(run, now)
            wait = view.admission.wait if view is not None and view.admission is not None else None
            if wait is not None and wait.attempt == attempt - 1:
                metrics.WAIT_SECONDS.observe(max(0.0, (now - wait.created).total_seconds()))
            log.info("attempt %d started", attempt, extra={**context, "attempt": attempt, "pod": plan.create_pod.name})
        for new_run in plan.create_runs:
            # Before the status says Failed: a crash in between makes it again (AlreadyExists), never none.
            if await deps.kube.create_taskrun(new_run):
                log.info("started onFailure run %s", new_run["metadata"]["name"], extra=context)
        if plan.status is not None:
            deps.write_status(uid, ns, name, plan.status)
            # Until the watch brings the patched object back, reconcile from what will be written.
            deps.cache.taskruns[uid] = {**body, "status": {**(body.get("status") or {}), **plan.status}}
        for event in plan.events:
            await deps.kube.post_event(body, event.type, event.reason, event.message, now)
        if plan.delete_run:
            await deps.kube.delete_taskrun(ns, name)
        if plan.recheck_at is not None:
            deps.reconcile_run(uid, max(0.0, (plan.recheck_at - deps.clock()).total_seconds()))

    def _retention(self, view: lifecycle.RunView | None) -> timedelta:
        snapshot = view.admission.snapshot if view is not None and view.admission else None
        if snapshot is not None:
            return snapshot.spec.checkpoint_retention.delta
        return self.deps.settings.retention_default.delta


def _child_view(body: Body) -> ChildView:
    phase = (body.get("status") or {}).get("phase")
    notes = body["metadata"].get("annotations") or {}
    return ChildView(
        name=body["metadata"]["name"],
        finished=phase in ("Succeeded", "Failed", "Cancelled"),
        cancelling=bool((body.get("spec") or {}).get("cancel")),
        abandon=notes.get(naming.ANNOTATION_PARENT_CLOSE) == "Abandon",
    )


def _observe_admission_wait(run: TaskRun, now: datetime) -> None:
    if run.metadata.creation_timestamp:
        wait = (now - parse_time(run.metadata.creation_timestamp)).total_seconds()
        metrics.ADMISSION_WAIT.observe(max(0.0, wait))


def _observe_duration(run: TaskRun, now: datetime) -> None:
    if run.status and run.status.start_time:
        metrics.RUN_DURATION.observe(max(0.0, (now - parse_time(run.status.start_time)).total_seconds()))
