"""Start latency: TaskRun created -> its pod created (and -> running on a real node), beside a
batch/v1 Job created -> its pod created, on the same cluster at the same time.

A TaskRun and a Job are created in turn (which one goes first alternates), half an interval apart,
a pair every `PAIR_INTERVAL` seconds, so both controllers see the same load. The Job's pod is the pod Cairn
renders for the Task (same image, command, resources, security context, one projected token), so
"-> running" compares the same pod on the same nodes; on simulated nodes both carry the same KWOK
labels, toleration and node selector. The queue has room for every run: this is
the latency of an admission that does not wait, not of a queue.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

from bench import env as E
from bench.env import Env
from bench.kube import Watcher
from bench.options import Options
from bench.profiling import profiled
from bench.report import Result
from bench.stats import Figure, Machine, percentile
from bench.timeline import Timeline

PAIR_INTERVAL = 0.5  # seconds between pairs on simulated nodes: 4 pods/s
# Two real nodes on 2 cores start about one pod a second: at 4 pods/s their backlog grew to a minute
# (pod running p50 51 s at 8455461, load 44) and starved both controllers of CPU, so that "created ->
# pod created" measured the machine. That figure does not involve a node (the pod is created before it
# is scheduled): it is taken on KWOK's simulated nodes; "-> running" is taken on the real nodes, at a
# pace they keep.
REAL_PAIR_INTERVAL = 2.0  # 1 pod/s
COMMAND = ["sleep", "2"]  # long enough for the watch to see the pod Running
SIMULATED_DELAY = "2s"  # the same, on a simulated node
WARMUP = 4


@dataclass(frozen=True)
class Side:
    """One set of pairs: TaskRuns of `task` named r<prefix><i>, Jobs of `template` named j<prefix><i>."""

    prefix: str
    task: str
    template: E.Body
    interval: float

    def run(self, i: str) -> str:
        return f"run/r{self.prefix}{i}"

    def job(self, i: str) -> str:
        return f"job/j{self.prefix}{i}"


def run(env: Env, opts: Options) -> Result:
    machine = Machine(slot=env.harness.slot.index)
    ns = env.namespace("start")
    procs = env.cairn(ns)
    kube = env.kube
    kube.create(E.queues(ns), E.queue(ns, "default", 10_000))
    kube.create(E.tasks(ns), E.task(ns, "sleep", E.real_task_template(COMMAND), retry={"maxAttempts": 1}))
    kube.create(
        E.tasks(ns), E.task(ns, "simulated", E.simulated_task_template(SIMULATED_DELAY), retry={"maxAttempts": 1})
    )
    simulated = Side("s", "simulated", E.simulated_pod_template(SIMULATED_DELAY), PAIR_INTERVAL)
    real = Side("n", "sleep", E.real_pod_template(COMMAND), REAL_PAIR_INTERVAL)
    tl = Timeline()
    watches = [
        Watcher(kube, E.pods(ns), tl.on_pod).start(),
        Watcher(kube, E.taskruns(ns), tl.owner_handler("run")).start(),
        Watcher(kube, E.jobs(ns), tl.owner_handler("job")).start(),
    ]
    per_rep = max(1, opts.start_runs // opts.reps)
    rounds: list[list[str]] = [[f"{i + r * per_rep:04d}" for i in range(per_rep)] for r in range(opts.reps)]
    real_ids = [f"{i:04d}" for i in range(max(opts.reps, opts.start_runs // 10))]
    profile = opts.profile / "start-latency-operator" if opts.profile else None
    try:
        # Warm up: the first pod on each node, the operator's first round, the first Job.
        for side in (simulated, real):
            warm = [f"w{i}" for i in range(WARMUP)]
            _create_pairs(env, ns, side, warm)
            _wait_running(env, tl, side, warm)
        with profiled(procs.operator.pid if procs.operator else 0, profile):
            for r in rounds:
                _create_pairs(env, ns, simulated, r)
            _wait_running(env, tl, simulated, [i for r in rounds for i in r])
        real_start = Machine(slot=env.harness.slot.index)
        _create_pairs(env, ns, real, real_ids)
        _wait_running(env, tl, real, real_ids)
        real_machine = real_start.reading()
    finally:
        for w in watches:
            w.stop()
        env.release(procs)

    figures: list[Figure] = []
    pooled: dict[str, dict[str, list[float]]] = {}
    for stat, q in (("p50", 50), ("p99", 99)):
        cairn_reps, job_reps = [], []
        for r in rounds:
            cairn_reps.append(percentile(_latencies(tl, [simulated.run(i) for i in r], "added"), q))
            job_reps.append(percentile(_latencies(tl, [simulated.job(i) for i in r], "added"), q))
        # Issue 18: created -> pod created p50 within 2x the Job's, p99 under 200 ms.
        target, kind = (2.0, "ratio_max") if stat == "p50" else (200.0, "max")
        figures.append(
            Figure(
                "start latency",
                f"created -> pod created {stat}",
                "ms",
                cairn_reps,
                baseline=job_reps,
                baseline_name="batch/v1 Job",
                target=target,
                target_kind=kind,
                samples=per_rep,
            )
        )
    all_ids = [i for r in rounds for i in r]
    pooled["pod created (simulated nodes)"] = {
        "cairn": _latencies(tl, [simulated.run(i) for i in all_ids], "added"),
        "job": _latencies(tl, [simulated.job(i) for i in all_ids], "added"),
    }
    for what in ("added", "running"):
        runs = _latencies(tl, [real.run(i) for i in real_ids], what)
        jobs = _latencies(tl, [real.job(i) for i in real_ids], what)
        pooled[f"pod {'created' if what == 'added' else what} (real nodes)"] = {"cairn": runs, "job": jobs}
    for stat, q in (("p50", 50), ("p99", 99)):
        # One repetition: the real nodes' pace makes more too slow; the pooled figures say how many.
        runs = pooled["pod running (real nodes)"]["cairn"]
        jobs = pooled["pod running (real nodes)"]["job"]
        figures.append(
            Figure(
                "start latency",
                f"created -> pod running on a real node {stat}",
                "ms",
                [percentile(runs, q)],
                baseline=[percentile(jobs, q)],
                baseline_name="batch/v1 Job",
                samples=len(runs),
            )
        )
    details = {
        "runs": per_rep * opts.reps,
        "jobs": per_rep * opts.reps,
        "repetitions": opts.reps,
        "pair_interval_s": PAIR_INTERVAL,
        "simulated_pod_ends_after": SIMULATED_DELAY,
        "real_node_pairs": len(real_ids),
        "real_pair_interval_s": REAL_PAIR_INTERVAL,
        "real_pod_command": COMMAND,
        "real_nodes_machine": real_machine,
        "pooled": {
            what: {
                side: {
                    "n": len(v),
                    "p50_ms": round(percentile(v, 50), 2),
                    "p90_ms": round(percentile(v, 90), 2),
                    "p99_ms": round(percentile(v, 99), 2),
                    "max_ms": round(max(v), 2) if v else None,
                }
                for side, v in sides.items()
            }
            for what, sides in pooled.items()
        },
        "no_pod_within_timeout": {
            "cairn": sum(1 for i in all_ids if tl.first_pod(simulated.run(i)) is None)
            + sum(1 for i in real_ids if tl.first_pod(real.run(i)) is None),
            "job": sum(1 for i in all_ids if tl.first_pod(simulated.job(i)) is None)
            + sum(1 for i in real_ids if tl.first_pod(real.job(i)) is None),
        },
    }
    return Result("start latency", figures, details, machine.reading())


def _latencies(tl: Timeline, owners: list[str], what: str) -> list[float]:
    return [m for o in owners if (m := _latency(tl, o, what)) is not None]


def _latency(tl: Timeline, owner: str, what: str) -> float | None:
    created = tl.created.get(owner)
    pod = tl.first_pod(owner)
    if created is None or pod is None:
        return None
    at = getattr(pod, what)
    return None if at is None else (at - created) * 1000


def _create_pairs(env: Env, ns: str, side: Side, ids: list[str]) -> None:
    """A TaskRun and a Job half an interval apart, which goes first alternating: each is measured on the
    machine as the other left it, not inside the other's burst (created together, the slower path took
    the whole of the faster one's: the Job, its pod, its scheduling and its node's updates)."""
    kube = env.kube
    next_at = time.monotonic()
    for n, i in enumerate(ids):
        run = (E.taskruns(ns), E.taskrun(ns, f"r{side.prefix}{i}", side.task))
        job = (E.jobs(ns), E.job(ns, f"j{side.prefix}{i}", side.template))
        for path, body in (run, job) if n % 2 == 0 else (job, run):
            kube.create(path, body)
            next_at += side.interval / 2
            time.sleep(max(0.0, next_at - time.monotonic()))


def _wait_running(env: Env, tl: Timeline, side: Side, ids: list[str], timeout: float = 120) -> None:
    owners = [side.run(i) for i in ids] + [side.job(i) for i in ids]

    def all_running() -> bool:
        return all((p := tl.first_pod(o)) is not None and p.running is not None for o in owners)

    with contextlib.suppress(TimeoutError):  # reported as missing samples
        env.wait("every pod to run", all_running, timeout, interval=0.5)
