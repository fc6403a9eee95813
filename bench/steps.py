"""A step's cost beside DBOS Transact's, on the same PostgreSQL server, with its default durability.

Cairn's side is its Python SDK (`ctx.step`) in a process on the host, one thread per workflow, each
with a pod-bound token of a real TaskRun (its pod on a simulated node), recording through the
checkpoint API; DBOS's side is `@DBOS.step` inside `@DBOS.workflow`, configured as its documentation
says (a name and a `system_database_url`, nothing else), its own tables in a database of its own on
the same server. Both run in a process of their own (bench/steps_driver.py), same thread count, same
values, and every step call is timed by its caller; the steps return a constant, so the time is the
durability's overhead. Phases: a no-op step, one returning 1 KiB of JSON, one returning 100 KiB,
each with 1 and with 16 workflows at once.

The PostgreSQL server is one the benchmark starts for itself with PostgreSQL's defaults for
durability (fsync, synchronous_commit and full_page_writes on), unlike the rest of `make bench`,
whose server trades them for speed. What each side writes per step is read from the server itself:
WAL bytes, commits and rows inserted and updated in its database, over each side's whole run.

The side that goes first alternates between repetitions; a first repetition warms both up and is
not counted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from bench import env as E
from bench.checkpoint import _target
from bench.env import Env, cpu_seconds
from bench.kube import scrape, total
from bench.options import Options
from bench.profiling import profiled
from bench.report import Result
from bench.stats import Figure, Machine, median, percentile
from bench.steps_driver import VALUE_BYTES
from harness import config
from harness.postgres import TEST_SETTINGS, Postgres, create_database

CONCURRENCY = (1, 16)
DURABILITY = ("fsync", "synchronous_commit", "full_page_writes")


@dataclass(frozen=True)
class Phase:
    size: str  # a key of VALUE_BYTES
    workflows: int
    steps: int  # per workflow

    @property
    def name(self) -> str:
        return f"{self.size}-c{self.workflows}"

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "size": VALUE_BYTES[self.size], "steps": self.steps, "workflows": self.workflows}


def phases(opts: Options) -> list[Phase]:
    scale = 0.25 if opts.quick else 1.0
    out = []
    for size in VALUE_BYTES:
        for c in CONCURRENCY:
            per = (1000 if c == 1 else 100) if size != "100KiB" else (300 if c == 1 else 30)
            out.append(Phase(size, c, max(10, int(per * scale))))
    chosen = {p.strip() for p in opts.steps_phases.split(",") if p.strip()}
    unknown = chosen - {p.name for p in out}
    if unknown:
        raise ValueError(f"unknown steps phase(s) {sorted(unknown)}; choose from {[p.name for p in out]}")
    return [p for p in out if not chosen or p.name in chosen]


@dataclass
class SideRun:
    """One side's run of every phase in one repetition, and what the server saw meanwhile."""

    phases: dict[str, dict[str, Any]]
    wal_bytes: int
    db: dict[str, int]
    api_cpu_s: float = 0.0
    server_cpu_s: float = 0.0
    api_write_s: float = 0.0  # Cairn: the API's own time in its step writes (its histogram's sum)
    api_writes: int = 0

    @property
    def steps(self) -> int:
        return sum(p["steps"] for p in self.phases.values())


@dataclass
class Sides:
    cairn: list[SideRun] = field(default_factory=list)
    dbos: list[SideRun] = field(default_factory=list)


def run(env: Env, opts: Options) -> Result:
    machine = Machine(slot=env.harness.slot.index)
    root = Path(tempfile.mkdtemp(prefix="cairn-bench-durable-pg-"))
    settings = {k: v for k, v in TEST_SETTINGS.items() if k not in DURABILITY}
    pg = Postgres(root=root, settings=settings).start()
    try:
        return _run(env, opts, pg, machine)
    finally:
        pg.stop()


