"""The work a crash costs: a task of 10 steps of 2 s each, its container killed with SIGKILL a second
into step 8, beside a batch/v1 Job running the same program without checkpoints (it starts again
from step 1).

Both sides run the same image and the same program (bench_crash.py, from a ConfigMap): with Cairn it
runs under `python -m cairn.run` with the API, so steps 1-7 are recorded and the next attempt runs
8-10; in the Job the same command has no API (`cairn.run` outside Cairn runs every step). Both retry
after 10 s (the Job controller's first backoff; the Task's `backoff: {initialDelay: 10s, jitter: 0}`),
on the same two real nodes, a run and a Job at once in each repetition (which is created first
alternates).

Figures, per side, the median of the repetitions:
- created -> done: from the benchmark's create call to the run's `Succeeded` / the Job's `Complete`
  as the benchmark's polling sees them (every 0.2 s, the same loop for both);
- step-seconds executed twice: the time spent in executions of a step that were not its last, from
  the program's own log lines ("step i begins" / "ends", timestamped by the kubelet), the killed step
  counted from its beginning to the kill.
"""

from __future__ import annotations

import re
import textwrap
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bench import env as E
from bench.env import Env
from bench.options import Options
from bench.report import Result
from bench.stats import Figure, Machine

STEPS = 10
STEP_SECONDS = 2.0
KILL_IN_STEP = 8
KILL_AFTER_S = 1.0  # into the step
BACKOFF_S = 10
CODE = textwrap.dedent(
    f"""
    import time

    def work(i):
        print(f"step {{i}} begins", flush=True)
        time.sleep({STEP_SECONDS})
        print(f"step {{i}} ends", flush=True)
        return i

    def main(ctx):
        for i in range(1, {STEPS + 1}):
            ctx.step("work", work, i)
        return {{"steps": {STEPS}}}
    """
)
LINE = re.compile(r"^(\S+) step (\d+) (begins|ends)$")


@dataclass
class Subject:
    """A run or a Job of one repetition, as the benchmark follows it."""

    kind: str  # "run" or "job"
    name: str
    created: float = 0.0
    done: float | None = None
    killed_at: float | None = None
    logs: dict[str, str] = field(default_factory=dict)  # pod name -> its timestamped log, last read

    @property
    def label(self) -> str:
        return f"{self.kind}/{self.name}"


def _template(with_api: bool) -> dict[str, Any]:
    template = E.code_template("bench-crash", "bench_crash:main")
    template["spec"]["terminationGracePeriodSeconds"] = 1
    if not with_api:  # a Job's pod: as Cairn renders it, without the API
        template["spec"]["restartPolicy"] = "Never"
        template["spec"]["enableServiceLinks"] = False
    return template


def run(env: Env, opts: Options) -> Result:
    machine = Machine(slot=env.harness.slot.index)
    ns = env.namespace("crash")
    procs = env.cairn(ns, api=True)
    kube = env.kube
    kube.create(E.queues(ns), E.queue(ns, "default", 1000))
    kube.create(f"/api/v1/namespaces/{ns}/configmaps", E.code_configmap("bench-crash", "bench_crash", CODE))
    retry = {
        "maxAttempts": 3,
        "backoff": {"initialDelay": f"{BACKOFF_S}s", "maxDelay": f"{BACKOFF_S}s", "factor": 1, "jitter": 0},
    }
    kube.create(E.tasks(ns), E.task(ns, "ten-steps", _template(True), retry=retry))
    subjects: list[tuple[Subject, Subject]] = []
    try:
        for rep in range(opts.reps):
            pair = (Subject("run", f"r{rep}"), Subject("job", f"j{rep}"))
            for s in pair if rep % 2 == 0 else pair[::-1]:
                s.created = time.time()
                if s.kind == "run":
                    kube.create(E.taskruns(ns), E.taskrun(ns, s.name, "ten-steps"))
                else:
                    kube.create(E.jobs(ns), E.job(ns, s.name, _template(False), backoff_limit=3))
            _follow(env, ns, pair)
            subjects.append(pair)
            print(f"[bench] crash rep {rep}: " + "; ".join(_line(s) for s in pair), flush=True)
    finally:
        env.release(procs)
    return _result(subjects, machine)


def _line(s: Subject) -> str:
    assert s.done is not None
    return f"{s.label} done in {s.done - s.created:.1f}s, {wasted_seconds(s.logs, s.killed_at):.1f} step-s twice"


def _pods(env: Env, ns: str, s: Subject) -> list[dict[str, Any]]:
    selector = f"cairn.dev/run={s.name}" if s.kind == "run" else f"job-name={s.name}"
    pods = env.kube.items(E.pods(ns), selector)
    return sorted(pods, key=lambda p: p["metadata"]["creationTimestamp"] + p["metadata"]["name"])


