"""The life of a TaskRun, decided from what is observed (pure: no I/O, time passed in).

`plan()` reads a snapshot of everything relevant to one run — the TaskRun, its Task, its row in the
store (admission), its pods, its recorded progress — and returns what to do: register it in its
queue, create or delete a pod, release or requeue its slot, patch its status, post events, and when
to look again. The controller applies the plan; applying it twice is harmless, so a crash at any
point is repaired by the next reconcile, which sees the same world and decides the same thing.

Phases: Queued -> Starting -> Running -> (Retrying | Waiting -> Queued -> Starting -> Running)*
        -> Succeeded | Failed | Cancelled.
A run that waits (a sleep, a token, its children) ends its pod and gives its slot back: its attempt
ends as Suspended (not spent), the run is Waiting, and when the wait is over it queues again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from cairn.api.common import RESULT_STATUS_MAX_BYTES
from cairn.api.task import Task
from cairn.api.taskrun import (
    Attempt,
    ForkedFrom,
    Phase,
    Progress,
    StepEntry,
    TaskRevision,
    TaskRun,
    TaskRunSpec,
    TaskRunStatus,
    TaskSnapshot,
    TokenEntry,
)
from cairn.domain import naming, retry
from cairn.domain.admission import Limits, WaitReason, explain
from cairn.domain.conditions import set_condition
from cairn.domain.podspec import RunRef, Runtime, memory_limit, render_pod
from cairn.domain.quantity import from_bytes, to_bytes
from cairn.domain.storable import Unstorable, storable_json
from cairn.domain.termination import Outcome, PodView, StillRunning, Termination, classify, missing
from cairn.domain.timefmt import format_time, parse_time
from cairn.domain.waits import SUSPENDED, ChildView, WaitView, Wake

# A pod the operator created may take a moment to show up in its watch; only after this long is a
# missing pod treated as lost.
POD_APPEAR_GRACE = timedelta(seconds=30)

ADMITTED = "Admitted"
SUCCEEDED = "Succeeded"


# -- inputs ----------------------------------------------------------------------------------------
RunState = Literal["queued", "admitted", "waiting", "finished"]
TASK_NOT_FOUND = "TaskNotFound"
EXPIRED = "Expired"  # spec.expireAfter passed before the run started
REJECTED = "Rejected"  # its queue held spec.maxQueued runs when it arrived
INVALID_FORK = "InvalidFork"  # spec.from names no run, or a step its run never recorded


@dataclass(frozen=True)
class StoredAttempt:
    """An attempt as the store recorded it (times already formatted for a status)."""

    number: int
    pod: str
    start_time: str | None = None
    finish_time: str | None = None
    exit_code: int | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Admission:
    """The run's row in the store, with the limits of its queue (None: the Queue does not exist)."""

    state: RunState
    queue: str
    snapshot: TaskSnapshot
    wait_reason: WaitReason | None = None
    limits: Limits | None = None
    wait: WaitView | None = None  # the last wait that ended one of its pods
    wait_until: datetime | None = None  # waiting on a rate: when its chance comes
    phase: str | None = None  # once finished: the phase the store recorded
    attempts: tuple[StoredAttempt, ...] = ()  # once finished: the attempts the store recorded


@dataclass(frozen=True)
class Recorded:
    """What the task recorded through the checkpoint API."""

    steps_completed: int = 0
    last_step: str | None = None
    state_note: str | None = None
    updated: datetime | None = None
    result: str | None = None  # JSON text of the final result, once recorded
    # (key, attempt, started, completed, tries: how many a step retried in its pod took, else None)
    recent: tuple[tuple[str, int, datetime | None, datetime, int | None], ...] = ()
    tokens: tuple[TokenEntry, ...] = ()  # newest first


@dataclass(frozen=True)
class ForkSource:
    """The run a fork (spec.from) starts from, as the store keeps it (its TaskRun may be gone)."""

    uid: str
    task: str
    payload: str | None
    snapshot: TaskSnapshot
    steps: tuple[str, ...]  # the keys it recorded, in the order they were recorded


@dataclass(frozen=True)
class RunView:
    run: TaskRun
    task: Task | None
    admission: Admission | None
    pods: Mapping[int, PodView]
    recorded: Recorded
    now: datetime
    jitter: float = 0.5  # in [0, 1): the randomness of the next backoff
    # The API server refused the pod of this attempt (its message): seen by the last apply.
    rejected_pod: tuple[int, str] | None = None
    children: tuple[ChildView, ...] = ()
    fork: ForkSource | None = None  # spec.from's run, when the store has it
    # Since when this operator's watches have been filling its cache (None: long enough): a pod its
    # pod watch has not listed yet is not a missing pod.
    watching_since: datetime | None = None


