"""Cluster DNS: CoreDNS (built from its Go module) as a Deployment behind the kube-dns Service.

It answers for cluster.local only and forwards nothing, so a lookup of an outside name fails
instead of leaving the machine. It listens on 1053 as a non-root user; the Service maps port 53.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from harness import config
from harness.images import COREDNS
from harness.net import Slot
from harness.procs import HarnessError

COREFILE = """.:1053 {
    errors
    health :8080
    ready :8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }
    cache 5
}
"""


def manifests(slot: Slot) -> str:
    corefile = "\n".join(f"    {line}" for line in COREFILE.splitlines())
    return f"""
apiVersion: v1
kind: ServiceAccount
metadata: {{name: coredns, namespace: kube-system}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: "system:coredns"}}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: "system:coredns"}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}}
subjects: [{{kind: ServiceAccount, name: coredns, namespace: kube-system}}]
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: coredns, namespace: kube-system}}
data:
  Corefile: |
{corefile}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: coredns, namespace: kube-system, labels: {{k8s-app: kube-dns}}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{k8s-app: kube-dns}}}}
  template:
    metadata: {{labels: {{k8s-app: kube-dns}}}}
    spec:
      serviceAccountName: coredns
      dnsPolicy: Default
      enableServiceLinks: false
      securityContext:
        runAsNonRoot: true
        runAsUser: 65532
        seccompProfile: {{type: RuntimeDefault}}
      containers:
      - name: coredns
        image: {COREDNS}
        imagePullPolicy: Never
        args: ["-conf", "/etc/coredns/Corefile"]
        ports:
        - {{containerPort: 1053, protocol: UDP, name: dns}}
        - {{containerPort: 1053, protocol: TCP, name: dns-tcp}}
        readinessProbe:
          httpGet: {{path: /ready, port: 8181}}
          periodSeconds: 1
        livenessProbe:
          httpGet: {{path: /health, port: 8080}}
        resources:
          requests: {{cpu: 10m, memory: 32Mi}}
          limits: {{memory: 128Mi}}
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {{drop: [ALL]}}
        volumeMounts: [{{name: config, mountPath: /etc/coredns}}]
      volumes: [{{name: config, configMap: {{name: coredns}}}}]
---
apiVersion: v1
kind: Service
metadata: {{name: kube-dns, namespace: kube-system, labels: {{k8s-app: kube-dns}}}}
spec:
  clusterIP: {slot.dns_service_ip}
  selector: {{k8s-app: kube-dns}}
  ports:
  - {{name: dns, port: 53, targetPort: 1053, protocol: UDP}}
  - {{name: dns-tcp, port: 53, targetPort: 1053, protocol: TCP}}
"""


def deploy(slot: Slot, kubeconfig: Path, timeout: float = 120) -> None:
    kubectl = [str(config.kubectl()), f"--kubeconfig={kubeconfig}"]
    res = subprocess.run(
        [*kubectl, "apply", "-f", "-"], input=manifests(slot), capture_output=True, text=True, check=False
    )
    if res.returncode != 0:
        raise HarnessError(f"applying CoreDNS failed:\n{res.stdout}{res.stderr}")
    res = subprocess.run(
        [
            *kubectl,
            "-n",
            "kube-system",
            "rollout",
            "status",
            "deployment/coredns",
            f"--timeout={int(timeout)}s",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if res.returncode != 0:
        logs = subprocess.run(
            [*kubectl, "-n", "kube-system", "logs", "deployment/coredns", "--tail=30"],
            capture_output=True,
            text=True,
            check=False,
        )
        describe = subprocess.run(
            [*kubectl, "-n", "kube-system", "describe", "pods", "-l", "k8s-app=kube-dns"],
            capture_output=True,
            text=True,
            check=False,
        )
        raise HarnessError(
            f"CoreDNS did not become ready:\n{res.stdout}{res.stderr}\n{logs.stdout}{logs.stderr}"
            f"\n{describe.stdout[-3000:]}"
        )


_PROBE = r"""
import socket, struct, sys, time
name = b"".join(bytes([len(p)]) + p for p in b"kubernetes.default.svc.cluster.local".split(b".")) + b"\0"
query = struct.pack(">HHHHHH", 0x4341, 0x0100, 1, 0, 0, 0) + name + struct.pack(">HH", 1, 1)
deadline = time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.5)
    try:
        s.sendto(query, (sys.argv[1], 53))
        reply = s.recv(512)
        if reply[:2] == b"\x43\x41" and reply[3] & 0x0F == 0 and struct.unpack(">H", reply[6:8])[0] > 0:
            sys.exit(0)
    except OSError:
        pass
    finally:
        s.close()
    time.sleep(0.2)
sys.exit(1)
"""


def wait_resolvable(slot: Slot, netns: list[str], timeout: float = 60) -> None:
    """Wait until the DNS Service answers from inside every node (kube-proxy has synced its rules)."""
    for ns in netns:
        res = subprocess.run(
            [
                "nsenter",
                f"--net=/run/netns/{ns}",
                "--",
                sys.executable,
                "-c",
                _PROBE,
                slot.dns_service_ip,
                str(timeout),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if res.returncode != 0:
            raise HarnessError(
                f"cluster DNS ({slot.dns_service_ip}) does not answer from {ns} after {timeout}s: {res.stderr[-2000:]}"
            )