def _finished(env: Env, ns: str, s: Subject) -> bool:
    if s.kind == "run":
        body = env.kube.get(f"{E.taskruns(ns)}/{s.name}")
        phase = (body.get("status") or {}).get("phase")
        if phase in ("Failed", "Cancelled"):
            raise RuntimeError(f"{s.label} ended {phase}: {body.get('status')}")
        return bool(phase == "Succeeded")
    body = env.kube.get(f"{E.jobs(ns)}/{s.name}")
    conds = (body.get("status") or {}).get("conditions") or []
    if any(c["type"] == "Failed" and c["status"] == "True" for c in conds):
        raise RuntimeError(f"{s.label} failed: {conds}")
    return any(c["type"] == "Complete" and c["status"] == "True" for c in conds)


def _follow(env: Env, ns: str, pair: tuple[Subject, Subject]) -> None:
    """Poll both until done: read each pod's log, kill the first pod a second into step 8."""
    deadline = time.monotonic() + 300
    seen_begin: dict[str, float] = {}
    while any(s.done is None for s in pair):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{[s.label for s in pair if s.done is None]} not done in 300 s")
        for s in pair:
            if s.done is not None:
                continue
            for pod in _pods(env, ns, s):
                name = pod["metadata"]["name"]
                statuses = (pod.get("status") or {}).get("containerStatuses") or []
                running = bool(statuses) and "running" in (statuses[0].get("state") or {})
                if not running and name not in s.logs:
                    continue
                text = _log(env, ns, name)
                if text is not None:
                    s.logs[name] = text
                if s.killed_at is None and f"step {KILL_IN_STEP} begins" in s.logs.get(name, ""):
                    seen_begin.setdefault(s.label, time.monotonic())
                    if time.monotonic() - seen_begin[s.label] >= KILL_AFTER_S:
                        node, cid = pod["spec"]["nodeName"], statuses[0]["containerID"]
                        env.harness.node(node).kill_container(cid)
                        s.killed_at = time.time()
            if _finished(env, ns, s):
                s.done = time.time()
                for pod in _pods(env, ns, s):  # the last lines of the last pod
                    text = _log(env, ns, pod["metadata"]["name"])
                    if text is not None:
                        s.logs[pod["metadata"]["name"]] = text
        time.sleep(0.2)


def _log(env: Env, ns: str, pod: str) -> str | None:
    resp = env.kube.http.get(f"{E.pods(ns)}/{pod}/log", params={"timestamps": "true"})
    return resp.text if resp.status_code == 200 else None


def wasted_seconds(logs: dict[str, str], killed_at: float | None) -> float:
    """Seconds spent in executions of a step that were not its last: each pod's log lines say when a
    step began and ended; a step that began and never ended (the killed one) ran until `killed_at`."""
    executions: dict[int, list[float]] = {}
    for text in logs.values():
        begun: dict[int, float] = {}
        for raw in text.splitlines():
            m = LINE.match(raw.strip())
            if not m:
                continue
            at, step, what = _epoch(m.group(1)), int(m.group(2)), m.group(3)
            if what == "begins":
                begun[step] = at
            elif step in begun:
                executions.setdefault(step, []).append(at - begun.pop(step))
        for step, at in begun.items():  # never ended: cut short by the kill
            end = killed_at if killed_at is not None and killed_at >= at else at
            executions.setdefault(step, []).append(end - at)
    # The last execution of each step is the one whose result counts; the others were paid twice.
    return sum(sum(runs[:-1]) for runs in executions.values())


def _epoch(stamp: str) -> float:
    # The kubelet writes RFC 3339 with nanoseconds; Python reads up to microseconds.
    head, _, frac = stamp.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00").timestamp()


def _result(subjects: list[tuple[Subject, Subject]], machine: Machine) -> Result:
    def done(kind: str) -> list[float]:
        return [s.done - s.created for pair in subjects for s in pair if s.kind == kind and s.done is not None]

    def twice(kind: str) -> list[float]:
        return [wasted_seconds(s.logs, s.killed_at) for pair in subjects for s in pair if s.kind == kind]

    useful = STEPS * STEP_SECONDS
    figures = [
        Figure("crash", f"created -> done, SIGKILL in step {KILL_IN_STEP} of {STEPS}", "s", done("run"),
               done("job"), "batch/v1 Job", samples=1,
               note=f"{STEPS} steps of {STEP_SECONDS:.0f} s, {BACKOFF_S} s backoff"),
        Figure("crash", "step-seconds executed twice", "s", twice("run"), twice("job"), "batch/v1 Job", samples=1),
    ]  # fmt: skip
    details = {
        "repetitions": len(subjects),
        "useful_step_seconds": useful,
        "kill": f"SIGKILL of the container (ctr tasks kill) {KILL_AFTER_S:.0f} s after 'step {KILL_IN_STEP} begins' "
        "is seen in its log",
        "samples": [
            {
                "subject": s.label,
                "created_to_done_s": round(s.done - s.created, 2) if s.done else None,
                "step_seconds_twice": round(wasted_seconds(s.logs, s.killed_at), 2),
                "pods": len(s.logs),
            }
            for pair in subjects
            for s in pair
        ],
    }
    return Result("crash", figures, details, machine.reading())
