"""The fault suite: crash every part of Cairn (and of its world) while runs go through, then check
every promise. Run it alone with `pytest -m faults`; CI runs it with everything else.

For each scenario: every run reaches a final phase (none lost), no step is executed after its record
(a side channel counts executions per attempt), no queue ever runs more pods than its limit (a pod
watcher), and no slot is left held. The suite's totals are printed at the end of the session.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from lightkube import Client

from cairn.k8s.resources import QueueResource
from harness.postgres import Postgres
from tests.support.builders import queue_body
from tests.support.cairn import CairnProcesses
from tests.support.env import ClusterEnv
from tests.support.figures import report
from tests.support.kube import as_dict, wait_for
from tests.support.observe import PodObserver
from tests.support.runs import StepCounter, create_run, make_task, wait_phase

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.timeout(900)]

LIMIT = 4
STEPS = """
def step(ctx, i):
    hit(ctx, "s%d" % i)
    time.sleep(float(os.environ.get("STEP_SECONDS", "0.4")))
    return i

def main(ctx):
    n = int(ctx.payload["steps"])
    for i in range(n):
        ctx.step("s", step, ctx, i)
        if ctx.payload.get("flaky") and ctx.attempt == 1 and i == 1:
            sys.exit(1)
        if ctx.payload.get("sleep") and i == 1:
            ctx.sleep("nap", 2)  # past the Task's suspendAfter (1 s): the pod ends, the slot is given back
    return n
"""

TOTALS: dict[str, int] = {
    "scenarios": 0,
    "faults injected": 0,
    "runs completed": 0,
    "steps re-executed after their record": 0,
    "limit violations": 0,
    "runs lost": 0,
    "slots leaked": 0,
    "durable waits completed": 0,
    "runs left waiting": 0,
    "attempts with two pods": 0,
    "operator failovers": 0,  # tests/e2e/test_operators.py adds these two
    "runs through two operators at once": 0,
    # What the zeros above were counted from:
    "steps expected": 0,
    "steps listed": 0,
    "step executions counted": 0,
    "pods observed": 0,
    "pod watch errors (re-listed)": 0,
}


class Supervisor:
    """Restarts the operator or the API whenever one dies (a crash fault ends its process)."""

    def __init__(self, cairn: CairnProcesses) -> None:
        self.cairn = cairn
        self.restarts = 0
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            if self._paused.is_set():
                continue
            for proc, start in (
                (self.cairn.operator, self.cairn.start_operator),
                (self.cairn.api, self.cairn.start_api),
            ):
                if proc is not None and not proc.alive():
                    proc.stop(timeout=1)
                    try:
                        start()
                        self.restarts += 1
                    except Exception:  # noqa: BLE001 - e.g. the database is down: try again shortly
                        time.sleep(0.5)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


@pytest.fixture
def faulty(cairn: CairnProcesses, tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Restart Cairn with fault points switched on; afterwards, restart it clean."""
    log = tmp_path / "faults.log"

    def switch_on(spec: str) -> Path:
        cairn.overrides.update({"CAIRN_FAULTS": spec, "CAIRN_FAULTS_LOG": str(log)})
        cairn.restart_api(kill=False)
        cairn.restart_operator(kill=False)
        return log

    yield switch_on
    for key in ("CAIRN_FAULTS", "CAIRN_FAULTS_LOG"):
        cairn.overrides.pop(key, None)
    cairn.restart_api(kill=False)
    cairn.restart_operator(kill=False)


