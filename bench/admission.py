"""Admission throughput: a backlog of queued TaskRuns drained through a Queue, beside a backlog of
batch/v1 Jobs drained by the Job controller, with the same client budget (50 requests/s, burst 100:
Cairn's defaults, given to kube-controller-manager's controllers with --kube-api-qps/--kube-api-burst).

Each side starts from the same position: its controller stopped, `admission_runs` objects created
(pods on simulated nodes that succeed 1 s after they start), then the controller started and
timed until the backlog is drained (every run/Job finished). The Queue admits `admission_limit`
at a time; Jobs have no queue, so the Job controller may start all of them at once: the baseline
is the Job controller at full speed, not a queue.

Figures:
- admissions/s: pods created per second from the controller's start to its last pod (Cairn creates
  a run's pod right after admitting it; the Job controller's pod creation is its "admission");
- API requests per admission: what the controller itself asked of the API server during the drain,
  divided by the runs. Cairn counts its own (cairn_kube_requests_total, events included); for the
  Job controller it is kube-controller-manager's client count (rest_client_requests_total), less the
  idle rate of its other controllers measured just before.
"""

from __future__ import annotations

import time
from typing import Any

from bench import env as E
from bench.env import BURST, QPS, Env, cpu_seconds
from bench.kube import Watcher, by_label, total
from bench.options import Options
from bench.profiling import profiled
from bench.report import Result
from bench.stats import Figure, Machine, cv, median
from bench.timeline import Timeline

POD_DELAY = "1s"
DRAIN_TIMEOUT = 1800.0
WINDOW = 10.0  # seconds: the rate is also reported per window, for its spread


def run(env: Env, opts: Options) -> Result:
    machine = Machine(slot=env.harness.slot.index)
    n = opts.admission_runs
    cairn_rates: list[float] = []
    job_rates: list[float] = []
    cairn_rpa: list[float] = []
    job_rpa: list[float] = []
    cairn_drain: list[float] = []
    job_drain: list[float] = []
    details: dict[str, Any] = {"runs": n, "queue_limit": opts.admission_limit, "pod_runs_for": POD_DELAY}
    for rep in range(opts.admission_reps):
        sides = ("cairn", "jobs") if rep % 2 == 0 else ("jobs", "cairn")
        for side in sides:
            if side == "cairn":
                c = _cairn(env, opts, rep)
                cairn_rates.append(c["admissions_per_s"])
                cairn_rpa.append(c["requests_per_admission"])
                cairn_drain.append(c["drained_s"])
                details[f"cairn_rep{rep}"] = c
            else:
                j = _jobs(env, opts)
                job_rates.append(j["admissions_per_s"])
                job_rpa.append(j["requests_per_admission"])
                job_drain.append(j["drained_s"])
                details[f"jobs_rep{rep}"] = j
    figures = [
        Figure(
            "admission",
            f"admissions/s ({n} queued, limit {opts.admission_limit})",
            "1/s",
            cairn_rates,
            baseline=job_rates,
            baseline_name="Job controller",
            # Issue 18: at least 20/s at a 50/s budget, and at least the Job controller's rate.
            target=20.0,
            target_kind="min",
            min_ratio=1.0,
            better="higher",
            samples=n,
        ),
        Figure(
            "admission",
            f"API requests per admission ({QPS:g}/s budget)",
            "req",
            cairn_rpa,
            baseline=job_rpa,
            baseline_name="Job controller",
            target=2.5,
            samples=n,
        ),
        Figure(
            "admission",
            f"backlog of {n} drained (all finished)",
            "s",
            cairn_drain,
            baseline=job_drain,
            baseline_name="Job controller",
            target=1.0,
            target_kind="ratio_max",
            samples=n,
        ),
    ]
    return Result("admission", figures, details, machine.reading())


def _window_rates(times: list[float], t0: float) -> list[float]:
    """Pods created per second in consecutive windows (the last, partial one left out)."""
    if not times:
        return []
    end = max(times)
    rates = []
    start = t0
    while start + WINDOW <= end:
        rates.append(sum(1 for t in times if start <= t < start + WINDOW) / WINDOW)
        start += WINDOW
    return rates


def _summary(tl: Timeline, t0: float, t_drained: float, n: int) -> dict[str, Any]:
    created = sorted(p.added for p in tl.pods.values())
    last = created[-1] if created else t0
    windows = _window_rates(created, t0)
    steady = windows[1:-1] if len(windows) > 3 else windows
    return {
        "pods_created": len(created),
        "first_pod_after_s": round(created[0] - t0, 2) if created else None,
        "last_pod_after_s": round(last - t0, 2),
        "admissions_per_s": n / (last - t0) if last > t0 else 0.0,
        "drained_s": round(t_drained - t0, 1),
        "window_rates_median": round(median(steady), 2) if steady else None,
        "window_rates_cv": round(cv(steady), 3) if steady else None,
        "window_rates": [round(r, 1) for r in windows],
    }


