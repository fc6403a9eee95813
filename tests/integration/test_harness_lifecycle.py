"""The harness starts and stops cleanly, again and again: no process, port, network namespace,
interface, mount, cgroup or directory outlives it."""

from __future__ import annotations

import os
from pathlib import Path

from harness.cluster import Cluster
from harness.postgres import Postgres
from harness.procs import pids_where

OUR_PROGRAMS = {
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "containerd",
    "containerd-shim-runc-v2",
    "pause",
    "postgres",
    "sleep",
    "busybox",
}


def _program(pid: int) -> str | None:
    try:
        return Path(os.readlink(f"/proc/{pid}/exe")).name
    except OSError:
        return None


def _listening_ports() -> set[str]:
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                ports.add(fields[1])
    return ports


def _snapshot() -> dict[str, set[str]]:
    return {
        "processes": {f"{pid}:{_program(pid)}" for pid in pids_where(lambda p: _program(p) in OUR_PROGRAMS)},
        "listening ports": _listening_ports(),
        "network namespaces": set(os.listdir("/run/netns")) if Path("/run/netns").exists() else set(),
        "interfaces": set(os.listdir("/sys/class/net")),
        "mounts": {ln.split()[4] for ln in Path("/proc/self/mountinfo").read_text().splitlines()},
        "cgroups": {p for p in os.listdir("/sys/fs/cgroup/memory") if p.startswith("cairn")},
        "directories": {p for p in os.listdir("/tmp") if p.startswith(("cairn-cluster", "cairn-pg"))}
        | {p for p in os.listdir("/dev/shm") if p.startswith("cairn")},
    }


def test_harness_starts_and_stops_ten_times_without_leaving_anything_behind() -> None:
    before = _snapshot()
    for cycle in range(10):
        cluster = Cluster(nodes=1, image_set="minimal", dns=False)
        pg = Postgres()
        try:
            cluster.start()
            pg.start()
            assert cluster.node_list[0].is_running()
            during = _snapshot()
            assert during["processes"] - before["processes"], "the harness started no process?"
        finally:
            pg.stop()
            cluster.stop()
        after = _snapshot()
        leaks = {kind: sorted(after[kind] - before[kind]) for kind in after if after[kind] - before[kind]}
        assert not leaks, f"cycle {cycle + 1} left behind: {leaks}"
