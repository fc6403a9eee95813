"""Schedules: a fire time -> its TaskRun created (seen by a watch), beside Kubernetes CronJobs.

Two phases, each with an operator of its own in a namespace of its own:
1. 500 Schedules, schedule i firing once a minute at second i % 60 (about 8 fire times a second):
   the latency with 500 schedules active (DESIGN's target: p99 <= 1 s);
2. the same burst on both sides: 50 Schedules and 50 CronJobs (`* * * * *`, suspended Jobs) all firing
   at second 0 of every minute (a CronJob cannot fire more often than once a minute).
The runs are held in a paused Queue: what is measured is the run's creation, not its pod. Latency: the
watch's receipt of the run (or Job) minus its fire time (Cairn's annotation, to the millisecond; a
Job's `batch.kubernetes.io/cronjob-scheduled-timestamp`, to the second).
"""

from __future__ import annotations

import threading
import time
from datetime import datetime

from bench import env as E
from bench.env import Env
from bench.kube import Watcher
from bench.options import Options
from bench.profiling import profiled
from bench.report import Result
from bench.stats import Figure, Machine, percentile

ACTIVE = 500
BURST = 50


def _stamp(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _phase(env: Env, opts: Options, stem: str, crons: list[str], cronjobs: int, minutes: int) -> dict[str, list[float]]:
    """Latencies (ms) of the runs of Schedules with these crons (and of as many Jobs of `cronjobs` CronJobs)."""
    ns = env.namespace(stem)
    procs = env.cairn(ns)
    kube = env.kube
    kube.create(E.queues(ns), E.queue(ns, "default", 10, paused=True))
    kube.create(E.tasks(ns), E.task(ns, "tick", E.simulated_template("1s")))
    lock = threading.Lock()
    seen: dict[str, list[tuple[float, float]]] = {"cairn": [], "cronjob": []}  # (fire time, latency ms)

    def on_run(t: float, kind: str, obj: E.Body) -> None:
        fired = (obj["metadata"].get("annotations") or {}).get("cairn.dev/fire-time")
        if kind == "ADDED" and fired:
            with lock:
                seen["cairn"].append((_stamp(fired), (t - _stamp(fired)) * 1000))

    def on_job(t: float, kind: str, obj: E.Body) -> None:
        fired = (obj["metadata"].get("annotations") or {}).get("batch.kubernetes.io/cronjob-scheduled-timestamp")
        if kind == "ADDED" and fired:
            with lock:
                seen["cronjob"].append((_stamp(fired), (t - _stamp(fired)) * 1000))

    watches = [Watcher(kube, E.taskruns(ns), on_run).start(), Watcher(kube, E.jobs(ns), on_job).start()]
    profile = opts.profile / f"schedules-{stem}-operator" if opts.profile else None
    try:
        for i, cron in enumerate(crons):
            kube.create(E.schedules(ns), E.schedule(ns, f"s{i:03d}", "tick", cron, overlapPolicy="Allow"))
        for i in range(cronjobs):
            kube.create(E.cronjobs(ns), E.cronjob(ns, f"c{i:03d}", "* * * * *", E.simulated_job_template("1s")))
        # A warm-up minute (every Schedule's first look, the first fire times), then whole minutes:
        # the fire times in [start, end) count, whenever their run arrives.
        start = time.time() - time.time() % 60 + 120
        end = start + 60 * minutes
        time.sleep(start - time.time())
        with profiled(procs.operator.pid if procs.operator else 0, profile):
            time.sleep(end - time.time())
        time.sleep(10)  # the last fire times' runs arrive
    finally:
        for w in watches:
            w.stop()
        env.release(procs)
    with lock:
        return {k: [ms for fired, ms in v if start <= fired < end] for k, v in seen.items()}


def run(env: Env, opts: Options) -> Result:
    machine = Machine(slot=env.harness.slot.index)
    active = 60 if opts.quick else ACTIVE
    burst = 10 if opts.quick else BURST
    minutes = 1 if opts.quick else opts.schedule_minutes
    spread = _phase(env, opts, "schedules", [f"{i % 60} * * * * *" for i in range(active)], 0, minutes)["cairn"]
    at_once = _phase(env, opts, "schedule-burst", ["0 * * * * *"] * burst, burst, minutes)
    burst_ms, cron_ms = at_once["cairn"], at_once["cronjob"]
    figures = [
        Figure(
            "schedules",
            f"fire -> run created p50 ({active} active)",
            "ms",
            [percentile(spread, 50)],
            samples=len(spread),
        ),
        Figure(
            "schedules",
            f"fire -> run created p99 ({active} active)",
            "ms",
            [percentile(spread, 99)],
            target=1000.0,
            samples=len(spread),
        ),
        Figure(
            "schedules",
            f"fire -> created p50 ({burst} at once)",
            "ms",
            [percentile(burst_ms, 50)],
            baseline=[percentile(cron_ms, 50)],
            baseline_name="CronJob",
            samples=len(burst_ms),
        ),
        Figure(
            "schedules",
            f"fire -> created p99 ({burst} at once)",
            "ms",
            [percentile(burst_ms, 99)],
            baseline=[percentile(cron_ms, 99)],
            baseline_name="CronJob",
            samples=len(burst_ms),
        ),
    ]
    details = {
        "schedules_active": active,
        "schedules_burst": burst,
        "cronjobs": burst,
        "minutes_each": minutes,
        "runs_seen": {"active": len(spread), "burst": len(burst_ms), "cronjob_jobs": len(cron_ms)},
        "expected": {"active": active * minutes, "burst": burst * minutes, "cronjob_jobs": burst * minutes},
        "max_ms": {
            "active": round(max(spread), 1) if spread else None,
            "burst": round(max(burst_ms), 1) if burst_ms else None,
            "cronjob": round(max(cron_ms), 1) if cron_ms else None,
        },
        "note": "a CronJob's fire time has a resolution of one second (its Jobs may read up to 1 s late or early)",
    }
    return Result("schedules", figures, details, machine.reading())
