"""Named fault points: places where a crash (or an error) teaches the most — after the slot is taken
but before the pod exists, after the pod exists but before status says so, after a checkpoint
commits but before the API answers.

In Cairn as shipped a point does nothing, whatever the environment says: nothing in this package
reads CAIRN_FAULTS. Only the test harness's launcher (`python -m harness.faultinject`, which is not
in the wheel or the images) installs an injector, before Cairn starts, through `install`.
"""

from __future__ import annotations

POINTS = {
    "operator.after_slot_taken": "an admission round committed; its runs have no pod yet",
    "operator.after_pod_created": "an attempt's pod exists; the TaskRun's status does not say so yet",
    "operator.after_release": "a run's slot is released in the store; its status is not written yet",
    "operator.after_status_written": "a transition is in status; its events are not posted yet",
    "api.after_checkpoint_commit": "a step is committed; the task has not been answered",
    "store.after_commit": "a store write committed; its connection then fails (the caller sees an error)",
}


class FaultInjected(Exception):
    """Raised by an injector's `error` fault."""


class Injector:
    """What a test plugs in: which points are armed, and what a hit does (crash, raise, nothing)."""

    def armed(self, name: str) -> bool:
        return False

    def hit(self, name: str) -> None:
        return None


_injector: Injector | None = None


def install(injector: Injector) -> None:
    """Plug in a test's injector (the harness's launcher does, before Cairn starts)."""
    global _injector
    _injector = injector


def enabled(name: str) -> bool:
    return _injector is not None and _injector.armed(name)


def point(name: str) -> None:
    """A named fault point: nothing happens unless a test's injector is installed."""
    if _injector is not None:
        _injector.hit(name)
