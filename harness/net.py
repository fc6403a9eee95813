"""Host networking for one harness instance ("slot"): a bridge on the host, one network namespace
per node joined to it by a veth pair, and routes to each node's pod subnet.

Addresses are fixed per slot so that several harness instances (a dev cluster and a test run) can
live side by side. Nothing here has a default route: traffic can only reach the host bridge, the
nodes and their pods, never leave the machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

from harness.procs import HarnessError, run

MAX_SLOTS = 8
LOCK_DIR = Path("/run/cairn-harness")


@dataclass(frozen=True)
class Slot:
    index: int

    @property
    def bridge(self) -> str:
        return f"cairnbr{self.index}"

    @property
    def host_ip(self) -> str:
        return f"10.250.{self.index}.1"

    @property
    def cluster_cidr(self) -> str:
        return f"10.{200 + self.index}.0.0/16"

    service_cidr = "10.96.0.0/16"
    kubernetes_service_ip = "10.96.0.1"
    dns_service_ip = "10.96.0.10"

    def node_ip(self, n: int) -> str:
        return f"10.250.{self.index}.{10 + n}"

    def pod_cidr(self, n: int) -> str:
        return f"10.{200 + self.index}.{n}.0/24"

    def netns(self, n: int) -> str:
        return f"cairn{self.index}n{n}"

    def veth(self, n: int) -> str:
        return f"cairn{self.index}n{n}h"


class SlotLock:
    """An exclusive claim on a slot, held for the life of the harness process (flock)."""

    def __init__(self, preferred: int | None = None) -> None:
        LOCK_DIR.mkdir(parents=True, exist_ok=True)
        order = [preferred] if preferred is not None else list(range(MAX_SLOTS))
        for i in order:
            fd = os.open(LOCK_DIR / f"slot{i}.lock", os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self.fd = fd
            self.slot = Slot(i)
            return
        raise HarnessError(f"no free harness slot among {order}: another harness holds it (see {LOCK_DIR})")

    def release(self) -> None:
        with contextlib.suppress(OSError):
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)


def held_slots() -> set[int]:
    """The slots some harness holds now, read from /proc/locks: looking takes no lock, so it can never
    make a harness that is starting find its slot taken."""
    by_file: dict[str, int] = {}
    for i in range(MAX_SLOTS):
        try:
            st = os.stat(LOCK_DIR / f"slot{i}.lock")
        except FileNotFoundError:
            continue
        by_file[f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"] = i
    held = set()
    with open("/proc/locks") as f:
        for line in f:
            fields = line.split()  # "1: FLOCK ADVISORY WRITE <pid> <maj>:<min>:<inode> 0 EOF"; waiters say "->"
            if len(fields) > 5 and fields[1] == "FLOCK" and fields[5] in by_file:
                held.add(by_file[fields[5]])
    return held


def _ip(*args: str, netns: str | None = None, check: bool = True) -> str:
    argv = ["ip", *(["-n", netns] if netns else []), *args]
    return run(argv, check=check)


def link_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def netns_exists(name: str) -> bool:
    return Path(f"/run/netns/{name}").exists()


def create_bridge(slot: Slot) -> None:
    if not link_exists(slot.bridge):
        _ip("link", "add", slot.bridge, "type", "bridge")
    _ip("addr", "replace", f"{slot.host_ip}/24", "dev", slot.bridge)
    _ip("link", "set", slot.bridge, "up")
    # The cluster's virtual ranges must never follow the host's default route out of the machine:
    # a test that aims at a Service IP or a simulated pod IP from the host gets "unreachable".
    _ip("route", "replace", "unreachable", slot.cluster_cidr)
    _ip("route", "replace", "unreachable", slot.service_cidr, "metric", str(100 + slot.index))


def delete_bridge(slot: Slot) -> None:
    _ip("route", "del", "unreachable", slot.cluster_cidr, check=False)
    _ip("route", "del", "unreachable", slot.service_cidr, "metric", str(100 + slot.index), check=False)
    if link_exists(slot.bridge):
        _ip("link", "del", slot.bridge, check=False)


def _sysctl(netns: str, key: str, value: str) -> None:
    path = Path("/proc/sys") / key.replace(".", "/")
    run(["ip", "netns", "exec", netns, "sh", "-c", f"test -e {path} && echo {value} > {path} || true"])


def create_node_netns(slot: Slot, n: int, peers: list[int]) -> None:
    ns, veth = slot.netns(n), slot.veth(n)
    if netns_exists(ns):
        delete_node_netns(slot, n)
    run(["ip", "netns", "add", ns])
    _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
    _ip("link", "set", veth, "master", slot.bridge)
    _ip("link", "set", veth, "up")
    _ip("link", "set", "lo", "up", netns=ns)
    _ip("addr", "add", f"{slot.node_ip(n)}/24", "dev", "eth0", netns=ns)
    _ip("link", "set", "eth0", "up", netns=ns)
    for key, value in (
        ("net.ipv4.ip_forward", "1"),
        ("net.bridge.bridge-nf-call-iptables", "1"),
        ("net.ipv4.conf.all.route_localnet", "1"),
    ):
        _sysctl(ns, key, value)
    # Pod subnets of the other nodes are one hop away on the shared bridge; the host reaches this
    # node's pods through this node.
    for peer in peers:
        if peer != n:
            _ip("route", "replace", slot.pod_cidr(peer), "via", slot.node_ip(peer), netns=ns)
    # Processes of the node itself (hostNetwork pods, probes) need a route to Service IPs before
    # kube-proxy's OUTPUT rules can rewrite them; on-link, so an unrewritten packet goes nowhere.
    _ip("route", "replace", slot.service_cidr, "dev", "eth0", netns=ns)
    _ip("route", "replace", slot.pod_cidr(n), "via", slot.node_ip(n))


def delete_node_netns(slot: Slot, n: int) -> None:
    _ip("route", "del", slot.pod_cidr(n), check=False)
    if link_exists(slot.veth(n)):
        _ip("link", "del", slot.veth(n), check=False)
    if netns_exists(slot.netns(n)):
        run(["ip", "netns", "del", slot.netns(n)], check=False)
