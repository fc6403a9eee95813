"""`python -m bench` (what `make bench` runs): bring up the local cluster and PostgreSQL, run each
benchmark beside its baseline, print the table, write bench/results/<timestamp>.json.

    python -m bench                       # everything (about 25 minutes on 2 cores)
    python -m bench --only steps,crash    # one or more of BENCHMARKS (below): start, admission, ...
    python -m bench --quick               # small sizes: checks the suite works, figures not to quote
    python -m bench --profile results/    # py-spy flame graphs of the operator/API during each one
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from bench import admission, checkpoint, crash, memory, pace, recovery, schedules, start_latency, steps, ui, waits
from bench.env import Env
from bench.options import Options
from bench.report import Result, machine_lines, table, write_json
from bench.stats import load_now

BENCHMARKS: dict[str, Callable[[Env, Options], Result]] = {
    "start": start_latency.run,
    "admission": admission.run,
    "pace": pace.run,
    "checkpoint": checkpoint.run,
    "steps": steps.run,
    "recovery": recovery.run,
    "crash": crash.run,
    "waits": waits.run,
    "memory": memory.run,
    "schedules": schedules.run,
    "ui": ui.run,
}
RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated: " + ",".join(BENCHMARKS))
    parser.add_argument("--reps", type=int, help=f"repetitions behind each median (default {Options.reps})")
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke test of the suite)")
    parser.add_argument("--profile", type=Path, help="write py-spy profiles of the operator/API here")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the JSON goes")
    parser.add_argument("--start-runs", type=int, help=f"default {Options.start_runs}")
    parser.add_argument("--admission-runs", type=int, help=f"default {Options.admission_runs}")
    parser.add_argument("--admission-reps", type=int, help=f"default {Options.admission_reps}")
    parser.add_argument("--memory-runs", type=int, help=f"default {Options.memory_runs}")
    parser.add_argument("--steps-phases", help="steps: only these phases, e.g. 100KiB-c1,noop-c16 (default all)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the operator/API logs (printed path)")
    args = parser.parse_args(argv)
    chosen = [b.strip() for b in args.only.split(",") if b.strip()]
    unknown = [b for b in chosen if b not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}")
    opts = Options(quick=args.quick).scaled()
    explicit = {
        "reps": args.reps,
        "start_runs": args.start_runs,
        "admission_runs": args.admission_runs,
        "admission_reps": args.admission_reps,
        "memory_runs": args.memory_runs,
        "steps_phases": args.steps_phases,
        "profile": args.profile.resolve() if args.profile else None,
    }
    opts = replace(opts, **{k: v for k, v in explicit.items() if v is not None})
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")

    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(f"[bench] load before starting: {load_now()}", flush=True)
    root = Path(tempfile.mkdtemp(prefix="cairn-bench-"))
    env = Env(root)
    results: list[Result] = []
    t0 = time.monotonic()
    try:
        print("[bench] starting the cluster (2 real nodes, simulated nodes) and PostgreSQL", flush=True)
        env.start()
        print(f"[bench] environment up: {env.timings}", flush=True)
        for name in chosen:
            print(f"[bench] {name} ...", flush=True)
            t1 = time.monotonic()
            try:
                result = BENCHMARKS[name](env, opts)
            except Exception as e:  # noqa: BLE001 - one failing benchmark must not lose the others' figures
                traceback.print_exc()
                result = Result(name, error=f"{type(e).__name__}: {e}")
            results.append(result)
            print(f"[bench] {name} took {time.monotonic() - t1:.0f}s", flush=True)
            print(table([result]), flush=True)
    finally:
        env.stop()
        if args.keep_logs:
            print(f"[bench] logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    meta = {
        "started": started,
        "duration_s": round(time.monotonic() - t0, 1),
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in opts.__dict__.items()},
        "environment": env.timings,
        "load_after": load_now(),
    }
    path = write_json(results, args.out, meta)
    print()
    print(table(results))
    print()
    print(machine_lines(results))
    print(f"\n[bench] {len(results)} benchmark(s) in {time.monotonic() - t0:.0f}s; JSON: {path}")
    if opts.quick:
        print("[bench] --quick: small sizes, the figures are not comparable with a full run")
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
