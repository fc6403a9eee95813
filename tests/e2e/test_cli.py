"""The `cairn` CLI against the real cluster, run as a subprocess (`python -m cairn ...`) so that its
output and exit codes are the real ones. Each command is shown on a run with two attempts: attempt 1
records two steps and exits 1, attempt 2 resumes and records the third. Every command's output is
printed (pytest -s, or the captured output of a failure shows it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from lightkube import Client

from cairn.k8s.resources import QueueResource, TaskRunResource
from harness import config
from harness.controlplane import free_port
from tests.support.builders import queue_body
from tests.support.env import ClusterEnv
from tests.support.kube import as_dict, wait_for
from tests.support.runs import get_run, make_task, wait_phase

# Attempt 1 records fetch#0 and square#0, then exits 1; attempt 2 replays them and records publish#0.
FLAKY = """
def main(ctx):
    n = ctx.step("fetch", lambda: (ctx.payload or {}).get("n", 2))
    square = ctx.step("square", lambda: n * n)
    print(f"attempt {ctx.attempt}: the square of {n} is {square}", flush=True)
    if ctx.attempt == 1:
        print("attempt 1: failing on purpose after two steps", flush=True)
        sys.exit(1)
    published = ctx.step("publish", lambda: {"published": square})
    print(f"attempt {ctx.attempt}: published", flush=True)
    return {"square": square, **published}
"""

DOOMED = """
def main(ctx):
    ctx.step("try", lambda: ctx.attempt)
    print(f"attempt {ctx.attempt}: giving up with exit code 3", flush=True)
    sys.exit(3)
"""

SLEEPY = """
def main(ctx):
    ctx.step("nap", lambda: time.sleep(300))
