"""A real node: containerd, kubelet and kube-proxy in a network namespace of their own.

Each node also gets a private mount namespace (held by a small "holder" process), in which the
paths kubelet and containerd hard-code (/var/lib/kubelet, /run/containerd, /var/log/pods, …) are
bind mounts of the node's own directories. Two nodes can then share the machine, and everything a
node mounts (overlays, secret volumes, pod network namespaces) disappears with its namespace.

Stopping a node kills every one of its processes, containers included, like pulling its plug;
starting it again is a reboot: the disk (kubelet and containerd state) is kept, /run is not.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from harness import config, net, nodestore
from harness.controlplane import ControlPlane, api_request
from harness.hostdirs import HostDirs
from harness.images import Image
from harness.procs import HarnessError, Proc, pids_where, run

# Paths inside the node's mount namespace -> the node's own directory (relative to its root).
# "run/" directories are emptied when the node restarts, the others persist like a disk.
NODE_MOUNTS = {
    "/var/lib/kubelet": "disk/kubelet",
    "/var/lib/containerd": "disk/containerd",
    "/var/log/pods": "disk/log/pods",
    "/var/log/containers": "disk/log/containers",
    "/var/lib/cni": "disk/cni",
    "/etc/cni/net.d": "disk/cni-conf",
    "/run/containerd": "run/containerd",
    "/run/netns": "run/netns",
}
NETNS_DIR = Path("/run/netns")
# What the harness made on the host for its nodes, shared by every node, slot and process.
HOST_DIRS = HostDirs(net.LOCK_DIR)
MAX_NODES = 4

HOLDER = """set -e
marker=$1; shift
while [ $# -gt 1 ]; do mount --bind "$1" "$2"; shift 2; done
echo "$marker"
exec sleep infinity
"""


@dataclass
class Node:
    cp: ControlPlane
    n: int
    root: Path
    peers: list[int]
    dns: bool = False
    holder: Proc | None = None
    procs: dict[str, Proc] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.slot = self.cp.slot
        self.name = f"node-{self.n}"
        self.ip = self.slot.node_ip(self.n)
        self.netns = self.slot.netns(self.n)
        self.cgroup_root = f"/cairn{self.slot.index}n{self.n}"
        self.logs = self.root / "logs"
        self.started = 0

    # -- set-up ------------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Network namespace, directories, configuration and credentials (once per node)."""
        HOST_DIRS.ensure([], shared_mounts=[NETNS_DIR])
        net.create_node_netns(self.slot, self.n, self.peers)
        for sub in NODE_MOUNTS.values():
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.serving, _client, self.kubeconfig = self.cp.node_credentials(self.name, self.ip)
        self.proxy_kubeconfig = self.cp.client_kubeconfig(f"kube-proxy-{self.name}", "system:kube-proxy")
        conf = self.root / "conf"
        conf.mkdir(exist_ok=True)
        (self.root / "disk/cni-conf/10-pods.conflist").write_text(
            json.dumps(
                {
                    "cniVersion": "0.4.0",
                    "name": "pods",
                    "plugins": [
                        {
                            "type": "bridge",
                            "bridge": "cni0",
                            "isGateway": True,
                            "ipMasq": False,
                            "hairpinMode": True,
                            "ipam": {
                                "type": "host-local",
                                "ranges": [[{"subnet": self.slot.pod_cidr(self.n)}]],
                                "routes": [{"dst": "0.0.0.0/0"}],
                            },
                        },
                        {"type": "portmap", "capabilities": {"portMappings": True}},
                        {"type": "loopback"},
                    ],
                }
            )
        )
        self.containerd_config = conf / "containerd.toml"
        self.containerd_config.write_text(CONTAINERD_CONFIG)
        # Pods with dnsPolicy Default get this file: a resolver on the pod's own loopback, so that a
        # lookup fails at once instead of leaving the machine.
        (conf / "resolv.conf").write_text("nameserver 127.0.0.1\n")
        kubelet = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": self.cgroup_root,
            "cgroupsPerQOS": True,
            "failCgroupV1": False,
            "failSwapOn": False,
            "containerRuntimeEndpoint": "unix:///run/containerd/containerd.sock",
            "oomScoreAdj": 0,  # no CAP_SYS_RESOURCE on our machines: negative values fail
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(self.cp.ca.cert_path)},
            },
            "authorization": {"mode": "Webhook"},
            "tlsCertFile": str(self.serving.cert),
            "tlsPrivateKeyFile": str(self.serving.key),
            "address": self.ip,
            "healthzBindAddress": "127.0.0.1",
            "readOnlyPort": 0,
            "clusterDomain": "cluster.local",
            "resolvConf": str(conf / "resolv.conf"),
            "rotateCertificates": False,
            "serializeImagePulls": False,
            # Images come from local archives and cannot be pulled again: never collect them.
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
                "nodefs.inodesFree": "1%",
            },
            "maxPods": 250,
            # A lost node is noticed in seconds (the controller manager's grace period is 8s).
            "nodeLeaseDurationSeconds": 8,
            "nodeStatusUpdateFrequency": "2s",
            "nodeStatusReportFrequency": "10s",
            "syncFrequency": "10s",
            "shutdownGracePeriod": "0s",
            "protectKernelDefaults": False,
            "localStorageCapacityIsolation": True,
        }
        if self.dns:
            kubelet["clusterDNS"] = [self.slot.dns_service_ip]
        self.kubelet_config = conf / "kubelet.yaml"
        self.kubelet_config.write_text(yaml.safe_dump(kubelet))
        self.proxy_config = conf / "kube-proxy.yaml"
        self.proxy_config.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
                    "kind": "KubeProxyConfiguration",
                    "clientConnection": {"kubeconfig": str(self.proxy_kubeconfig)},
                    "hostnameOverride": self.name,
                    "bindAddress": self.ip,
                    "clusterCIDR": self.slot.cluster_cidr,
                    "mode": "iptables",
                    "oomScoreAdj": 0,
                    "conntrack": {
                        "maxPerCore": 0,
                        "tcpEstablishedTimeout": "0s",
                        "tcpCloseWaitTimeout": "0s",
                    },
                    "healthzBindAddress": "127.0.0.1:10256",
                    "metricsBindAddress": "127.0.0.1:10249",
                    "iptables": {"minSyncPeriod": "0s", "syncPeriod": "30s"},
                }
            )
        )
        self._make_cgroups()

    def _make_cgroups(self) -> None:
        for ctrl in _cgroup_controllers():
            path = Path("/sys/fs/cgroup") / ctrl / self.cgroup_root.lstrip("/")
            path.mkdir(exist_ok=True)
            if ctrl == "cpuset":
                for knob in ("cpuset.cpus", "cpuset.mems"):
                    (path / knob).write_text((path.parent / knob).read_text())

    # -- processes ---------------------------------------------------------------------------------
    def _in_node(self, name: str, argv: list[str]) -> Proc:
        assert self.holder is not None
        proc = Proc(
            name,
            ["nsenter", f"--target={self.holder.pid}", "--mount", "--net", "--", *argv],
            self.logs / f"{name}.log",
        ).start()
        self.procs[name] = proc
        return proc

    def start(self, images: list[Image] = ()) -> None:  # type: ignore[assignment]
        """Start (or restart after stop()) the node and wait until it is Ready."""
        HOST_DIRS.ensure(Path(target) for target in NODE_MOUNTS)
        for sub in NODE_MOUNTS.values():
            if sub.startswith("run/"):
                shutil.rmtree(self.root / sub, ignore_errors=True)
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        seeded = not self.started and bool(images) and nodestore.seed(self.root / "disk/containerd", images)
        marker = f"ready {time.time_ns()}"
        binds: list[str] = []
        for target, sub in NODE_MOUNTS.items():
            binds += [str(self.root / sub), target]
        self.holder = Proc(
            f"{self.name}-holder",
            [
                "nsenter",
                f"--net=/run/netns/{self.netns}",
                "--",
                "unshare",
                "--mount",
                "--propagation",
                "slave",
                "--",
                "sh",
                "-c",
                HOLDER,
                "holder",
                marker,
                *binds,
            ],
            self.logs / "holder.log",
        ).start()
        holder = self.holder
        holder.wait_ready(lambda: marker in holder.tail(5), 10, "set up")
        containerd = self._in_node(
            "containerd", [str(config.system_bin("containerd")), "--config", str(self.containerd_config)]
        )
        sock = self.root / "run/containerd/containerd.sock"
        containerd.wait_ready(lambda: sock.exists() and self._ctr("version") != "", 30, "serving")
        # After stop() the node's content store is still there (only run/ is cleared), and a first
        # start was seeded from the machine's store: an image it already holds, by name and digest, is
        # not read again (an import costs ~2 s per 180 MiB).
        held = self._images_held() if self.started or seeded else set()
        for image in images:
            if (image.name, image.digest) not in held:
                self.import_image(image)
        self._in_node(
            "kubelet",
            [
                str(config.k8s_bin("kubelet")),
                f"--config={self.kubelet_config}",
                f"--kubeconfig={self.kubeconfig}",
                f"--hostname-override={self.name}",
                f"--node-ip={self.ip}",
                f"--node-labels=cairn.dev/harness-node={self.name}",
                "--v=1",
            ],
        )
        self._in_node("kube-proxy", [str(config.k8s_bin("kube-proxy")), f"--config={self.proxy_config}", "--v=1"])
        self.started += 1

    def _images_held(self) -> set[tuple[str, str]]:
        """(name, manifest digest) of each image in the node's containerd."""
        return nodestore.images_listed(self._ctr("images", "ls"))

    def import_image(self, image: Image) -> None:
        self._ctr("images", "import", str(image.archive))

    def kill_container(self, container_id: str, sig: str = "SIGKILL") -> None:
        """Send a signal to a container's process, as the kernel's OOM killer or a crash would."""
        self._ctr("tasks", "kill", "--signal", sig, container_id.removeprefix("containerd://"))

    def _ctr(self, *args: str) -> str:
        sock = self.root / "run/containerd/containerd.sock"
        return run(["ctr", "--address", str(sock), "--namespace", "k8s.io", *args], timeout=300)

    def wait_ready(self, timeout: float = 90) -> None:
        kubelet = self.procs["kubelet"]
        kubelet.wait_ready(self._is_ready, timeout, "Ready")

    def _is_ready(self) -> bool:
        node = api_request(self.cp, f"/api/v1/nodes/{self.name}")
        assert isinstance(node, dict)
        for cond in node.get("status", {}).get("conditions", []):
            if cond["type"] == "Ready":
                return bool(cond["status"] == "True")
        return False

    def stop(self) -> None:
        """Pull the plug: kill kubelet, kube-proxy, containerd, every container, and the mount namespace."""
        mntns = _mnt_ns(self.holder.pid) if self.holder and self.holder.alive() else None
        for proc in self.procs.values():
            proc.stop(timeout=0.01, sig=signal.SIGKILL)
        self.procs.clear()
        holder = self.holder.pid if self.holder else -1
        _kill_until_gone(self.cgroup_root, lambda p: mntns is not None and p != holder and _mnt_ns(p) == mntns)
        if self.holder is not None:
            self.holder.stop(timeout=0.01, sig=signal.SIGKILL)
            self.holder = None

    def destroy(self) -> None:
        self.stop()
        _remove_cgroups(self.cgroup_root)
        net.delete_node_netns(self.slot, self.n)

    def is_running(self) -> bool:
        return "kubelet" in self.procs and self.procs["kubelet"].alive()


