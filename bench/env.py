"""What every benchmark runs on: the harness's cluster (control plane, 2 real nodes, simulated KWOK
nodes), PostgreSQL, Cairn's CRDs, and Cairn's operator and API started fresh for each benchmark
(a database and a namespace of its own, the operator watching only that namespace), so that one
benchmark's leftovers never weigh on the next."""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.kube import Api, Body, KubeError, Samples, controller_manager_tls, scrape

__all__ = ["Body", "Env"]
from harness import config, kwok
from harness.cairn import CairnProcesses
from harness.cluster import Cluster
from harness.images import BUSYBOX, EXAMPLES
from harness.postgres import Postgres, create_database

# The client budget both sides get in the throughput benchmark: Cairn's defaults (CAIRN_KUBE_QPS=50,
# CAIRN_KUBE_BURST=100), given to each controller of kube-controller-manager as well.
QPS = 50
BURST = 100
RUN_GROUP = "/apis/cairn.dev/v1alpha1"
SIMULATED_LABEL = "bench.cairn.dev/simulated"


def taskruns(ns: str) -> str:
    return f"{RUN_GROUP}/namespaces/{ns}/taskruns"


def tasks(ns: str) -> str:
    return f"{RUN_GROUP}/namespaces/{ns}/tasks"


def queues(ns: str) -> str:
    return f"{RUN_GROUP}/namespaces/{ns}/queues"


def pods(ns: str) -> str:
    return f"/api/v1/namespaces/{ns}/pods"


def jobs(ns: str) -> str:
    return f"/apis/batch/v1/namespaces/{ns}/jobs"


@dataclass
class Env:
    root: Path
    fake_node_count: int = 10
    cluster: Cluster | None = None
    pg: Postgres | None = None
    api: Api | None = None
    processes: list[CairnProcesses] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    # -- life ------------------------------------------------------------------------------------
    def start(self) -> Env:
        t0 = time.monotonic()
        self.pg = Postgres(root=Path(tempfile.mkdtemp(prefix="cairn-bench-pg-"))).start()
        # All images: the waits benchmark runs the SDK (the examples image) on the real nodes.
        self.cluster = Cluster(nodes=2, image_set="all", controller_qps=QPS, controller_burst=BURST).start()
        self.timings["cluster_start_s"] = round(time.monotonic() - t0, 1)
        self.api = Api(self.cluster.cp)
        t1 = time.monotonic()
        self.cluster.fake_nodes(self.fake_node_count)
        self.timings["simulated_nodes_s"] = round(time.monotonic() - t1, 1)
        self.install_crds()
        return self

    def stop(self) -> None:
        for procs in self.processes:
            with contextlib.suppress(Exception):
                procs.stop()
        if self.api is not None:
            self.api.close()
        if self.cluster is not None:
            self.cluster.stop()
        if self.pg is not None:
            self.pg.stop()

    @property
    def kube(self) -> Api:
        assert self.api is not None
        return self.api

    @property
    def harness(self) -> Cluster:
        assert self.cluster is not None
        return self.cluster

    def install_crds(self) -> None:
        kubeconfig, crds = self.harness.kubeconfig, str(config.REPO / "crds")
        subprocess.run(
            [str(config.kubectl()), f"--kubeconfig={kubeconfig}", "apply", "--server-side", "-f", crds],
            check=True,
            capture_output=True,
            timeout=120,
        )
        for crd in ("tasks.cairn.dev", "taskruns.cairn.dev", "queues.cairn.dev", "schedules.cairn.dev"):
            deadline = time.monotonic() + 60
            while True:
                body = self.kube.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd}")
                conds = (body.get("status") or {}).get("conditions") or []
                if any(c["type"] == "Established" and c["status"] == "True" for c in conds):
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"CRD {crd} is not established")
                time.sleep(0.2)

    # -- per benchmark ---------------------------------------------------------------------------
    def namespace(self, stem: str) -> str:
        return self.kube.namespace(f"bench-{stem}-{secrets.token_hex(3)}", {"cairn.dev/bench": "true"})

    def cairn(
        self, namespace: str, *, api: bool = False, pg: Postgres | None = None, **settings: str
    ) -> CairnProcesses:
        """Cairn's operator (and the API if asked) for one benchmark: a fresh database (on `pg`, else
        the suite's server), watching only `namespace`. `settings` are CAIRN_* overrides, e.g.
        kube_qps="50"."""
        server = pg or self.pg
        assert server is not None
        dsn = create_database(server.dsn, f"bench_{secrets.token_hex(4)}")
        logs = self.root / "logs" / namespace
        # The operator's own defaults for its background loops (the harness shortens them for tests).
        settings = {"resync_interval": "300", "sweep_interval": "30", **settings}
        overrides = {"CAIRN_NAMESPACES": namespace, **{f"CAIRN_{k.upper()}": v for k, v in settings.items()}}
        procs = CairnProcesses(self.harness.kubeconfig, dsn, self.harness.slot.host_ip, logs, overrides=overrides)
        self.processes.append(procs)
        if api:
            procs.start_api()
        procs.start_operator()
        return procs

    def release(self, procs: CairnProcesses) -> None:
        procs.stop()
        if procs in self.processes:
            self.processes.remove(procs)

    # -- readings --------------------------------------------------------------------------------
    def operator_metrics(self, procs: CairnProcesses) -> Samples:
        return scrape(f"http://127.0.0.1:{procs.operator_metrics_port}/metrics")

    def api_metrics(self, procs: CairnProcesses) -> Samples:
        return scrape(f"http://127.0.0.1:{procs.api_metrics_port}/metrics")

    def controller_manager_metrics(self) -> Samples:
        cp = self.harness.cp
        return scrape(f"https://127.0.0.1:{cp.controller_manager_port}/metrics", tls=controller_manager_tls(cp))

    def wait(self, what: str, probe: Any, timeout: float, interval: float = 0.2) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            try:
                value = probe()
            except (KubeError, httpx.HTTPError, OSError) as e:
                value, last = None, e
            if value:
                return value
            last = value if value is not None else last
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")
            time.sleep(interval)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise ProcessLookupError(pid)