# -- outputs ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Register:
    """Put the run in its queue's line (what the store keeps of it)."""

    uid: str
    namespace: str
    name: str
    payload: str | None
    queue: str
    priority: int
    key: str | None
    created: datetime
    snapshot: TaskSnapshot
    parent: tuple[str, str, int] | None = None  # a child run: (parent uid, the parent's step key, its index)
    not_before: datetime | None = None  # spec.delay or spec.notBefore: not admitted before then
    fork: tuple[str, str] | None = None  # (source uid, step key): copy the source's steps recorded before it
    labels: tuple[tuple[str, str], ...] = ()  # the TaskRun's labels, kept with its history
    first_pod: str | None = None  # its first attempt's pod: begun with the registration if admitted at once


@dataclass(frozen=True)
class Requeue:
    """Give the slot back and wait in the queue again until not_before (a backoff)."""

    not_before: datetime


@dataclass(frozen=True)
class Finish:
    phase: Phase


@dataclass(frozen=True)
class Suspend:
    """The pod stopped for a wait: give the slot back; the run waits (or queues, if the wait is over)."""


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class CreatePod:
    attempt: int
    body: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])


@dataclass
class Plan:
    register: Register | None = None
    create_pod: CreatePod | None = None
    delete_pods: list[tuple[str, bool]] = field(default_factory=list)  # (name, force)
    release: Requeue | Finish | Suspend | None = None
    wake: Wake | None = None
    kick: bool = False  # an admission round on its queue (a woken run queues again)
    cancel_children: list[str] = field(default_factory=list)
    create_runs: list[dict[str, Any]] = field(default_factory=list)  # the onFailure run of a failed run
    status: dict[str, Any] | None = None  # a merge patch of .status
    events: list[Event] = field(default_factory=list)
    delete_run: bool = False
    recheck_at: datetime | None = None
    ended: Attempt | None = None  # the attempt that ended in this reconcile, for the store's history
    annotate_pod: tuple[str, dict[str, str]] | None = None  # (pod, annotations to merge into it)

    def recheck(self, at: datetime | None) -> None:
        if at is not None and (self.recheck_at is None or at < self.recheck_at):
            self.recheck_at = at


@dataclass(frozen=True)
class Settings:
    runtime: Runtime
    pod_appear_grace: timedelta = POD_APPEAR_GRACE


