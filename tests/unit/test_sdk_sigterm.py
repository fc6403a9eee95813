"""A pod told to stop (SIGTERM: preempted, drained, evicted) lets the step in progress finish and be
recorded, starts no new step, and exits 143; with no step in progress, or at a second SIGTERM, it
stops at once. Each case runs the real runner (`python -m cairn.run`, locally) in its own process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import config

PROGRAM = """
import sys, time

def work(i, seconds):
    print(f"step {i} started", flush=True)
    time.sleep(seconds)
    print(f"step {i} done", flush=True)
    return i

def main(ctx):
    ctx.step("s", work, 0, 0)
    ctx.step("s", work, 1, float(ctx.payload["hold"]))
    if ctx.payload.get("idle"):
        print("idle", flush=True)
        time.sleep(30)
    ctx.step("s", work, 2, 0)
    return "all three"
"""


def _start(tmp_path: Path, payload: str) -> subprocess.Popen[str]:
    (tmp_path / "stoppable.py").write_text(PROGRAM)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}:{config.REPO / 'operator'}"}
    env.pop("CAIRN_API_URL", None)
    return subprocess.Popen(
        [sys.executable, "-m", "cairn.run", "stoppable:main", "--payload", payload],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _until(proc: subprocess.Popen[str], line: str) -> list[str]:
    assert proc.stdout is not None
    seen = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        got = proc.stdout.readline()
        if not got:
            break
        seen.append(got.rstrip("\n"))
        if got.strip() == line:
            return seen
    pytest.fail(f"never printed {line!r}: {seen}")


@pytest.mark.parametrize("case", ["in a step", "between steps", "twice"])
def test_a_pod_told_to_stop_finishes_the_step_in_progress_and_starts_no_new_one(tmp_path: Path, case: str) -> None:
    idle = case == "between steps"
    proc = _start(tmp_path, '{"hold": 1.5, "idle": true}' if idle else '{"hold": 1.5}')
    _until(proc, "idle" if idle else "step 1 started")
    proc.send_signal(signal.SIGTERM)
    if case == "twice":
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
    # Between steps the program sleeps 30 s: stopping at once is ending well before that.
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 143, out
    assert "step 2 started" not in out, out  # no new step after the signal
    if case == "in a step":
        assert "step 1 done" in out, out  # it was let finish
        assert "told to stop (SIGTERM) before step 's#2'; steps this pod executed and recorded: s#0, s#1" in out
    if case == "twice":
        assert "step 1 done" not in out, out  # asked again: stopped at once, the step cut short