def _cairn(env: Env, opts: Options, rep: int) -> dict[str, Any]:
    kube = env.kube
    n = opts.admission_runs
    ns = env.namespace("admission")
    kube.create(E.queues(ns), E.queue(ns, "default", opts.admission_limit))
    kube.create(E.tasks(ns), E.task(ns, "sim", E.simulated_template(POD_DELAY)))
    bodies = [E.taskrun(ns, f"r{i:05d}", "sim") for i in range(n)]
    create_s = kube.create_many(lambda _: E.taskruns(ns), bodies)
    tl = Timeline()
    watch = Watcher(kube, E.pods(ns), tl.on_pod).start()
    t0 = time.time()
    procs = env.cairn(ns, kube_qps=str(QPS), kube_burst=str(BURST))
    t_live = time.time()
    assert procs.operator is not None
    profile = opts.profile / f"admission-operator-{rep}" if opts.profile else None
    try:
        with profiled(procs.operator.pid, profile):

            def drained() -> bool:
                m = env.operator_metrics(procs)
                return total(m, "cairn_runs_finished_total") >= n

            env.wait(f"{n} runs to finish", drained, DRAIN_TIMEOUT, interval=1.0)
            t_drained = time.time()

            # Status writes merge while they wait for the budget: count them all, and say how long
            # the last ones took to land after the last run ended.
            def written() -> bool:
                return total(env.operator_metrics(procs), "cairn_status_writes_waiting") == 0

            env.wait("every status write", written, DRAIN_TIMEOUT, interval=0.5)
        t_settled = time.time()
        metrics = env.operator_metrics(procs)
        cpu = cpu_seconds(procs.operator.pid)
    finally:
        watch.stop()
        env.release(procs)
    requests = by_label(metrics, "cairn_kube_requests_total", "what")
    admitted = total(metrics, "cairn_admissions_total")
    out = _summary(tl, t0, t_drained, n)
    out.update(
        {
            "created_in_s": round(create_s, 1),
            "operator_live_after_s": round(t_live - t0, 2),
            "statuses_written_s_after_drain": round(t_settled - t_drained, 1),
            "status_writes_merged": total(metrics, "cairn_status_writes_merged_total"),
            "admitted": admitted,
            "requests": {k: int(v) for k, v in sorted(requests.items())},
            "requests_per_admission": sum(requests.values()) / max(1.0, admitted),
            # Over the time they were made: the last status writes land after the drain.
            "requests_per_s": round(sum(requests.values()) / max(1e-9, t_settled - t0), 1),
            "operator_cpu_s": round(cpu, 1),
            "operator_cpu_ms_per_run": round(1000 * cpu / n, 2),
            "succeeded": total(metrics, "cairn_runs_finished_total", phase="Succeeded"),
        }
    )
    return out


def _jobs(env: Env, opts: Options) -> dict[str, Any]:
    kube = env.kube
    cp = env.harness.cp
    n = opts.admission_runs
    ns = env.namespace("jobs")
    # The idle request rate of kube-controller-manager (all its controllers), to subtract.
    m0, i0 = env.controller_manager_metrics(), time.time()
    time.sleep(15)
    m1, i1 = env.controller_manager_metrics(), time.time()
    idle_rate = (total(m1, "rest_client_requests_total") - total(m0, "rest_client_requests_total")) / (i1 - i0)
    cp.stop_controller_manager()
    try:
        template = E.simulated_job_template(POD_DELAY)
        bodies = [E.job(ns, f"j{i:05d}", template) for i in range(n)]
        create_s = kube.create_many(lambda _: E.jobs(ns), bodies)
    finally:
        tl = Timeline()
        watch = Watcher(kube, E.pods(ns), tl.on_pod).start()
        t0 = time.time()
        cp.start_controller_manager()
        t_live = time.time()
    try:

        def drained() -> bool:
            done = kube.items(E.jobs(ns))
            return sum(1 for j in done if (j.get("status") or {}).get("succeeded")) >= n

        env.wait(f"{n} Jobs to complete", drained, DRAIN_TIMEOUT, interval=2.0)
        t_drained = time.time()
        metrics = env.controller_manager_metrics()
    finally:
        watch.stop()
    made = total(metrics, "rest_client_requests_total")
    by_method = by_label(metrics, "rest_client_requests_total", "method")
    duration = t_drained - t0
    jobs_requests = made - idle_rate * duration
    out = _summary(tl, t0, t_drained, n)
    out.update(
        {
            "created_in_s": round(create_s, 1),
            "controller_live_after_s": round(t_live - t0, 2),
            "controller_manager_requests": int(made),
            "controller_manager_requests_by_method": {k: int(v) for k, v in sorted(by_method.items())},
            "idle_requests_per_s_subtracted": round(idle_rate, 2),
            "requests_per_admission": jobs_requests / n,
            "requests_per_s": round(made / max(1e-9, duration), 1),
        }
    )
    return out
