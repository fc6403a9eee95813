"""kill -9 the operator at random moments while 20 runs with failures are in flight, five times:
every run reaches the right final phase, no attempt gets two pods, no attempt is lost."""

from __future__ import annotations

import random
import time

import pytest
from lightkube import Client

from tests.support.cairn import CairnProcesses
from tests.support.observe import PodObserver
from tests.support.runs import create_run, make_task, status, wait_phase

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
    # Watched from the start: an attempt's pod deleted and made again has the same name but a new uid,
    # which one listing at the end could never show.
    observer = PodObserver(kube, ns, "mixed")
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
    observer.stop()
    observer.check_observed()
    assert observer.doubled_attempts() == {}, observer.doubled_attempts()  # no attempt got two pods
    expected_pods = sum(EXPECTED[kind][1] for kind in kinds.values())
    assert observer.pods_seen == expected_pods, (observer.pods_seen, expected_pods)
    for name, kind in kinds.items():
        phase, attempts = EXPECTED[kind]
        st = finals[name]
        assert st["phase"] == phase, (name, kind, st)
        numbers = [a["number"] for a in st["attempts"]]
        assert numbers == list(range(1, attempts + 1)), (name, kind, numbers)  # none lost, none doubled
        assert all(a.get("finishTime") for a in st["attempts"]), (name, st["attempts"])
        seen = sorted(int(attempt) for (run, attempt) in observer.attempts if run == name)
        assert seen == numbers, (name, seen, numbers)  # a pod for every attempt in status, and no other
    assert len(kills) == 5
    assert all(status(kube, ns, n)["conditions"] for n in kinds)
