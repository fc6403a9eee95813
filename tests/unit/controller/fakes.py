"""In-memory fakes of the parts a reconciler is given (cairn.store.base.Store, cairn.k8s.base.KubeWriter,
the enqueue of the runtime), recording what the reconciler wrote, in order."""

from __future__ import annotations

from collections.abc import AsyncIterator, Hashable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cairn.api.taskrun import TaskRun
from cairn.config import Settings
from cairn.controller.cache import Body, Cache
from cairn.controller.deps import Deps
from cairn.domain.lifecycle import Admission, ForkSource, Recorded, Register
from cairn.k8s.base import NamespaceTerminating, PodRejected
from cairn.store.base import Completion, Ending, QueueRow, QueueStats, Registration, RoundResult
from tests.unit.builders import SETTINGS, T0


@dataclass
class FakeStore:
    """The store's state as the reconcilers see it, and every write they made (`writes`)."""

    admit_on_register: bool = False  # register_run says the queue had room: admitted at once
    runs: dict[str, Admission] = field(default_factory=dict)
    completions: dict[str, Completion] = field(default_factory=dict)  # what complete_token answers, by token
    recorded_by_run: dict[str, Recorded] = field(default_factory=dict)
    queues: dict[tuple[str, str], QueueRow] = field(default_factory=dict)
    rounds: dict[tuple[str, str], RoundResult] = field(default_factory=dict)
    stats: QueueStats = field(default_factory=lambda: QueueStats(0, 0, None, 0))
    live: list[tuple[str, str, str, str]] = field(default_factory=list)
    waiting_queues: list[tuple[str, str]] = field(default_factory=list)
    notifications: list[str] = field(default_factory=list)
    forks: dict[tuple[str, str], ForkSource] = field(default_factory=dict)  # fork_source answers, by (ns, name)
    writes: list[tuple[Any, ...]] = field(default_factory=list)
    looks: int = 0  # how many times a reconcile read a run's view (look)
    _where: dict[str, tuple[str, str]] = field(default_factory=dict)

    def admit(self, uid: str, namespace: str, adm: Admission) -> None:
        self.runs[uid] = adm
        self._where[uid] = (namespace, adm.queue)

    def names(self) -> list[str]:
        return [w[0] for w in self.writes]

    async def upsert_queue(self, row: QueueRow) -> None:
        self.writes.append(("upsert_queue", row))
        self.queues[(row.namespace, row.name)] = row

    async def delete_queue(self, namespace: str, name: str, uid: str) -> None:
        self.writes.append(("delete_queue", namespace, name, uid))
        if (row := self.queues.get((namespace, name))) is not None and row.uid == uid:
            del self.queues[(namespace, name)]

    async def queues_with_waiting_runs(self) -> list[tuple[str, str]]:
        return list(self.waiting_queues)

    async def admission_round(self, namespace: str, queue: str, now: datetime) -> RoundResult:
        self.writes.append(("admission_round", namespace, queue, now))
        return self.rounds.get((namespace, queue), RoundResult())

    async def queue_stats(self, namespace: str, queue: str) -> QueueStats:
        return self.stats

    async def register_run(self, run: Register) -> Registration:
        if run.uid in self.runs:  # ON CONFLICT DO NOTHING: the store has it, nothing is written
            return Registration(known=True)
        self.writes.append(("register_run", run))
        if not self.admit_on_register:
            return Registration()
        admitted = Admission(state="admitted", queue=run.queue, snapshot=run.snapshot)
        self.admit(run.uid, run.namespace, admitted)
        return Registration(admitted=admitted)

    async def admission(self, uid: str) -> Admission | None:
        return self.runs.get(uid)

    async def look(self, uid: str) -> tuple[Admission | None, Recorded]:
        self.looks += 1
        admission = self.runs.get(uid)
        return admission, self.recorded_by_run.get(uid, Recorded()) if admission is not None else Recorded()

    async def fork_source(self, namespace: str, name: str) -> ForkSource | None:
        return self.forks.get((namespace, name))

    async def requeue(self, uid: str, ending: Ending, not_before: datetime) -> tuple[str, str] | None:
        self.writes.append(("end_attempt", uid, ending.attempt, ending.exit_code, ending.reason))
        self.writes.append(("requeue", uid, not_before))
        return self._where.get(uid)

    async def finish(self, uid: str, phase: str, retention: timedelta) -> tuple[str, str] | None:
        self.writes.append(("finish", uid, phase, retention))
        return self._where.pop(uid, None)

    async def forget(self, uid: str, retention: timedelta) -> tuple[str, str] | None:
        self.writes.append(("forget", uid, retention))
        return self._where.pop(uid, None)

    async def live_runs(self, older_than: datetime) -> list[tuple[str, str, str, str]]:
        return list(self.live)

    async def purge_expired(self, batch: int, keep: int) -> int:
        self.writes.append(("purge_expired",))
        return 0

    async def begin_attempt(self, uid: str, attempt: int, namespace: str, pod: str) -> None:
        self.writes.append(("begin_attempt", uid, attempt, namespace, pod))

    async def end_attempt(self, uid: str, attempt: int, exit_code: int | None, reason: str) -> None:
        self.writes.append(("end_attempt", uid, attempt, exit_code, reason))

    async def recorded(self, uid: str) -> Recorded:
        return self.recorded_by_run.get(uid, Recorded())

    async def suspend(self, uid: str, ending: Ending) -> tuple[str, str] | None:
        self.writes.append(("end_attempt", uid, ending.attempt, ending.exit_code, ending.reason))
        self.writes.append(("suspend", uid))
        return self._where.get(uid)

    async def wake(self, uid: str, key: str) -> tuple[str, str] | None:
        self.writes.append(("wake", uid, key))
        return self._where.get(uid)

    async def complete_token(
        self, token_id: str, data: Any, *, by: str, secret: str | None = None, namespace: str | None = None
    ) -> Completion:
        self.writes.append(("complete_token", token_id, data, by, namespace))
        return self.completions.get(token_id, Completion("NotFound"))

    async def progress(self) -> AsyncIterator[str]:
        for uid in self.notifications:
            yield uid


