"""Named fault points, for the fault-injection tests only.

A fault point is a place where a crash (or an error) teaches the most: after the slot is taken but
before the pod exists, after the pod exists but before status says so, after a checkpoint commits
but before the API answers. Tests switch points on through CAIRN_FAULTS; unset (always, outside
tests) a point costs one dictionary lookup and does nothing.

    CAIRN_FAULTS="operator.after_pod_created=crash:2,api.after_checkpoint_commit=crash:1"

Actions: `crash[:N]` ends the process at once (os._exit(137), like SIGKILL) on the first N hits (all
hits when N is omitted); `error[:N]` raises FaultInjected. Every hit is appended to CAIRN_FAULTS_LOG
(one line: time, point, action), so tests can count what they injected.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

POINTS = {
    "operator.after_slot_taken": "an admission round committed; its runs have no pod yet",
    "operator.after_pod_created": "an attempt's pod exists; the TaskRun's status does not say so yet",
    "operator.after_release": "a run's slot is released in the store; its status is not written yet",
    "operator.after_status_written": "a transition is in status; its events are not posted yet",
    "api.after_checkpoint_commit": "a step is committed; the task has not been answered",
    "store.after_commit": "a store write committed; its connection then fails (the caller sees an error)",
}


class FaultInjected(Exception):
    """Raised by an `error` fault point."""


@dataclass
class _Fault:
    action: str
    remaining: int | None


def _parse(spec: str) -> dict[str, _Fault]:
    faults: dict[str, _Fault] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, action = item.partition("=")
        if name not in POINTS:
            raise ValueError(f"unknown fault point {name!r}; known: {', '.join(sorted(POINTS))}")
        kind, _, arg = action.partition(":")
        if kind not in ("crash", "error"):
            raise ValueError(f"fault {item!r}: the action is crash[:N] or error[:N]")
        faults[name] = _Fault(kind, int(arg) if arg else None)
    return faults


def _already_hit(log: str | None) -> dict[str, int]:
    """Hits recorded by earlier processes (a crashed operator's restart): `crash:N` means N in all."""
    hits: dict[str, int] = {}
    if log and os.path.exists(log):
        with open(log) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2:
                    hits[parts[1]] = hits.get(parts[1], 0) + 1
    return hits


_LOG = os.environ.get("CAIRN_FAULTS_LOG")
_FAULTS = _parse(os.environ.get("CAIRN_FAULTS", ""))
for _name, _hits in _already_hit(_LOG).items():
    if _name in _FAULTS and _FAULTS[_name].remaining is not None:
        _FAULTS[_name].remaining = max(0, (_FAULTS[_name].remaining or 0) - _hits)


def enabled(name: str) -> bool:
    return name in _FAULTS


def point(name: str) -> None:
    """A named fault point: does nothing unless a test switched it on."""
    fault = _FAULTS.get(name)
    if fault is None:
        return
    if fault.remaining is not None:
        if fault.remaining <= 0:
            return
        fault.remaining -= 1
    if _LOG:
        with open(_LOG, "a") as log:
            log.write(f"{time.time():.3f} {name} {fault.action}\n")
    if fault.action == "crash":
        os._exit(137)
    raise FaultInjected(f"fault injected at {name}")