# -- the decision ----------------------------------------------------------------------------------
class _Builder:
    """The status being built for one reconcile, and the plan around it."""

    def __init__(self, view: RunView, settings: Settings) -> None:
        self.view = view
        self.settings = settings
        self.run = view.run
        self.old = view.run.status or TaskRunStatus()
        self.new = self.old
        self.plan = Plan()
        self.generation = view.run.metadata.generation

    def set(self, **changes: Any) -> None:
        self.new = replace_model(self.new, **changes)

    def condition(self, type_: str, status: Literal["True", "False", "Unknown"], reason: str, message: str) -> None:
        self.set(
            conditions=set_condition(
                self.new.conditions,
                type_,
                status,
                reason,
                message,
                now=self.view.now,
                generation=self.generation,
            )
        )

    def event(self, type_: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        self.plan.events.append(Event(type_, reason, message))

    def done(self) -> Plan:
        self._mirror_progress()
        if status_patch(self.old, self.new):
            # observedGeneration rides along with a real change; alone it is not worth a request.
            self.set(observed_generation=self.generation)
            self.plan.status = status_patch(self.old, self.new)
        return self.plan

    def _mirror_progress(self) -> None:
        rec = self.view.recorded
        if rec.tokens and list(rec.tokens) != (self.new.tokens or []):
            self.set(tokens=list(rec.tokens))
        if rec.steps_completed == 0 and rec.state_note is None:
            return
        progress = Progress(
            steps_completed=rec.steps_completed,
            last_step=rec.last_step,
            state=rec.state_note[:256] if rec.state_note else None,
            updated_time=format_time(rec.updated) if rec.updated else None,
        )
        if progress != self.new.progress:
            self.set(progress=progress)
        steps = [
            StepEntry(
                key=key,
                attempt=attempt,
                start_time=format_time(started) if started else None,
                completion_time=format_time(completed),
                tries=tries,
            )
            for key, attempt, started, completed, tries in rec.recent
        ]
        if steps and steps != (self.new.steps or []):
            self.set(steps=steps)


def replace_model(model: TaskRunStatus, **changes: Any) -> TaskRunStatus:
    return model.model_copy(update=changes)


def status_patch(old: TaskRunStatus, new: TaskRunStatus) -> dict[str, Any] | None:
    """A JSON merge patch turning `old` into `new` (top-level fields; lists are replaced whole)."""
    before = old.model_dump(mode="json", by_alias=True)
    after = new.model_dump(mode="json", by_alias=True)
    patch = {k: v for k, v in after.items() if before.get(k) != v}
    return patch or None


def plan(view: RunView, settings: Settings) -> Plan:
    b = _Builder(view, settings)
    run, status = view.run, b.old
    if run.metadata.deletion_timestamp:
        return Plan()
    if status.phase is not None and status.phase.finished:
        return _finished(b)
    if run.spec.cancel:
        return _cancel(b)

    adm = view.admission
    if adm is None:
        return _register(b)

    snapshot = adm.snapshot
    attempts = list(status.attempts or [])
    current = attempts[-1] if attempts else None
    deadline = _run_deadline(snapshot, status)

    if current is not None and current.finish_time is None:
        if adm.wait is not None and adm.wait.attempt == current.number:
            return _suspending(b, settings, adm, adm.wait, current, deadline)
        return _attempt_in_flight(b, settings, adm, current, deadline)
    if deadline is not None and view.now >= deadline:
        return _finish(b, Phase.FAILED, "MaxDurationExceeded", _max_duration_message(snapshot))
    if adm.state == "waiting":
        return _suspended(b, adm, deadline)
    if adm.state == "admitted":
        return _start_attempt(b, settings, adm, len(attempts) + 1)
    if adm.state == "finished" and adm.wait_reason is WaitReason.REJECTED:
        return _finish(b, Phase.FAILED, REJECTED, explain(WaitReason.REJECTED, adm.queue, adm.limits, None))
    if adm.state == "finished":
        # The store says done but the status never said so (a crash before its write): say what the
        # store recorded, else that it was lost.
        b.set(attempts=_with_stored(attempts, adm.attempts))
        if adm.phase in (Phase.SUCCEEDED.value, Phase.FAILED.value, Phase.CANCELLED.value):
            phase = Phase(adm.phase)
            return _finish(
                b, phase, phase.value, f"the run ended {phase.value} (its status is written after a restart)"
            )
        return _finish(b, Phase.FAILED, "Lost", "the run's record ended without an outcome")
    expires = _expires(b.run, snapshot) if not attempts else None
    if expires is not None and view.now >= expires:
        ttl = b.run.spec.expire_after or snapshot.spec.expire_after
        return _finish(
            b, Phase.FAILED, EXPIRED, f"not started within expireAfter ({ttl}) of its creation; it held nothing"
        )
    return _waiting(b, adm, min((t for t in (deadline, expires) if t is not None), default=None))


def _with_stored(attempts: list[Attempt], stored: tuple[StoredAttempt, ...]) -> list[Attempt] | None:
    """The status's attempts completed from the store's: those whose writes never landed (a crash
    within the moment status writes wait to be coalesced) are told as the store recorded them."""
    by_number = {a.number: a for a in attempts}
    for s in stored:
        known = by_number.get(s.number)
        if known is not None and known.finish_time is not None:
            continue
        base = known or Attempt(number=s.number, pod=s.pod, start_time=s.start_time)
        by_number[s.number] = base.model_copy(
            update={"finish_time": s.finish_time, "exit_code": s.exit_code, "reason": s.reason}
        )
    return [by_number[n] for n in sorted(by_number)] or None


def _register(b: _Builder) -> Plan:
    run, task = b.view.run, b.view.task
    if task is None:
        message = (
            f'Task "{run.spec.task_ref.name}" does not exist in namespace {run.metadata.namespace}; '
            "the run starts when it is created"
        )
        if b.old.reason != TASK_NOT_FOUND:
            b.event("Warning", TASK_NOT_FOUND, message)
        b.set(phase=Phase.QUEUED, reason=TASK_NOT_FOUND, message=message)
        b.condition(ADMITTED, "False", TASK_NOT_FOUND, message)
        return b.done()
    if run.spec.payload is not None:
        try:
            storable_json(json.loads(run.spec.payload), "spec.payload")
        except json.JSONDecodeError as e:
            message = f"spec.payload is not JSON: {e.msg} at line {e.lineno} column {e.colno} (character {e.pos})"
            return _finish(b, Phase.FAILED, "InvalidPayload", message)
        except Unstorable as e:  # JSON, but not what PostgreSQL can store (the store would refuse it)
            return _finish(b, Phase.FAILED, "InvalidPayload", str(e))
    snapshot = TaskSnapshot(
        name=task.metadata.name, uid=task.metadata.uid, generation=task.metadata.generation, spec=task.spec
    )
    payload, fork = run.spec.payload, None
    if run.spec.from_ is not None:
        refused = fork_refusal(run, b.view.fork)
        if refused is not None:
            return _finish(b, Phase.FAILED, INVALID_FORK, refused)
        source = b.view.fork
        assert source is not None
        if run.spec.from_.task_revision is TaskRevision.SOURCE:
            snapshot = source.snapshot
        payload = payload if payload is not None else source.payload
        fork = (source.uid, run.spec.from_.step)
        copied = steps_to_copy(source.steps, run.spec.from_.step) or 0
        b.set(
            forked_from=ForkedFrom(
                run=run.spec.from_.run, uid=source.uid, step=run.spec.from_.step, steps_copied=copied
            )
        )
    queue = run.spec.queue or task.spec.queue
    created = _created(run, b.view.now)
    notes = run.metadata.annotations
    parent = None
    if notes.get(naming.ANNOTATION_PARENT_UID) and notes.get(naming.ANNOTATION_PARENT_STEP):
        index = notes.get(naming.ANNOTATION_PARENT_INDEX, "0")
        parent = (
            notes[naming.ANNOTATION_PARENT_UID],
            notes[naming.ANNOTATION_PARENT_STEP],
            int(index) if index.isdigit() else 0,
        )
    b.plan.register = Register(
        uid=run.metadata.uid or "",
        namespace=run.metadata.namespace or "",
        name=run.metadata.name,
        payload=payload,
        queue=queue,
        priority=run.spec.priority,
        key=run.spec.concurrency_key,
        created=created,
        snapshot=snapshot,
        parent=parent,
        not_before=_not_before(run.spec, created),
        fork=fork,
        labels=tuple(sorted((run.metadata.labels or {}).items())),
        first_pod=naming.pod_name(run.metadata.name, 1),
    )
    if b.old.reason == TASK_NOT_FOUND:
        b.set(reason="Queued", message=f'waiting for a slot in queue "{queue}"')
    return b.done()


def fork_refusal(run: TaskRun, source: ForkSource | None) -> str | None:
    """Why spec.from cannot be honoured (naming what to change), or None."""
    want = run.spec.from_
    assert want is not None
    if source is None:
        return (
            f'spec.from.run: no run "{want.run}" in namespace {run.metadata.namespace} (neither a TaskRun nor a '
            "record kept after its deletion): name an existing run"
        )
    if source.task != run.spec.task_ref.name:
        return (
            f'spec.taskRef: the fork runs Task "{run.spec.task_ref.name}" but run "{want.run}" ran "{source.task}": '
            "a fork runs its source's Task"
        )
    if steps_to_copy(source.steps, want.step) is None:
        listed = ", ".join(source.steps[:50]) or "none"
        more = f" (and {len(source.steps) - 50} more)" if len(source.steps) > 50 else ""
        return f'spec.from.step: run "{want.run}" recorded no step "{want.step}"; its steps: {listed}{more}'
    return None


def steps_to_copy(recorded: tuple[str, ...] | list[str], key: str) -> int | None:
    """How many of the source's steps (in the order recorded) a fork from `key` copies: those before
    it when it was recorded; all of them when it is the next occurrence of its name the source never
    reached (the step it failed in: `work#3` after work#0..work#2, or `upload#0` after a download);
    None for any other key (a typo, or an occurrence past the next)."""
    if key in recorded:
        return list(recorded).index(key)
    name, _, occurrence = key.rpartition("#")
    if not occurrence.isdigit():
        return None
    reached = sum(1 for k in recorded if k.rpartition("#")[0] == name)
    return len(recorded) if int(occurrence) == reached else None


def _waiting(b: _Builder, adm: Admission, deadline: datetime | None) -> Plan:
    reason = adm.wait_reason.value if adm.wait_reason else "Queued"
    message = (
        explain(adm.wait_reason, adm.queue, adm.limits, b.run.spec.concurrency_key, adm.wait_until)
        if adm.wait_reason
        else f'waiting for a slot in queue "{adm.queue}"'
    )
    if adm.wait_reason is WaitReason.DELAYED:
        created = _created(b.run, b.view.now)
        at = _not_before(b.run.spec, created)
        why = f"spec.delay {b.run.spec.delay}" if b.run.spec.delay else "spec.notBefore"
        message = f'not admitted before {format_time(at) if at else "?"} ({why}), then waits for queue "{adm.queue}"'

    retrying = bool(b.old.attempts)
    if retrying and adm.wait_reason is WaitReason.BACKING_OFF:
        message = f"waiting until {b.old.next_attempt_time} before attempt {len(b.old.attempts or []) + 1}"
    if _resumed(b.old):
        # Its wait is over: it is back in line, ahead of the runs of its priority that never started.
        retrying = False
        key = adm.wait.key if adm.wait else "?"
        message = f"the wait of step {key} is over; {message}"
        reason = adm.wait_reason.value if adm.wait_reason else "Resuming"
        if b.old.phase is Phase.WAITING:
            b.plan.kick = True
    b.set(phase=Phase.RETRYING if retrying else Phase.QUEUED, reason=reason, message=message, queue=adm.queue)
    b.condition(ADMITTED, "False", reason, message)
    b.plan.recheck(deadline)  # maxDuration runs on while a run waits for a slot
    return b.done()


def _start_attempt(b: _Builder, settings: Settings, adm: Admission, number: int) -> Plan:
    view, run = b.view, b.view.run
    ref = RunRef(
        namespace=run.metadata.namespace or "",
        name=run.metadata.name,
        uid=run.metadata.uid or "",
        task=adm.snapshot.name,
        schedule=run.metadata.annotations.get(naming.LABEL_SCHEDULE),
        fire_time=run.metadata.annotations.get(naming.ANNOTATION_FIRE_TIME),
    )
    if view.rejected_pod is not None and view.rejected_pod[0] == number:
        # The API server will never accept this pod (an invalid spec, or the namespace's Pod
        # Security level): the run fails, its slot is released, no pod exists.
        message = f"the API server refused the attempt's pod: {view.rejected_pod[1]}"
        return _finish(b, Phase.FAILED, "PodRejected", message)
    memory = _next_memory(adm.snapshot, b.old.attempts or [])
    pod_name = naming.pod_name(run.metadata.name, number)
    existing = view.pods.get(number)
    if existing is not None:
        started = existing.created or view.now  # adopted: created before a crash, never recorded
    else:
        body = render_pod(ref, adm.snapshot.spec, number, settings.runtime, memory_limit_bytes=memory)
        b.plan.create_pod = CreatePod(number, body)
        started = view.now
    record = Attempt(
        number=number,
        pod=pod_name,
        start_time=format_time(started),
        memory_limit=from_bytes(memory) if memory is not None else None,
    )
    first = number == 1
    resumed = _resumed(b.old)
    b.set(
        queue=adm.queue,
        task=adm.snapshot,
        attempt=number,
        attempts=[*(b.old.attempts or []), record],
        start_time=b.old.start_time or format_time(started),
        next_attempt_time=None,
    )
    b.condition(ADMITTED, "True", "Admitted", f'holds a slot in queue "{adm.queue}"')
    _attempt_phase(b, number, pod_name, running=existing is not None and existing.phase == "Running")
    if not first:
        # An Event is for what a person needs to know (a retry, a resumption), not for every start:
        # the status says the run started, and each Event is a request to the API server.
        b.event("Normal", "Resumed" if resumed else "Retried", f"attempt {number} started in pod {pod_name}")
    if existing is not None and existing.phase in ("Succeeded", "Failed"):
        # Adopted after it ended (its start never reached the status before a crash or a failover):
        # no event of that pod is coming to end the attempt, so it is looked at again now.
        b.plan.recheck(view.now)
    else:
        b.plan.recheck(view.now + settings.pod_appear_grace)
    return b.done()


def _attempt_phase(b: _Builder, number: int, pod_name: str, *, running: bool) -> None:
    """Starting until the attempt's pod runs, then Running; the reason says which attempt it is."""
    word = "running" if running else "starting"
    attempts = b.new.attempts or []
    resumed = len(attempts) >= 2 and attempts[-2].reason == SUSPENDED
    b.set(
        phase=Phase.RUNNING if running else Phase.STARTING,
        reason="Started" if number == 1 else "Resumed" if resumed else "Retried",
        message=f"attempt {number} is {word} in pod {pod_name}",
    )
    b.condition(SUCCEEDED, "Unknown", word.capitalize(), f"attempt {number} is {word}")


def _attempt_in_flight(
    b: _Builder, settings: Settings, adm: Admission, current: Attempt, deadline: datetime | None
) -> Plan:
    view = b.view
    pod = view.pods.get(current.number)
    started = parse_time(current.start_time) if current.start_time else view.now
    spec = adm.snapshot.spec
    past_deadline = deadline is not None and view.now >= deadline
    outcome: Termination | StillRunning
    if pod is None:
        # After a restart the TaskRuns' listing may come before the pods': the grace runs from
        # whichever is later, the attempt's start or the watches' own.
        appear_by = max(started + settings.pod_appear_grace, _pods_listed_by(view, settings) or started)
        if view.now < appear_by and not past_deadline:
            b.plan.recheck(appear_by)
            return b.done()
        outcome = missing(view.now)
        b.event(
            "Warning",
            "PodVanished",
            f"repaired: the pod of attempt {current.number} no longer exists (deleted, or lost with its node); "
            "the attempt is ended as PodDeleted and the run goes on",
        )
    else:
        outcome = classify(pod, now=view.now, started=started, start_timeout=spec.start_timeout.delta)
    # A success stands even when it is seen after maxDuration: the work is done.
    if past_deadline and not (isinstance(outcome, Termination) and outcome.outcome is Outcome.SUCCEEDED):
        if pod is not None and pod.phase not in ("Succeeded", "Failed"):
            b.plan.delete_pods.append((pod.name, False))
        return _end_run_during_attempt(
            b, current, Phase.FAILED, "MaxDurationExceeded", _max_duration_message(adm.snapshot)
        )
    if isinstance(outcome, StillRunning):
        if pod is not None and pod.node and current.node != pod.node:
            attempts = [*(b.old.attempts or [])[:-1], current.model_copy(update={"node": pod.node})]
            b.set(attempts=attempts)
        if pod is not None and pod.phase == "Running" and b.old.phase is not Phase.RUNNING:
            _attempt_phase(b, current.number, pod.name, running=True)
        if pod is not None and pod.phase == "Running" and spec.kueue is not None and view.recorded.updated:
            last = format_time(view.recorded.updated)
            if pod.last_step_at != last:  # one pod patch per recorded step, for Tasks in Kueue only
                b.plan.annotate_pod = (pod.name, {naming.ANNOTATION_LAST_STEP_AT: last})
        elif outcome.stuck_on and b.old.reason != outcome.stuck_on:
            detail = f": {outcome.detail}" if outcome.detail else ""
            b.set(reason=outcome.stuck_on, message=f"attempt {current.number} waits: {outcome.stuck_on}{detail}")
        b.plan.recheck(outcome.recheck_at)
        b.plan.recheck(deadline)
        return b.done()

    t = outcome
    if pod is not None and pod.phase not in ("Succeeded", "Failed"):
        # It will not finish by itself (its node is lost, or it can never start): remove it, so
        # that the next attempt is the only pod of this run.
        b.plan.delete_pods.append((pod.name, t.reason == "NodeLost"))
    return _attempt_ended(b, adm, current, t, deadline)


def _attempt_ended(b: _Builder, adm: Admission, current: Attempt, t: Termination, deadline: datetime | None) -> Plan:
    view = b.view
    policy = adm.snapshot.spec.retry
    earlier = (b.old.attempts or [])[:-1]
    spent = retry.Spent(
        counted=sum(1 for a in earlier if a.counted),
        disruptions=sum(1 for a in earlier if a.counted is False and a.reason != SUSPENDED),  # a wait is neither
    )
    decision = retry.decide(policy, t, spent, attempt=current.number, jitter_sample=view.jitter)
    ended = current.model_copy(
        update={
            "finish_time": format_time(t.finished_at or view.now),
            "exit_code": t.exit_code,
            "reason": t.reason,
            "message": t.message[:1024] or None,
            "counted": decision.counted if isinstance(decision, retry.Retry) else t.outcome is not Outcome.DISRUPTED,
        }
    )
    b.set(attempts=[*earlier, ended])
    b.plan.ended = ended

    if isinstance(decision, retry.Succeed):
        return _finish(b, Phase.SUCCEEDED, "Succeeded", f"attempt {current.number} completed")
    if isinstance(decision, retry.Fail):
        return _finish(b, Phase.FAILED, decision.reason, decision.message)

    next_at = view.now + decision.delay
    if deadline is not None and next_at >= deadline:
        return _finish(
            b,
            Phase.FAILED,
            "MaxDurationExceeded",
            f"{_max_duration_message(adm.snapshot)} (the next attempt would start after it)",
        )
    counted_note = "" if decision.counted else " (not counted: not the task's fault)"
    message = (
        f"attempt {current.number} ended: {t.reason}"
        + (f" (exit code {t.exit_code})" if t.exit_code is not None else "")
        + f"; attempt {current.number + 1} starts in {decision.delay.total_seconds():.1f}s{counted_note}"
    )
    b.plan.release = Requeue(not_before=next_at)
    b.set(phase=Phase.RETRYING, reason=t.reason, message=message, next_attempt_time=format_time(next_at))
    b.condition(ADMITTED, "False", "BackingOff", "the slot was given back until the next attempt")
    b.event("Warning", "AttemptFailed", message + (f": {t.message}" if t.message else ""))
    return b.done()


def _end_run_during_attempt(b: _Builder, current: Attempt, phase: Phase, reason: str, message: str) -> Plan:
    ended = current.model_copy(update={"finish_time": format_time(b.view.now), "reason": reason, "counted": True})
    b.set(attempts=[*(b.old.attempts or [])[:-1], ended])
    b.plan.ended = ended
    return _finish(b, phase, reason, message)


def _pods_listed_by(view: RunView, settings: Settings) -> datetime | None:
    """While an operator's pod watch may still be making its first listing, the moment from which
    a pod it has not seen can be taken as gone; None once that moment has passed."""
    if view.watching_since is None:
        return None
    listed_by = view.watching_since + settings.pod_appear_grace
    return listed_by if view.now < listed_by else None


def _live_pods(b: _Builder) -> list[PodView]:
    """Pods of the run still holding their place: not ended, and not force-deleted in this plan."""
    forced = {name for name, force in b.plan.delete_pods if force}
    return [p for p in b.view.pods.values() if p.phase not in ("Succeeded", "Failed") and p.name not in forced]


def _finish(b: _Builder, phase: Phase, reason: str, message: str) -> Plan:
    view = b.view
    # The slot is given back once no pod of the run is left running (a stopped pod may take its
    # grace period to end): the queue's limit counts pods, not phases.
    listed_by = _pods_listed_by(view, b.settings)
    if _live_pods(b):
        b.plan.recheck(view.now + timedelta(seconds=5))
    elif listed_by is not None and not view.pods:  # none seen: the pod watch may not have listed it yet
        b.plan.recheck(listed_by)
    else:
        b.plan.release = Finish(phase)
    changes: dict[str, Any] = {
        "phase": phase,
        "reason": reason,
        "message": message[:1024],
        "completion_time": format_time(view.now),
        "next_attempt_time": None,
    }
    if phase is Phase.SUCCEEDED and view.recorded.result is not None:
        fits = len(view.recorded.result.encode()) <= RESULT_STATUS_MAX_BYTES
        changes["result"] = view.recorded.result if fits else None
        changes["result_truncated"] = not fits or None
    b.set(**changes)
    b.condition(SUCCEEDED, "True" if phase is Phase.SUCCEEDED else "False", reason, message)
    if b.new.conditions and any(c.type == ADMITTED and c.status == "True" for c in b.new.conditions):
        b.condition(ADMITTED, "False", "Finished", "the slot was released")
    if phase is not Phase.SUCCEEDED or len(b.new.attempts or []) > 1:
        # A plain success says so in the status only; one after failed attempts closes their story.
        b.event(
            "Normal" if phase is Phase.SUCCEEDED else "Warning",
            reason if phase is not Phase.SUCCEEDED else "Succeeded",
            message,
        )
    if phase is Phase.FAILED:
        _dead_letter(b, reason, message)
    ttl = _ttl(view, b.new)
    if ttl is not None:
        b.plan.recheck(view.now + timedelta(seconds=ttl))
    return b.done()


def unreadable(status: Mapping[str, Any], where: str, problem: str) -> Plan:
    """A TaskRun that does not parse (the API server should have refused it; an older CRD, or a
    write that skipped validation): it fails once, loudly, and the others are served."""
    if status.get("phase") == Phase.FAILED.value:
        return Plan()
    message = f"the TaskRun cannot be read: {where}: {problem}"[:1024]
    return Plan(
        status={"phase": Phase.FAILED.value, "reason": "InvalidSpec", "message": message},
        events=[Event("Warning", "InvalidSpec", message)],
    )


def waits_for_task(status: Mapping[str, Any]) -> bool:
    """Whether a run (its status as stored) is one a newly created Task may start: not seen yet, or
    queued because its Task was missing."""
    return not status or status.get("reason") == TASK_NOT_FOUND


def _cancel(b: _Builder) -> Plan:
    for pod in b.view.pods.values():
        if pod.phase not in ("Succeeded", "Failed") and not pod.deleting:
            b.plan.delete_pods.append((pod.name, False))
    attempts = list(b.old.attempts or [])
    if attempts and attempts[-1].finish_time is None:
        attempts[-1] = attempts[-1].model_copy(
            update={"finish_time": format_time(b.view.now), "reason": "Cancelled", "counted": False}
        )
        b.set(attempts=attempts)
        b.plan.ended = attempts[-1]
    b.plan.cancel_children = [c.name for c in b.view.children if not (c.finished or c.cancelling or c.abandon)]
    return _finish(b, Phase.CANCELLED, "Cancelled", "cancelled: spec.cancel was set")


def _finished(b: _Builder) -> Plan:
    view, status = b.view, b.old
    for pod in view.pods.values():
        if pod.phase not in ("Succeeded", "Failed") and not pod.deleting:
            b.plan.delete_pods.append((pod.name, False))
    if view.admission is not None and view.admission.state != "finished" and status.phase is not None:
        listed_by = _pods_listed_by(view, b.settings)
        if _live_pods(b):
            b.plan.recheck(view.now + timedelta(seconds=5))
        elif listed_by is not None and not view.pods:
            b.plan.recheck(listed_by)
        else:
            b.plan.release = Finish(status.phase)
    ttl = _ttl(view, status)
    if ttl is not None and status.completion_time:
        expires = parse_time(status.completion_time) + timedelta(seconds=ttl)
        if view.now >= expires:
            b.plan.delete_run = True
        else:
            b.plan.recheck(expires)
    return b.done()


# -- dead letters ----------------------------------------------------------------------------------
def _dead_letter(b: _Builder, reason: str, message: str) -> None:
    """A run that failed for good starts its Task's onFailure run (once: its name is the run's)."""
    run, view = b.run, b.view
    snapshot = b.new.task or (view.admission.snapshot if view.admission else None)
    hook = snapshot.spec.on_failure if snapshot is not None else None
    if hook is None or naming.ANNOTATION_FAILED_RUN in run.metadata.annotations:
        return  # an onFailure run that fails does not start another
    name = naming.dead_letter_name(run.metadata.name)
    payload = {
        "run": run.metadata.name,
        "namespace": run.metadata.namespace,
        "uid": run.metadata.uid,
        "task": snapshot.name if snapshot is not None else run.spec.task_ref.name,
        "reason": reason,
        "message": message[:1024],
        "lastStep": view.recorded.last_step,
    }
    spec: dict[str, Any] = {"taskRef": {"name": hook.task}, "payload": json.dumps(payload, separators=(",", ":"))}
    if hook.queue:
        spec["queue"] = hook.queue
    b.plan.create_runs.append(
        {
            "apiVersion": "cairn.dev/v1alpha1",
            "kind": "TaskRun",
            "metadata": {
                "name": name,
                "namespace": run.metadata.namespace,
                "labels": {naming.LABEL_PARENT: naming.label_value(run.metadata.name)},
                "annotations": {naming.ANNOTATION_FAILED_RUN: run.metadata.name},
            },
            "spec": spec,
        }
    )
    if b.old.phase is not Phase.FAILED:
        b.event("Normal", "OnFailure", f"started {name} (Task {hook.task}), the Task's onFailure hook")


# -- waits -----------------------------------------------------------------------------------------
# A wait's pod may take a moment to exit after it was told to; past this it is stopped.
SUSPEND_GRACE = timedelta(seconds=30)


def _resumed(status: TaskRunStatus) -> bool:
    """Its last attempt ended for a wait."""
    attempts = status.attempts or []
    return bool(attempts) and attempts[-1].reason == SUSPENDED


def _suspending(
    b: _Builder, settings: Settings, adm: Admission, wait: WaitView, current: Attempt, deadline: datetime | None
) -> Plan:
    """The attempt's pod was told to stop for a wait: once it has, the slot goes back."""
    view = b.view
    pod = view.pods.get(current.number)
    if pod is not None and pod.phase not in ("Succeeded", "Failed"):
        if view.now - wait.created >= SUSPEND_GRACE and not pod.deleting:
            b.plan.delete_pods.append((pod.name, False))
        b.plan.recheck(view.now + timedelta(seconds=5))
        return b.done()
    listed_by = _pods_listed_by(view, settings)
    if pod is None and listed_by is not None:
        # Not seen is not gone while the pod watch may still be listing: giving the slot back now
        # would let another run start beside a pod still running (the limit counts pods).
        b.plan.recheck(listed_by)
        return b.done()
    ended = current.model_copy(
        update={
            "finish_time": format_time(view.now),
            "exit_code": (pod.terminated or {}).get("exitCode") if pod is not None else None,
            "reason": SUSPENDED,
            "message": f"the pod stopped for a wait (step {wait.key}); the run resumes in a new pod",
            "counted": False,
        }
    )
    b.set(attempts=[*(b.old.attempts or [])[:-1], ended])
    b.plan.ended = ended
    b.plan.release = Suspend()
    b.event("Normal", "Waiting", f"attempt {current.number} stopped: {wait.message()}")
    return _wait_status(b, wait, deadline)


def _suspended(b: _Builder, adm: Admission, deadline: datetime | None) -> Plan:
    wait = adm.wait
    if wait is None:  # not seen from a well-formed store; say so rather than guess
        b.set(phase=Phase.WAITING, reason="Waiting", message="waiting (its wait is not recorded)")
        return b.done()
    if wait.due(b.view.now):
        b.plan.wake = Wake(wait.key)
    elif wait.stale():
        b.plan.wake = Wake(wait.key, repair=True)
        b.event("Warning", "WakeRepaired", f"repaired: every child of step {wait.key} had ended; the run resumes")
    return _wait_status(b, wait, deadline)


def _wait_status(b: _Builder, wait: WaitView, deadline: datetime | None) -> Plan:
    b.set(phase=Phase.WAITING, reason=wait.reason, message=wait.message(), next_attempt_time=None)
    b.condition(ADMITTED, "False", wait.reason, "the slot was given back while the run waits")
    if wait.done is None and wait.until is not None:
        # Past its time, the store (whose clock decides) may not agree yet: look again shortly, not at once.
        b.plan.recheck(max(wait.until, b.view.now + timedelta(seconds=1)) if wait.due(b.view.now) else wait.until)
    b.plan.recheck(deadline)  # maxDuration counts the wait
    return b.done()


# -- helpers ---------------------------------------------------------------------------------------
def _created(run: TaskRun, now: datetime) -> datetime:
    return parse_time(run.metadata.creation_timestamp) if run.metadata.creation_timestamp else now


def _not_before(spec: TaskRunSpec, created: datetime) -> datetime | None:
    """When a run for later may be admitted: created + spec.delay, or spec.notBefore."""
    if spec.delay is not None:
        return created + spec.delay.delta
    if spec.not_before is not None:
        return spec.not_before if spec.not_before.tzinfo else spec.not_before.replace(tzinfo=UTC)
    return None


def _expires(run: TaskRun, snapshot: TaskSnapshot) -> datetime | None:
    """When a run that has not started ends Expired: its creation + expireAfter (the run's, else the Task's)."""
    ttl = run.spec.expire_after or snapshot.spec.expire_after
    if ttl is None or not run.metadata.creation_timestamp:
        return None
    return parse_time(run.metadata.creation_timestamp) + ttl.delta


def _ttl(view: RunView, status: TaskRunStatus) -> int | None:
    """ttlSecondsAfterFinished of the Task the run started with; for a run that ended before it
    started (cancelled while queued, an invalid payload), of the Task it named."""
    if status.task is not None:
        return status.task.spec.ttl_seconds_after_finished
    if view.admission is not None:
        return view.admission.snapshot.spec.ttl_seconds_after_finished
    return view.task.spec.ttl_seconds_after_finished if view.task is not None else None


def _run_deadline(snapshot: TaskSnapshot, status: TaskRunStatus) -> datetime | None:
    if not snapshot.spec.max_duration or not status.start_time:
        return None
    return parse_time(status.start_time) + snapshot.spec.max_duration.delta


def _max_duration_message(snapshot: TaskSnapshot) -> str:
    return f"the run took longer than maxDuration ({snapshot.spec.max_duration}) since its first attempt"


def _next_memory(snapshot: TaskSnapshot, attempts: list[Attempt]) -> int | None:
    """The memory limit of the next attempt: the Task's, raised after OOM kills as the policy allows."""
    base = memory_limit(snapshot.spec)
    if not attempts:
        return base
    last = attempts[-1]
    limit = to_bytes(last.memory_limit) if last.memory_limit else base
    return retry.next_memory_limit(snapshot.spec.retry, last.reason, limit)
