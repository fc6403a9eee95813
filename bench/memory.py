"""Memory: the operator's resident set (RSS, from /proc) idle, and with `memory_runs` live TaskRuns.

Idle: the operator started, its namespace holding a Queue and a Task but no run. Loaded:
`memory_runs` TaskRuns created at once; `memory_running` of them hold a slot of the Queue and a
pod on a simulated node that runs until deleted, the others wait in the Queue (Queued, with their
status written). Every TaskRun and every pod of a run is in the operator's cache (the watches
select pods by label, so other pods of the cluster are not). Each figure is the median of
`reps` readings a second apart, after the operator has caught up and settled; the peak seen
while it was catching up is reported too.

Then the same runs in a durable wait: round after round, the runs holding a slot reach a wait (the
bench writes the wait each one's pod would register through the checkpoint API: simulated pods
cannot call it) and their pods end; the operator ends each attempt as Suspended, gives the slot
back and admits the next ones, until every run is Waiting, each with its wake-up a day ahead in the
operator's work queue. RSS is read again then.

The baseline is the same process idle: the figure says what 10,000 runs cost on top of it.
The operator runs with a larger client budget here (500 requests/s) only to fill faster; the
cache, not the rate, is what is measured.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from bench import env as E
from bench.env import Env, cpu_seconds, rss_bytes
from bench.kube import total
from bench.options import Options
from bench.profiling import profiled
from bench.report import Result
from bench.stats import Figure, Machine, median

MIB = 1024 * 1024
SETTLE_S = 20.0


def run(env: Env, opts: Options) -> Result:
    machine = Machine(slot=env.harness.slot.index)
    kube = env.kube
    ns = env.namespace("memory")
    n, running = opts.memory_runs, opts.memory_running
    kube.create(E.queues(ns), E.queue(ns, "default", running))
    kube.create(E.tasks(ns), E.task(ns, "hold", E.simulated_template(None)))
    procs = env.cairn(ns, kube_qps="500", kube_burst="1000")
    assert procs.operator is not None
    pid = procs.operator.pid
    peak = Peak(pid)
    profile = opts.profile / "memory-operator" if opts.profile else None
    try:
        time.sleep(SETTLE_S)
        idle = _readings(pid, max(5, opts.reps * 3))
        with peak, profiled(pid, profile):
            t0 = time.monotonic()
            bodies = [E.taskrun(ns, f"r{i:05d}", "hold") for i in range(n)]
            create_s = kube.create_many(lambda _: E.taskruns(ns), bodies)
            cpu0 = cpu_seconds(pid)

            def caught_up() -> bool:
                m = env.operator_metrics(procs)
                queued = total(m, "cairn_queue_queued")
                held = total(m, "cairn_queue_running")
                pods = len(kube.items(E.pods(ns)))
                return queued == n - running and held == running and pods == running

            env.wait("the operator to catch up", caught_up, 1200, interval=2.0)
            fill_s = time.monotonic() - t0
            time.sleep(SETTLE_S)
        loaded = _readings(pid, max(5, opts.reps * 3))
        cpu = cpu_seconds(pid) - cpu0
        metrics = env.operator_metrics(procs)
        t1 = time.monotonic()
        _all_waiting(env, procs, ns, n)
        wait_s = time.monotonic() - t1
        time.sleep(SETTLE_S)
        waiting = _readings(pid, max(5, opts.reps * 3))
    finally:
        env.release(procs)

    figures = [
        Figure("memory", "operator RSS idle", "MiB", idle, target=256.0, samples=1),
        Figure(
            "memory",
            f"operator RSS, {n:,} live TaskRuns",
            "MiB",
            loaded,
            baseline=idle,
            baseline_name="same, idle",
            target=512.0,
            samples=1,
        ),
        Figure(
            "memory",
            f"operator RSS, {n:,} TaskRuns in a durable wait",
            "MiB",
            waiting,
            baseline=idle,
            baseline_name="same, idle",
            target=512.0,
            samples=1,
        ),
    ]
    details: dict[str, Any] = {
        "live_runs": n,
        "holding_a_slot": running,
        "queued": n - running,
        "created_in_s": round(create_s, 1),
        "caught_up_in_s": round(fill_s, 1),
        "peak_rss_mib_while_catching_up": round(peak.max / MIB, 1),
        "kib_per_live_run": round((median(loaded) - median(idle)) * 1024 / n, 2),
        "operator_cpu_s_catching_up": round(cpu, 1),
        "operator_requests": int(total(metrics, "cairn_kube_requests_total")),
        "all_waiting_in_s": round(wait_s, 1),
        "kib_per_waiting_run": round((median(waiting) - median(idle)) * 1024 / n, 2),
    }
    return Result("memory", figures, details, machine.reading())


WAIT_SQL = """
INSERT INTO waits (run_uid, step_key, kind, attempt, until, suspended)
SELECT uid, 'nap#0', 'sleep', attempt, now() + interval '1 day', true FROM runs
WHERE namespace = %s AND state = 'admitted' AND attempt > 0
ON CONFLICT DO NOTHING"""


def _all_waiting(env: Env, procs: Any, ns: str, n: int) -> None:
    """Rounds of: pause the queue, register a wait for every run holding a slot (as its pod would),
    end their pods, resume the queue; until the operator reports every run waiting."""
    import psycopg

    kube = env.kube
    queue = f"{E.queues(ns)}/default"
    while True:
        m = env.operator_metrics(procs)
        if total(m, "cairn_queue_waiting") >= n:
            return
        kube.patch(queue, {"spec": {"paused": True}})
        deadline = time.monotonic() + 600
        # Again until no slot is held: a run admitted just before the pause starts its pod after.
        while total(env.operator_metrics(procs), "cairn_queue_running") > 0:
            if time.monotonic() > deadline:
                raise TimeoutError("the slots were not given back within 600 s")
            with psycopg.connect(procs.dsn, autocommit=True) as conn:
                conn.execute(WAIT_SQL, (ns,))
            kube.request("DELETE", E.pods(ns), {"gracePeriodSeconds": 0})
            time.sleep(3.0)
        kube.patch(queue, {"spec": {"paused": False}})
        waiting = total(env.operator_metrics(procs), "cairn_queue_waiting")
        env.wait(
            "the next runs to be admitted, or all to wait",
            lambda: (
                total(env.operator_metrics(procs), "cairn_queue_running") > 0
                or total(env.operator_metrics(procs), "cairn_queue_waiting") >= n
            ),
            600,
            interval=2.0,
        )
        print(f"[bench] memory: {waiting:.0f} of {n} runs waiting", flush=True)
        time.sleep(2.0)  # their pods are created and seen


def _readings(pid: int, count: int) -> list[float]:
    out = []
    for _ in range(count):
        out.append(rss_bytes(pid) / MIB)
        time.sleep(1.0)
    return out


class Peak:
    """The highest RSS seen, sampled twice a second in a thread while the block runs."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.max = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.max = max(self.max, rss_bytes(self.pid))
            except (OSError, ProcessLookupError):
                return
            self._stop.wait(0.5)
