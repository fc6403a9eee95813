"""When things happened, as the benchmark's own watches saw them: the first time each object was
seen created, and each pod seen created, scheduled, running and ended.

Object timestamps (creationTimestamp) have a resolution of one second, too coarse for latencies
of milliseconds; the watch events are stamped with the wall clock the moment their line arrives.
Both ends of every latency come from the same kind of watch on the same API server, so the
delivery delay of a watch event is on both sides and (mostly) cancels.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bench.kube import Body

RUN_LABEL = "cairn.dev/run"
ATTEMPT_LABEL = "cairn.dev/attempt"
JOB_LABEL = "batch.kubernetes.io/job-name"


@dataclass
class PodSeen:
    name: str
    owner: str  # "run/<name>" or "job/<name>"
    attempt: int
    added: float
    scheduled: float | None = None
    running: float | None = None
    ended: float | None = None
    node: str | None = None
    phase: str = "Pending"
    container_id: str | None = None


def pod_owner(pod: Body) -> tuple[str, int] | None:
    labels = pod.get("metadata", {}).get("labels") or {}
    if RUN_LABEL in labels:
        return f"run/{labels[RUN_LABEL]}", int(labels.get(ATTEMPT_LABEL, "1"))
    if JOB_LABEL in labels:
        return f"job/{labels[JOB_LABEL]}", 0
    return None


@dataclass
class Timeline:
    """Thread-safe: the watches call in from their threads."""

    created: dict[str, float] = field(default_factory=dict)  # "run/<name>" | "job/<name>" -> first seen
    pods: dict[str, PodSeen] = field(default_factory=dict)  # pod name -> what was seen
    by_owner: dict[str, list[str]] = field(default_factory=dict)  # owner -> its pods, in the order seen
    statuses: dict[str, Body] = field(default_factory=dict)  # owner -> latest status (TaskRuns, Jobs)
    next_attempt_times: dict[str, list[str]] = field(default_factory=dict)  # run -> each nextAttemptTime seen
    counts: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    keep_status: bool = False

    def owner_handler(self, prefix: str) -> Any:
        def handle(t: float, kind: str, obj: Body) -> None:
            name = obj.get("metadata", {}).get("name", "")
            key = f"{prefix}/{name}"
            with self.lock:
                if kind in ("ADDED", "LISTED") and key not in self.created:
                    self.created[key] = t
                    self.counts[f"{prefix} created"] += 1
                status = obj.get("status") or {}
                if self.keep_status and kind != "DELETED":
                    self.statuses[key] = status
                due = status.get("nextAttemptTime")
                if due and due not in self.next_attempt_times.setdefault(key, []):
                    self.next_attempt_times[key].append(due)

        return handle

    def on_pod(self, t: float, kind: str, pod: Body) -> None:
        owner = pod_owner(pod)
        if owner is None:
            return
        meta, spec, status = pod.get("metadata", {}), pod.get("spec", {}), pod.get("status") or {}
        name = meta.get("name", "")
        with self.lock:
            seen = self.pods.get(name)
            if seen is None:
                if kind == "DELETED":
                    return
                seen = PodSeen(name=name, owner=owner[0], attempt=owner[1], added=t)
                self.pods[name] = seen
                self.by_owner.setdefault(owner[0], []).append(name)
                self.counts["pods created"] += 1
            if spec.get("nodeName") and seen.scheduled is None:
                seen.scheduled = t
                seen.node = spec["nodeName"]
            phase = status.get("phase") or "Pending"
            seen.phase = phase
            if phase == "Running" and seen.running is None:
                seen.running = t
                self.counts["pods running"] += 1
            if phase in ("Succeeded", "Failed") and seen.ended is None:
                seen.ended = t
                self.counts["pods ended"] += 1
            statuses = status.get("containerStatuses") or []
            if statuses and statuses[0].get("containerID"):
                seen.container_id = statuses[0]["containerID"]

    def first_pod(self, owner: str) -> PodSeen | None:
        with self.lock:
            names = self.by_owner.get(owner) or []
            return self.pods[names[0]] if names else None

    def pod_of(self, owner: str, attempt: int) -> PodSeen | None:
        with self.lock:
            for name in self.by_owner.get(owner) or []:
                if self.pods[name].attempt == attempt:
                    return self.pods[name]
            return None

    def nth_pod(self, owner: str, n: int) -> PodSeen | None:
        with self.lock:
            names = self.by_owner.get(owner) or []
            return self.pods[names[n]] if len(names) > n else None

    def count(self, what: str) -> int:
        with self.lock:
            return self.counts[what]
