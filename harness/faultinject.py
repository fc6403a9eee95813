"""Start Cairn with fault points armed, for the fault-injection tests: `python -m harness.faultinject
operator|api`. The harness uses this launcher instead of `python -m cairn` when a test sets
CAIRN_FAULTS; Cairn itself (the wheel, the images) has no way to read that variable.

    CAIRN_FAULTS="operator.after_pod_created=crash:2,api.after_checkpoint_commit=crash:1"

Actions: `crash[:N]` ends the process at once (os._exit(137), like SIGKILL) on the first N hits (all
hits when N is omitted); `error[:N]` raises FaultInjected (at the API's point: a lost database
connection, which it answers with 503). Every hit is appended to CAIRN_FAULTS_LOG
(one line: time, point, action), so tests can count what they injected; N counts the hits of earlier
processes too (a crashed operator's restart does not crash again at the same point).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

import psycopg

from cairn import faults


@dataclass
class Fault:
    action: str
    remaining: int | None


def parse(spec: str) -> dict[str, Fault]:
    armed: dict[str, Fault] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, action = item.partition("=")
        if name not in faults.POINTS:
            raise ValueError(f"unknown fault point {name!r}; known: {', '.join(sorted(faults.POINTS))}")
        kind, _, arg = action.partition(":")
        if kind not in ("crash", "error"):
            raise ValueError(f"fault {item!r}: the action is crash[:N] or error[:N]")
        armed[name] = Fault(kind, int(arg) if arg else None)
    return armed


def already_hit(log: str | None) -> dict[str, int]:
    """Hits recorded by earlier processes: `crash:N` means N in all."""
    hits: dict[str, int] = {}
    if log and os.path.exists(log):
        with open(log) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2:
                    hits[parts[1]] = hits.get(parts[1], 0) + 1
    return hits


class EnvInjector(faults.Injector):
    def __init__(self, spec: str, log: str | None) -> None:
        self.faults = parse(spec)
        self.log = log
        for name, hits in already_hit(log).items():
            fault = self.faults.get(name)
            if fault is not None and fault.remaining is not None:
                fault.remaining = max(0, fault.remaining - hits)

    def armed(self, name: str) -> bool:
        return name in self.faults

    def hit(self, name: str) -> None:
        fault = self.faults.get(name)
        if fault is None:
            return
        if fault.remaining is not None:
            if fault.remaining <= 0:
                return
            fault.remaining -= 1
        if self.log:
            with open(self.log, "a") as log:
                log.write(f"{time.time():.3f} {name} {fault.action}\n")
        if fault.action == "crash":
            os._exit(137)
        if name.startswith("api."):
            # The API's error: its database connection fails after the commit (it answers 503, the
            # SDK retries), as a real one would; an operator's is an error its reconcile retries.
            raise psycopg.OperationalError(f"fault injected at {name}")
        raise faults.FaultInjected(f"fault injected at {name}")


def main() -> None:
    faults.install(EnvInjector(os.environ.get("CAIRN_FAULTS", ""), os.environ.get("CAIRN_FAULTS_LOG")))
    sys.argv[0] = "cairn"
    from cairn.cli.main import main as cairn_main

    cairn_main()


if __name__ == "__main__":
    main()
