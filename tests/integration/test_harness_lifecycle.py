"""The harness starts and stops cleanly, again and again: no process, port, network namespace,
interface, mount, cgroup or directory that it made outlives it.

Only what the harness under test made is counted (its processes: those it registered, their
sessions, and everything in its nodes' cgroups and namespaces; the ports they listened on; its
slot's namespaces, interfaces and cgroups; mounts under its directories), so the test holds with
anything else running beside it: a PostgreSQL of the machine's own, a dev cluster, another test
run. The host paths every harness shares (the nodes' bind targets, /run/netns) are checked when no
other harness is running; in CI that is always (this test runs first, before the session's cluster)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness import net
from harness.cluster import Cluster, sweep_dead_harnesses
from harness.hostdirs import is_mountpoint
from harness.node import NETNS_DIR, NODE_MOUNTS, _cgroup_controllers, _cgroup_pids, _mnt_ns, _net_ns_inode
from harness.postgres import Postgres
from harness.procs import _session_of, pids_where, start_time
from tests.support.figures import report

CYCLES = 5
SHARED_HOST_PATHS = sorted({*NODE_MOUNTS, str(NETNS_DIR), "/etc/cni"})


def _program(pid: int) -> str | None:
    try:
        return Path(os.readlink(f"/proc/{pid}/exe")).name
    except OSError:
        return None


def _zombie(pid: int) -> bool:
    """An exited process not reaped yet: it holds no memory, file, port or mount, only its pid. The
    harness's daemons are reparented to PID 1 when their parent exits, and this machine's PID 1 reaps
    them when it gets to it (seconds later, at times)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _states(leaks: dict[str, list[str]]) -> list[str]:
    out = []
    for p in leaks.get("processes", []):
        pid = p.split(":")[0]
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            out.append(f"{pid}: {fields[0]}, parent {fields[1]} (this test: {os.getpid()})")
        except (OSError, IndexError):
            out.append(f"{pid}: gone")
    return out


def _socket_inodes(pid: int) -> set[str]:
    out = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                out.add(link[8:-1])
    except OSError:
        pass
    return out


def _listening() -> dict[str, str]:
    """Listening TCP sockets of the host's network namespace: inode -> local address."""
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                found[fields[9]] = fields[1]
    return found


def _mountpoints() -> set[str]:
    return {ln.split()[4] for ln in Path("/proc/self/mountinfo").read_text().splitlines()}


@dataclass
class Made:
    """What one running harness (a cluster and a PostgreSQL) made, found from its own records."""

    slot: int
    dirs: list[str]
    processes: set[str] = field(default_factory=set)  # "pid:start-time:program"
    ports: dict[str, str] = field(default_factory=dict)  # socket inode -> address, of its listening sockets
    sessions: set[int] = field(default_factory=set)  # the sessions its processes were started in

    def prefixes(self) -> tuple[str, ...]:
        return (*self.dirs, f"/run/netns/cairn{self.slot}n")

    def namespaces(self) -> set[str]:
        return (
            {ns for ns in os.listdir("/run/netns") if ns.startswith(f"cairn{self.slot}n")}
            if NETNS_DIR.exists()
            else set()
        )

    def interfaces(self) -> set[str]:
        mine = net.Slot(self.slot)
        return {i for i in os.listdir("/sys/class/net") if i == mine.bridge or i.startswith(f"cairn{self.slot}n")}

    def mounts(self) -> set[str]:
        return {m for m in _mountpoints() if m.startswith(self.prefixes())}

    def cgroups(self) -> set[str]:
        return {
            f"{ctrl}/{name}"
            for ctrl in _cgroup_controllers()
            for name in os.listdir(f"/sys/fs/cgroup/{ctrl}")
            if name.startswith(f"cairn{self.slot}n")
        }

    def directories(self) -> set[str]:
        return {d for d in self.dirs if Path(d).exists()}

    def live_processes(self) -> set[str]:
        seen = {p for p in self.processes if start_time(int(p.split(":")[0])) == p.split(":")[1]}
        # Anything started in its sessions after it was observed counts too.
        late = pids_where(lambda p: _session_of(p) in self.sessions)
        live = seen | {f"{pid}:{start_time(pid)}:{_program(pid)}" for pid in late}
        return {p for p in live if not _zombie(int(p.split(":")[0]))}

    def live_ports(self) -> set[str]:
        listening = _listening()
        return {address for inode, address in self.ports.items() if inode in listening}

    def observe(self, cluster: Cluster, pg: Postgres) -> None:
        """Collect the processes and ports of the running harness."""
        registry = (net.LOCK_DIR / f"slot{self.slot}.pids").read_text().splitlines()
        # A registered process that has exited may have left its pid to someone else's.
        roots = {int(pid) for pid, started in (ln.split() for ln in registry) if start_time(int(pid)) == started}
        assert pg.proc is not None
        roots.add(pg.proc.pid)
        self.sessions = roots
        pids = set(pids_where(lambda p: p in roots or _session_of(p) in roots))
        for node in cluster.node_list:
            pids |= set(_cgroup_pids(node.cgroup_root))
            netns = os.stat(f"/run/netns/{node.netns}").st_ino
            mnt = _mnt_ns(node.holder.pid) if node.holder else None
            pids |= set(pids_where(_in_namespaces(netns, mnt)))
        listening = _listening()
        for pid in pids:
            self.processes.add(f"{pid}:{start_time(pid)}:{_program(pid)}")
            self.ports |= {i: listening[i] for i in _socket_inodes(pid) if i in listening}

    def left(self) -> dict[str, list[str]]:
        found = {
            "processes": self.live_processes(),
            "listening ports": self.live_ports(),
            "network namespaces": self.namespaces(),
            "interfaces": self.interfaces(),
            "mounts": self.mounts(),
            "cgroups": self.cgroups(),
            "directories": self.directories(),
        }
        return {kind: sorted(v) for kind, v in found.items() if v}