# -- what the benchmarks create -------------------------------------------------------------------------
RESTRICTED_USER = 65532


def code_configmap(name: str, module: str, code: str) -> Body:
    """A ConfigMap holding one Python module (`module`.py) for code_template's pods."""
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {f"{module}.py": code}}


def code_template(configmap: str, target: str) -> Body:
    """A pod template running `python3 -m cairn.run target` (module:function) in the examples image
    (the SDK installed), the module mounted from `configmap` (code_configmap) at /tasks."""
    return {
        "spec": {
            "containers": [
                {
                    "name": "task",
                    "image": EXAMPLES,
                    "imagePullPolicy": "Never",
                    "command": ["python3", "-m", "cairn.run", target],
                    "env": [{"name": "PYTHONPATH", "value": "/tasks:/app"}],
                    "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
                    "volumeMounts": [{"name": "code", "mountPath": "/tasks", "readOnly": True}],
                }
            ],
            "volumes": [{"name": "code", "configMap": {"name": configmap}}],
        }
    }


def real_container(command: list[str]) -> Body:
    return {
        "name": "task",
        "image": BUSYBOX,
        "imagePullPolicy": "Never",
        "command": command,
        "resources": {"requests": {"cpu": "1m", "memory": "8Mi"}, "limits": {"memory": "32Mi"}},
    }


def simulated_template(delay: str | None, exit_code: int = 0) -> Body:
    """A pod template for KWOK's nodes: it ends after `delay` with `exit_code`; with no delay it runs
    until deleted."""
    meta: Body = {"labels": {SIMULATED_LABEL: "true"}}
    if delay is not None:
        meta["labels"]["kwok.cairn.dev/finish"] = "true"
        meta["annotations"] = {"kwok.cairn.dev/exit-code": str(exit_code), "kwok.cairn.dev/delay": delay}
    return {
        "metadata": meta,
        "spec": {
            "containers": [
                {"name": "task", "image": BUSYBOX, "resources": {"requests": {"cpu": "1m", "memory": "1Mi"}}}
            ],
            "tolerations": [kwok.TOLERATION],
            "nodeSelector": dict(kwok.NODE_SELECTOR),
        },
    }


