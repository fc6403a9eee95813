"""How an attempt's pod is doing, read from the pod as the API server reports it (pure: no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from cairn.domain import naming
from cairn.domain.timefmt import parse_time

MESSAGE_MAX = 512

# Waiting reasons that will never get better by waiting, and those that might (for start_timeout).
_NEVER_STARTS = {"ErrImageNeverPull": "ImagePullFailed", "InvalidImageName": "ImagePullFailed"}
_MAY_START = {
    "ErrImagePull": "ImagePullFailed",
    "ImagePullBackOff": "ImagePullFailed",
    "CreateContainerConfigError": "ConfigError",
    "CreateContainerError": "ConfigError",
    "RunContainerError": "ConfigError",
}
# DisruptionTarget reasons (set by the control plane) -> how Cairn reports them.
KUEUE_TERMINATION_TARGET = "TerminationTarget"
_DISRUPTIONS = {
    "PreemptionByScheduler": "Preempted",
    "EvictionByEvictionAPI": "Evicted",
    "DeletionByTaintManager": "NodeLost",
    "DeletionByPodGC": "NodeLost",
    "TerminationByKubelet": "Evicted",
}


class Outcome(StrEnum):
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"  # the program exited non-zero
    OOM_KILLED = "OOMKilled"
    DEADLINE_EXCEEDED = "DeadlineExceeded"  # attemptTimeout
    DISRUPTED = "Disrupted"  # eviction, preemption, node lost, pod deleted: not the task's fault
    START_FAILED = "StartFailed"  # image or configuration: retrying will not help


@dataclass(frozen=True)
class Termination:
    outcome: Outcome
    reason: str  # PascalCase, shown in status and events
    exit_code: int | None = None
    message: str = ""
    conditions: frozenset[tuple[str, str]] = frozenset()  # (type, status) of the pod's conditions
    finished_at: datetime | None = None


@dataclass(frozen=True)
class PodView:
    """The parts of a pod the lifecycle reads."""

    name: str
    attempt: int
    phase: str
    uid: str = ""
    node: str | None = None
    reason: str | None = None
    message: str | None = None
    deleting: bool = False
    created: datetime | None = None
    conditions: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # type -> (status, reason)
    waiting_reason: str | None = None
    waiting_message: str | None = None
    terminated: dict[str, Any] | None = None  # the task container's terminated state
    memory_limit: str | None = None
    unschedulable: str | None = None  # the scheduler's message while no node can take the pod
    kueue_queue: str | None = None  # the LocalQueue, while Kueue's scheduling gate holds the pod
    last_step_at: str | None = None  # its cairn.dev/last-step-at annotation

    @staticmethod
    def parse(pod: dict[str, Any], attempt: int) -> PodView:
        meta, spec, status = pod.get("metadata", {}), pod.get("spec", {}), pod.get("status", {}) or {}
        statuses = status.get("containerStatuses") or []
        state = (statuses[0].get("state") if statuses else None) or {}
        containers = spec.get("containers") or [{}]
        limits = (containers[0].get("resources") or {}).get("limits") or {}
        return PodView(
            name=meta.get("name", ""),
            attempt=attempt,
            phase=status.get("phase") or "Pending",
            uid=meta.get("uid", ""),
            node=spec.get("nodeName"),
            reason=status.get("reason"),
            message=status.get("message"),
            deleting=bool(meta.get("deletionTimestamp")),
            created=parse_time(meta["creationTimestamp"]) if meta.get("creationTimestamp") else None,
            conditions={
                c["type"]: (c.get("status", "Unknown"), c.get("reason")) for c in status.get("conditions") or []
            },
            waiting_reason=(state.get("waiting") or {}).get("reason"),
            waiting_message=(state.get("waiting") or {}).get("message"),
            terminated=state.get("terminated"),
            memory_limit=str(limits["memory"]) if "memory" in limits else None,
            last_step_at=(meta.get("annotations") or {}).get(naming.ANNOTATION_LAST_STEP_AT),
            kueue_queue=(
                str((meta.get("labels") or {}).get(naming.KUEUE_QUEUE_LABEL, ""))
                if any(g.get("name") == naming.KUEUE_GATE for g in spec.get("schedulingGates") or [])
                else None
            ),
            unschedulable=next(
                (
                    c.get("message") or "no node can take the pod"
                    for c in status.get("conditions") or []
                    if (c.get("type"), c.get("status"), c.get("reason")) == ("PodScheduled", "False", "Unschedulable")
                ),
                None,
            ),
        )

    def same_for_lifecycle(self, other: PodView) -> bool:
        """Whether the lifecycle reads the two alike while the pod goes on: they differ at most in pod
        conditions other than the disruption marks. Those are read only into the outcome of a pod that
        has ended, from its newest body, and a pod ends by a change this does not ignore (its phase, a
        waiting reason, its deletion)."""
        return replace(self, conditions=_marks(self.conditions)) == replace(other, conditions=_marks(other.conditions))

    @property
    def disruption(self) -> str | None:
        status, reason = self.conditions.get("DisruptionTarget", ("False", None))
        if status == "True":
            return _DISRUPTIONS.get(reason or "", "Disrupted")
        # Kueue marks the pods of a Workload it evicts (preempted, deactivated...) before it deletes them.
        status, reason = self.conditions.get(KUEUE_TERMINATION_TARGET, ("False", None))
        if status == "True":
            return "Preempted" if "Preempted" in (reason or "") else "EvictedByKueue"
        return None


@dataclass(frozen=True)
class StillRunning:
    """No outcome yet; look again by `recheck_at` if nothing else happens first."""

    recheck_at: datetime | None = None
    stuck_on: str | None = None  # e.g. ImagePullBackOff, while start_timeout has not passed
    detail: str | None = None  # what the kubelet or the scheduler says of it


def _last_line(text: str | None) -> str:
    lines = [ln.strip() for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[-1][-MESSAGE_MAX:] if lines else ""


def _marks(conditions: dict[str, tuple[str, str | None]]) -> dict[str, tuple[str, str | None]]:
    return {t: c for t, c in conditions.items() if t in ("DisruptionTarget", KUEUE_TERMINATION_TARGET)}


def _conds(pod: PodView) -> frozenset[tuple[str, str]]:
    return frozenset((t, s) for t, (s, _r) in pod.conditions.items())


def classify(pod: PodView, *, now: datetime, started: datetime, start_timeout: timedelta) -> Termination | StillRunning:
    """The outcome of an attempt whose pod is `pod`, or that it has none yet."""
    term = pod.terminated or {}
    finished = parse_time(term["finishedAt"]) if term.get("finishedAt") else None
    if pod.phase == "Succeeded":
        return Termination(Outcome.SUCCEEDED, "Completed", 0, _last_line(term.get("message")), _conds(pod), finished)
    if pod.phase == "Failed":
        exit_code = term.get("exitCode")
        message = _last_line(term.get("message")) or _last_line(pod.message)
        if pod.reason == "DeadlineExceeded":
            return Termination(
                Outcome.DEADLINE_EXCEEDED,
                "DeadlineExceeded",
                exit_code,
                message or "the attempt ran longer than attemptTimeout",
                _conds(pod),
                finished,
            )
        if term.get("reason") == "OOMKilled":
            return Termination(
                Outcome.OOM_KILLED,
                "OOMKilled",
                exit_code,
                message or f"the container exceeded its memory limit ({pod.memory_limit})",
                _conds(pod),
                finished,
            )
        disruption = pod.disruption or ("Evicted" if pod.reason == "Evicted" else None)
        if disruption:
            return Termination(
                Outcome.DISRUPTED,
                disruption,
                exit_code,
                message or _last_line(pod.message),
                _conds(pod),
                finished,
            )
        if pod.deleting:
            # Killed because someone deleted its pod (a drain, kubectl delete): not the task's fault.
            return Termination(
                Outcome.DISRUPTED,
                "PodDeleted",
                exit_code,
                "the pod was deleted while it ran",
                _conds(pod),
                finished,
            )
        return Termination(Outcome.FAILED, term.get("reason") or "Error", exit_code, message, _conds(pod), finished)
    # Pending or Running.
    if pod.waiting_reason in _NEVER_STARTS:
        return Termination(
            Outcome.START_FAILED,
            _NEVER_STARTS[pod.waiting_reason],
            None,
            _last_line(pod.waiting_message) or pod.waiting_reason,
            _conds(pod),
            now,
        )
    if pod.waiting_reason in _MAY_START:
        deadline = started + start_timeout
        if now >= deadline:
            return Termination(
                Outcome.START_FAILED,
                _MAY_START[pod.waiting_reason],
                None,
                f"{pod.waiting_reason} for longer than startTimeout: {_last_line(pod.waiting_message)}",
                _conds(pod),
                now,
            )
        return StillRunning(recheck_at=deadline, stuck_on=pod.waiting_reason)
    if pod.phase == "Pending" and pod.kueue_queue is not None and not pod.deleting:
        # Held by Kueue until its ClusterQueue has quota for it: as long as that takes (maxDuration
        # still counts), not bounded by startTimeout, which is for a pod that cannot start.
        workload = naming.kueue_workload_name(pod.name, pod.uid)
        detail = f"Kueue has not admitted it yet (LocalQueue {pod.kueue_queue}, Workload {workload})"
        return StillRunning(stuck_on="KueueQuota", detail=detail)
    if pod.phase == "Pending" and pod.unschedulable is not None and not pod.deleting:
        # Not running is not Running: say why (a PVC without a StorageClass, no node with room) and
        # give up at startTimeout, as for an image that cannot be pulled.
        detail = _last_line(pod.unschedulable)
        if now >= started + start_timeout:
            return Termination(
                Outcome.START_FAILED,
                "Unschedulable",
                None,
                f"the pod was not scheduled for longer than startTimeout: {detail}",
                _conds(pod),
                now,
            )
        return StillRunning(recheck_at=started + start_timeout, stuck_on="Unschedulable", detail=detail)
    if pod.deleting and pod.disruption == "NodeLost":
        # Its node is gone: the pod will never report again. (The lifecycle force-deletes it.)
        return Termination(Outcome.DISRUPTED, "NodeLost", None, "the pod's node stopped responding", _conds(pod), now)
    return StillRunning()


def missing(now: datetime) -> Termination:
    """The attempt's pod no longer exists (deleted by someone, or lost with its node)."""
    return Termination(
        Outcome.DISRUPTED, "PodDeleted", None, "the pod was deleted before it finished", frozenset(), now
    )
