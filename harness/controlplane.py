"""The Kubernetes control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler."""

from __future__ import annotations

import json
import random
import shutil
import socket
import ssl
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from harness import config
from harness.kubeconfig import write_kubeconfig
from harness.net import Slot
from harness.pki import CA, CertPair, service_account_keys
from harness.procs import Proc

# Short node timeouts so that node-loss tests see a lost node in seconds, not minutes.
NODE_MONITOR_GRACE = "8s"
TOLERATION_SECONDS = "5"


def _ephemeral_start() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str = "127.0.0.1") -> int:
    """A port to listen on, outside the kernel's ephemeral range: the outgoing connections of every
    process on the machine take their local ports from that range, and a server restarted on a port
    one of them took would fail with "address in use"."""
    high = min(_ephemeral_start(), 32768) - 1
    for _ in range(200):
        port = random.randint(10000, high)
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    raise OSError(f"no free port between 10000 and {high} on {host}")


def https_ok(url: str, ca: Path, client: CertPair | None = None, expect: bytes = b"ok") -> bool:
    ctx = ssl.create_default_context(cafile=str(ca))
    if client:
        ctx.load_cert_chain(str(client.cert), str(client.key))
    with urllib.request.urlopen(url, context=ctx, timeout=2) as resp:  # noqa: S310 - our own https URL
        return bool(resp.status == 200 and resp.read().strip() == expect)


def insecure_ok(url: str) -> bool:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(url, context=ctx, timeout=2) as resp:  # noqa: S310 - our own https URL
        return bool(resp.status == 200)


def http_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - our own loopback URL
        return json.loads(resp.read())


