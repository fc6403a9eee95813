"""`make demo`: the main job, end to end, on a local cluster.

Brings up the local cluster with PostgreSQL and Cairn (or reuses it), runs the demo task (five slow
steps), kills its pod with SIGKILL after the third step, and shows the next attempt resume at step
four: the attempts, which steps ran in each, and both pods' logs. The cluster stays up for you to
try more; `make dev-cluster-down` removes it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness import config
from harness.__main__ import DEFAULT_STATE, read_state
from harness.procs import run

NS = "cairn-demo"
RUN = "demo-1"


def say(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


def kubectl(kubeconfig: str, *args: str, check: bool = True, input: str | None = None) -> str:
    res = subprocess.run(
        [str(config.kubectl()), f"--kubeconfig={kubeconfig}", *args],
        capture_output=True,
        text=True,
        input=input,
        check=False,
    )
    if check and res.returncode != 0:
        sys.exit(f"kubectl {' '.join(args)} failed:\n{res.stdout}{res.stderr}")
    return res.stdout


def status(kubeconfig: str) -> dict[str, Any]:
    out = kubectl(kubeconfig, "get", "taskrun", RUN, "-n", NS, "-o", "json", check=False)
    return dict(json.loads(out).get("status") or {}) if out else {}


def wait(kubeconfig: str, what: str, done: Any, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        st = status(kubeconfig)
        line = (
            f"  phase={st.get('phase', '-')} attempt={st.get('attempt', '-')} "
            f"steps={st.get('progress', {}).get('stepsCompleted', 0)}"
        )
        if line != last:
            print(line, flush=True)
            last = line
        if done(st):
            return st
        time.sleep(0.5)
    sys.exit(f"timed out waiting for {what}")


def main() -> int:
    env = {**os.environ, "PYTHONPATH": f"{config.REPO / 'operator'}:{config.REPO}"}
    say("Starting (or reusing) the local cluster: 2 real nodes, PostgreSQL, Cairn's operator and API")
    if subprocess.run([sys.executable, "-m", "harness", "up"], env=env, check=False).returncode != 0:
        return 1
    data = read_state(DEFAULT_STATE)
    assert data is not None
    kc = str(data["kubeconfig"])
    say(f"Applying the demo: a Queue, the Task (examples/demo/task.yaml) and TaskRun {RUN}")
    kubectl(kc, "create", "namespace", NS, check=False)
    kubectl(kc, "delete", "taskrun", RUN, "-n", NS, "--ignore-not-found", "--wait=true")
    for f in ("examples/queue.yaml", "examples/demo/task.yaml", "examples/demo/taskrun.yaml"):
        kubectl(kc, "apply", "-n", NS, "-f", str(config.REPO / f))
    say("Waiting for the first attempt to record three of its five steps")
    wait(kc, "three steps", lambda st: st.get("progress", {}).get("stepsCompleted", 0) >= 3)
    pod = json.loads(kubectl(kc, "get", "pod", f"{RUN}-1", "-n", NS, "-o", "json"))
    node, container = pod["spec"]["nodeName"], pod["status"]["containerStatuses"][0]["containerID"]
    sock = Path(str(data["root"])) / "nodes" / f"n{node.removeprefix('node-')}" / "run/containerd/containerd.sock"
    say(f"Killing the pod's process with SIGKILL (pod {RUN}-1 on {node}), in the middle of step 4")
    run(
        [
            "ctr",
            "--address",
            str(sock),
            "--namespace",
            "k8s.io",
            "tasks",
            "kill",
            "--signal",
            "SIGKILL",
            container.removeprefix("containerd://"),
        ]
    )
    say("Cairn notices, waits out the backoff, and starts attempt 2 in a new pod")
    final = wait(kc, "the run to finish", lambda st: st.get("phase") in ("Succeeded", "Failed", "Cancelled"))
    say(f"The run {final['phase']}. Which attempt ran which step:")
    by_attempt: dict[int, list[str]] = {}
    for step in final.get("steps", []):
        by_attempt.setdefault(step["attempt"], []).append(step["key"])
    for attempt in final.get("attempts", []):
        n = attempt["number"]
        print(
            f"  attempt {n} (pod {attempt['pod']} on {attempt.get('node')}): ended {attempt.get('reason')}"
            f"{' exit ' + str(attempt['exitCode']) if attempt.get('exitCode') is not None else ''}; "
            f"recorded {', '.join(by_attempt.get(n, [])) or 'no step'}"
        )
    for n in (1, 2):
        say(f"Logs of attempt {n}")
        print(kubectl(kc, "logs", "-n", NS, f"{RUN}-{n}", check=False).rstrip())
    say("The full timeline, as the cairn CLI shows it")
    subprocess.run([sys.executable, "-m", "cairn", "describe", RUN, "-n", NS, "--kubeconfig", kc], env=env, check=False)
    print(f"""
What to try next (the cluster stays up; `make dev-cluster-down` removes everything):
  export KUBECONFIG={kc}
  alias kubectl={config.kubectl()}
  kubectl get cairn -n {NS}                              # Tasks, TaskRuns, Queues (and Schedules) at a glance
  kubectl get taskruns -n {NS} -o wide                    # phase, attempt, last step, reason
  .venv/bin/cairn trigger demo -n {NS} --payload '{{"items": ["a", "b", "c"]}}' --wait
  .venv/bin/cairn logs {RUN} -n {NS}                      # every attempt's log, in order
  kubectl explain taskrun.spec                            # every field, documented
  {data["api_url"]}/ui/   the dashboard: sign in with a token (docs/ui.md says how to make one)
  examples/hello, agent, media, nightly, typescript   # more tasks to apply (examples/README.md)
""")
    return 0 if final["phase"] == "Succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
