"""The long chaos run (`make chaos`, outside CI, which runs a representative share in
tests/e2e/test_faults.py): over a thousand faults over every fault point and both kinds (crash,
error), then a soak of 200 runs x 20 steps while the API is killed and restarted every 10 s. Every
invariant of the fault suite is checked after each part; the totals print at the end."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from lightkube import Client

from cairn import faults
from tests.e2e.test_faults import Scenario, Supervisor, _hits
from tests.support.cairn import CairnProcesses
from tests.support.runs import StepCounter

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.timeout(3600)]

OPERATOR_AND_API_POINTS = [p for p in faults.POINTS if p != "store.after_commit"]
PARTS = {
    # Every point crashes its process, again and again (the supervisor restarts it): 5 times each,
    # the API's point 10 times; and store writes commit then lose their connection 400 times in each
    # of the two processes.
    "crashes at every point and lost commits": ",".join(
        [f"{p}=crash:{10 if p.startswith('api.') else 5}" for p in OPERATOR_AND_API_POINTS]
        + ["store.after_commit=error:400"]
    ),
    # Every point raises instead (the reconcile or the request fails and is retried): 40 each.
    "errors at every point": ",".join(f"{p}=error:40" for p in faults.POINTS),
}


@pytest.mark.parametrize("part", list(PARTS))
def test_chaos_at_every_fault_point_loses_nothing(
    kube: Client,
    ns: str,
    cairn: CairnProcesses,
    counter: StepCounter,
    faulty: Callable[[str], Path],
    part: str,
) -> None:
    log = faulty(PARTS[part])
    supervisor = Supervisor(cairn)
    try:
        scenario = Scenario(kube, ns, cairn, counter, runs=60, steps=5, step_seconds=0.1, limit=6)
        result = scenario.check(injected=lambda: _hits(log), timeout=1800)
    finally:
        supervisor.stop()
    hit = {line.split()[1] for line in log.read_text().splitlines()}
    assert hit == set(faults.POINTS), f"fault points never reached: {sorted(set(faults.POINTS) - hit)}"
    assert result["runs completed"] == 60


def test_a_soak_of_200_runs_of_20_steps_while_the_api_restarts_every_10_seconds_loses_nothing(
    kube: Client, ns: str, cairn: CairnProcesses, counter: StepCounter
) -> None:
    scenario = Scenario(kube, ns, cairn, counter, runs=200, steps=20, step_seconds=0.05, limit=10, sleepers=False)
    stop = threading.Event()
    kills: list[float] = []

    def restarts() -> None:
        while not stop.wait(10):
            cairn.restart_api(kill=True)
            kills.append(time.monotonic())

    thread = threading.Thread(target=restarts, daemon=True)
    thread.start()
    try:
        result = scenario.check(injected=lambda: len(kills), timeout=3000)
    finally:
        stop.set()
        thread.join(60)
    assert len(kills) >= 10 and result["runs completed"] == 200