class Scenario:
    """Runs through a queue of `limit`, watched; then every invariant checked and counted."""

    def __init__(
        self,
        kube: Client,
        ns: str,
        cairn: CairnProcesses,
        counter: StepCounter,
        runs: int = 8,
        steps: int = 4,
        step_seconds: float = 0.4,
        limit: int = LIMIT,
        sleepers: bool = True,
    ) -> None:
        self.kube, self.ns, self.cairn, self.counter = kube, ns, cairn, counter
        self.limit = limit
        body = queue_body("faults", concurrencyLimit=limit)
        body["metadata"]["namespace"] = ns  # type: ignore[index]
        kube.create(QueueResource.from_dict(body))
        make_task(
            kube,
            ns,
            "f",
            STEPS,
            counter=counter,
            queue="faults",
            env={"STEP_SECONDS": str(step_seconds)},
            retry={"maxAttempts": 4, "backoff": {"initialDelay": "1s", "maxDelay": "2s"}},
            suspendAfter="1s",
        )
        self.observer = PodObserver(kube, ns, "f")
        self.names = [f"r{i:03d}" for i in range(runs)]
        self.steps = steps
        # A quarter of the runs sleep durably mid-run (in the scenarios that ask for it: the crash and
        # commit-loss points, the operator and the API killed, where a wait's registration and wake-up
        # race the faults; CI's budget keeps them out of the longest scenarios).
        self.sleepers = [n for i, n in enumerate(self.names) if sleepers and i % 4 == 2]
        for i, name in enumerate(self.names):
            create_run(
                kube, ns, "f", name, payload={"steps": steps, "flaky": i % 3 == 0, "sleep": name in self.sleepers}
            )

    def check(self, injected: int | Callable[[], int], timeout: float = 420) -> dict[str, int]:
        """`injected`: a count, or how to count the faults once every run is final."""
        finals: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        for name in self.names:
            with contextlib.suppress(AssertionError):
                finals[name] = wait_phase(self.kube, self.ns, name, timeout=max(5.0, deadline - time.monotonic()))
        self.observer.stop()
        lost = [n for n in self.names if n not in finals]
        # Re-executions are counted from the side channel against each step's record in status; both
        # must be there for every step of every run that succeeded, or the zero below saw nothing.
        reexecuted = executions = listed = 0
        unlisted: list[str] = []
        uncounted: list[str] = []
        for name, st in finals.items():
            recorded_by = {s["key"]: s["attempt"] for s in st.get("steps", [])}
            for i in range(self.steps):
                attempts = self.counter.attempts.get((name, f"s{i}"), [])
                recorded = recorded_by.get(f"s#{i}")
                executions += len(attempts)
                if recorded is not None:
                    listed += 1
                    reexecuted += sum(1 for a in attempts if a > recorded)
                elif st["phase"] == "Succeeded":
                    unlisted.append(f"{name}/s#{i}")
                if not attempts and st["phase"] == "Succeeded":
                    uncounted.append(f"{name}/s{i}")
        self.observer.check_observed()
        doubled = self.observer.doubled_attempts()
        leaked = self._leaked()
        # Every sleeper's pod stopped for its wait (an attempt ended Suspended) and it resumed: what
        # "no wait lost" is counted from, so that a zero below comes with the waits it observed.
        waited = sum(
            1
            for name in self.sleepers
            if name in finals and any(a.get("reason") == "Suspended" for a in finals[name].get("attempts", []))
        )
        left_waiting = self._left_waiting()
        result = {
            "faults injected": injected if isinstance(injected, int) else injected(),
            "runs completed": sum(1 for st in finals.values() if st["phase"] == "Succeeded"),
            "steps re-executed after their record": reexecuted,
            "limit violations": max(0, self.observer.max_live - self.limit),
            "runs lost": len(lost),
            "slots leaked": leaked,
            "durable waits completed": waited,
            "runs left waiting": left_waiting,
            "attempts with two pods": len(doubled),
            "steps expected": len(finals) * self.steps,
            "steps listed": listed,
            "step executions counted": executions,
            "pods observed": self.observer.pods_seen,
            "pod watch errors (re-listed)": len(self.observer.errors),
        }
        for key, value in result.items():
            TOTALS[key] += value
        TOTALS["scenarios"] += 1
        report(f"\n{result} (at most {self.observer.max_live} pods at once, limit {self.limit})")
        assert lost == [], f"runs that never finished: {lost}"
        assert unlisted == [], f"steps of succeeded runs missing from their status: {unlisted[:10]}"
        assert uncounted == [], f"steps of succeeded runs the side channel never heard of: {uncounted[:10]}"
        assert doubled == {}, f"attempts that had two pods: {doubled}"
        assert {st["phase"] for st in finals.values()} == {"Succeeded"}, {n: st["phase"] for n, st in finals.items()}
        assert reexecuted == 0
        assert self.observer.max_live <= self.limit
        assert leaked == 0
        assert left_waiting == 0
        # A sleeper that finished without an attempt Suspended would mean the wait was never observed.
        assert waited == len(self.sleepers), (waited, self.sleepers)
        return result

    def _left_waiting(self) -> int:
        """Runs the store still has waiting (a wait never woken), or waits whose run ended open."""
        with psycopg.connect(self.cairn.dsn) as conn:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM runs WHERE namespace = %s AND state = 'waiting') + "
                "(SELECT count(*) FROM waits w JOIN runs r ON r.uid = w.run_uid "
                " WHERE r.namespace = %s AND w.done_at IS NULL AND r.phase = 'Succeeded')",
                (self.ns, self.ns),
            ).fetchone()
        return int(row[0]) if row else -1

    def _leaked(self) -> int:
        def drained() -> dict[str, Any] | None:
            st = as_dict(self.kube.get(QueueResource, "faults", namespace=self.ns)).get("status") or {}
            return st if st.get("running") == 0 and st.get("queued") == 0 else None

        with contextlib.suppress(AssertionError):
            wait_for("the queue to report no slot held", drained, timeout=60)
        with psycopg.connect(self.cairn.dsn) as conn:
            row = conn.execute(
                "SELECT count(*) FROM runs WHERE namespace = %s AND state <> 'finished'", (self.ns,)
            ).fetchone()
        return int(row[0]) if row else -1


