"""kill -9 the operator at random moments while 20 runs with failures are in flight, five times:
every run reaches the right final phase, no attempt gets two pods, no attempt is lost."""

from __future__ import annotations

import random
import time
from collections import Counter

import pytest
from lightkube import Client

from tests.support.cairn import CairnProcesses
from tests.support.runs import create_run, make_task, pods_of, status, wait_phase

BEHAVIOURS = """
def main(ctx):
    kind = ctx.payload["kind"]
    ctx.step("work", lambda: time.sleep(1.5) or kind)
    if kind == "flaky" and ctx.attempt < 3:
        sys.exit(1)
    if kind == "fatal":
        sys.exit(4)
    if kind == "doomed":
        sys.exit(1)
    time.sleep(1)
    return kind
"""

# kind -> (final phase, attempts)
EXPECTED = {"ok": ("Succeeded", 1), "flaky": ("Succeeded", 3), "fatal": ("Failed", 1), "doomed": ("Failed", 3)}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_runs_survive_the_operator_killed_five_times_at_random_moments(
    kube: Client, ns: str, cairn: CairnProcesses
) -> None:
    rng = random.Random(20261124)
    make_task(
        kube,
        ns,
        "mixed",
        BEHAVIOURS,
        retry={
            "maxAttempts": 3,
            "backoff": {"initialDelay": "1s", "maxDelay": "2s"},
            "podFailurePolicy": {"rules": [{"action": "FailRun", "onExitCodes": {"operator": "In", "values": [4]}}]},
        },
    )
    kinds = {f"r{i:02d}": list(EXPECTED)[i % 4] for i in range(20)}
    for name, kind in kinds.items():
        create_run(kube, ns, "mixed", name, payload={"kind": kind})
    kills = []
    for _ in range(5):
        time.sleep(rng.uniform(0.5, 4.0))
        kills.append(time.monotonic())
        cairn.kill_operator()
        time.sleep(rng.uniform(0.0, 2.0))
        cairn.restart_operator()
    finals = {name: wait_phase(kube, ns, name, timeout=300) for name in kinds}
    for name, kind in kinds.items():
        phase, attempts = EXPECTED[kind]
        st = finals[name]
        assert st["phase"] == phase, (name, kind, st)
        numbers = [a["number"] for a in st["attempts"]]
        assert numbers == list(range(1, attempts + 1)), (name, kind, numbers)  # none lost, none doubled
        assert all(a.get("finishTime") for a in st["attempts"]), (name, st["attempts"])
        pods = pods_of(kube, ns, name)
        per_attempt = Counter(p["metadata"]["labels"]["cairn.dev/attempt"] for p in pods)
        assert all(count == 1 for count in per_attempt.values()), (name, per_attempt)  # one pod per attempt
        assert sorted(int(a) for a in per_attempt) == numbers, (name, per_attempt, numbers)
    assert len(kills) == 5
    assert all(status(kube, ns, n)["conditions"] for n in kinds)
