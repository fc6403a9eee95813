"""What the watches saw: the latest body of every TaskRun, Task, Queue and Cairn pod.

Filled by the kopf event handlers (the initial listing, then every change). The reconcilers read it
instead of asking the API server, so a reconcile costs no read requests.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cairn.domain import naming

Body = dict[str, Any]
Key = tuple[str, str]  # (namespace, name)


def schedule_of(body: Body) -> Key | None:
    """The Schedule that started a TaskRun (its annotation holds the whole name; the label may be short)."""
    meta = body.get("metadata") or {}
    name = (meta.get("annotations") or {}).get(naming.LABEL_SCHEDULE)
    return (meta.get("namespace", ""), name) if name else None


def parent_of(body: Body) -> str | None:
    """The uid of the run that started this one as its child."""
    return ((body.get("metadata") or {}).get("annotations") or {}).get(naming.ANNOTATION_PARENT_UID)


def key_of(body: Body) -> Key:
    meta = body["metadata"]
    return meta.get("namespace", ""), meta["name"]


@dataclass
class Cache:
    taskruns: dict[str, Body] = field(default_factory=dict)  # by uid
    tasks: dict[Key, Body] = field(default_factory=dict)
    queues: dict[Key, Body] = field(default_factory=dict)
    schedules: dict[Key, Body] = field(default_factory=dict)
    token_completions: dict[Key, Body] = field(default_factory=dict)
    pods: dict[str, dict[int, Body]] = field(default_factory=lambda: defaultdict(dict))  # run uid -> attempt -> pod
    # Deleted, and what they held not yet released in the store: the uids of TaskRuns, and of
    # Queues by key (a Queue of the same name may be created before the delete is applied).
    deleted_runs: set[str] = field(default_factory=set)
    deleted_queues: dict[Key, str] = field(default_factory=dict)
    # The runs each Schedule started (by the annotation naming it), so a Schedule's look is not a scan.
    runs_by_schedule: dict[Key, set[str]] = field(default_factory=lambda: defaultdict(set))
    children: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # parent uid -> child uids
    # Status patches handed to the status writer and not yet sent, by run uid (controller/statuses.py).
    pending_status: dict[str, tuple[Key, Body]] = field(default_factory=dict)
    # When the watches began filling it (the operator's start): until a pod listing has surely come,
    # a pod not in it may only not be listed yet.
    watching_since: datetime | None = None

    def put_taskrun(self, body: Body) -> str:
        uid: str = body["metadata"]["uid"]
        waiting = self.pending_status.get(uid)
        if waiting is not None:
            # What the watch brings predates a write still waiting: the run is what it will be.
            body = {**body, "status": {**(body.get("status") or {}), **waiting[1]}}
        self.taskruns[uid] = body
        self.deleted_runs.discard(uid)
        if (schedule := schedule_of(body)) is not None:
            self.runs_by_schedule[schedule].add(uid)
        if (parent := parent_of(body)) is not None:
            self.children[parent].add(uid)
        return uid

    def drop_taskrun(self, body: Body) -> str:
        uid: str = body["metadata"]["uid"]
        self.taskruns.pop(uid, None)
        self.pods.pop(uid, None)
        self.deleted_runs.add(uid)
        if (schedule := schedule_of(body)) is not None:
            self.runs_by_schedule[schedule].discard(uid)
        if (parent := parent_of(body)) is not None:
            self.children[parent].discard(uid)
        self.children.pop(uid, None)
        return uid

    def runs_of_schedule(self, key: Key) -> list[Body]:
        return [self.taskruns[uid] for uid in self.runs_by_schedule.get(key, ()) if uid in self.taskruns]

    def children_of(self, uid: str) -> list[Body]:
        return [self.taskruns[c] for c in self.children.get(uid, ()) if c in self.taskruns]

    def pod_before(self, body: Body) -> tuple[Body, int] | None:
        """The cached body of this very pod (same uid) and its attempt, before this event is put."""
        key = _pod_key(body)
        if key is None:
            return None
        cached = self.pods.get(key[0], {}).get(key[1])
        if cached is None or cached["metadata"].get("uid") != body["metadata"].get("uid"):
            return None
        return cached, key[1]

    def put_pod(self, body: Body) -> str | None:
        key = _pod_key(body)
        if key is None:
            return None
        self.pods[key[0]][key[1]] = body
        return key[0]

    def drop_pod(self, body: Body) -> str | None:
        key = _pod_key(body)
        if key is None:
            return None
        pods = self.pods.get(key[0])
        if pods is not None:
            current = pods.get(key[1])
            if current is not None and current["metadata"].get("uid") == body["metadata"].get("uid"):
                pods.pop(key[1], None)
        return key[0]

    def runs_of_task(self, namespace: str, task: str) -> list[str]:
        return [
            uid
            for uid, body in self.taskruns.items()
            if body["metadata"].get("namespace") == namespace
            and (body.get("spec") or {}).get("taskRef", {}).get("name") == task
        ]


def _pod_key(body: Body) -> tuple[str, int] | None:
    """(run uid, attempt) from a pod's labels; None for a pod that is not an attempt of a run."""
    labels = body["metadata"].get("labels") or {}
    uid = labels.get(naming.LABEL_RUN_UID)
    attempt = labels.get(naming.LABEL_ATTEMPT)
    if not uid or not attempt or not str(attempt).isdigit():
        return None
    return str(uid), int(attempt)
