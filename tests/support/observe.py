"""Observers for invariants that must hold at every moment, not just at the end."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from lightkube import Client
from lightkube.resources.core_v1 import Pod

from tests.support.kube import as_dict


class PodObserver:
    """Watches the pods of one Task and records how many hold a place (neither ended nor gone) at
    every moment. The watch resumes from the last resourceVersion it saw, so it sees every change
    in order; after a gap it re-lists and replaces its view at once, never piece by piece."""

    def __init__(
        self,
        kube: Client,
        ns: str,
        task: str | None = None,
        key_of: Callable[[str], str] | None = None,
        holds: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        self.kube, self.ns = kube, ns
        # holds: whether a pod not ended holds a place (e.g. not gated by Kueue); unset: every one does.
        self.holds = holds
        # key_of: a run's concurrency key from its pod's run label, to count the live pods of each key.
        self.key_of = key_of
        self.max_live_by_key: dict[str, int] = {}
        self.first_seen: dict[str, float] = {}  # pod uid -> when (monotonic) the watch first saw it
        self.labels: dict[str, Any] = {"cairn.dev/task": task} if task else {"app.kubernetes.io/managed-by": "cairn"}
        self.live: set[str] = set()
        self.max_live = 0
        self.events = 0
        self.errors: list[str] = []
        # Every pod seen, by (run, attempt): its uids. Two uids for one attempt is a doubled attempt,
        # even when the second pod came after the first was gone (same name, a new object).
        self.attempts: dict[tuple[str, str], set[str]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _saw(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        labels = meta.get("labels") or {}
        key = (str(labels.get("cairn.dev/run", meta["name"])), str(labels.get("cairn.dev/attempt", "?")))
        self.attempts.setdefault(key, set()).add(str(meta["uid"]))
        self.first_seen.setdefault(str(meta["uid"]), time.monotonic())

    def _count(self) -> None:
        self.max_live = max(self.max_live, len(self.live))
        if self.key_of is not None:
            by_key = Counter(self.key_of(name) for name in self.live)
            for k, n in by_key.items():
                self.max_live_by_key[k] = max(self.max_live_by_key.get(k, 0), n)

    @property
    def pods_seen(self) -> int:
        return sum(len(uids) for uids in self.attempts.values())

    def doubled_attempts(self) -> dict[tuple[str, str], int]:
        return {key: len(uids) for key, uids in self.attempts.items() if len(uids) > 1}

    def check_observed(self) -> None:
        """The observer saw something, so that its figures are not zero by blindness: pods, and the
        watch's events; watch errors (re-listed) are reported, and a watch that never worked fails."""
        assert self.pods_seen > 0, f"the pod watch saw no pod (errors: {self.errors[-3:]})"
        assert self.events > 0, f"the pod watch delivered no event (errors: {self.errors[-3:]})"
        # A watch that keeps failing sees the pods only by re-listing, and can miss a pod that came and
        # went between two lists: more errors than events means it mostly looked away.
        assert len(self.errors) <= max(10, self.events), f"{len(self.errors)} watch errors: {self.errors[-3:]}"

    def _relist(self) -> str:
        pods = self.kube.list(Pod, namespace=self.ns, labels=self.labels)
        for p in pods:
            self._saw(as_dict(p))
        self.live = {
            str(as_dict(p)["metadata"]["name"])
            for p in pods
            if as_dict(p).get("status", {}).get("phase") not in ("Succeeded", "Failed")
            and (self.holds is None or self.holds(as_dict(p)))
        }
        self._count()
        return str(pods.resourceVersion)

    def _run(self) -> None:
        version: str | None = None
        while not self._stop.is_set():
            try:
                if version is None:
                    version = self._relist()
                for op, pod in self.kube.watch(
                    Pod, namespace=self.ns, labels=self.labels, server_timeout=5, resource_version=version
                ):
                    p = as_dict(pod)
                    version = p["metadata"]["resourceVersion"]
                    name, phase = p["metadata"]["name"], p["status"].get("phase")
                    self._saw(p)
                    if op == "DELETED" or phase in ("Succeeded", "Failed") or (self.holds and not self.holds(p)):
                        self.live.discard(name)
                    else:
                        self.live.add(name)
                    self.events += 1
                    self._count()
                    if self._stop.is_set():
                        return
            except Exception as e:  # noqa: BLE001 - an expired version or a dropped watch: re-list
                self.errors.append(repr(e))
                version = None
                self._stop.wait(0.5)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)
