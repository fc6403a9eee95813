"""One local cluster: the control plane and real nodes on one slot, torn down completely."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from harness import dns, images, net, procs
from harness.controlplane import ControlPlane
from harness.kueue import Kueue
from harness.kwok import Kwok
from harness.node import HOST_DIRS, MAX_NODES, Node, kill_node_leftovers


@dataclass
class Cluster:
    nodes: int = 0
    slot_index: int | None = None
    root: Path | None = None
    dns: bool = True
    # "all" images, or only the pause and busybox images (quick, for harness tests).
    image_set: str = "all"
    # The client budget of each built-in controller (kube-controller-manager's --kube-api-qps/-burst).
    controller_qps: float = 100
    controller_burst: int = 200
    control_plane: ControlPlane | None = field(default=None, init=False)
    node_list: list[Node] = field(default_factory=list, init=False)
    images: list[images.Image] = field(default_factory=list, init=False)
    timings: dict[str, float] = field(default_factory=dict, init=False)
    kwok: Kwok | None = field(default=None, init=False)
    kueue: Kueue | None = field(default=None, init=False)

    def start(self) -> Cluster:
        self.lock = net.SlotLock(self.slot_index)
        self.slot = self.lock.slot
        try:
            self._clean_slot()
            if self.root is None:
                self.root = Path(tempfile.mkdtemp(prefix=f"cairn-cluster{self.slot.index}-"))
            (net.LOCK_DIR / f"slot{self.slot.index}.root").write_text(str(self.root))
            t0 = time.monotonic()
            if self.nodes:
                self.images = images.build_all() if self.image_set == "all" else images.build_minimal(self.dns)
                self.timings["images"] = time.monotonic() - t0
            net.create_bridge(self.slot)
            t1 = time.monotonic()
            self.control_plane = ControlPlane(
                self.slot,
                self.root,
                etcd_data=Path(f"/dev/shm/cairn-etcd-{self.slot.index}"),
                controller_qps=self.controller_qps,
                controller_burst=self.controller_burst,
            )
            self.control_plane.start()
            self.timings["control_plane"] = time.monotonic() - t1
            t2 = time.monotonic()
            peers = list(range(1, self.nodes + 1))
            for n in peers:
                node = Node(self.control_plane, n, self.root / "nodes" / f"n{n}", peers, dns=self.dns)
                node.prepare()
                self.node_list.append(node)
            # Nodes start side by side: most of the time goes to importing images into containerd.
            with ThreadPoolExecutor(max_workers=max(1, self.nodes)) as pool:
                for future in [pool.submit(node.start, self.images) for node in self.node_list]:
                    future.result()
            for node in self.node_list:
                node.wait_ready()
            self.timings["nodes"] = time.monotonic() - t2
            if self.nodes and self.dns:
                t3 = time.monotonic()
                dns.deploy(self.slot, self.kubeconfig)
                dns.wait_resolvable(self.slot, [node.netns for node in self.node_list])
                self.timings["dns"] = time.monotonic() - t3
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def cp(self) -> ControlPlane:
        assert self.control_plane is not None
        return self.control_plane

    @property
    def kubeconfig(self) -> Path:
        return self.cp.admin_kubeconfig

    def fake_nodes(self, count: int) -> list[str]:
        """Add `count` simulated (KWOK) nodes; returns their names."""
        if self.kwok is None:
            assert self.root is not None
            self.kwok = Kwok(self.cp, self.root)
        return self.kwok.add_nodes(count)

    def start_kueue(self) -> Kueue:
        """The real Kueue on this cluster (its CRDs, webhooks and controller), once; see harness/kueue.py."""
        if self.kueue is None or self.kueue.proc is None:
            assert self.root is not None
            self.kueue = Kueue(self.cp, self.root, HOST_DIRS)
            self.kueue.start()
        return self.kueue

    def node(self, name: str) -> Node:
        for node in self.node_list:
            if node.name == name:
                return node
        raise KeyError(name)

    def _clean_slot(self) -> None:
        """Remove what a harness that died on this slot may have left (we hold the slot's lock)."""
        clean_slot(self.slot)
        procs.set_registry(net.LOCK_DIR / f"slot{self.slot.index}.pids")

    def stop(self) -> None:
        for node in reversed(self.node_list):
            node.destroy()
        self.node_list.clear()
        if self.control_plane is not None:
            self.control_plane.stop()
        with contextlib.suppress(AttributeError):
            self._clean_slot()
            HOST_DIRS.remove(lambda: bool(net.held_slots() - {self.slot.index}))
            procs.set_registry(None)
            self.lock.release()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)


def clean_slot(slot: net.Slot) -> None:
    """Kill and remove everything a harness on `slot` made: its registered processes, its nodes'
    processes, network namespaces and cgroups, its bridge, etcd's data and its directory. The caller
    holds the slot's lock."""
    procs.kill_registered(net.LOCK_DIR / f"slot{slot.index}.pids")
    for n in range(1, MAX_NODES + 1):
        kill_node_leftovers(slot, n)
        net.delete_node_netns(slot, n)
    net.delete_bridge(slot)
    shutil.rmtree(f"/dev/shm/cairn-etcd-{slot.index}", ignore_errors=True)
    roots = net.LOCK_DIR / f"slot{slot.index}.root"
    if roots.exists():
        shutil.rmtree(roots.read_text().strip(), ignore_errors=True)
        roots.unlink()


def sweep_dead_harnesses() -> list[int]:
    """Clean every slot no live harness holds (one that died, e.g. SIGKILLed, leaves its nodes'
    namespaces and the host paths behind), then the host paths if no harness is left. Returns the
    slots still in use."""
    for i in range(net.MAX_SLOTS):
        try:
            lock = net.SlotLock(i)
        except procs.HarnessError:
            continue
        try:
            clean_slot(lock.slot)
        finally:
            lock.release()
    HOST_DIRS.remove(lambda: bool(net.held_slots()))
    return sorted(net.held_slots())