def _run(env: Env, opts: Options, pg: Postgres, machine: Machine) -> Result:
    durability = _durability(pg.dsn)
    ns = env.namespace("steps")
    # The API's per-pod pace (200 requests/s after a burst of 400, by default) off: it protects the API
    # from a runaway pod, DBOS has nothing like it, and one workflow's no-op steps go faster than that.
    procs = env.cairn(ns, api=True, pg=pg, api_client_rate="0")
    assert procs.api is not None
    kube = env.kube
    workers = max(CONCURRENCY)
    kube.create(E.queues(ns), E.queue(ns, "default", 1000))
    kube.create(E.tasks(ns), E.task(ns, "hold", E.simulated_template(None)))
    plan = phases(opts)
    sides = Sides()
    try:
        for rep in range(opts.reps + 1):  # the first warms both sides up
            names = [f"r{rep}-{w:02d}" for w in range(workers)]
            for name in names:
                kube.create(E.taskruns(ns), E.taskrun(ns, name, "hold"))
            tokens = [_target(env, ns, name).token for name in names]
            dbos_db = f"dbos_{rep}"
            create_database(pg.dsn, dbos_db)
            order = ("cairn", "dbos") if rep % 2 == 0 else ("dbos", "cairn")
            for side in order:
                spec: dict[str, Any]
                if side == "cairn":
                    spec = {"side": "cairn", "api_url": procs.api_url, "tokens": tokens}
                    db = _dbname(procs.dsn)
                else:
                    spec = {"side": "dbos", "dsn": pg.dsn_for(dbos_db)}
                    db = dbos_db
                spec |= {"prefix": f"r{rep}", "phases": [p.spec() for p in plan]}
                api_profile = opts.profile / f"steps-api-r{rep}" if opts.profile and side == "cairn" else None
                driver_profile = opts.profile / f"steps-{side}-process-r{rep}" if opts.profile else None
                with profiled(procs.api.pid, api_profile):
                    measured = _side(
                        pg,
                        db,
                        spec,
                        procs.api.pid if side == "cairn" else None,
                        driver_profile,
                        f"http://127.0.0.1:{procs.api_metrics_port}/metrics" if side == "cairn" else None,
                    )
                print(f"[bench] steps rep {rep} {side}: {_summary(measured)}", flush=True)
                if rep > 0:
                    (sides.cairn if side == "cairn" else sides.dbos).append(measured)
            for name in names:
                kube.delete(f"{E.taskruns(ns)}/{name}")
    finally:
        env.release(procs)
    return _result(plan, sides, durability, opts, machine)


def _side(
    pg: Postgres, db: str, spec: dict[str, Any], api_pid: int | None, profile: Path | None, metrics_url: str | None
) -> SideRun:
    out = Path(tempfile.mkstemp(prefix="cairn-steps-", suffix=".json")[1])
    spec["out"] = str(out)
    env = {**os.environ, "PYTHONPATH": f"{config.REPO / 'operator'}:{config.REPO}"}
    before_wal, before_db = _wal(pg.dsn), _db_stats(pg.dsn, db)
    api0 = cpu_seconds(api_pid) if api_pid else 0.0
    written0 = _writes(metrics_url)
    server0 = _tree_cpu_seconds(_postmaster(pg))
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.steps_driver"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    with profiled(proc.pid, profile):
        _, stderr = proc.communicate(json.dumps(spec), timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"the {spec['side']} side failed ({proc.returncode}): {stderr[-4000:]}")
    api_cpu = cpu_seconds(api_pid) - api0 if api_pid else 0.0
    written1 = _writes(metrics_url)
    server_cpu = _tree_cpu_seconds(_postmaster(pg)) - server0
    time.sleep(1.2)  # backends report their counters to the statistics within a second of going idle
    after_db = _db_stats(pg.dsn, db)
    result = json.loads(out.read_text())
    out.unlink()
    if result.get("retries"):
        raise RuntimeError(
            f"the {spec['side']} side retried {result['retries']} calls (paced or refused): {stderr[-2000:]}"
        )
    return SideRun(
        phases={p["name"]: p for p in result["phases"]},
        wal_bytes=_wal(pg.dsn) - before_wal,
        db={k: after_db[k] - before_db[k] for k in after_db},
        api_cpu_s=api_cpu,
        server_cpu_s=server_cpu,
        api_write_s=written1[0] - written0[0],
        api_writes=int(written1[1] - written0[1]),
    )


def _writes(metrics_url: str | None) -> tuple[float, float]:
    """(seconds, count) of the API's step writes so far, from its metrics."""
    if metrics_url is None:
        return 0.0, 0.0
    samples = scrape(metrics_url)
    return total(samples, "cairn_checkpoint_write_seconds_sum"), total(samples, "cairn_checkpoint_write_seconds_count")


def _summary(run: SideRun) -> str:
    parts = []
    for name, p in run.phases.items():
        lat = p["latencies_ms"]
        parts.append(f"{name} p50 {percentile(lat, 50):.2f} ms {p['steps_per_s']:.0f}/s")
    return "; ".join(parts)


# -- what the server saw ----------------------------------------------------------------------------
def _durability(dsn: str) -> dict[str, str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return {k: str(conn.execute(f"SHOW {k}").fetchone()[0]) for k in DURABILITY}  # type: ignore[index]


def _wal(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()
        assert row is not None
        return int(row[0])


def _db_stats(dsn: str, db: str) -> dict[str, int]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT xact_commit, tup_inserted, tup_updated, tup_deleted FROM pg_stat_database WHERE datname = %s",
            (db,),
        ).fetchone()
    assert row is not None, f"no statistics for database {db}"
    return dict(zip(("commits", "rows_inserted", "rows_updated", "rows_deleted"), map(int, row), strict=True))


def _dbname(dsn: str) -> str:
    return psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]  # type: ignore[return-value]


