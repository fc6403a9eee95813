"""Rate limits: the pace a queue achieves against the one it is given. A backlog far larger than a
minute's worth waits in a queue with `rateLimit` (no concurrency limit that binds); the benchmark's
pod watch times each pod, and the figure is the pods created in the first whole minute after the
first one, divided by what the rate allows in a minute. Twice: all of a window at once (burst =
limit), and evenly spread (burst 1). The baseline is the rate itself (1.00): the target is within 2 %.

Pods run on simulated nodes and end at once: what is measured is admission's pace, not pods."""

from __future__ import annotations

import time

import psycopg

from bench import env as E
from bench.env import Env
from bench.kube import Watcher
from bench.options import Options
from bench.report import Result
from bench.stats import Figure, Machine
from bench.timeline import Timeline

LIMIT, PERIOD_S = 20, 10  # 120 a minute
MINUTE_S = 60.0


def _one(env: Env, opts: Options, burst: int, rep: int) -> tuple[float, float, list[float]]:
    kube = env.kube
    ns = env.namespace(f"pace-{burst}-{rep}")
    allowed = LIMIT * MINUTE_S / PERIOD_S
    backlog = int(allowed * 1.5)
    rate = {"limit": LIMIT, "period": f"{PERIOD_S}s", "burst": burst}
    kube.create(E.queues(ns), E.queue(ns, "default", 10000, rateLimit=rate))
    kube.create(E.tasks(ns), E.task(ns, "sim", E.simulated_template("100ms")))
    tl = Timeline()
    watch = Watcher(kube, E.pods(ns), tl.on_pod).start()
    procs = env.cairn(ns)
    try:
        kube.create_many(lambda _: E.taskruns(ns), [E.taskrun(ns, f"r{i:04d}", "sim") for i in range(backlog)])

        def minute_seen() -> bool:
            times = _pod_times(tl)
            return bool(times) and times[-1] - times[0] >= MINUTE_S + 1

        env.wait("a minute of paced admissions", minute_seen, MINUTE_S * 3, interval=1.0)
        with psycopg.connect(procs.dsn) as conn:
            admitted = [
                r[0].timestamp()
                for r in conn.execute("SELECT admitted_at FROM runs WHERE admitted_at IS NOT NULL ORDER BY 1")
            ]
    finally:
        watch.stop()
        env.release(procs)
    times = _pod_times(tl)
    t0 = times[0]
    in_minute = [t - t0 for t in times if t - t0 < MINUTE_S]
    # The pace is kept on the admissions' times (PostgreSQL's clock); the pods' are those plus the
    # watch's latency, which varies (the first wave's pods arrive while the backlog is still being
    # created), so a minute of pods may catch the edge of the next wave: both are reported.
    a0 = admitted[0]
    by_store = sum(1 for t in admitted if t - a0 < MINUTE_S)
    return by_store / allowed, len(in_minute) / allowed, in_minute


def _pod_times(tl: Timeline) -> list[float]:
    with tl.lock:
        return sorted(p.added for p in tl.pods.values())


def run(env: Env, opts: Options) -> Result:
    machine = Machine(slot=env.harness.slot.index)
    reps = 1 if opts.quick else max(1, opts.reps // 2)
    figures = []
    details: dict[str, object] = {"limit": LIMIT, "period_s": PERIOD_S}
    for burst, label in ((LIMIT, "burst = limit"), (1, "burst 1")):
        ratios: list[float] = []
        watched: list[float] = []
        for rep in range(reps):
            t1 = time.monotonic()
            ratio, seen, offsets = _one(env, opts, burst, rep)
            ratios.append(ratio)
            watched.append(seen)
            details[f"burst_{burst}_rep_{rep}"] = {
                "ratio_admissions": round(ratio, 4),
                "ratio_pods_watched": round(seen, 4),
                "pods_in_minute": len(offsets),
                "first_10_offsets_s": [round(t, 2) for t in offsets[:10]],
                "took_s": round(time.monotonic() - t1, 1),
            }
        figures.append(
            Figure(
                "pace",
                f"admitted / allowed over a minute, {LIMIT} per {PERIOD_S}s, {label}",
                "ratio",
                ratios,
                baseline=[1.0],
                baseline_name="the rate",
                target=0.98,
                target_kind="min",
                better="higher",
                samples=int(LIMIT * MINUTE_S / PERIOD_S),
                note="by the admissions' times; never above 1.00 (no window is exceeded), within 2 % of it",
            )
        )
        figures.append(
            Figure(
                "pace",
                f"pods seen / allowed over a minute, {LIMIT} per {PERIOD_S}s, {label}",
                "ratio",
                watched,
                baseline=[1.0],
                baseline_name="the rate",
                target=0.98,
                target_kind="min",
                better="higher",
                samples=int(LIMIT * MINUTE_S / PERIOD_S),
                note="by the pod watch: the admissions' times plus a latency that varies",
            )
        )
    return Result("pace", figures, details, machine.reading())
