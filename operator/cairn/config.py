"""The operator's and the API's settings, from the environment (CAIRN_*)."""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from cairn.api.common import GoDuration


def env_name(field: str) -> str:
    """The environment variable that sets a Settings field."""
    return f"CAIRN_{field.upper()}"


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    database_url: SecretStr = Field(description="PostgreSQL DSN (CAIRN_DATABASE_URL).")
    api_url: str = Field("http://cairn-api:8080", description="Where task pods reach the checkpoint API.")
    public_url: str | None = Field(
        None,
        description="Where systems outside the cluster reach the API (the base of wait tokens' completion URLs); "
        "unset: api_url.",
    )
    kubeconfig: str | None = Field(None, description="A kubeconfig file; unset: in-cluster service account.")
    namespaces: list[str] = Field(default_factory=list, description="Namespaces to watch; empty: all.")
    token_audience: str = Field("cairn.dev", description="Audience of the pods' projected tokens.")
    workers: int = Field(8, ge=1, description="Concurrent reconciles.")
    kube_qps: float = Field(50, ge=0, description="Client-side Kubernetes API requests per second.")
    kube_burst: int = Field(100, ge=1, description="Kubernetes API requests allowed in a burst above kube_qps.")
    event_qps: float = Field(5, ge=0, description="Kubernetes Events written per second, at most.")
    sweep_interval: float = Field(30, gt=0, description="Seconds between sweeps for leaked slots.")
    orphan_grace: float = Field(
        30, ge=0, description="Seconds a run must have been registered before a sweep may reclaim its slot."
    )
    resync_interval: float = Field(300, gt=0, description="Seconds between full re-reconciles of every run.")
    liveness_port: int = Field(8081, ge=0, le=65535, description="kopf's /healthz port (0: off).")
    metrics_port: int = Field(9090, ge=0, le=65535, description="Prometheus /metrics port (0: off).")
    api_port: int = Field(8080, ge=1, le=65535, description="The checkpoint/trigger API's port.")
    api_host: str = Field("0.0.0.0", description="The API's bind address.")  # noqa: S104 - a server in a pod
    api_client_rate: float = Field(
        200, ge=0, description="API requests per second one client (a pod's or a user's token) may make (0: no limit)."
    )
    api_client_burst: int = Field(400, ge=1, description="API requests one client may make at once above its rate.")
    api_body_seconds: float = Field(30, gt=0, description="Seconds a request's body may take to arrive (then 408).")
    ui: str = Field(
        "on",
        pattern="^(on|read-only|off)$",
        description="The dashboard under /ui: `on`, `read-only` (every page, no action: no cancel, rerun, fork, "
        "approval or queue change) or `off`.",
    )
    api_idle_seconds: float = Field(
        30, gt=0, description="Seconds a connection may stay open without a whole request's headers (slow clients)."
    )
    log_format: str = Field("json", pattern="^(json|text)$", description="Log lines as `json` or `text`.")
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR.")
    leader_election: bool = Field(
        True, description="Hold a Lease while acting, so that of several operators one acts and the others wait."
    )
    leader_namespace: str | None = Field(
        None, description="The Lease's namespace; unset: the operator pod's own (POD_NAMESPACE), else `default`."
    )
    leader_lease: str = Field("cairn-operator", description="The Lease's name (one per installation).")
    leader_identity: str | None = Field(
        None,
        description="Who holds the Lease; unset: the host's name (the pod's), so that a restarted container "
        "takes its lease back at once. Unique per operator.",
    )
    leader_lease_seconds: float = Field(
        10,
        ge=3,
        description="A standby takes over after this long without a renewal; a leader that could not renew for "
        "0.7 of it stops first.",
    )
    retention_default: GoDuration = Field(
        GoDuration("168h"), description="Checkpoint retention for runs deleted before finishing."
    )
    history_keep: int = Field(
        100_000,
        ge=0,
        description="At most this many archived runs (their TaskRun deleted) are kept per namespace, whatever "
        "their retention: past it the oldest go (the count side of retention; the time side is each Task's "
        "checkpointRetention).",
    )
    history_purge_batch: int = Field(
        500,
        ge=1,
        description="At most this many expired runs are deleted from history per sweep, so that a backlog is "
        "worked off in bounded rounds that never hold up admission or checkpoints.",
    )

    @property
    def dsn(self) -> str:
        return self.database_url.get_secret_value()

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        env = dict(os.environ if env is None else env)
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            key = env_name(name)
            if key in env and env[key] != "":
                raw = env[key]
                values[name] = [n.strip() for n in raw.split(",") if n.strip()] if name == "namespaces" else raw
        values.update(overrides)
        return cls.model_validate(values)


def settings_table() -> str:
    """The settings as a Markdown table (docs/configuration.md is this, checked by a test)."""
    rows = ["| variable | default | what it sets |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        if field.is_required():
            default = "(required)"
        elif field.default_factory is not None:
            default = "(empty)"
        else:
            default = f"`{field.default}`" if field.default is not None else "(unset)"
        rows.append(f"| `{env_name(name)}` | {default} | {field.description or ''} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(settings_table(), end="")
