"""Schedules: start a TaskRun at each fire time (the decision is domain/schedule.py's), keep the status,
trim the history; and the intake of Schedule events. A Schedule is looked at again at its next fire
time, and whenever one of its runs changes."""

from __future__ import annotations

import logging

from pydantic import ValidationError

from cairn import metrics
from cairn.api.schedule import Schedule
from cairn.controller.cache import Body, Key, key_of
from cairn.controller.deps import SCHEDULES, Deps
from cairn.domain import naming, schedule
from cairn.domain.timefmt import format_time, parse_time

log = logging.getLogger(__name__)


def on_schedule(deps: Deps, event: str | None, body: Body) -> None:
    key = key_of(body)
    if event == "DELETED":
        deps.cache.schedules.pop(key, None)  # its runs go with it (owner references)
        return
    deps.cache.schedules[key] = body
    deps.enqueue(SCHEDULES, key)


def runs_of(bodies: list[Body], name: str) -> list[schedule.RunOf]:
    out = []
    for body in bodies:
        meta = body.get("metadata") or {}
        annotations = meta.get("annotations") or {}
        fired = annotations.get(naming.ANNOTATION_FIRE_TIME)
        if annotations.get(naming.LABEL_SCHEDULE) != name or not fired:
            continue
        out.append(
            schedule.RunOf(
                name=meta["name"],
                fire_time=parse_time(fired),
                phase=(body.get("status") or {}).get("phase"),
                cancelling=bool((body.get("spec") or {}).get("cancel")),
            )
        )
    return out


class ScheduleReconciler:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        # Schedules whose runs this process has listed from the API server once: from then on its
        # cache has seen every run it created (a create that finds one exists is handled all the same).
        self._listed: set[Key] = set()

    async def reconcile(self, key: Key) -> None:
        deps = self.deps
        body = deps.cache.schedules.get(key)
        if body is None:
            return
        namespace, name = key
        try:
            s = Schedule.model_validate(body)
        except ValidationError as e:
            await self._invalid(body, e)
            return
        with metrics.RECONCILE_SECONDS.labels("schedule").time():
            p = schedule.plan(schedule.ScheduleView(s, runs_of(deps.cache.runs_of_schedule(key), name), deps.clock()))
            if p.create and key not in self._listed:
                # Right after a start the cache may not hold every run of this schedule yet: before
                # starting any, ask the API server which exist (once per Schedule and process).
                listed = await deps.kube.list_taskruns(namespace, {naming.LABEL_SCHEDULE: naming.label_value(name)})
                self._listed.add(key)
                p = schedule.plan(schedule.ScheduleView(s, runs_of(listed, name), deps.clock()))
            # The previous run is told to stop before its successor exists, so that no one
            # looking in between sees both going.
            for run_name in p.cancel:
                await deps.kube.cancel_taskrun(namespace, run_name)
            for run in p.create:
                if await deps.kube.create_taskrun(run):
                    metrics.SCHEDULED_RUNS.labels(namespace, name).inc()
                    fired = parse_time(run["metadata"]["annotations"][naming.ANNOTATION_FIRE_TIME])
                    metrics.SCHEDULE_FIRE_DELAY.observe(max(0.0, (deps.clock() - fired).total_seconds()))
                    log.info(
                        "schedule started run %s",
                        run["metadata"]["name"],
                        extra={"namespace": namespace, "schedule": name, "run": run["metadata"]["name"]},
                    )
            if p.status is not None:
                await deps.kube.patch_schedule_status(namespace, name, p.status)
                deps.cache.schedules[key] = {**body, "status": {**(body.get("status") or {}), **p.status}}
            now = deps.clock()
            for event in p.events:
                await deps.kube.post_event(body, event.type, event.reason, event.message, now)
            for run_name in p.delete:
                await deps.kube.delete_taskrun(namespace, run_name)
            if p.recheck_at is not None:
                # Just after the fire time, so that it is due when looked at.
                deps.enqueue(SCHEDULES, key, max(0.0, (p.recheck_at - deps.clock()).total_seconds()) + 0.001)

    async def _invalid(self, body: Body, error: ValidationError) -> None:
        """A Schedule the CRD let through but that cannot be evaluated (e.g. February 30th): say so once."""
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = f"the Schedule cannot be evaluated: {where}: {first['msg']}"[:1024]
        conditions = (body.get("status") or {}).get("conditions") or []
        if any(
            c.get("type") == "Ready" and c.get("reason") == "InvalidSpec" and c.get("message") == message
            for c in conditions
        ):
            return
        ns, name = key_of(body)
        log.error("Schedule %s/%s is invalid: %s", ns, name, message)
        now = self.deps.clock()
        ready = {
            "type": "Ready",
            "status": "False",
            "reason": "InvalidSpec",
            "message": message,
            "lastTransitionTime": format_time(now),
        }
        patch = {"conditions": [ready], "nextFireTime": None}
        await self.deps.kube.patch_schedule_status(ns, name, patch)
        self.deps.cache.schedules[(ns, name)] = {**body, "status": {**(body.get("status") or {}), **patch}}
        await self.deps.kube.post_event(body, "Warning", "InvalidSpec", message, now)
