"""`python -m harness up|down|status|env`: the local cluster and PostgreSQL for a person to use.

`up` starts a detached supervisor that owns the cluster and the database and tears both down on
`down` (or SIGTERM); its state (kubeconfig, DSN, API address) lives in the state directory.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from harness import config
from harness.procs import run, start_time

DEFAULT_STATE = config.REPO / ".cairn" / "dev"


def _state_file(state: Path) -> Path:
    return state / "state.json"


def read_state(state: Path) -> dict[str, object] | None:
    try:
        data = json.loads(_state_file(state).read_text())
    except (OSError, ValueError):
        return None
    assert isinstance(data, dict)
    return data


def _alive(data: dict[str, object]) -> bool:
    pid = data.get("pid")
    return isinstance(pid, int) and start_time(pid) == data.get("pid_start")


def serve(state: Path, nodes: int, kueue: bool = False) -> int:
    """Run in the foreground: start the cluster, PostgreSQL and Cairn (its CRDs, operator and API),
    and Kueue if asked; write the state file, wait for SIGTERM, then remove everything."""
    from harness.cairn import CairnProcesses
    from harness.cluster import Cluster
    from harness.postgres import Postgres, create_database

    state.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    cluster = Cluster(nodes=nodes)
    pg = Postgres()
    cairn: CairnProcesses | None = None
    try:
        t0 = time.monotonic()
        cluster.start()
        if kueue:
            cluster.start_kueue()
        pg.start()
        kubeconfig = state / "kubeconfig"
        shutil.copy2(cluster.kubeconfig, kubeconfig)
        run(
            [
                str(config.kubectl()),
                f"--kubeconfig={kubeconfig}",
                "apply",
                "--server-side",
                "--force-conflicts",
                "-f",
                str(config.REPO / "crds"),
            ]
        )
        cairn = CairnProcesses(kubeconfig, create_database(pg.dsn, "cairn"), cluster.slot.host_ip, state / "logs")
        cairn.start_api()
        cairn.start_operator()
        data = {
            "pid": os.getpid(),
            "pid_start": start_time(os.getpid()),
            "kubeconfig": str(kubeconfig),
            "dsn": pg.dsn,
            "host_ip": cluster.slot.host_ip,
            "root": str(cluster.root),
            "nodes": [n.name for n in cluster.node_list],
            "api_url": cairn.api_url,
            "cairn_logs": str(state / "logs"),
            "started_in_s": round(time.monotonic() - t0, 1),
            "timings": {k: round(v, 1) for k, v in cluster.timings.items()},
        }
        _state_file(state).write_text(json.dumps(data, indent=2))
        print("ready", flush=True)
        stop.wait()
    finally:
        _state_file(state).unlink(missing_ok=True)
        if cairn is not None:
            cairn.stop()
        pg.stop()
        cluster.stop()
        (state / "kubeconfig").unlink(missing_ok=True)
    return 0


def up(state: Path, nodes: int, kueue: bool = False) -> int:
    data = read_state(state)
    if data and _alive(data):
        print(f"already running (pid {data['pid']})")
        return print_env(state)
    state.mkdir(parents=True, exist_ok=True)
    log = state / "supervisor.log"
    with open(log, "wb") as logf:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "harness",
                "serve",
                "--state",
                str(state),
                "--nodes",
                str(nodes),
                *(["--kueue"] if kueue else []),
            ],
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=config.REPO,
        )
    with_kueue = " and Kueue" if kueue else ""
    print(f"starting a local cluster ({nodes} nodes), PostgreSQL{with_kueue}; log: {log}", flush=True)
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            print(log.read_text()[-4000:], file=sys.stderr)
            print(f"the cluster did not start (exit {proc.returncode}); see {log}", file=sys.stderr)
            return 1
        if read_state(state):
            return print_env(state)
        time.sleep(0.5)
    proc.terminate()
    print("the cluster did not start within 15 minutes", file=sys.stderr)
    return 1


def down(state: Path) -> int:
    data = read_state(state)
    if not data or not _alive(data):
        print("no local cluster is running")
        return 0
    pid = data["pid"]
    assert isinstance(pid, int)
    os.kill(pid, signal.SIGTERM)
    for _ in range(600):
        if start_time(pid) is None:
            print("stopped: processes, network namespaces, mounts and temporary directories are gone")
            return 0
        time.sleep(0.1)
    print(f"supervisor {pid} did not stop within 60s", file=sys.stderr)
    return 1


def load_images(state: Path) -> int:
    """Rebuild the images (only what changed) and import them into the running cluster's nodes."""
    from harness import images
    from harness.procs import run

    data = read_state(state)
    if not data or not _alive(data):
        print("no local cluster is running; start one with `make dev-cluster`", file=sys.stderr)
        return 1
    built = images.build_all()
    for node in Path(str(data["root"])).glob("nodes/n*"):
        sock = node / "run" / "containerd" / "containerd.sock"
        for image in built:
            run(
                ["ctr", "--address", str(sock), "--namespace", "k8s.io", "images", "import", str(image.archive)],
                timeout=300,
            )
        print(f"imported {len(built)} images into {node.name}")
    return 0


def print_env(state: Path) -> int:
    data = read_state(state)
    if not data:
        print("no local cluster is running; start one with `make dev-cluster`", file=sys.stderr)
        return 1
    kubectl = config.kubectl()
    nodes = data["nodes"]
    assert isinstance(nodes, list)
    print(f"""
The local cluster is up ({len(nodes)} real nodes; started in {data["started_in_s"]}s).

  export KUBECONFIG={data["kubeconfig"]}
  alias kubectl={kubectl}
  kubectl get nodes

Cairn runs there: its CRDs, the operator and the API ({data["api_url"]}); logs in {data["cairn_logs"]}.
PostgreSQL:   {data["dsn"]}
Host address pods can reach: {data["host_ip"]}
Stop everything with `make dev-cluster-down`.""")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m harness", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("up", "serve"):
        p = sub.add_parser(name)
        p.add_argument("--nodes", type=int, default=2)
        p.add_argument("--state", type=Path, default=DEFAULT_STATE)
        p.add_argument("--kueue", action="store_true", help="also start Kueue (harness/kueue.py)")
    for name in ("down", "status", "load-images"):
        sub.add_parser(name).add_argument("--state", type=Path, default=DEFAULT_STATE)
    args = parser.parse_args()
    if args.cmd == "up":
        return up(args.state, args.nodes, args.kueue)
    if args.cmd == "serve":
        return serve(args.state, args.nodes, args.kueue)
    if args.cmd == "down":
        return down(args.state)
    if args.cmd == "load-images":
        return load_images(args.state)
    return print_env(args.state)


if __name__ == "__main__":
    sys.exit(main())