@dataclass
class ControlPlane:
    slot: Slot
    root: Path
    etcd_data: Path
    procs: list[Proc] = field(default_factory=list)
    # The client budget of each controller in kube-controller-manager (--kube-api-qps/--kube-api-burst;
    # with service-account credentials every controller has a client, and a budget, of its own).
    controller_qps: float = 100
    controller_burst: int = 200

    def __post_init__(self) -> None:
        self.pki = self.root / "pki"
        self.logs = self.root / "logs"
        self.server = f"https://{self.slot.host_ip}:6443"

    # -- certificates ------------------------------------------------------------------------------
    def make_pki(self) -> None:
        self.ca = CA(self.pki)
        self.sa = service_account_keys(self.pki)
        ip = self.slot.host_ip
        self.apiserver_cert = self.ca.issue(
            "apiserver",
            "kube-apiserver",
            dns=(
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
                "localhost",
            ),
            ips=("127.0.0.1", ip, self.slot.kubernetes_service_ip),
            server=True,
            client=False,
        )
        self.kubelet_client = self.ca.issue(
            "apiserver-kubelet-client", "kube-apiserver-kubelet-client", org="system:masters"
        )
        self.admin = self.ca.issue("admin", "kubernetes-admin", org="system:masters")
        cm = self.ca.issue("controller-manager", "system:kube-controller-manager")
        sched = self.ca.issue("scheduler", "system:kube-scheduler")
        kc = self.root / "kubeconfig"
        kc.mkdir(exist_ok=True)
        self.admin_kubeconfig = write_kubeconfig(
            kc / "admin.yaml",
            server=self.server,
            ca=self.ca.cert_path,
            client=self.admin,
            user="admin",
            cluster="cairn-local",
        )
        self.cm_kubeconfig = write_kubeconfig(
            kc / "controller-manager.yaml",
            server=self.server,
            ca=self.ca.cert_path,
            client=cm,
            user="controller-manager",
            cluster="cairn-local",
        )
        self.sched_kubeconfig = write_kubeconfig(
            kc / "scheduler.yaml",
            server=self.server,
            ca=self.ca.cert_path,
            client=sched,
            user="scheduler",
            cluster="cairn-local",
        )

    def node_credentials(self, node: str, node_ip: str) -> tuple[CertPair, CertPair, Path]:
        """Serving cert, client cert and kubeconfig for a kubelet."""
        serving = self.ca.issue(
            f"kubelet-{node}-serving",
            f"system:node:{node}",
            org="system:nodes",
            dns=(node,),
            ips=(node_ip,),
            server=True,
            client=False,
        )
        client = self.ca.issue(f"kubelet-{node}", f"system:node:{node}", org="system:nodes")
        kc = write_kubeconfig(
            self.root / "kubeconfig" / f"kubelet-{node}.yaml",
            server=self.server,
            ca=self.ca.cert_path,
            client=client,
            user=f"system:node:{node}",
            cluster="cairn-local",
        )
        return serving, client, kc

    def client_kubeconfig(self, name: str, cn: str, org: str | None = None) -> Path:
        pair = self.ca.issue(name, cn, org=org)
        return write_kubeconfig(
            self.root / "kubeconfig" / f"{name}.yaml",
            server=self.server,
            ca=self.ca.cert_path,
            client=pair,
            user=name,
            cluster="cairn-local",
        )

    # -- processes ---------------------------------------------------------------------------------
    def start(self) -> None:
        self.make_pki()
        self.start_etcd()
        self.start_apiserver()
        self.start_controller_manager()
        self.start_scheduler()

    def start_etcd(self) -> None:
        self.etcd_port = free_port()
        peer = free_port()
        self.etcd_data.mkdir(parents=True, exist_ok=True)
        url = f"http://127.0.0.1:{self.etcd_port}"
        etcd = Proc(
            "etcd",
            [
                str(config.system_bin("etcd")),
                "--name",
                "cairn",
                "--data-dir",
                str(self.etcd_data),
                "--listen-client-urls",
                url,
                "--advertise-client-urls",
                url,
                "--listen-peer-urls",
                f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{peer}",
                "--initial-cluster",
                f"cairn=http://127.0.0.1:{peer}",
                "--listen-metrics-urls",
                f"http://127.0.0.1:{free_port()}",
                "--quota-backend-bytes",
                str(4 * 1024**3),
                "--snapshot-count",
                "50000",
                "--log-level",
                "warn",
            ],
            self.logs / "etcd.log",
        ).start()
        self.procs.append(etcd)
        etcd.wait_ready(lambda: http_json(f"{url}/health") == {"health": "true"}, 30, "healthy")

    def apiserver_argv(self) -> list[str]:
        p = self.pki
        return [
            str(config.k8s_bin("kube-apiserver")),
            f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
            f"--bind-address={self.slot.host_ip}",
            "--secure-port=6443",
            f"--advertise-address={self.slot.host_ip}",
            f"--cert-dir={p}",
            f"--tls-cert-file={self.apiserver_cert.cert}",
            f"--tls-private-key-file={self.apiserver_cert.key}",
            f"--client-ca-file={self.ca.cert_path}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={self.sa.cert}",
            f"--service-account-signing-key-file={self.sa.key}",
            f"--service-cluster-ip-range={self.slot.service_cidr}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            "--allow-privileged=true",
            f"--kubelet-client-certificate={self.kubelet_client.cert}",
            f"--kubelet-client-key={self.kubelet_client.key}",
            "--kubelet-preferred-address-types=InternalIP",
            f"--default-not-ready-toleration-seconds={TOLERATION_SECONDS}",
            f"--default-unreachable-toleration-seconds={TOLERATION_SECONDS}",
            "--enable-aggregator-routing=true",
            "--profiling=false",
            "--max-requests-inflight=800",
            "--max-mutating-requests-inflight=400",
            "--v=1",
        ]

    def start_apiserver(self) -> None:
        api = Proc("kube-apiserver", self.apiserver_argv(), self.logs / "kube-apiserver.log").start()
        self.procs.append(api)
        self.apiserver = api
        api.wait_ready(lambda: https_ok(f"{self.server}/readyz", self.ca.cert_path, self.admin), 90, "ready")

    def restart_apiserver(self, kill: bool = True) -> None:
        """Stop (SIGKILL by default) and start the API server again; waits until it is ready."""
        if kill:
            self.apiserver.kill()
        else:
            self.apiserver.stop()
        self.procs.remove(self.apiserver)
        self.start_apiserver()

    def start_controller_manager(self) -> None:
        port = free_port()
        self.controller_manager_port = port  # https /metrics and /healthz (admin's client certificate)
        kc = self.cm_kubeconfig
        cm = Proc(
            "kube-controller-manager",
            [
                str(config.k8s_bin("kube-controller-manager")),
                f"--kubeconfig={kc}",
                f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}",
                f"--service-account-private-key-file={self.sa.key}",
                f"--root-ca-file={self.ca.cert_path}",
                f"--cluster-signing-cert-file={self.ca.cert_path}",
                f"--cluster-signing-key-file={self.ca.key_path}",
                "--use-service-account-credentials=true",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={self.pki / 'cm'}",
                f"--service-cluster-ip-range={self.slot.service_cidr}",
                f"--node-monitor-grace-period={NODE_MONITOR_GRACE}",
                "--node-monitor-period=2s",
                f"--kube-api-qps={self.controller_qps:g}",
                f"--kube-api-burst={self.controller_burst}",
                "--concurrent-gc-syncs=20",
                "--profiling=false",
                "--v=1",
            ],
            self.logs / "kube-controller-manager.log",
        ).start()
        self.procs.append(cm)
        self.controller_manager = cm
        cm.wait_ready(lambda: insecure_ok(f"https://127.0.0.1:{port}/healthz"), 60, "healthy")

    def stop_controller_manager(self) -> None:
        """Stop kube-controller-manager (every built-in controller pauses); start it again with
        start_controller_manager()."""
        self.controller_manager.stop(timeout=5)
        self.procs.remove(self.controller_manager)

    def start_scheduler(self) -> None:
        port = free_port()
        kc = self.sched_kubeconfig
        sched = Proc(
            "kube-scheduler",
            [
                str(config.k8s_bin("kube-scheduler")),
                f"--kubeconfig={kc}",
                f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={self.pki / 'sched'}",
                "--profiling=false",
                "--v=1",
            ],
            self.logs / "kube-scheduler.log",
        ).start()
        self.procs.append(sched)
        sched.wait_ready(lambda: insecure_ok(f"https://127.0.0.1:{port}/healthz"), 60, "healthy")

    def stop(self) -> None:
        # The API server's graceful shutdown waits ~10s for long-running requests; nothing here
        # needs it, so teardown gives each component two seconds before SIGKILL.
        for proc in reversed(self.procs):
            proc.stop(timeout=2)
        self.procs.clear()
        shutil.rmtree(self.etcd_data, ignore_errors=True)


def api_request(cp: ControlPlane, path: str, method: str = "GET", body: object | None = None) -> object:
    """A request to the API server as cluster admin (the harness needs no client library for this)."""
    ctx = ssl.create_default_context(cafile=str(cp.ca.cert_path))
    ctx.load_cert_chain(str(cp.admin.cert), str(cp.admin.key))
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(  # noqa: S310 - our own https URL
        f"{cp.server}{path}",
        data=data,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:  # noqa: S310 - our own https URL
        return json.loads(resp.read())