def task(ns: str, name: str, template: Body, *, queue: str = "default", **spec: Any) -> Body:
    return {
        "apiVersion": "cairn.dev/v1alpha1",
        "kind": "Task",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"template": template, "queue": queue, **spec},
    }


def queue(ns: str, name: str, limit: int, **spec: Any) -> Body:
    return {
        "apiVersion": "cairn.dev/v1alpha1",
        "kind": "Queue",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"concurrencyLimit": limit, **spec},
    }


def taskrun(ns: str, name: str, task_name: str, **spec: Any) -> Body:
    return {
        "apiVersion": "cairn.dev/v1alpha1",
        "kind": "TaskRun",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"taskRef": {"name": task_name}, **spec},
    }


def job(ns: str, name: str, pod_template: Body, *, backoff_limit: int = 0) -> Body:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"backoffLimit": backoff_limit, "template": pod_template},
    }


def real_pod_template(command: list[str]) -> Body:
    """A Job's pod template equal to what Cairn renders for a Task with real_container(command):
    same image, command, resources and security context, one projected token."""
    return {
        "metadata": {"labels": {"bench.cairn.dev/job": "true"}},
        "spec": {
            "restartPolicy": "Never",
            "enableServiceLinks": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": RESTRICTED_USER,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    **real_container(command),
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                        "runAsNonRoot": True,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                }
            ],
        },
    }


def real_task_template(command: list[str]) -> Body:
    return {
        "spec": {
            "containers": [real_container(command)],
            "securityContext": {"runAsUser": RESTRICTED_USER},
        }
    }


def _on_simulated_node(template: Body, delay: str) -> Body:
    """The template, for a KWOK node that ends its pod after `delay` (exit code 0)."""
    sim = simulated_template(delay)
    meta = template.setdefault("metadata", {})
    meta.setdefault("labels", {}).update(sim["metadata"]["labels"])
    meta.setdefault("annotations", {}).update(sim["metadata"]["annotations"])
    template["spec"]["tolerations"] = sim["spec"]["tolerations"]
    template["spec"]["nodeSelector"] = sim["spec"]["nodeSelector"]
    return template


def simulated_pod_template(delay: str) -> Body:
    """real_pod_template (what Cairn renders for real_task_template), on a simulated node."""
    return _on_simulated_node(real_pod_template(["sleep", "2"]), delay)


def simulated_task_template(delay: str) -> Body:
    return _on_simulated_node(real_task_template(["sleep", "2"]), delay)


def simulated_job_template(delay: str) -> Body:
    template = simulated_template(delay)
    template["metadata"]["labels"]["bench.cairn.dev/job"] = "true"
    template["spec"]["restartPolicy"] = "Never"
    return template


def schedules(ns: str) -> str:
    return f"{RUN_GROUP}/namespaces/{ns}/schedules"


def cronjobs(ns: str) -> str:
    return f"/apis/batch/v1/namespaces/{ns}/cronjobs"


def schedule(ns: str, name: str, task_name: str, cron: str, **spec: Any) -> Body:
    return {
        "apiVersion": "cairn.dev/v1alpha1",
        "kind": "Schedule",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"taskRef": {"name": task_name}, "cron": [cron], **spec},
    }


def cronjob(ns: str, name: str, cron: str, pod_template: Body) -> Body:
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "schedule": cron,
            "concurrencyPolicy": "Allow",
            "successfulJobsHistoryLimit": 1,
            "failedJobsHistoryLimit": 1,
            # Suspended Jobs: what is measured is the Job's creation, not its pod.
            "jobTemplate": {"spec": {"suspend": True, "backoffLimit": 0, "template": pod_template}},
        },
    }
