"""Checkpoint overhead: recording a step through the API (POST /v1/steps with a pod-bound token),
beside a bare PostgreSQL INSERT of the same row into the same table, from the same process.

The runs are real TaskRuns whose pods run on simulated nodes (forever: no finish label); each token
is a TokenRequest bound to one of those pods with Cairn's audience, exactly what the kubelet
projects into a task pod. Per repetition, fresh runs (so no run accumulates thousands of steps):

- latency: `checkpoint_latency_records` records one at a time, on one run (p50, p99);
- throughput: `checkpoint_records` records by `checkpoint_concurrency` workers, one run each
  (several pods of one API process), records per second.

The baseline does the same with `INSERT INTO steps ... VALUES (...)` on an autocommit connection
(one per worker) of the same database: the floor any checkpoint API on PostgreSQL stands on. The
order (API first or INSERT first) alternates between repetitions.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import psycopg
from psycopg.types.json import Jsonb

from bench import env as E
from bench.env import Env, cpu_seconds
from bench.kube import total
from bench.options import Options
from bench.profiling import profiled
from bench.report import Result
from bench.stats import Figure, Machine, percentile

RESULT = {"status": "ok", "items": 20, "url": "s3://bucket/path/to/object-0001.json", "note": "x" * 64}
DEEP = 5000  # steps already in the run, for the "long loop" figure
BARE_INSERT = """
INSERT INTO steps (run_uid, step_key, seq, attempt, result, started_at)
VALUES (%s, %s, %s, %s, %s, %s)"""


@dataclass
class Target:
    run: str
    uid: str
    attempt: int
    token: str


def run(env: Env, opts: Options) -> Result:
    machine = Machine(slot=env.harness.slot.index)
    ns = env.namespace("checkpoint")
    procs = env.cairn(ns, api=True, api_client_rate="0")  # no per-pod pace: the API's cost, not its limit
    kube = env.kube
    workers = opts.checkpoint_concurrency
    kube.create(E.queues(ns), E.queue(ns, "default", 1000))
    kube.create(E.tasks(ns), E.task(ns, "hold", E.simulated_template(None)))
    names = [[f"r{rep}-{w:02d}" for w in range(workers)] for rep in range(opts.reps + 1)]  # +1: warm-up
    for group in names:
        for name in group:
            kube.create(E.taskruns(ns), E.taskrun(ns, name, "hold"))
    targets = [[_target(env, ns, name) for name in group] for group in names]
    assert procs.api is not None
    profile = opts.profile / "checkpoint-api" if opts.profile else None
    try:
        with profiled(procs.api.pid, profile):
            measured = asyncio.run(_measure(procs.api_url, procs.dsn, targets, opts, procs.api.pid))
        server = env.api_metrics(procs)
    finally:
        env.release(procs)

    m = measured
    figures = [
        Figure(
            "checkpoint",
            "record a step p50",
            "ms",
            [percentile(r, 50) for r in m.lat_api],
            baseline=[percentile(r, 50) for r in m.lat_bare],
            baseline_name="bare INSERT",
            target=2.0,
            samples=opts.checkpoint_latency_records,
        ),
        Figure(
            "checkpoint",
            "record a step p99",
            "ms",
            [percentile(r, 99) for r in m.lat_api],
            baseline=[percentile(r, 99) for r in m.lat_bare],
            baseline_name="bare INSERT",
            target=10.0,
            samples=opts.checkpoint_latency_records,
        ),
        Figure(
            "checkpoint",
            f"records/s ({workers} in flight)",
            "1/s",
            m.rate_api,
            baseline=m.rate_bare,
            baseline_name="bare INSERT",
            target=1000.0,
            target_kind="min",
            better="higher",
            samples=opts.checkpoint_records,
        ),
        Figure(
            "checkpoint",
            "step after a quiet second, start + record, p50",
            "ms",
            [percentile(r, 50) for r in m.lat_sdk],
            baseline=[percentile(r, 50) for r in m.lat_bare],
            baseline_name="bare INSERT",
            samples=opts.checkpoint_latency_records // 2,
            note="POST /v1/steps/start, then POST /v1/steps: what the SDK pays for a step when the API has "
            "not answered for a second (right after an answer, one call; the steps benchmark runs the SDK itself)",
        ),
    ]
    p50_ratio = figures[0].ratio
    count = total(server, "cairn_checkpoint_write_seconds_count")
    details = {
        "runs_per_repetition": workers,
        "result_bytes": len(json.dumps(RESULT, separators=(",", ":"))),
        "p50_within_2x_of_bare_insert": (p50_ratio is not None and p50_ratio <= 2.0),
        "api_cpu_ms_per_record": round(1000 * m.api_cpu_s / max(1, m.records), 3),
        "bench_client_cpu_ms_per_record": round(1000 * m.bench_cpu_s / max(1, m.records), 3),
        "api_side_mean_ms": round(1000 * total(server, "cairn_checkpoint_write_seconds_sum") / count, 3)
        if count
        else None,
        f"record_p50_ms_with_{DEEP}_steps_in_the_run": round(percentile(m.lat_deep, 50), 3),
        f"record_p99_ms_with_{DEEP}_steps_in_the_run": round(percentile(m.lat_deep, 99), 3),
    }
    return Result("checkpoint", figures, details, machine.reading())


def _target(env: Env, ns: str, name: str) -> Target:
    kube = env.kube
    pod_name = f"{name}-1"

    def pod_running() -> dict[str, Any] | None:
        pod = kube.get(f"{E.pods(ns)}/{pod_name}")
        return pod if (pod.get("status") or {}).get("phase") == "Running" else None

    pod = env.wait(f"pod {pod_name} to run", pod_running, 120)
    meta = pod["metadata"]
    sa = pod["spec"].get("serviceAccountName") or "default"
    answer = kube.create(
        f"/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token",
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": ["cairn.dev"],
                "expirationSeconds": 3600,
                "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": meta["name"], "uid": meta["uid"]},
            },
        },
    )
    return Target(name, meta["labels"]["cairn.dev/run-uid"], 1, answer["status"]["token"])


@dataclass
class Measured:
    lat_api: list[list[float]] = field(default_factory=list)  # per repetition, ms
    lat_bare: list[list[float]] = field(default_factory=list)
    lat_sdk: list[list[float]] = field(default_factory=list)
    rate_api: list[float] = field(default_factory=list)
    rate_bare: list[float] = field(default_factory=list)
    lat_deep: list[float] = field(default_factory=list)  # in a run that already has DEEP steps
    api_cpu_s: float = 0.0
    bench_cpu_s: float = 0.0
    records: int = 0


async def _measure(url: str, dsn: str, targets: list[list[Target]], opts: Options, api_pid: int) -> Measured:
    workers = opts.checkpoint_concurrency
    m = Measured()
    connector = aiohttp.TCPConnector(limit=workers)
    async with aiohttp.ClientSession(url, connector=connector) as http:
        conns = [await psycopg.AsyncConnection.connect(dsn, autocommit=True) for _ in range(workers)]
        try:
            for rep, group in enumerate(targets):
                warmup = rep == 0  # the first group warms both paths up and is not counted
                n_lat = 100 if warmup else opts.checkpoint_latency_records
                n_tput = 400 if warmup else opts.checkpoint_records
                for side in ("api", "bare") if rep % 2 == 0 else ("bare", "api"):
                    if side == "api":
                        lat = await _api_sequential(http, group[0], n_lat, f"lat{rep}")
                        sdk = await _sdk_sequential(http, group[1], n_lat // 2, f"lat{rep}")
                        api0, me0 = cpu_seconds(api_pid), time.process_time()
                        rate = await _api_concurrent(http, group, n_tput, f"tput{rep}")
                        if not warmup:
                            m.api_cpu_s += cpu_seconds(api_pid) - api0
                            m.bench_cpu_s += time.process_time() - me0
                            m.records += n_tput
                            m.lat_api.append(lat)
                            m.lat_sdk.append(sdk)
                            m.rate_api.append(rate)
                    else:
                        lat = await _bare_sequential(conns[0], group[0], n_lat, f"lat{rep}")
                        rate = await _bare_concurrent(conns, group, n_tput, f"tput{rep}")
                        if not warmup:
                            m.lat_bare.append(lat)
                            m.rate_bare.append(rate)
            # A long loop of steps: the cost of a record once the run holds DEEP steps.
            deep = targets[0][2]
            await _api_concurrent(http, [deep], DEEP, "deep-fill")
            m.lat_deep = await _api_sequential(http, deep, 200, "deep")
        finally:
            for conn in conns:
                await conn.close()
    return m


async def _api_record(http: aiohttp.ClientSession, target: Target, key: str) -> None:
    async with http.post(
        "/v1/steps",
        json={"key": key, "result": RESULT},
        headers={"Authorization": f"Bearer {target.token}"},
    ) as resp:
        if resp.status != 201:
            raise RuntimeError(f"POST /v1/steps answered {resp.status}: {await resp.text()}")
        await resp.read()


async def _api_sequential(http: aiohttp.ClientSession, target: Target, n: int, prefix: str) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        await _api_record(http, target, f"{prefix}-api-{i}")
        out.append((time.perf_counter() - t0) * 1000)
    return out


async def _sdk_step(http: aiohttp.ClientSession, target: Target, key: str) -> None:
    """What the SDK does for one step that runs: ask whether it was recorded, then record it."""
    async with http.post(
        "/v1/steps/start", json={"key": key}, headers={"Authorization": f"Bearer {target.token}"}
    ) as resp:
        if resp.status != 200:
            raise RuntimeError(f"POST /v1/steps/start answered {resp.status}: {await resp.text()}")
        await resp.read()
    await _api_record(http, target, key)


async def _sdk_sequential(http: aiohttp.ClientSession, target: Target, n: int, prefix: str) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        await _sdk_step(http, target, f"{prefix}-sdk-{i}")
        out.append((time.perf_counter() - t0) * 1000)
    return out


async def _api_concurrent(http: aiohttp.ClientSession, group: list[Target], n: int, prefix: str) -> float:
    per = n // len(group)

    async def worker(target: Target) -> None:
        for i in range(per):
            await _api_record(http, target, f"{prefix}-api-{i}")

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(t) for t in group))
    return per * len(group) / (time.perf_counter() - t0)


async def _bare_insert(conn: psycopg.AsyncConnection[Any], target: Target, key: str, seq: int) -> None:
    await conn.execute(BARE_INSERT, (target.uid, key, seq, target.attempt, Jsonb(RESULT), None))


async def _bare_sequential(conn: psycopg.AsyncConnection[Any], target: Target, n: int, prefix: str) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        await _bare_insert(conn, target, f"{prefix}-bare-{i}", 100_000 + i)
        out.append((time.perf_counter() - t0) * 1000)
    return out


async def _bare_concurrent(
    conns: list[psycopg.AsyncConnection[Any]], group: list[Target], n: int, prefix: str
) -> float:
    per = n // len(group)

    async def worker(conn: psycopg.AsyncConnection[Any], target: Target) -> None:
        for i in range(per):
            await _bare_insert(conn, target, f"{prefix}-bare-{i}", 200_000 + i)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(c, t) for c, t in zip(conns, group, strict=True)))
    return per * len(group) / (time.perf_counter() - t0)
