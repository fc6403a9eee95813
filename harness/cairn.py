"""Cairn itself on the local cluster: the operator and the API as real processes on the host, against
the harness's cluster and a database of their own. Tests and benchmarks can kill (SIGKILL) and
restart either."""

from __future__ import annotations

import os
import secrets
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from harness import config
from harness.controlplane import free_port
from harness.procs import Proc


@dataclass
class CairnProcesses:
    kubeconfig: Path
    dsn: str
    host_ip: str
    logs: Path
    api_port: int = field(default_factory=lambda: 0)
    operator: Proc | None = None
    api: Proc | None = None
    restarts: int = 0
    # Extra CAIRN_* settings for both processes (e.g. CAIRN_KUBE_QPS, CAIRN_NAMESPACES); they win.
    overrides: dict[str, str] = field(default_factory=dict)

    # Its operator's name in leader election: kept across restarts (like a pod's name across container
    # restarts), so a restarted operator takes its lease back at once; another CairnProcesses stands by.
    identity: str = field(default_factory=lambda: f"harness-operator-{secrets.token_hex(3)}")

    def __post_init__(self) -> None:
        if not self.api_port:
            self.api_port = free_port(self.host_ip or "127.0.0.1")
        self.liveness_port = free_port()
        self.operator_metrics_port = free_port()
        self.api_metrics_port = free_port()

    @property
    def api_url(self) -> str:
        return f"http://{self.host_ip}:{self.api_port}"

    def _env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
        env.update(
            {
                "PYTHONPATH": f"{config.REPO / 'operator'}:{config.REPO}",
                "CAIRN_DATABASE_URL": self.dsn,
                "CAIRN_KUBECONFIG": str(self.kubeconfig),
                "CAIRN_API_URL": self.api_url,
                "CAIRN_LOG_FORMAT": "json",
                "CAIRN_SWEEP_INTERVAL": "5",
                "CAIRN_LEADER_IDENTITY": self.identity,
                # Slow clients are cut off sooner than in production (30 s), so that tests of it are short.
                "CAIRN_API_BODY_SECONDS": "3",
                "CAIRN_API_IDLE_SECONDS": "8",
                "CAIRN_ORPHAN_GRACE": "5",
                "CAIRN_RESYNC_INTERVAL": "30",
                **extra,
                **self.overrides,
            }
        )
        return env

    def _argv(self, command: str) -> list[str]:
        # Fault points are armed only by the harness's own launcher: Cairn ignores CAIRN_FAULTS.
        launcher = "harness.faultinject" if self.overrides.get("CAIRN_FAULTS") else "cairn"
        return [sys.executable, "-m", launcher, command]

    def start_api(self) -> Proc:
        self.api = Proc(
            "cairn-api",
            self._argv("api"),
            self.logs / "api.log",
            env=self._env(
                CAIRN_API_HOST=self.host_ip,
                CAIRN_API_PORT=str(self.api_port),
                CAIRN_METRICS_PORT=str(self.api_metrics_port),
            ),
        ).start()
        self.api.wait_ready(lambda: _get(f"{self.api_url}/readyz"), 60, "ready")
        return self.api

    def start_operator(self) -> Proc:
        self.operator = Proc(
            "cairn-operator",
            self._argv("operator"),
            self.logs / "operator.log",
            env=self._env(
                CAIRN_LIVENESS_PORT=str(self.liveness_port), CAIRN_METRICS_PORT=str(self.operator_metrics_port)
            ),
        ).start()
        self.operator.wait_ready(lambda: _get(f"http://127.0.0.1:{self.liveness_port}/healthz"), 60, "live")
        return self.operator

    def kill_operator(self) -> None:
        assert self.operator is not None
        self.operator.kill()

    def restart_operator(self, *, kill: bool = True) -> None:
        if self.operator is not None:
            self.operator.kill() if kill else self.operator.stop()
        self.restarts += 1
        self.start_operator()

    def restart_api(self, *, kill: bool = True) -> None:
        if self.api is not None:
            self.api.kill() if kill else self.api.stop()
        self.start_api()

    def stop(self) -> None:
        for proc in (self.operator, self.api):
            if proc is not None:
                proc.stop(timeout=10)

    def log_tail(self, lines: int = 60) -> str:
        parts = []
        for proc in (self.operator, self.api):
            if proc is not None:
                parts.append(f"--- {proc.name} ---\n{proc.tail(lines)}")
        return "\n".join(parts)


def _get(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - our own loopback URL
        return bool(resp.status == 200)