"""

FAST_RETRY = {"maxAttempts": 3, "backoff": {"initialDelay": "1s", "maxDelay": "2s"}}


@dataclass
class Result:
    args: list[str]
    code: int
    out: str
    err: str

    def show(self) -> None:
        print(f"\n$ cairn {' '.join(self.args)}    # exit {self.code}\n{self.out}{self.err}", end="")


def cairn_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "COLUMNS")}
    env["PYTHONPATH"] = f"{config.REPO / 'operator'}:{config.REPO}"
    return env


def cli(env: ClusterEnv, ns: str | None, *args: str, kubeconfig: Path | None = None, timeout: float = 180) -> Result:
    """`cairn ARGS -n NS --kubeconfig K` as a subprocess (not a terminal: plain output)."""
    full = [*args, "--kubeconfig", str(kubeconfig or env.kubeconfig), *(["-n", ns] if ns else [])]
    proc = subprocess.run(
        [sys.executable, "-m", "cairn", *full],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cairn_env(),
        cwd=config.REPO,
        check=False,
    )
    result = Result(list(args), proc.returncode, proc.stdout, proc.stderr)
    result.show()
    return result


def start_cli(env: ClusterEnv, ns: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cairn", *args, "--kubeconfig", str(env.kubeconfig), "-n", ns],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cairn_env(),
        cwd=config.REPO,
    )


def finish(proc: subprocess.Popen[str], args: list[str], timeout: float = 180) -> Result:
    out, err = proc.communicate(timeout=timeout)
    result = Result(args, proc.returncode, out, err)
    result.show()
    return result


def dead_kubeconfig(path: Path, port: int) -> Path:
    """A kubeconfig whose only context, "gone", names a server on a port where nothing listens."""
    config_ = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "gone", "cluster": {"server": f"https://127.0.0.1:{port}"}}],
        "users": [{"name": "me", "user": {"token": "t"}}],
        "contexts": [{"name": "gone", "context": {"cluster": "gone", "user": "me"}}],
        "current-context": "gone",
    }
    path.write_text(yaml.safe_dump(config_))
    return path


def table(text: str) -> list[list[str]]:
    """A kubectl-style table as rows of cells (cells are separated by at least two spaces)."""
    import re

    return [re.split(r"\s{2,}", line.strip()) for line in text.strip().splitlines()]


def section(text: str, start: str, end: str | None) -> str:
    """The part of `text` from the line starting with `start` up to the one starting with `end`."""
    begin = text.index(start)
    stop = text.index(end, begin) if end else len(text)
    return text[begin:stop]


def test_every_command_on_a_run_with_two_attempts(cluster_env: ClusterEnv, kube: Client, ns: str) -> None:
    make_task(kube, ns, "flaky", FLAKY, retry=FAST_RETRY)

    # trigger --wait: the progress of both attempts, line by line (not a terminal), then exit 0.
    r = cli(cluster_env, ns, "trigger", "flaky", "--payload", '{"n": 7}', "--name", "r1", "--wait")
    assert r.code == 0, r
    lines = r.out.splitlines()
    assert lines[0] == "taskrun.cairn.dev/r1 created"
    order = [
        "attempt 1 started: pod r1-1",
        "step fetch#0 completed (attempt 1)",
        "step square#0 completed (attempt 1)",
        "attempt 1 ended after",
        "attempt 2 started: pod r1-2",
        "step publish#0 completed (attempt 2)",
        "attempt 2 ended after",
        "Succeeded: attempt 2 completed",
        "run r1 Succeeded after 2 attempts in",
        'result: {"square": 49, "published": 49}',
    ]
    positions = [next(i for i, line in enumerate(lines) if want in line) for want in order]
    assert positions == sorted(positions), r.out
    assert "Error, exit code 1: attempt 1: failing on purpose after two steps" in r.out  # the log's last line
    assert not any("step fetch#0 completed (attempt 2)" in line for line in lines)  # replayed, not re-run

    # runs: the table kubectl users expect.
    r = cli(cluster_env, ns, "runs")
    assert r.code == 0
    head, row = table(r.out)
    assert head == ["NAME", "TASK", "PHASE", "ATTEMPT", "STEP", "QUEUE", "AGE"]
    assert row[:6] == ["r1", "flaky", "Succeeded", "2/3", "3 (publish#0)", "default"]
    nodes = {p["spec"]["nodeName"] for p in _pods(kube, ns)}

    r = cli(cluster_env, ns, "runs", "-o", "wide")
    head, row = table(r.out)
    assert head[7:] == ["PRIORITY", "KEY", "NODE", "REASON", "MESSAGE"]
    assert row[7] == "0" and row[8] == "<none>" and row[9] in nodes and row[10] == "Succeeded"

    r = cli(cluster_env, None, "runs", "-A")
    rows = table(r.out)
    assert rows[0][0] == "NAMESPACE" and [ns, "r1", "flaky", "Succeeded"] in [x[:4] for x in rows[1:]]

    # get: one row, or the object itself.
    r = cli(cluster_env, ns, "get", "r1")
    assert table(r.out)[1][:3] == ["r1", "flaky", "Succeeded"]
    r = cli(cluster_env, ns, "get", "r1", "-o", "json")
    obj = json.loads(r.out)
    assert obj["kind"] == "TaskRun" and obj["status"]["phase"] == "Succeeded"
    assert [s["attempt"] for s in obj["status"]["steps"]] == [1, 1, 2]
    r = cli(cluster_env, ns, "get", "r1", "-o", "yaml")
    assert yaml.safe_load(r.out)["spec"]["payload"] == '{"n":7}'

    # describe: the timeline shows which attempt ran which step, and why attempt 1 ended.
    r = cli(cluster_env, ns, "describe", "r1")
    assert r.code == 0
    text = r.out
    assert "Steps by attempt: attempt 1: fetch#0, square#0; attempt 2: publish#0" in text
    first = section(text, "  Attempt 1: pod r1-1 on ", "  Attempt 2:")
    second = section(text, "  Attempt 2: pod r1-2 on ", "Conditions:")
    assert "started" in first and "step fetch#0 completed" in first and "step square#0 completed" in first
    assert "Error, exit code 1" in first and "attempt 1: failing on purpose after two steps" in first
    assert "publish#0" not in first
    assert "step publish#0 completed" in second and "Completed, exit code 0" in second
    assert "fetch#0" not in second and "square#0" not in second
    assert "after attempt 1 ended" in second  # the backoff between the two
    for want in (
        "Phase:            Succeeded",
        'Payload:          {"n":7}',
        'Result:           {"square": 49, "published": 49}',
    ):
        assert want in text
    assert "3 steps completed, the last publish#0" in text
    conditions = section(text, "Conditions:", "Events:")
    assert "Succeeded   True" in conditions
    events = section(text, "Events:", None)
    assert "AttemptFailed" in events and "Succeeded" in events

    # logs: every attempt in order, each under a header; --attempt N prints one attempt bare.
    r = cli(cluster_env, ns, "logs", "r1")
    assert r.code == 0
    marks = [
        "==> attempt 1: pod r1-1 on ",
        "attempt 1: the square of 7 is 49",
        "attempt 1: failing on purpose after two steps",
        "<== attempt 1 ended after",
        "==> attempt 2: pod r1-2 on ",
        "attempt 2: the square of 7 is 49",
        "attempt 2: published",
        "<== attempt 2 ended after",
    ]
    where = [r.out.index(m) for m in marks]
    assert where == sorted(where), r.out
    r = cli(cluster_env, ns, "logs", "r1", "--attempt", "2")
    task_lines = [line for line in r.out.splitlines() if not line.startswith("cairn: ")]  # the SDK's own lines
    assert task_lines == ["attempt 2: the square of 7 is 49", "attempt 2: published"]
    assert "cairn: run r1 attempt 2: 2 steps already recorded" in r.out and "==>" not in r.out

    # queues: the default queue, now idle.
    r = cli(cluster_env, ns, "queues")
    head, row = table(r.out)
    assert head == ["NAME", "LIMIT", "PER-KEY", "RATE", "RUNNING", "QUEUED", "PAUSED", "OLDEST QUEUED", "AGE"]
    assert row[:8] == ["default", "10", "-", "-", "0", "0", "no", "-"]
    r = cli(cluster_env, ns, "queues", "-o", "wide")
    wide = table(r.out)
    assert wide[0][9:] == ["RATE-LIMITED", "PER-KEY RATE", "MAX QUEUED", "ADMITTED", "ACTIVE"]
    assert wide[1][9:] == ["0", "-", "-", "2", "True (Admitting)"]  # one admission per attempt: backoff frees the slot

    # rerun: a new run with the same task and payload; -o name prints only its name (progress goes
    # to stderr), and it goes through the same two attempts.
    r = cli(cluster_env, ns, "rerun", "r1", "-o", "name", "--wait")
    assert r.code == 0
    again = r.out.strip()
    assert again.startswith("flaky-") and again != "r1"
    assert "run " + again + " Succeeded after 2 attempts" in r.err
    new = get_run(kube, ns, again)
    assert new["spec"]["payload"] == '{"n":7}' and new["spec"]["taskRef"] == {"name": "flaky"}
    assert new["metadata"]["annotations"]["cairn.dev/rerun-of"] == "r1"


def _pods(kube: Client, ns: str) -> list[dict[str, Any]]:
    from lightkube.resources.core_v1 import Pod

    return [as_dict(p) for p in kube.list(Pod, namespace=ns)]


def test_trigger_wait_exits_1_when_the_run_fails_and_logs_f_follows_every_attempt(
    cluster_env: ClusterEnv, kube: Client, ns: str
) -> None:
    make_task(kube, ns, "doomed", DOOMED, retry={"maxAttempts": 2, "backoff": {"initialDelay": "1s"}})
    waiting = start_cli(cluster_env, ns, "trigger", "doomed", "--name", "d1", "--wait")
    wait_for("run d1 to exist", lambda: as_dict(kube.get(TaskRunResource, "d1", namespace=ns)), timeout=30)

    # logs -f starts while attempt 1 may not even have a pod, follows it, then attempt 2, then stops.
    r = cli(cluster_env, ns, "logs", "d1", "-f")
    assert r.code == 0
    marks = [
        "==> attempt 1: pod d1-1",
        "attempt 1: giving up with exit code 3",
        "<== attempt 1 ended after",
        "==> attempt 2: pod d1-2",
        "attempt 2: giving up with exit code 3",
        "<== attempt 2 ended after",
    ]
    where = [r.out.index(m) for m in marks]
    assert where == sorted(where), r.out
    assert r.out.count("attempt 1: giving up") == 1 and r.out.count("attempt 2: giving up") == 1

    w = finish(waiting, ["trigger", "doomed", "--name", "d1", "--wait"])
    assert w.code == 1, w
    assert "attempt 2 ended after" in w.out and "Error, exit code 3" in w.out
    assert "run d1 Failed after 2 attempts" in w.out
    assert wait_phase(kube, ns, "d1")["phase"] == "Failed"

    # wait on a run that has already ended: the whole story, and the same exit code.
    r = cli(cluster_env, ns, "wait", "d1")
    assert r.code == 1 and "attempt 1 started: pod d1-1" in r.out and "Failed" in r.out


def test_cancel_ends_a_running_run_cancelled_and_wait_exits_2(cluster_env: ClusterEnv, kube: Client, ns: str) -> None:
    make_task(kube, ns, "sleepy", SLEEPY)
    r = cli(cluster_env, ns, "trigger", "sleepy", "--name", "s1", "--priority", "5", "--key", "tenant-a")
    assert r.code == 0 and r.out.strip() == "taskrun.cairn.dev/s1 created"
    wait_phase(kube, ns, "s1", ("Running",))

    r = cli(cluster_env, ns, "runs", "--phase", "running", "-o", "wide")
    row = table(r.out)[1]
    assert row[:3] == ["s1", "sleepy", "Running"] and row[7:9] == ["5", "tenant-a"]

    r = cli(cluster_env, ns, "cancel", "s1", "--wait")
    assert r.code == 2, r
    assert r.out.startswith("taskrun.cairn.dev/s1 cancellation requested")
    assert "Cancelled: cancelled: spec.cancel was set" in r.out
    assert get_run(kube, ns, "s1")["spec"]["cancel"] is True

    r = cli(cluster_env, ns, "cancel", "s1")
    assert r.code == 0 and "already ended (Cancelled): nothing to cancel" in r.out
    r = cli(cluster_env, ns, "describe", "s1")
    assert "Cancelled, not counted" in r.out and "Key:              tenant-a" in r.out


def test_queues_show_a_run_waiting_in_a_paused_queue_and_cancel_ends_it_there(
    cluster_env: ClusterEnv, kube: Client, ns: str
) -> None:
    make_task(kube, ns, "sleepy", SLEEPY)
    body = queue_body("held", concurrencyLimit=2, perKeyLimit=1, paused=True)
    body["metadata"]["namespace"] = ns  # type: ignore[index]
    kube.create(QueueResource.from_dict(body))
    r = cli(cluster_env, ns, "trigger", "sleepy", "--name", "q1", "--queue", "held", "--key", "tenant-b")
    assert r.code == 0
    st = wait_phase(kube, ns, "q1", ("Queued",))
    assert st["queue"] == "held"

    def held_row() -> list[str] | None:
        rows = {row[0]: row for row in table(cli(cluster_env, ns, "queues").out)[1:]}
        return rows["held"] if rows.get("held", [""] * 6)[5] == "1" else None

    row = wait_for("the held queue to count its queued run", held_row, timeout=30)
    assert row[:7] == ["held", "2", "1", "-", "0", "1", "yes"] and row[7].endswith("s")  # OLDEST QUEUED: an age
    r = cli(cluster_env, ns, "runs")
    assert table(r.out)[1][:6] == ["q1", "sleepy", "Queued", "0", "0", "held"]  # no attempt, no snapshot yet
    r = cli(cluster_env, ns, "logs", "q1")
    assert r.code == 0 and "run q1 has no attempt yet (phase Queued)" in r.err

    r = cli(cluster_env, ns, "cancel", "q1", "--wait")
    assert r.code == 2 and "run q1 Cancelled after 0 attempts" in r.out


def test_clear_errors_and_exit_codes(cluster_env: ClusterEnv, kube: Client, ns: str, tmp_path: Path) -> None:
    make_task(kube, ns, "flaky", FLAKY, retry=FAST_RETRY)

    # An unknown task: nothing is created, and the tasks that do exist are named.
    r = cli(cluster_env, ns, "trigger", "flakey", "--payload", "{}")
    assert r.code == 3
    assert f"error: task 'flakey' not found in namespace '{ns}'" in r.err and "hint: tasks there: flaky" in r.err
    assert list(kube.list(TaskRunResource, namespace=ns)) == []

    # Payload that is not JSON: where it breaks, before anything is sent.
    r = cli(cluster_env, ns, "trigger", "flaky", "--payload", '{"n": 7,}')
    assert r.code == 4
    assert "error: the payload is not valid JSON: Expecting property name enclosed in double quotes" in r.err
    assert "at line 1, column 9 (character 8)" in r.err
    assert '    {"n": 7,}\n            ^' in r.err
    bad = tmp_path / "payload.json"
    bad.write_text('{\n  "n": 7\n  "m": 8\n}\n')
    r = cli(cluster_env, ns, "trigger", "flaky", "--payload-file", str(bad))
    assert r.code == 4
    assert f"the payload file {bad} is not valid JSON: Expecting ',' delimiter at line 3, column 3" in r.err
    assert list(kube.list(TaskRunResource, namespace=ns)) == []

    # A cluster that cannot be reached: which server, and that it could not connect.
    port = free_port()
    dead = dead_kubeconfig(tmp_path / "dead-kubeconfig", port)
    started = time.monotonic()
    r = cli(cluster_env, ns, "runs", kubeconfig=dead)
    assert r.code == 5 and time.monotonic() - started < 30
    assert (
        f"error: could not connect to the Kubernetes API server at https://127.0.0.1:{port} (context 'gone')" in r.err
    )
    assert "Connection refused" in r.err
    r = cli(cluster_env, ns, "trigger", "flaky", "--payload", "{}", kubeconfig=dead)
    assert r.code == 5 and f"https://127.0.0.1:{port}" in r.err
    r = cli(cluster_env, ns, "runs", "--context", "nope")
    assert r.code == 5 and "there is no context 'nope'" in r.err
    r = cli(cluster_env, ns, "runs", kubeconfig=tmp_path / "missing")
    assert r.code == 5 and "does not exist" in r.err

    # Unknown runs and attempts, a taken name, a bad option.
    for command in (
        ["get", "nope"],
        ["describe", "nope"],
        ["logs", "nope"],
        ["cancel", "nope"],
        ["rerun", "nope"],
        ["wait", "nope"],
    ):
        r = cli(cluster_env, ns, *command)
        assert r.code == 3 and f"error: run 'nope' not found in namespace '{ns}'" in r.err, command
    r = cli(cluster_env, ns, "trigger", "flaky", "--name", "taken", "--wait")
    assert r.code == 0
    r = cli(cluster_env, ns, "logs", "taken", "--attempt", "7")
    assert r.code == 3 and "run 'taken' has no attempt 7 (attempts: 1, 2)" in r.err
    r = cli(cluster_env, ns, "trigger", "flaky", "--name", "taken")
    assert r.code == 6 and "a run named 'taken' already exists" in r.err
    r = cli(cluster_env, ns, "trigger", "flaky", "--priority", "5000")
    assert r.code == 4 and "--priority" in r.err
    r = cli(cluster_env, "no-such-namespace", "trigger", "flaky")
    assert r.code == 3 and "error: namespace 'no-such-namespace' not found" in r.err, r.err
    # A Queue that does not exist: the run would wait forever, so none is created, and the fix is named.
    r = cli(cluster_env, ns, "trigger", "flaky", "--queue", "no-such-queue")
    assert r.code == 3, r.err
    assert f"error: queue 'no-such-queue' not found in namespace '{ns}'" in r.err
    assert "hint: queues there: default; create it (see examples/queue.yaml)" in r.err
    queues = [run.to_dict()["spec"].get("queue") for run in kube.list(TaskRunResource, namespace=ns)]  # type: ignore[no-untyped-call]
    assert "no-such-queue" not in queues, queues

    # --timeout: the wait gives up with 7, the run goes on.
    make_task(kube, ns, "sleepy", SLEEPY)
    r = cli(cluster_env, ns, "trigger", "sleepy", "--name", "slow", "--wait", "--timeout", "2")
    assert r.code == 7 and "run 'slow' has not ended after 2s" in r.err
    assert get_run(kube, ns, "slow")["status"]["phase"] in ("Queued", "Starting", "Running")

    # The exit codes are in --help.
    r = cli(cluster_env, None, "trigger", "--help")
    assert r.code == 0 and "Exit codes:" in r.out and "2  with --wait: the run was Cancelled" in r.out


def run_in_terminal(env: ClusterEnv, ns: str, *args: str, timeout: float = 180) -> tuple[int, str]:
    """`cairn ARGS` with a pseudo-terminal as its stdout and stderr (what a person at a terminal sees)."""
    import pty
    import select

    master, slave = pty.openpty()
    term_env = {**cairn_env(), "TERM": "xterm-256color", "COLUMNS": "160", "LINES": "40"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cairn", *args, "--kubeconfig", str(env.kubeconfig), "-n", ns],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env=term_env,
        cwd=config.REPO,
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # the terminal closed: the process has exited
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(master)
    code = proc.wait(timeout=10)
    return code, b"".join(chunks).decode(errors="replace")


def test_trigger_wait_on_a_terminal_shows_a_live_view_of_attempts_and_steps(
    cluster_env: ClusterEnv, kube: Client, ns: str
) -> None:
    import re

    make_task(kube, ns, "flaky", FLAKY, retry=FAST_RETRY)
    code, screen = run_in_terminal(
        cluster_env, ns, "trigger", "flaky", "--payload", '{"n": 3}', "--name", "t1", "--wait"
    )
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)  # without colours and cursor moves
    print(text[-3000:])
    assert code == 0
    assert "\x1b[" in screen  # styled and redrawn: a live display, not lines
    assert re.search(r"ATTEMPT\s+NODE\s+STARTED\s+TOOK\s+OUTCOME\s+STEPS", text)
    assert re.search(r"1\s+node-\d\s+[\d:.]+\s+[\d.]+m?s\s+Error, exit code 1\s+fetch#0, square#0", text)
    assert re.search(r"2\s+node-\d\s+[\d:.]+\s+[\d.]+m?s\s+Completed, exit code 0\s+publish#0", text)
    assert "run t1 Succeeded after 2 attempts" in text and 'result: {"square": 9, "published": 9}' in text


def test_it_works_as_a_kubectl_plugin(cluster_env: ClusterEnv, kube: Client, ns: str) -> None:
    """`kubectl cairn ...` runs the `kubectl-cairn` console script that pyproject.toml declares."""
    bin_dir = Path(sys.executable).parent
    assert (bin_dir / "kubectl-cairn").exists(), "the kubectl-cairn console script is not installed"
    make_task(kube, ns, "flaky", FLAKY, retry=FAST_RETRY)
    env = {**cairn_env(), "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}
    proc = subprocess.run(
        [
            str(config.kubectl()),
            "cairn",
            "trigger",
            "flaky",
            "--name",
            "k1",
            "--kubeconfig",
            str(cluster_env.kubeconfig),
            "-n",
            ns,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    print(proc.stdout, proc.stderr)
    assert proc.returncode == 0 and proc.stdout.strip() == "taskrun.cairn.dev/k1 created"
    proc = subprocess.run(
        [str(config.kubectl()), "plugin", "list"], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert "kubectl-cairn" in proc.stdout
    assert wait_phase(kube, ns, "k1")["phase"] == "Succeeded"


INTERLEAVED = """
def main(ctx):
    for i in range(300):
        print(f"line {i} on {'stderr' if i % 2 else 'stdout'}", file=sys.stderr if i % 2 else sys.stdout)
"""


def test_logs_keep_the_order_lines_were_written_in_across_stdout_and_stderr(
    cluster_env: ClusterEnv, kube: Client, ns: str
) -> None:
    # containerd reads a container's two pipes apart: without one stream, lines written alternately
    # to stdout (buffered) and stderr came out of order in the pod's log.
    make_task(kube, ns, "chatty", INTERLEAVED)
    r = cli(cluster_env, ns, "trigger", "chatty", "--name", "c1", "--wait")
    assert r.code == 0, r
    r = cli(cluster_env, ns, "logs", "c1", "--attempt", "1")
    lines = [ln for ln in r.out.splitlines() if ln.startswith("line ")]
    assert lines == [f"line {i} on {'stderr' if i % 2 else 'stdout'}" for i in range(300)], lines[:20]
