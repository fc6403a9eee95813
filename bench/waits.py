"""Durable waits: a sleep's end -> the pod that resumes its run created, as the benchmark's pod watch
receives it. Each run records a step, sleeps until its own instant (the pod ends and the slot is
given back), and is resumed in a new pod; beside it, the recovery figure of the same run (a killed
pod's backoff end -> its replacement created) is the comparable path: both are "the operator
decides, the pod is created".

The runs' instants are a second apart, so that the figure is one wake's latency, not a burst's."""

from __future__ import annotations

import textwrap
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from bench import env as E
from bench.env import Env
from bench.kube import Watcher
from bench.options import Options
from bench.report import Result
from bench.stats import Figure, Machine, median, percentile
from bench.timeline import Timeline

CODE = textwrap.dedent(
    """
    from datetime import datetime

    def main(ctx):
        ctx.step("before", lambda: 1)
        ctx.sleep_until("nap", datetime.fromisoformat(ctx.payload["until"]))
        return ctx.step("after", lambda: 2)
    """
)
LEAD_S = 25.0  # from creating a repetition's runs to the first one's wake: every pod has suspended by then


def _task(ns: str) -> dict[str, Any]:
    return E.task(ns, "sleeper", E.code_template("bench-sleeper", "bench_sleeper:main"))


def run(env: Env, opts: Options) -> Result:
    machine = Machine(slot=env.harness.slot.index)
    ns = env.namespace("waits")
    procs = env.cairn(ns, api=True)  # the pods record their steps and waits through the API
    kube = env.kube
    kube.create(E.queues(ns), E.queue(ns, "default", 1000))
    kube.create(f"/api/v1/namespaces/{ns}/configmaps", E.code_configmap("bench-sleeper", "bench_sleeper", CODE))
    kube.create(E.tasks(ns), _task(ns))
    tl = Timeline(keep_status=True)
    watches = [Watcher(kube, E.pods(ns), tl.on_pod).start()]
    k = opts.wait_runs
    per_rep: list[list[float]] = []
    samples: list[dict[str, Any]] = []
    try:
        for rep in range(opts.reps):
            first = datetime.now(UTC) + timedelta(seconds=LEAD_S)
            wakes = {f"w{rep}-{i}": first + timedelta(seconds=i) for i in range(k)}
            for name, until in wakes.items():
                kube.create(
                    E.taskruns(ns), E.taskrun(ns, name, "sleeper", payload=f'{{"until": "{until.isoformat()}"}}')
                )
            env.wait(
                "every resumed pod",
                lambda wakes=wakes: all(tl.nth_pod(f"run/{n}", 1) is not None for n in wakes),
                LEAD_S + k + 120,
                interval=0.3,
            )
            lat = []
            for name, until in wakes.items():
                first_pod, resumed = tl.first_pod(f"run/{name}"), tl.nth_pod(f"run/{name}", 1)
                assert first_pod is not None and resumed is not None
                # Each run's first pod must have ended before its wake: otherwise it did not suspend.
                assert first_pod.ended is not None and first_pod.ended < until.timestamp(), name
                ms = (resumed.added - until.timestamp()) * 1000
                lat.append(ms)
                samples.append({"run": name, "wake_to_pod_ms": round(ms, 1)})
            per_rep.append(lat)
            for name in wakes:
                kube.delete(f"{E.taskruns(ns)}/{name}")
            time.sleep(2)
    finally:
        for w in watches:
            w.stop()
        env.release(procs)
    pooled = [v for r in per_rep for v in r]
    figures = [
        Figure("waits", "sleep end -> resumed pod created, p50", "ms", [median(r) for r in per_rep], samples=k),
        Figure(
            "waits",
            "sleep end -> resumed pod created, p99",
            "ms",
            [percentile(r, 99) for r in per_rep],
            target=1000.0,
            samples=k,
            note="beside recovery's backoff end -> new pod (the same decision and pod creation)",
        ),
    ]
    details = {
        "runs": k * opts.reps,
        "pooled_ms": {"p50": round(percentile(pooled, 50), 1), "p99": round(percentile(pooled, 99), 1)},
        "samples": samples,
    }
    return Result("waits", figures, details, machine.reading())