CONTAINERD_CONFIG = """version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "/run/containerd/containerd.sock"
[debug]
  level = "warn"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/pause:local"
  # No CAP_SYS_RESOURCE here: negative oom_score_adj values fail the sandbox.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "/etc/cni/net.d"
"""


def kill_node_leftovers(slot: net.Slot, n: int) -> None:
    """Kill what a dead harness left of node n: processes in its network namespace or cgroups."""
    ns_path = Path("/run/netns") / slot.netns(n)
    cgroup_root = f"/cairn{slot.index}n{n}"
    target = os.stat(ns_path).st_ino if ns_path.exists() else None
    _kill_until_gone(cgroup_root, lambda p: target is not None and _net_ns_inode(p) == target)
    _remove_cgroups(cgroup_root)


def _kill_until_gone(cgroup_root: str, also: Callable[[int], bool], rounds: int = 50) -> None:
    """SIGKILL every process in the node's cgroups, and every process `also` picks, until none is left
    (a dying container's shim may start a last child)."""
    for _ in range(rounds):
        victims = set(_cgroup_pids(cgroup_root)) | set(pids_where(also))
        if not victims:
            return
        for pid in victims:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def _net_ns_inode(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


def _cgroup_controllers() -> list[str]:
    base = Path("/sys/fs/cgroup")
    return sorted(p.name for p in base.iterdir() if p.is_dir() and not p.is_symlink() and (p / "cgroup.procs").exists())


def _cgroup_pids(root: str) -> list[int]:
    pids: list[int] = []
    for ctrl in _cgroup_controllers():
        top = Path("/sys/fs/cgroup") / ctrl / root.lstrip("/")
        if not top.exists():
            continue
        for dirpath, _dirs, files in os.walk(top):
            if "cgroup.procs" in files:
                with contextlib.suppress(OSError):
                    pids += [int(x) for x in (Path(dirpath) / "cgroup.procs").read_text().split()]
    return pids


def _remove_cgroups(root: str) -> None:
    for ctrl in _cgroup_controllers():
        top = Path("/sys/fs/cgroup") / ctrl / root.lstrip("/")
        if not top.exists():
            continue
        for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda w: -len(w[0])):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)


def _mnt_ns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def raise_if_unready(nodes: list[Node]) -> None:
    bad = [n.name for n in nodes if not n.is_running()]
    if bad:
        raise HarnessError(f"nodes not running: {', '.join(bad)}")