@dataclass
class FakeKube:
    """The API server as the reconcilers write to it."""

    reject: str | None = None  # create_pod raises PodRejected with this message
    terminating: bool = False  # create_pod raises NamespaceTerminating
    taskruns: set[tuple[str, str, str]] = field(default_factory=set)  # (namespace, name, uid) that exist
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)  # TaskRuns created (or there before), by name
    writes: list[tuple[Any, ...]] = field(default_factory=list)
    status_failures: int = 0  # the next this many status patches fail (the API server is unreachable)

    def names(self) -> list[str]:
        return [w[0] for w in self.writes]

    def status_patches(self) -> list[dict[str, Any]]:
        return [w[3] for w in self.writes if w[0] == "patch_taskrun_status"]

    def events(self) -> list[tuple[str, str, str]]:
        return [(w[1], w[2], w[3]) for w in self.writes if w[0] == "post_event"]

    async def create_pod(self, body: dict[str, Any]) -> bool:
        if self.terminating:
            raise NamespaceTerminating(f"namespace {body['metadata']['namespace']} is being terminated")
        if self.reject is not None:
            raise PodRejected(self.reject)
        self.writes.append(("create_pod", body["metadata"]["name"], body))
        return True

    async def delete_pod(self, namespace: str, name: str, *, force: bool = False) -> None:
        self.writes.append(("delete_pod", namespace, name, force))

    async def annotate_pod(self, namespace: str, name: str, annotations: dict[str, str]) -> None:
        self.writes.append(("annotate_pod", namespace, name, annotations))

    async def patch_taskrun_status(self, namespace: str, name: str, patch: dict[str, Any]) -> bool:
        if self.status_failures:
            self.status_failures -= 1
            raise ConnectionError("the API server is unreachable")
        self.writes.append(("patch_taskrun_status", namespace, name, patch))
        return True

    async def patch_queue_status(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self.writes.append(("patch_queue_status", namespace, name, patch))

    async def delete_taskrun(self, namespace: str, name: str) -> None:
        self.writes.append(("delete_taskrun", namespace, name))

    async def post_event(self, obj: dict[str, Any], type_: str, reason: str, message: str, now: datetime) -> None:
        self.writes.append(("post_event", obj["metadata"]["name"], type_, reason, message))

    async def taskrun_exists(self, namespace: str, name: str, uid: str) -> bool:
        return (namespace, name, uid) in self.taskruns

    async def create_taskrun(self, body: dict[str, Any]) -> bool:
        name = body["metadata"]["name"]
        if name in self.runs:
            return False
        self.runs[name] = body
        self.writes.append(("create_taskrun", name))
        return True

    async def cancel_taskrun(self, namespace: str, name: str) -> None:
        self.writes.append(("cancel_taskrun", namespace, name))

    async def list_taskruns(self, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        return [
            b
            for b in self.runs.values()
            if b["metadata"].get("namespace") == namespace
            and all((b["metadata"].get("labels") or {}).get(k) == v for k, v in labels.items())
        ]

    async def patch_schedule_status(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self.writes.append(("patch_schedule_status", namespace, name, patch))

    async def patch_token_completion_status(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self.writes.append(("patch_token_completion_status", namespace, name, patch))


@dataclass
class Enqueued:
    """What the reconcilers handed to the work queues: (queue, key, after seconds)."""

    calls: list[tuple[str, Hashable, float]] = field(default_factory=list)
    later: list[tuple[str, Hashable]] = field(default_factory=list)  # (queue, key) added for later

    def __call__(self, queue: str, key: Hashable, after: float = 0.0, *, later: bool = False) -> None:
        self.calls.append((queue, key, after))
        if later:
            self.later.append((queue, key))

    def of(self, queue: str) -> list[tuple[Any, float]]:
        return [(k, a) for q, k, a in self.calls if q == queue]


@dataclass
class World:
    deps: Deps
    store: FakeStore
    kube: FakeKube
    enqueued: Enqueued
    keep: dict[str, Any] = field(default_factory=dict)  # reconcilers that live as long as the world

    @property
    def cache(self) -> Cache:
        return self.deps.cache


def world(*, now: datetime = T0, store: FakeStore | None = None, kube: FakeKube | None = None) -> World:
    store = store or FakeStore()
    kube = kube or FakeKube()
    enqueued = Enqueued()
    deps = Deps(
        store=store,
        kube=kube,
        cache=Cache(),
        clock=lambda: now,
        settings=Settings.model_validate({"database_url": "postgresql://cairn@localhost/cairn"}),
        lifecycle=SETTINGS,
        enqueue=enqueued,
    )
    return World(deps, store, kube, enqueued)


def body(model: TaskRun | Any) -> Body:
    """A model as the watch delivers it."""
    out: Body = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    return out