def _postmaster(pg: Postgres) -> int:
    assert pg.proc is not None
    return pg.proc.pid


def _tree_cpu_seconds(pid: int) -> float:
    """CPU of a server and its backends: its own, its exited children's (reaped, so counted in its
    cutime and cstime) and its live children's."""
    tick = os.sysconf("SC_CLK_TCK")

    def fields(p: int) -> list[str] | None:
        try:
            with open(f"/proc/{p}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()
        except OSError:
            return None

    own = fields(pid)
    if own is None:
        return 0.0
    total = sum(int(x) for x in own[11:15])  # utime stime cutime cstime
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (f := fields(int(entry))) is not None and int(f[1]) == pid:
            total += int(f[11]) + int(f[12])
    return total / tick


# -- the figures ------------------------------------------------------------------------------------
def _result(plan: list[Phase], sides: Sides, durability: dict[str, str], opts: Options, machine: Machine) -> Result:
    figures: list[Figure] = []
    for phase in plan:
        n = phase.name

        def lat(runs: list[SideRun], q: float, n: str = n) -> list[float]:
            return [percentile(r.phases[n]["latencies_ms"], q) for r in runs]

        def rate(runs: list[SideRun], n: str = n) -> list[float]:
            return [float(r.phases[n]["steps_per_s"]) for r in runs]

        samples = phase.steps * phase.workflows
        where = f"{phase.size}, {phase.workflows} workflow{'s' if phase.workflows > 1 else ''}"
        noop16 = phase.size == "noop" and phase.workflows == 16
        figures += [
            Figure("steps", f"step p50 ({where})", "ms", lat(sides.cairn, 50), lat(sides.dbos, 50), "DBOS",
                   target=1.0, target_kind="ratio_max", samples=samples),
            Figure("steps", f"step p99 ({where})", "ms", lat(sides.cairn, 99), lat(sides.dbos, 99), "DBOS",
                   target=5.0 if noop16 else 1.0, target_kind="max" if noop16 else "ratio_max", samples=samples),
            Figure("steps", f"steps/s ({where})", "1/s", rate(sides.cairn), rate(sides.dbos), "DBOS",
                   target=3000.0 if noop16 else None, target_kind="min", better="higher", samples=samples),
        ]  # fmt: skip

    def per_step(runs: list[SideRun], what: str) -> float:
        return median([float(getattr(r, what)) / r.steps for r in runs])

    def written(runs: list[SideRun]) -> dict[str, float]:
        out = {"wal_bytes": median([r.wal_bytes / r.steps for r in runs])}
        for key in ("commits", "rows_inserted", "rows_updated", "rows_deleted"):
            out[key] = round(median([r.db[key] / r.steps for r in runs]), 3)
        return out

    def cpu_ms(runs: list[SideRun], phase: str) -> float:
        return round(1000 * median([r.phases[phase]["driver_cpu_s"] / r.phases[phase]["steps"] for r in runs]), 3)

    details = {
        "postgres_durability": durability,
        "phases": [p.spec() for p in plan],
        "repetitions": len(sides.cairn),
        "written_per_step": {"cairn": written(sides.cairn), "dbos": written(sides.dbos)},
        "written_note": "over each side's whole run (its workflows' start and end too), from the server: "
        "pg_current_wal_lsn and pg_stat_database of the side's own database",
        "cpu_ms_per_step": {
            "cairn_sdk_process": {p.name: cpu_ms(sides.cairn, p.name) for p in plan},
            "dbos_process": {p.name: cpu_ms(sides.dbos, p.name) for p in plan},
            "cairn_api_process": round(1000 * per_step(sides.cairn, "api_cpu_s"), 3),
            "postgres_for_cairn": round(1000 * per_step(sides.cairn, "server_cpu_s"), 3),
            "postgres_for_dbos": round(1000 * per_step(sides.dbos, "server_cpu_s"), 3),
        },
        "cairn_api_write_ms_mean": round(
            1000 * median([r.api_write_s / r.api_writes for r in sides.cairn if r.api_writes]), 3
        )
        if any(r.api_writes for r in sides.cairn)
        else None,
        "cairn_api_write_note": "the API's own time per step write (request parsed to answer ready, the database "
        "included), from its cairn_checkpoint_write_seconds histogram, over the whole side",
        "dbos_config": {"name": "cairn-bench", "system_database_url": "postgresql://…/dbos_<rep>"},
        "quick": opts.quick,
    }
    return Result("steps", figures, details, machine.reading())
