"""The knobs of a benchmark run (`python -m bench --help`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Options:
    reps: int = 4  # repetitions behind every median (start latency, checkpoint, recovery, memory)
    quick: bool = False  # smaller sizes: a smoke test of the suite, not figures to quote
    profile: Path | None = None  # write py-spy flame graphs of the operator/API here
    start_runs: int = 200  # start latency: TaskRuns (and as many Jobs) in all
    admission_runs: int = 5000
    admission_limit: int = 100
    admission_reps: int = 1
    checkpoint_records: int = 4000  # per repetition, for the throughput figure
    checkpoint_latency_records: int = 1000  # per repetition, one at a time, for the latency figure
    checkpoint_concurrency: int = 16
    recovery_runs: int = 6  # per repetition (and as many Jobs)
    memory_runs: int = 10000
    memory_running: int = 1000  # of memory_runs, how many hold a slot (a running simulated pod)
    schedule_minutes: int = 2  # schedules: whole minutes measured after a warm-up minute
    wait_runs: int = 10  # waits: sleeping runs per repetition (their wakes a second apart)
    steps_phases: str = ""  # steps: only these phases (e.g. "100KiB-c1,noop-c16"); empty: all
    ui_runs: int = 10000  # ui: runs run on simulated nodes before the run list is loaded
    ui_loads: int = 100  # ui: loads of each page of the run list (p50 and p99 of them)

    def scaled(self) -> Options:
        if not self.quick:
            return self
        return Options(
            reps=2,
            quick=True,
            profile=self.profile,
            start_runs=20,
            admission_runs=300,
            admission_limit=self.admission_limit,
            admission_reps=1,
            checkpoint_records=500,
            checkpoint_latency_records=200,
            checkpoint_concurrency=self.checkpoint_concurrency,
            recovery_runs=2,
            memory_runs=500,
            memory_running=100,
            wait_runs=3,
            steps_phases=self.steps_phases,
            ui_runs=300,
            ui_loads=20,
        )