def _in_namespaces(netns: int, mnt: str | None) -> Callable[[int], bool]:
    return lambda pid: _net_ns_inode(pid) == netns or (mnt is not None and _mnt_ns(pid) == mnt)


def _shared_mount(path: Path) -> bool:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == str(path):
            optional = fields[6 : fields.index("-")]
            return any(f.startswith("shared:") for f in optional)
    return False


def _existing(paths: list[str]) -> set[str]:
    return {p for p in paths if os.path.lexists(p)}


def test_harness_starts_and_stops_five_times_without_leaving_anything_behind() -> None:
    others = sweep_dead_harnesses()  # what a harness killed earlier left is not this test's to count
    in_ci = bool(os.environ.get("CI"))
    assert not (in_ci and others), f"in CI this test runs before any other harness, but slots {others} are in use"
    shared_before = _existing(SHARED_HOST_PATHS)
    netns_mounted_before = is_mountpoint(NETNS_DIR) if NETNS_DIR.exists() else False
    if in_ci:
        assert not shared_before, f"a new machine has none of these, and no harness is running: {sorted(shared_before)}"
    seen = {"processes": 0, "ports": 0, "namespaces": 0, "mounts": 0}
    for cycle in range(CYCLES):
        cluster = Cluster(nodes=1, image_set="minimal", dns=False)
        pg = Postgres()
        made: Made | None = None
        try:
            cluster.start()
            pg.start()
            assert cluster.node_list[0].is_running()
            assert cluster.root is not None and pg.root is not None
            made = Made(
                cluster.slot.index, [str(cluster.root), str(pg.root), f"/dev/shm/cairn-etcd-{cluster.slot.index}"]
            )
            made.observe(cluster, pg)
            assert made.processes, "the harness started no process?"
            assert made.ports, "its processes listen on no port?"
            found = {
                "network namespaces": made.namespaces(),
                "mounts": made.mounts(),
                "interfaces": made.interfaces(),
                "cgroups": made.cgroups(),
                "directories": made.directories(),
            }
            assert all(found.values()), f"some of what it makes was not found while it ran: {found}"
            assert len(found["directories"]) == 3, found["directories"]
            assert _shared_mount(NETNS_DIR), "/run/netns is not a shared mount while the harness runs"
            if not others:
                assert _existing(SHARED_HOST_PATHS) >= set(NODE_MOUNTS), "its nodes' bind targets are missing"
            seen["processes"] += len(made.processes)
            seen["ports"] += len(made.ports)
            seen["namespaces"] += len(made.namespaces())
            seen["mounts"] += len(made.mounts())
        finally:
            pg.stop()
            cluster.stop()
        assert made is not None
        leaks = made.left()
        assert not leaks, f"cycle {cycle + 1} left behind: {leaks} (processes' state, parent: {_states(leaks)})"
        if not others:
            shared_left = _existing(SHARED_HOST_PATHS) - shared_before
            assert not shared_left, f"cycle {cycle + 1} left host paths it made: {sorted(shared_left)}"
            mounted = is_mountpoint(NETNS_DIR) if NETNS_DIR.exists() else False
            assert mounted == netns_mounted_before, f"cycle {cycle + 1} left /run/netns mounted: {mounted}"
    shared = (
        f"shared host paths: {len(SHARED_HOST_PATHS) - len(shared_before)} made and removed each cycle"
        if not others
        else f"shared host paths not checked: slots {others} are in use by another harness"
    )
    report(
        f"{CYCLES} cycles: {seen['processes']} processes, {seen['ports']} listening ports, "
        f"{seen['namespaces']} network namespaces, {seen['mounts']} mounts made, none left; {shared}"
    )