def _hits(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


CRASH_POINTS = [
    "operator.after_slot_taken",
    "operator.after_pod_created",
    "operator.after_release",
    "operator.after_status_written",
    "api.after_checkpoint_commit",
]
SCENARIOS = {
    # Each point crashes its process once (the API's twice); the supervisor restarts it.
    "a crash at each fault point": ",".join(f"{p}=crash:{2 if p.startswith('api.') else 1}" for p in CRASH_POINTS),
    "store writes that commit and then lose their connection": "store.after_commit=error:25",
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_faults_at_named_points_lose_nothing(
    kube: Client,
    ns: str,
    cairn: CairnProcesses,
    counter: StepCounter,
    faulty: Callable[[str], Path],
    scenario: str,
) -> None:
    spec = SCENARIOS[scenario]
    log = faulty(spec)
    supervisor = Supervisor(cairn)
    try:
        run = Scenario(kube, ns, cairn, counter)
        result = run.check(injected=lambda: _hits(log))
    finally:
        supervisor.stop()
    hit = {line.split()[1] for line in log.read_text().splitlines()} if log.exists() else set()
    wanted = {item.split("=")[0] for item in spec.split(",")}
    assert hit == wanted, f"fault points never reached: {sorted(wanted - hit)}"
    assert result["runs completed"] == len(run.names)


def test_postgresql_restarted_every_few_seconds_loses_nothing(
    kube: Client, ns: str, cairn: CairnProcesses, counter: StepCounter, pg_server: Postgres | None
) -> None:
    assert pg_server is not None, "this scenario restarts the harness's own PostgreSQL"
    stop = threading.Event()
    restarts: list[float] = []

    def chaos() -> None:
        rng = random.Random(7)
        while not stop.wait(rng.uniform(3, 6)):
            pg_server.stop_only(crash=True)
            time.sleep(rng.uniform(0.2, 1.0))
            pg_server.start_again()
            restarts.append(time.monotonic())

    # Crashes of a database that keeps what it committed, as Cairn's guarantees assume (the harness's
    # runs without synchronous_commit, for speed; a crash of that one forgets its last commits).
    with pg_server.durable():
        scenario = Scenario(kube, ns, cairn, counter, runs=40, steps=3, step_seconds=0.1, limit=10, sleepers=False)
        monkey = threading.Thread(target=chaos, daemon=True)
        monkey.start()
        try:
            time.sleep(20)
        finally:
            stop.set()
            monkey.join(30)
        scenario.check(injected=len(restarts), timeout=600)
    assert len(restarts) >= 3


def test_the_api_killed_and_restarted_loses_nothing(
    kube: Client, ns: str, cairn: CairnProcesses, counter: StepCounter
) -> None:
    scenario = Scenario(kube, ns, cairn, counter)
    kills = 0
    for _ in range(3):
        time.sleep(3)
        cairn.restart_api(kill=True)
        kills += 1
    scenario.check(injected=kills)


def test_a_node_stopped_with_runs_on_it_loses_nothing(
    cluster_env: ClusterEnv, kube: Client, ns: str, cairn: CairnProcesses, counter: StepCounter
) -> None:
    cluster = cluster_env.require_harness()
    scenario = Scenario(kube, ns, cairn, counter, step_seconds=1.0, sleepers=False)
    time.sleep(6)
    node = cluster.node("node-2")
    node.stop()
    try:
        time.sleep(20)
    finally:
        node.start(cluster.images)
        node.wait_ready()
    scenario.check(injected=1)


def test_the_kube_apiserver_restarted_loses_nothing(
    cluster_env: ClusterEnv, kube: Client, ns: str, cairn: CairnProcesses, counter: StepCounter
) -> None:
    cluster = cluster_env.require_harness()
    scenario = Scenario(kube, ns, cairn, counter, sleepers=False)
    time.sleep(4)
    cluster.cp.restart_apiserver(kill=True)
    scenario.check(injected=1)


def test_the_operator_killed_ten_times_at_random_loses_nothing(
    kube: Client, ns: str, cairn: CairnProcesses, counter: StepCounter
) -> None:
    rng = random.Random(10)
    scenario = Scenario(kube, ns, cairn, counter, runs=16, limit=6)
    for _ in range(10):
        time.sleep(rng.uniform(0.3, 2.0))
        cairn.restart_operator(kill=True)
    scenario.check(injected=10)


def test_stuck_runs_are_repaired_with_an_event_saying_what_was_repaired(
    kube: Client, ns: str, cairn: CairnProcesses, counter: StepCounter
) -> None:
    """A run whose pod vanished while the operator was down, and a slot held by a run that no longer
    exists: both are found and repaired after the restart, each with a Warning Event."""
    from lightkube.resources.core_v1 import Event, Pod

    from cairn.k8s.resources import TaskRunResource

    body = queue_body("one", concurrencyLimit=1)
    body["metadata"]["namespace"] = ns  # type: ignore[index]
    kube.create(QueueResource.from_dict(body))
    make_task(kube, ns, "slow", "def main(ctx):\n    time.sleep(float(ctx.payload['sleep']))\n", queue="default")
    make_task(kube, ns, "held", "def main(ctx):\n    time.sleep(300)\n", queue="one")
    create_run(kube, ns, "slow", "vanished", payload={"sleep": 8})
    create_run(kube, ns, "held", "holder", payload={})
    wait_phase(kube, ns, "vanished", ("Running",))
    wait_phase(kube, ns, "holder", ("Running",))
    create_run(kube, ns, "held", "waiting", payload={})
    cairn.kill_operator()
    try:
        kube.delete(Pod, "vanished-1", namespace=ns, grace_period=0)
        kube.delete(TaskRunResource, "holder", namespace=ns)
        time.sleep(2)
    finally:
        cairn.restart_operator()
    st = wait_phase(kube, ns, "vanished", timeout=120)
    assert st["phase"] == "Succeeded" and st["attempts"][0]["reason"] == "PodDeleted"
    assert st["attempts"][0]["counted"] is False  # not the task's fault
    wait_phase(kube, ns, "waiting", ("Running",), timeout=90)  # it got the slot reclaimed from "holder"

    def reasons() -> set[str]:
        return {e.reason or "" for e in kube.list(Event, namespace=ns)}

    wait_for("repair events", lambda: {"PodVanished", "SlotReclaimed"} <= reasons(), timeout=60)
    TOTALS["faults injected"] += 2
